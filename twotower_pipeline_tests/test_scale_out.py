"""Past one machine by configuration only: the definitions loaded with the production settings."""

import re
from pathlib import PurePosixPath

import dagster as dg
import pytest
import yaml

from twotower_pipeline.definitions import build_definitions
from twotower_pipeline.jobs import WEEKLY_RUN_CONFIG_ENV, weekly_retrain_schedule
from twotower_pipeline.settings import PROJECT_ROOT, Settings

KUBERNETES = PROJECT_ROOT / "deploy" / "kubernetes"
VALUES = yaml.safe_load((KUBERNETES / "values.yaml").read_text())
WEEKLY = yaml.safe_load((KUBERNETES / "weekly-run-config.yaml").read_text())
SCALING_DOCS = PROJECT_ROOT / "docs" / "scaling.md"
TRAINING_STEP = "two_tower_model"
GPU = "nvidia.com/gpu"


def _deployment() -> dict:
    return VALUES["dagster-user-deployments"]["deployments"][0]


def cpu_image() -> str:
    image = _deployment()["image"]
    return f"{image['repository']}:{image['tag']}"


def image_workdir(dockerfile: str = "Dockerfile") -> PurePosixPath:
    return PurePosixPath(re.findall(r"^WORKDIR (\S+)", (PROJECT_ROOT / dockerfile).read_text(), re.M)[-1])


def in_repository(image_path: str):
    """The repository file that the image holds at image_path (the build context is copied under WORKDIR)."""
    return PROJECT_ROOT / PurePosixPath(image_path).relative_to(image_workdir())


@pytest.fixture
def production(monkeypatch, tmp_path) -> dict[str, str]:
    """The user-code deployment's environment from deploy/kubernetes/values.yaml, plus its secret."""
    env = {item["name"]: item["value"] for item in _deployment()["env"]}
    env["TWOTOWER_HOME"] = str(tmp_path / "scratch")
    env["TWOTOWER_DATABASE_URL"] = "postgresql://postgres:not-a-real-password@db.example.supabase.co:5432/postgres"
    env[WEEKLY_RUN_CONFIG_ENV] = str(in_repository(env[WEEKLY_RUN_CONFIG_ENV]))  # the image's copy, here
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return env


def test_the_production_definitions_use_kubernetes_object_storage_and_the_managed_database(production):
    defs = build_definitions(Settings.from_env())
    dg.Definitions.validate_loadable(defs)
    resources = defs.resources
    assert resources["io_manager"].base_dir == "s3://twotower-pipeline/dagster-assets"
    assert resources["model_store"].base_path == "s3://twotower-pipeline/models"
    assert isinstance(resources["app_db"].url, dg.EnvVar)  # the secret is read at run time, never shown
    assert resources["mlflow_tracking"].artifact_location is None  # the tracking server owns artifacts
    for name in ("weekly_retrain", "refresh_item_embeddings"):
        assert defs.resolve_job_def(name).executor_def.name == "k8s"


def test_gpu_training_is_a_run_config_that_the_weekly_job_accepts(production):
    defs = build_definitions(Settings.from_env())
    request = weekly_retrain_schedule(dg.build_schedule_context())
    config = request.run_config
    assert config["ops"]["two_tower_model"]["config"]["distribution"] == "mirrored"
    limits = config["execution"]["config"]["per_step_k8s_config"]["two_tower_model"]["container_config"]
    assert limits["resources"]["limits"]["nvidia.com/gpu"] == 1
    job = defs.resolve_job_def("weekly_retrain")
    assert job.run_config_schema.config_type is not None
    from dagster._config import process_config

    assert process_config(job.run_config_schema.config_type, config).success


def test_the_weekly_run_config_is_the_file_the_image_holds():
    """values.yaml points TWOTOWER_WEEKLY_RUN_CONFIG at deploy/kubernetes/ inside the CPU image."""
    env = {item["name"]: item["value"] for item in _deployment()["env"]}
    path = env[WEEKLY_RUN_CONFIG_ENV]
    assert PurePosixPath(path).is_relative_to(image_workdir()), path
    assert in_repository(path) == KUBERNETES / "weekly-run-config.yaml"
    assert re.search(r"^COPY deploy \./deploy$", (PROJECT_ROOT / "Dockerfile").read_text(), re.M)
    assert "deploy" not in (PROJECT_ROOT / ".dockerignore").read_text().split()


def _step_pod(op: str) -> dict:
    """The pod dagster-k8s's k8s_job_executor builds for a step of the weekly run: the run launcher's
    container config (values.yaml), then the run config's per_step_k8s_config for the op, on the
    user-code deployment's image, through dagster-k8s's own merge and job construction."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job

    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    context = K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
        {"container_config": launcher["containerConfig"]}))
    per_step = WEEKLY["execution"]["config"]["per_step_k8s_config"].get(op, {})
    context = context.merge(K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(per_step)))
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image=cpu_image()), args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{op.replace('_', '-')}", user_defined_k8s_config=context.run_k8s_config,
    )
    return job.spec.template.spec.to_dict()


def test_only_the_training_step_runs_in_the_gpu_image_on_a_gpu_node(production):
    defs = build_definitions(Settings.from_env())
    ops = {node.name for node in defs.resolve_job_def("weekly_retrain").graph.nodes}
    per_step = WEEKLY["execution"]["config"]["per_step_k8s_config"]
    assert set(per_step) == {TRAINING_STEP} and TRAINING_STEP in ops  # a key naming no op would be ignored

    training = _step_pod(TRAINING_STEP)
    container = training["containers"][0]
    assert container["image"] == f"{cpu_image()}-gpu"  # Dockerfile.gpu, built from the same commit
    assert int(container["resources"]["limits"][GPU]) == int(container["resources"]["requests"][GPU]) >= 1
    assert training["node_selector"] and any(t["key"] == GPU for t in training["tolerations"])

    for op in sorted(ops - {TRAINING_STEP}):  # ONNX export, embedding, data: the CPU image on CPU nodes
        pod = _step_pod(op)
        assert pod["containers"][0]["image"] == cpu_image(), op
        assert GPU not in (pod["containers"][0]["resources"].get("limits") or {}), op
        assert GPU not in (pod["containers"][0]["resources"].get("requests") or {}), op
        assert not pod.get("node_selector") and not pod.get("tolerations"), op


def test_mirrored_training_splits_the_batch_evenly_over_the_gpus():
    gpus = WEEKLY["execution"]["config"]["per_step_k8s_config"][TRAINING_STEP]["container_config"]["resources"]
    replicas = gpus["limits"][GPU]
    config = WEEKLY["ops"]
    assert set(config) == {TRAINING_STEP}
    assert config[TRAINING_STEP]["config"]["distribution"] == "mirrored"
    assert config[TRAINING_STEP]["config"]["batch_size"] % replicas == 0


def _doc_code(text: str) -> list[str]:
    """Inline code spans and fenced code blocks (also inside list items) of a Markdown text."""
    blocks = re.findall(r"^\s*```[^\n]*\n(.*?)^\s*```", text, re.M | re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.M | re.S))
    return blocks + spans


def test_the_scaling_docs_name_files_and_images_that_exist():
    text = SCALING_DOCS.read_text()
    code = "\n".join(_doc_code(text))
    files = set(re.findall(r"(?<![\w./:-])((?:deploy|requirements|docs|mlflow|supabase|twotower_pipeline_tests)"
                           r"/[\w./-]*\w|Dockerfile(?:\.gpu)?|docker-compose\.yml|pyproject\.toml)", code))
    files |= set(re.findall(r"(?:-f|--file)\s+(\S+)", code))
    assert {"Dockerfile.gpu", "requirements/gpu.txt", "deploy/kubernetes/weekly-run-config.yaml"} <= files
    for name in sorted(files):
        assert (PROJECT_ROOT / name).exists(), f"docs/scaling.md names {name}, which does not exist"
    # The build commands: each image from its Dockerfile, tagged as values.yaml and the run config expect,
    # with build arguments the Dockerfile declares.
    builds = re.findall(r"docker build (.*?) \.$", code.replace("\\\n", " "), re.M)
    tagged = {}
    for build in builds:
        dockerfile = re.search(r"-f (\S+)", build)
        dockerfile = dockerfile[1] if dockerfile else "Dockerfile"
        tagged[re.search(r"-t (\S+)", build)[1]] = dockerfile
        declared = re.findall(r"^ARG (\w+)", (PROJECT_ROOT / dockerfile).read_text(), re.M)
        for argument in re.findall(r"--build-arg (\w+)=", build):
            assert argument in declared, f"{dockerfile} has no ARG {argument}"
    gpu_image = WEEKLY["execution"]["config"]["per_step_k8s_config"][TRAINING_STEP]["container_config"]["image"]
    assert tagged == {cpu_image(): "Dockerfile", gpu_image: "Dockerfile.gpu"}
    for image in tagged:
        assert f"docker push {image}" in code


def test_the_laptop_definitions_run_in_one_process_on_local_files(monkeypatch, tmp_path):
    for name in ("TWOTOWER_EXECUTOR", "TWOTOWER_ASSET_STORAGE", "TWOTOWER_MODEL_STORE", "TWOTOWER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWOTOWER_HOME", str(tmp_path))
    defs = build_definitions(Settings.from_env())
    assert defs.resources["io_manager"].base_dir == str(tmp_path / "assets")
    assert defs.resources["app_db"].url is None  # the embedded server
    assert defs.resolve_job_def("weekly_retrain").executor_def.name == "in_process"


def test_the_helm_values_launch_runs_as_pods_with_the_same_secrets(production):
    values = yaml.safe_load((KUBERNETES / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    secrets = values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert secrets == deployment["envSecrets"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "twotower_pipeline.definitions"]
    assert "TWOTOWER_DATABASE_URL" not in {item["name"] for item in deployment["env"]}  # only in the secret


def test_model_files_round_trip_through_object_storage(tmp_path):
    """memory:// stands in for s3:// (same fsspec interface, no network)."""
    from twotower_pipeline.resources import ModelStore

    store = ModelStore(base_path="memory://twotower-models", cache_dir=str(tmp_path / "cache"))
    work = store.version_dir("tt-1")
    assert not str(work).startswith("memory")  # steps write locally first
    (work / "feature_spec.json").write_text('{"videos": []}')
    (work / "user_tower.onnx").write_bytes(b"\x08\x07onnx")
    location = store.publish("tt-1")
    assert location == "memory://twotower-models/tt-1"

    fresh = ModelStore(base_path="memory://twotower-models", cache_dir=str(tmp_path / "other-pod"))
    folder = fresh.local(location)
    assert (folder / "feature_spec.json").read_text() == '{"videos": []}'
    single = fresh.local(f"{location}/user_tower.onnx")
    assert single.read_bytes() == b"\x08\x07onnx" and str(single).startswith(str(tmp_path / "other-pod"))


def test_the_io_manager_stores_assets_under_an_object_storage_base_path():
    @dg.asset
    def catalogue_snapshot() -> list[str]:
        return ["video-1", "video-2"]

    @dg.asset
    def catalogue_size(catalogue_snapshot: list[str]) -> int:
        return len(catalogue_snapshot)

    io_manager = dg.FilesystemIOManager(base_dir="memory://twotower-assets")
    result = dg.materialize([catalogue_snapshot, catalogue_size], resources={"io_manager": io_manager})
    assert result.success and result.output_for_node("catalogue_size") == 2
    from upath import UPath

    assert (UPath("memory://twotower-assets") / "catalogue_snapshot").exists()
