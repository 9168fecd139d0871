"""Past one machine by configuration only: the definitions loaded with the production settings."""

import pickle
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import PurePosixPath

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from twotower_pipeline import db
from twotower_pipeline.app_data import read_catalogue
from twotower_pipeline.definitions import build_definitions
from twotower_pipeline.demo_data import DemoSize, generate_demo_data, load_demo_data
from twotower_pipeline.jobs import WEEKLY_RUN_CONFIG_ENV, weekly_retrain_schedule
from twotower_pipeline.resources import ModelStore
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
    assert dg.validate_run_config(job, config)["ops"]["two_tower_model"]["config"]["distribution"] == "mirrored"
    with pytest.raises(dg.DagsterInvalidConfigError):  # the same check refuses an op the job does not have
        dg.validate_run_config(job, {**config, "ops": {**config["ops"], "no_such_step": {"config": {}}}})


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


# -- object storage: the project's model store and IO manager against a real S3 API ----------------
# moto's server speaks S3 over HTTP on 127.0.0.1 in this process; s3fs (through universal-pathlib)
# talks to it exactly as it would to AWS, with the endpoint and credentials from the environment.

BUCKET = "twotower-pipeline"  # the bucket of values.yaml's TWOTOWER_ASSET_STORAGE and TWOTOWER_MODEL_STORE


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _new_pod() -> None:
    """Forget every open S3 connection and listing, as a step in another pod would start."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def s3(s3_endpoint, monkeypatch, tmp_path):
    """An empty bucket on the local server, and a pod's environment: the deployment's storage URLs
    (values.yaml), the endpoint and made-up credentials; nothing read from ~/.aws, no metadata service."""
    import boto3

    env = {item["name"]: item["value"] for item in _deployment()["env"]}
    for name in ("TWOTOWER_ASSET_STORAGE", "TWOTOWER_MODEL_STORE"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("TWOTOWER_HOME", str(tmp_path / "pod"))
    for name in ("TWOTOWER_EXECUTOR", "TWOTOWER_DATABASE_URL", "DAGSTER_HOME", "AWS_PROFILE", "AWS_SESSION_TOKEN",
                 "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL": s3_endpoint, "AWS_EC2_METADATA_DISABLED": "true",
                        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
                        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    for listed in client.list_buckets()["Buckets"]:  # the server lives for the module: start each test empty
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=listed["Name"]):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=listed["Name"], Key=item["Key"])
        client.delete_bucket(Bucket=listed["Name"])
    client.create_bucket(Bucket=BUCKET)
    _new_pod()
    yield client
    _new_pod()


def _bucket(client, prefix: str) -> dict[str, bytes]:
    """Every object under prefix, read straight from the server (not through fsspec)."""
    keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            for item in page.get("Contents", [])]
    return {key: client.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}


def _version_files() -> dict[str, bytes]:
    """What two_tower_model writes for a version (TrainedTwoTower.save); the weights big enough that
    s3fs uploads them in parts, as it does real weights."""
    rng = np.random.default_rng(3)
    return {
        "feature_spec.json": b'{"videos": ["0f4c", "a1b2"], "genres": ["Drama"]}',
        "training.json": b'{"config": {"epochs": 8}, "metrics": {"recall_at_50": 0.31}}',
        "user_tower.weights.h5": rng.bytes(6 * 2**20 + 17),
        "item_tower.weights.h5": rng.bytes(300_001),
    }


def test_a_published_version_is_in_the_bucket_and_another_pod_reads_it_back_byte_identical(s3, tmp_path):
    store = build_definitions(Settings.from_env()).resources["model_store"]
    assert store.base_path == f"s3://{BUCKET}/models"
    work = store.version_dir("tt-1")
    assert work.is_relative_to(tmp_path / "pod")  # a step writes a local working copy first
    files = _version_files()
    for name, content in files.items():
        (work / name).write_bytes(content)

    location = store.publish("tt-1")
    assert location == f"s3://{BUCKET}/models/tt-1"
    assert _bucket(s3, "") == {f"models/tt-1/{name}": content for name, content in files.items()}

    _new_pod()
    other = ModelStore(base_path=store.base_path, cache_dir=str(tmp_path / "other-pod" / "cache"))
    folder = other.local(location)
    assert folder.is_relative_to(tmp_path / "other-pod")
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == files


def test_the_onnx_step_adds_to_a_published_version_and_serving_reads_one_file_once(s3, tmp_path):
    """two_tower_model publishes the weights; onnx_towers, in another pod, loads them, writes the towers
    into its own working copy and publishes again; item_embeddings reads a tower by its location."""
    store = build_definitions(Settings.from_env()).resources["model_store"]
    for name, content in _version_files().items():
        (store.version_dir("tt-2") / name).write_bytes(content)
    location = store.publish("tt-2")

    _new_pod()
    exporter = ModelStore(base_path=store.base_path, cache_dir=str(tmp_path / "export-pod"))
    weights = exporter.local(location)
    assert (weights / "training.json").read_bytes() == _version_files()["training.json"]
    towers = {"user_tower.onnx": b"\x08\x07user-onnx", "item_tower.onnx": b"\x08\x07item-onnx" * 1000}
    for name, content in towers.items():
        (exporter.version_dir("tt-2") / name).write_bytes(content)
    assert exporter.publish("tt-2") == location
    stored = _bucket(s3, "models/tt-2/")
    assert {key.rsplit("/", 1)[1] for key in stored} == set(_version_files()) | set(towers)  # nothing lost
    assert stored["models/tt-2/item_tower.onnx"] == towers["item_tower.onnx"]

    _new_pod()
    server = ModelStore(base_path=store.base_path, cache_dir=str(tmp_path / "serving-pod"))
    tower = server.local(f"{location}/item_tower.onnx")
    assert tower.read_bytes() == towers["item_tower.onnx"] and tower.is_relative_to(tmp_path / "serving-pod")
    s3.delete_object(Bucket=BUCKET, Key="models/tt-2/item_tower.onnx")
    assert server.local(f"{location}/item_tower.onnx").read_bytes() == towers["item_tower.onnx"]  # the cached copy
    with pytest.raises(FileNotFoundError):
        ModelStore(base_path=store.base_path, cache_dir=str(tmp_path / "new-pod")).local(f"{location}/item_tower.onnx")


def test_the_data_assets_go_through_the_bucket_and_training_data_reads_them_back(s3, database_url, monkeypatch):
    """The code location's IO manager with the deployment's s3:// base path: the data assets are
    written to the bucket, and a later run with no database behind it builds training_data from them."""
    size = DemoSize(videos=600, users=60, likes=3_000, seed=5)
    with db.connect(database_url) as conn:
        load_demo_data(conn, generate_demo_data(size, datetime.now(UTC)))
    monkeypatch.setenv("TWOTOWER_DATABASE_URL", database_url)
    defs = build_definitions(Settings.from_env())
    assert defs.resources["io_manager"].base_dir == f"s3://{BUCKET}/dagster-assets"
    upstream = ["videos", "raw_likes", "user_profiles"]
    first = defs.resolve_job_def("weekly_retrain").execute_in_process(
        asset_selection=[dg.AssetKey(name) for name in upstream])
    assert first.success
    assert set(_bucket(s3, "")) == {f"dagster-assets/{name}" for name in upstream}

    _new_pod()
    engine = db.create_engine(database_url)
    try:
        catalogue = read_catalogue(engine)
    finally:
        engine.dispose()
    stored = defs.load_asset_value("videos")  # read back through the IO manager, from the bucket
    pd.testing.assert_frame_equal(stored, catalogue)

    # Nothing listens at the database now: the second run's inputs can only come from the bucket.
    monkeypatch.setenv("TWOTOWER_DATABASE_URL", "postgresql://nobody:none@127.0.0.1:9/none")
    _new_pod()
    second = build_definitions(Settings.from_env()).resolve_job_def("weekly_retrain").execute_in_process(
        asset_selection=[dg.AssetKey("training_data")])
    assert second.success
    loaded = [event.event_specific_data.input_name
              for event in second.all_events if event.event_type == dg.DagsterEventType.LOADED_INPUT]
    assert sorted(loaded) == sorted(upstream)
    training = pickle.loads(_bucket(s3, "dagster-assets/training_data")["dagster-assets/training_data"])
    assert len(training.catalogue) == size.videos
    assert set(training.likes["video_id"]) <= set(catalogue["id"])
    assert 0 < len(training.likes) <= size.likes and training.likes["user_id"].nunique() <= size.users
