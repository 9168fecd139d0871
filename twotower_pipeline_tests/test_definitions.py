"""The code location loads, and the asset graph has the product's shape."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from twotower_pipeline.definitions import build_definitions
from twotower_pipeline.jobs import all_shards_tags, weekly_retrain_schedule
from twotower_pipeline.settings import PROJECT_ROOT, Settings

EXPECTED_DEPENDENCIES = {
    "videos": set(),
    "raw_likes": set(),
    "user_profiles": set(),
    "training_data": {"videos", "raw_likes", "user_profiles"},
    "two_tower_model": {"training_data"},
    "onnx_towers": {"two_tower_model"},
    "item_embeddings": {"onnx_towers"},
    "user_embeddings": {"onnx_towers"},
    # The promotion gate re-scores champion and candidate on the held-out likes of training_data.
    "active_model_version": {"onnx_towers", "item_embeddings", "user_embeddings", "training_data"},
}
BLOCKING_CHECKS = {
    ("training_data", "data_quality"),
    ("two_tower_model", "model_quality"),
    ("onnx_towers", "onnx_parity"),
}
GATE_CHECKS = {("active_model_version", "promotion_gate"), ("active_model_version", "vectors_complete")}


def _defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(_defs())


def test_asset_graph_is_the_lineage_of_the_product():
    graph = _defs().resolve_asset_graph()
    dependencies = {
        key.to_user_string(): {parent.to_user_string() for parent in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert dependencies == EXPECTED_DEPENDENCIES
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and node.owners and node.group_name, key


def test_every_hand_off_is_guarded_by_a_blocking_check():
    graph = _defs().resolve_asset_graph()
    specs = [graph.get_check_spec(key) for key in graph.asset_check_keys]
    checks = {(spec.asset_key.to_user_string(), spec.name): spec.blocking for spec in specs}
    assert BLOCKING_CHECKS <= {k for k, blocking in checks.items() if blocking}
    assert GATE_CHECKS <= set(checks)


def test_item_embeddings_are_partitioned_by_catalogue_shard_and_backfilled_in_one_run():
    node = _defs().resolve_asset_graph().get(dg.AssetKey("item_embeddings"))
    assert node.partitions_def.get_partition_keys() == list("0123456789abcdef")
    assert node.backfill_policy == dg.BackfillPolicy.single_run()


def test_weekly_schedule_runs_by_default_on_monday_0300_utc_over_every_shard():
    schedule = _defs().resolve_schedule_def("weekly_retrain_schedule")
    assert schedule.cron_schedule == "0 3 * * 1"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "weekly_retrain"
    request = weekly_retrain_schedule(dg.build_schedule_context())
    assert request.tags == all_shards_tags()
    assert request.partition_key_range == dg.PartitionKeyRange("0", "f")


def test_weekly_job_covers_the_whole_graph():
    job = _defs().resolve_job_def("weekly_retrain")
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == set(EXPECTED_DEPENDENCIES)


def test_secrets_come_from_the_environment_not_from_code(monkeypatch):
    monkeypatch.setenv("TWOTOWER_DATABASE_URL", "postgresql://app:s3cret@db.example:5432/postgres")
    resources = build_definitions(Settings.from_env()).resources
    assert isinstance(resources["app_db"].url, dg.EnvVar)
    assert resources["app_db"].url.env_var_name == "TWOTOWER_DATABASE_URL"


def test_dg_check_defs_loads_the_project(tmp_path):
    """`dg check defs` (dagster-dg-cli, configured by pyproject.toml's [tool.dg]) loads the code location
    as `dagster dev` and the deployment do, in a fresh process from the project's root."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": sys.prefix,
           "DAGSTER_HOME": str(tmp_path / "dagster"), "TWOTOWER_HOME": str(tmp_path / "home"),
           "DAGSTER_DISABLE_TELEMETRY": "yes", "NO_COLOR": "1"}
    (tmp_path / "dagster").mkdir()
    checked = subprocess.run([str(bin_dir / "dg"), "check", "defs"], cwd=PROJECT_ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully." in checked.stdout + checked.stderr


def test_the_launchpad_refuses_hyper_parameters_that_cannot_train():
    import pydantic
    import pytest

    from twotower_pipeline.assets.model import TrainingRunConfig

    job = _defs().resolve_job_def("weekly_retrain")
    # A choice outside the typed set is refused before a run starts.
    with pytest.raises(dg.DagsterInvalidConfigError, match="hinge"):
        dg.validate_run_config(job, {"ops": {"two_tower_model": {"config": {"loss": "hinge"}}}})
    # Numbers that cannot train are refused when the step builds its config, naming the field.
    for field, value in (("epochs", 0), ("batch_size", 1), ("learning_rate", 0.0), ("dropout", 1.0),
                         ("holdout_fraction", 1.5), ("warmup_epochs", -1.0)):
        with pytest.raises(pydantic.ValidationError, match=field):
            TrainingRunConfig(**{field: value})
    # The launchpad's defaults are the model's own (one definition).
    from twotower_pipeline.model.config import TrainingConfig

    defaults, launchpad = TrainingConfig(), TrainingRunConfig().to_training_config()
    assert (launchpad.epochs, launchpad.batch_size, launchpad.learning_rate, launchpad.learning_rate_schedule,
            launchpad.warmup_epochs, launchpad.tower.dropout) == \
        (defaults.epochs, defaults.batch_size, defaults.learning_rate, defaults.learning_rate_schedule,
         defaults.warmup_epochs, defaults.tower.dropout)
