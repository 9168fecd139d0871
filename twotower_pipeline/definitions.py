"""The code location: assets, checks, jobs, schedules and resources, configured from the environment."""

from __future__ import annotations

import os

import dagster as dg

from twotower_pipeline.assets import data, model, serving
from twotower_pipeline.jobs import asset_jobs, run_executor, weekly_retrain_schedule
from twotower_pipeline.resources import AlertWebhook, AppDatabase, MlflowTracking, ModelStore
from twotower_pipeline.sensors import new_videos_sensor, run_failure_alert
from twotower_pipeline.settings import ALERT_WEBHOOK_ENV, DATABASE_URL_ENV, MLFLOW_TRACKING_URI_ENV, Settings


def _from_env_or(name: str, default: str | None):
    """An EnvVar when the variable is set (its value never shows in the UI), else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources(settings: Settings) -> dict[str, object]:
    # A local store (SQLite) keeps its artifacts in the state folder; a tracking server keeps its own.
    local_mlflow = not settings.mlflow_tracking_uri.startswith(("http://", "https://", "databricks"))
    return {
        "app_db": AppDatabase(url=_from_env_or(DATABASE_URL_ENV, None), home=str(settings.home)),
        "mlflow_tracking": MlflowTracking(
            tracking_uri=_from_env_or(MLFLOW_TRACKING_URI_ENV, settings.mlflow_tracking_uri),
            artifact_location=settings.mlflow_artifacts_dir.as_uri() if local_mlflow else None,
            ui_url=os.environ.get("MLFLOW_UI_URL"),
        ),
        "model_store": ModelStore(base_path=settings.model_store, cache_dir=str(settings.cache_dir)),
        "alert_webhook": AlertWebhook(url=_from_env_or(ALERT_WEBHOOK_ENV, None)),
        # The same IO manager locally and in the cloud: only its base path (a folder or s3://...) changes.
        "io_manager": dg.FilesystemIOManager(base_dir=settings.asset_storage),
    }


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    return dg.Definitions(
        assets=dg.load_assets_from_modules([data, model, serving]),
        jobs=asset_jobs(run_executor(settings.executor)),
        schedules=[weekly_retrain_schedule],
        sensors=[new_videos_sensor, run_failure_alert],
        resources=build_resources(settings),
    )


defs = build_definitions()
