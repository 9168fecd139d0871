"""Where the pipeline keeps its state and which services it talks to.

Everything comes from the environment, with defaults that need nothing installed:

- ``TWOTOWER_HOME``: state folder (default ``.twotower`` in the working directory).
- ``TWOTOWER_DATABASE_URL``: the app's PostgreSQL (e.g. Supabase). Unset: the embedded
  PostgreSQL + pgvector server kept in the state folder.
- ``MLFLOW_TRACKING_URI``: MLflow tracking store. Unset: SQLite + artifacts in the state folder.
- ``DAGSTER_HOME``: Dagster instance folder. Unset: inside the state folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

HOME_ENV = "TWOTOWER_HOME"
DATABASE_URL_ENV = "TWOTOWER_DATABASE_URL"
MIGRATIONS_DIR_ENV = "TWOTOWER_MIGRATIONS_DIR"
MLFLOW_TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DAGSTER_HOME_ENV = "DAGSTER_HOME"
ALERT_WEBHOOK_ENV = "TWOTOWER_ALERT_WEBHOOK_URL"
MODEL_STORE_ENV = "TWOTOWER_MODEL_STORE"
ASSET_STORAGE_ENV = "TWOTOWER_ASSET_STORAGE"
EXECUTOR_ENV = "TWOTOWER_EXECUTOR"

# The active model is stale (twotower status says so; the Dagster freshness policy fails) after a
# weekly retrain plus a day of slack.
ACTIVE_MODEL_MAX_AGE_DAYS = 8


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None
    mlflow_tracking_uri: str
    dagster_home: Path
    migrations_dir: Path

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get(HOME_ENV) or ".twotower").expanduser().resolve()
        mlflow_dir = home / "mlflow"
        return cls(
            home=home,
            database_url=os.environ.get(DATABASE_URL_ENV) or None,
            mlflow_tracking_uri=os.environ.get(MLFLOW_TRACKING_URI_ENV)
            or f"sqlite:///{mlflow_dir / 'mlflow.db'}",
            dagster_home=Path(os.environ.get(DAGSTER_HOME_ENV) or home / "dagster").expanduser().resolve(),
            migrations_dir=Path(
                os.environ.get(MIGRATIONS_DIR_ENV) or PROJECT_ROOT / "supabase" / "migrations"
            ).resolve(),
        )

    @property
    def embedded_database_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.home / "mlflow" / "artifacts"

    @property
    def model_store(self) -> str:
        """A folder or an object-storage URL (e.g. s3://bucket/models) for the versions' files."""
        return os.environ.get(MODEL_STORE_ENV) or str(self.home / "models")

    @property
    def asset_storage(self) -> str:
        """Base path of the intermediate assets (the IO manager): a folder or an object-storage URL."""
        return os.environ.get(ASSET_STORAGE_ENV) or str(self.home / "assets")

    @property
    def executor(self) -> str:
        return os.environ.get(EXECUTOR_ENV) or "in_process"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    def export_defaults(self) -> None:
        """Make child processes (Dagster runs, the webserver, MLflow) see the same state."""
        os.environ.setdefault(HOME_ENV, str(self.home))
        os.environ.setdefault(DAGSTER_HOME_ENV, str(self.dagster_home))
        os.environ.setdefault(MLFLOW_TRACKING_URI_ENV, self.mlflow_tracking_uri)
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        (self.home / "mlflow").mkdir(parents=True, exist_ok=True)
