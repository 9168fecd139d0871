"""Dagster resources: the app database, MLflow and the model file store.

Addresses and secrets come from the environment (``EnvVar``), never from code; with nothing
set, every resource falls back to the state folder (see :mod:`twotower_pipeline.settings`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import dagster as dg
import psycopg
import sqlalchemy

from twotower_pipeline import db, model_files
from twotower_pipeline.db.embedded import EmbeddedPostgres


class AppDatabase(dg.ConfigurableResource):
    """The app's PostgreSQL: ``url`` when configured, else the embedded server in ``home``."""

    url: Optional[str] = None
    home: str

    def resolved_url(self) -> str:
        if self.url:
            return self.url
        return EmbeddedPostgres(Path(self.home) / "postgres").ensure_running()

    @contextmanager
    def engine(self) -> Iterator[sqlalchemy.Engine]:
        """A SQLAlchemy engine (for pandas reads), disposed when the block ends."""
        engine = db.create_engine(self.resolved_url())
        try:
            yield engine
        finally:
            engine.dispose()

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A connection whose work commits on success and rolls back on error."""
        with db.connect(self.resolved_url()) as conn:
            yield conn


_EXPERIMENT_KIND, _MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


class MlflowTracking(dg.ConfigurableResource):
    """A thin handle on the MLflow tracking server / store and the model registry."""

    tracking_uri: str
    experiment_name: str = "twotower"
    artifact_location: Optional[str] = None
    user_tower_model_name: str = "twotower_user_tower"
    item_tower_model_name: str = "twotower_item_tower"
    ui_url: Optional[str] = None

    def client(self):
        """A client of this store; also points MLflow's fluent API (mlflow.start_run, ...) at it."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        return mlflow.MlflowClient(self.tracking_uri)

    def experiment_id(self) -> str:
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        experiment = mlflow.get_experiment_by_name(self.experiment_name)
        experiment_id = experiment.experiment_id if experiment is not None else mlflow.create_experiment(
            self.experiment_name, artifact_location=self.artifact_location)
        if experiment is None or experiment.tags.get(_EXPERIMENT_KIND) != _MODEL_TRAINING:
            # MLflow 3's UI opens an untagged experiment in its GenAI view (an empty traces page).
            mlflow.MlflowClient(self.tracking_uri).set_experiment_tag(experiment_id, _EXPERIMENT_KIND, _MODEL_TRAINING)
        return experiment_id

    def tower_model_names(self) -> dict[str, str]:
        return {"user_tower": self.user_tower_model_name, "item_tower": self.item_tower_model_name}

    def set_alias(self, version: str, alias: str) -> None:
        """Point ``alias`` (e.g. 'champion') of both registered towers at ``version``'s model versions."""
        client = self.client()
        for name in self.tower_model_names().values():
            for found in client.search_model_versions(f"name = '{name}' and tag.`twotower.version` = '{version}'"):
                client.set_registered_model_alias(name, alias, found.version)

    def run_link(self, run_id: str) -> str:
        base = (self.ui_url or "http://127.0.0.1:5000").rstrip("/")
        # MLflow 3.17's UI opens in its GenAI view unless told otherwise (its browser-wide choice
        # wins over the experiment's kind tag): the link asks for the model-training view.
        return f"{base}/#/experiments/{self.experiment_id()}/runs/{run_id}?workflowType=machine_learning"


class ModelStore(dg.ConfigurableResource):
    """Where a version's files (weights, feature spec, ONNX towers) are kept: a local folder, or an
    object-storage URL (s3://..., with its fsspec package) when steps run on different machines."""

    base_path: str
    cache_dir: str

    def version_dir(self, version: str) -> Path:
        """The local folder a step writes the version's files into."""
        root = Path(self.cache_dir) / "work" if model_files.is_remote(self.base_path) else Path(self.base_path)
        path = root / version
        path.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, version: str) -> str:
        """Make the version's files available to every step; return their location."""
        return model_files.publish_dir(self.version_dir(version), self.base_path, version)

    def local(self, location: str) -> Path:
        """A local path for a published file or folder."""
        return model_files.local_copy(location, Path(self.cache_dir))


class AlertWebhook(dg.ConfigurableResource):
    """Where run failures are reported (a Slack-style incoming webhook); off when ``url`` is unset."""

    url: Optional[str] = None
    timeout_seconds: float = 10.0

    def send(self, payload: dict) -> bool:
        """POST ``payload`` as JSON; False when no webhook is configured."""
        import json
        import urllib.request

        if not self.url:
            return False
        request = urllib.request.Request(
            self.url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
            response.read()
        return True
