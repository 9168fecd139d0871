"""Runs the weekly retrain job in this process, exactly as the schedule does, and reads back
what happened: per-asset timings, failed checks with their reasons, the active version.

The command line's runner: it builds the definitions it runs (nothing in the definitions imports it)."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from twotower_pipeline.definitions import build_definitions
from twotower_pipeline.failures import step_failure_reason
from twotower_pipeline.jobs import all_shards_tags
from twotower_pipeline.settings import Settings


@dataclass
class RetrainOutcome:
    run_id: str
    success: bool
    step_seconds: dict[str, float]
    failed_checks: list[str] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return self.failed_checks + self.failed_steps


# The local instance: SQLite storage in the state folder; one slot per pool (two trainings never run
# at once, even from two `twotower retrain`s), at most two backfill runs in parallel.
LOCAL_INSTANCE_CONFIG = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
    granularity: op
  runs:
    max_concurrent_runs: 4
    tag_concurrency_limits:
      - key: dagster/backfill
        limit: 2
"""


def ensure_dagster_home(settings: Settings) -> None:
    """Create the Dagster instance folder with its dagster.yaml (an existing one is left as it is)."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(LOCAL_INSTANCE_CONFIG)


def run_weekly_retrain(settings: Settings, run_config: dict | None = None) -> RetrainOutcome:
    ensure_dagster_home(settings)
    instance = dg.DagsterInstance.get()
    job = build_definitions(settings).resolve_job_def("weekly_retrain")
    config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}, **(run_config or {})}
    result = job.execute_in_process(instance=instance, tags=all_shards_tags(), run_config=config, raise_on_error=False)
    failed_checks = [
        f"{evaluation.asset_key.to_user_string()} check '{evaluation.check_name}' failed: {evaluation.description}"
        for evaluation in result.get_asset_check_evaluations()
        if not evaluation.passed
    ]
    failed_steps = [
        f"step {event.step_key} failed: {step_failure_reason(event)}"
        for event in result.get_step_failure_events()
        if not (failed_checks and "blocking asset check" in step_failure_reason(event))
    ]
    steps = {
        stats.step_key: (stats.end_time or stats.start_time or 0) - (stats.start_time or 0)
        for stats in instance.get_run_step_stats(result.run_id)
    }
    return RetrainOutcome(result.run_id, result.success, steps, failed_checks, failed_steps)
