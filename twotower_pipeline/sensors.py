"""Sensors: new videos get vectors between weekly retrains, without a full re-embed; failed runs
are reported to a webhook."""

from datetime import UTC, datetime

import dagster as dg

from twotower_pipeline import vector_store
from twotower_pipeline.failures import step_failure_reason
from twotower_pipeline.jobs import REFRESH_ITEM_EMBEDDINGS, shard_range_tags
from twotower_pipeline.resources import AlertWebhook, AppDatabase

NEW_VIDEOS_INTERVAL_SECONDS = 600


@dg.sensor(
    job_name=REFRESH_ITEM_EMBEDDINGS,
    minimum_interval_seconds=NEW_VIDEOS_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 10 minutes: if catalogue videos lack a vector of the active version (or of a "
    "candidate whose vectors are written), embed just those videos, in their shards.",
)
def new_videos_sensor(context: dg.SensorEvaluationContext, app_db: AppDatabase):
    missing: dict[str, int] = {}
    with app_db.connect() as conn:
        versions = vector_store.live_versions(conn)
        for version in versions:
            for shard, count in vector_store.missing_videos_by_shard(conn, version, written_shards_only=True).items():
                missing[shard] = missing.get(shard, 0) + count
    if not missing:
        return dg.SkipReason(f"every video has a vector of {', '.join(versions) or 'no live version'}")
    shards = sorted(missing)
    signature = ",".join(f"{shard}:{missing[shard]}" for shard in shards)
    context.log.info(f"videos without vectors of {versions}: {signature}")
    # The same gap is asked for again at most once an hour, so a failed refresh is retried.
    return dg.RunRequest(
        run_key=f"{'+'.join(versions)}|{signature}|{datetime.now(UTC):%Y%m%d%H}",
        tags=shard_range_tags(shards[0], shards[-1]),
        run_config={"ops": {"item_embeddings": {"config": {"mode": "missing", "versions": "live"}}}},
    )


@dg.run_failure_sensor(
    name="run_failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reports every failed run (job, run id, failed steps and their errors) to the webhook in "
    "TWOTOWER_ALERT_WEBHOOK_URL; does nothing when it is unset.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alert_webhook: AlertWebhook):
    run = context.dagster_run
    steps = [f"{event.step_key}: {step_failure_reason(event)}" for event in context.get_step_failure_events()]
    payload = {
        "text": f"twotower_pipeline: run {run.run_id} of {run.job_name} failed",
        "job": run.job_name,
        "run_id": run.run_id,
        "failure": context.failure_event.message,
        "failed_steps": steps,
    }
    if not alert_webhook.send(payload):
        return dg.SkipReason("no TWOTOWER_ALERT_WEBHOOK_URL configured")
    return None
