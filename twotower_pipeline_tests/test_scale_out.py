"""Past one machine by configuration only: the definitions loaded with the production settings."""

import dagster as dg
import pytest
import yaml

from twotower_pipeline.definitions import build_definitions
from twotower_pipeline.jobs import weekly_retrain_schedule
from twotower_pipeline.settings import PROJECT_ROOT, Settings

KUBERNETES = PROJECT_ROOT / "deploy" / "kubernetes"


@pytest.fixture
def production(monkeypatch, tmp_path) -> dict[str, str]:
    """The user-code deployment's environment from deploy/kubernetes/values.yaml, plus its secret."""
    values = yaml.safe_load((KUBERNETES / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    env = {item["name"]: item["value"] for item in deployment["env"]}
    env["TWOTOWER_HOME"] = str(tmp_path / "scratch")
    env["TWOTOWER_DATABASE_URL"] = "postgresql://postgres:not-a-real-password@db.example.supabase.co:5432/postgres"
    env["TWOTOWER_WEEKLY_RUN_CONFIG"] = str(KUBERNETES / "weekly-run-config.yaml")
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
