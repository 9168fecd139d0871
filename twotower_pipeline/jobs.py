"""Jobs and schedules: the weekly retrain runs the whole graph in one run, every shard included."""


import os

import dagster as dg
import yaml

from twotower_pipeline.vector_store import SHARDS

# The run tags by which one run materialises a range of partitions (what a single-run backfill sets).
# Dagster exports no public symbol for them; these are the tag strings its docs and examples pass.
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

RETRAIN_CRON_ENV = "TWOTOWER_RETRAIN_CRON"
WEEKLY_RUN_CONFIG_ENV = "TWOTOWER_WEEKLY_RUN_CONFIG"  # a YAML file: e.g. GPU pods for training
DEFAULT_RETRAIN_CRON = "0 3 * * 1"  # Monday 03:00 UTC
WEEKLY_RETRAIN = "weekly_retrain"
REFRESH_ITEM_EMBEDDINGS = "refresh_item_embeddings"
EXECUTORS = ("in_process", "multiprocess", "k8s")


def run_executor(name: str) -> dg.ExecutorDefinition:
    """How a run executes its steps (TWOTOWER_EXECUTOR).

    in_process (default): one process per run, so TensorFlow and ONNX Runtime load once and the
    item embeddings of all shards are written by one step (their single-run backfill policy);
    multiprocess: a process per step; k8s: a Kubernetes pod per step (dagster-k8s), e.g. training on
    a GPU node while embedding runs on CPU nodes.
    """
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"TWOTOWER_EXECUTOR must be one of {EXECUTORS}, got {name!r}")


def asset_jobs(executor: dg.ExecutorDefinition) -> list:
    return [
        dg.define_asset_job(
            WEEKLY_RETRAIN,
            selection=dg.AssetSelection.all(),
            executor_def=executor,
            description="Retrain, evaluate, export, embed and (if every blocking check passes) activate.",
        ),
        # Engineers' backfills and the new-videos sensor: item embeddings only, any partition range.
        dg.define_asset_job(
            REFRESH_ITEM_EMBEDDINGS,
            selection=dg.AssetSelection.assets("item_embeddings"),
            executor_def=executor,
            description="(Re)embed item partitions: a backfill, a failed shard, or new videos (mode 'missing').",
        ),
    ]


def shard_range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover the item-embedding partitions first..last."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def all_shards_tags() -> dict[str, str]:
    return shard_range_tags(SHARDS[0], SHARDS[-1])


@dg.schedule(
    job_name=WEEKLY_RETRAIN,
    cron_schedule=os.environ.get(RETRAIN_CRON_ENV, DEFAULT_RETRAIN_CRON),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly retrain and publish with no human step.",
)
def weekly_retrain_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(tags=all_shards_tags(), run_config=weekly_run_config())


def weekly_run_config() -> dict:
    """The deployment's run config for the weekly retrain (TWOTOWER_WEEKLY_RUN_CONFIG), if any."""
    path = os.environ.get(WEEKLY_RUN_CONFIG_ENV)
    if not path:
        return {}
    with open(path) as handle:
        return yaml.safe_load(handle) or {}
