"""Jobs and schedules: the weekly retrain runs the whole graph in one run, every shard included."""


import os

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from twotower_pipeline.vector_store import SHARDS

RETRAIN_CRON_ENV = "TWOTOWER_RETRAIN_CRON"
DEFAULT_RETRAIN_CRON = "0 3 * * 1"  # Monday 03:00 UTC

# One process for the whole run: TensorFlow and ONNX Runtime load once, and the item
# embeddings of all shards are written by one step (their single-run backfill policy).
weekly_retrain = dg.define_asset_job(
    "weekly_retrain",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    description="Retrain, evaluate, export, embed and (if every blocking check passes) activate.",
)


def shard_range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover the item-embedding partitions first..last."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def all_shards_tags() -> dict[str, str]:
    return shard_range_tags(SHARDS[0], SHARDS[-1])


# Engineers' backfills and the new-videos sensor: item embeddings only, any partition range.
refresh_item_embeddings = dg.define_asset_job(
    "refresh_item_embeddings",
    selection=dg.AssetSelection.assets("item_embeddings"),
    executor_def=dg.in_process_executor,
    description="(Re)embed item partitions: a backfill, a failed shard, or new videos (mode 'missing').",
)


@dg.schedule(
    job=weekly_retrain,
    cron_schedule=os.environ.get(RETRAIN_CRON_ENV, DEFAULT_RETRAIN_CRON),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Weekly retrain and publish with no human step.",
)
def weekly_retrain_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(tags=all_shards_tags())
