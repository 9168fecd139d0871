"""Shared fixtures: a real embedded PostgreSQL + pgvector per test session, and a fresh,
fully migrated database per test (cloned from a template, so each test starts clean)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from twotower_pipeline import db
from twotower_pipeline.db.embedded import EmbeddedPostgres
from twotower_pipeline.db.migrations import apply_migrations
from twotower_pipeline.demo_data import DemoData, DemoSize, generate_demo_data, load_demo_data
from twotower_pipeline.model.features import FeatureSpec, LogNormaliser, Vocabulary
from twotower_pipeline.retrain import RetrainOutcome, run_weekly_retrain
from twotower_pipeline.settings import PROJECT_ROOT, Settings

MIGRATIONS_DIR = PROJECT_ROOT / "supabase" / "migrations"
_TEMPLATE = "twotower_template"


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("embedded") / "postgres")
    url = server.ensure_running()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"create database {_TEMPLATE}")
    apply_migrations(_with_database(url, _TEMPLATE), MIGRATIONS_DIR)
    yield server
    server.stop()


@pytest.fixture
def empty_database_url(postgres_server: EmbeddedPostgres) -> str:
    """A database with nothing in it, not even the migrations."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute(f"create database {name}")
    return _with_database(postgres_server.url(), name)


@pytest.fixture
def database_url(postgres_server: EmbeddedPostgres) -> str:
    """A fresh database with every migration applied."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute(f"create database {name} template {_TEMPLATE}")
    return _with_database(postgres_server.url(), name)


@pytest.fixture
def migrations_dir() -> Path:
    return MIGRATIONS_DIR


# -- a published pipeline: demo data and a weekly retrain on real components -------------------------

PUBLISHABLE = DemoSize(videos=3_000, users=300, likes=15_000, seed=11)
"""The smallest demo data on which the default model reliably beats popularity on its holdout (the
blocking model_quality check): with 100 users, popularity and the model trade places by seed."""
QUICK = {"ops": {"two_tower_model": {"config": {"epochs": 8, "batch_size": 256, "feature_importance": False}}}}

@dataclass
class PipelineState:
    settings: Settings
    url: str
    env: dict[str, str]
    first: RetrainOutcome | None = None
    password: str = ""


def new_database(postgres_server: EmbeddedPostgres, prefix: str) -> str:
    """A fresh, fully migrated database on the session's server."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute(f"create database {name} template {_TEMPLATE}")
    return _with_database(postgres_server.url(), name)


def state_env(home: Path, url: str) -> dict[str, str]:
    """The environment of a state folder: set (not defaulted), so it is undone after its tests."""
    return {"TWOTOWER_HOME": str(home), "TWOTOWER_DATABASE_URL": url,
            "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow/mlflow.db", "DAGSTER_HOME": str(home / "dagster")}


@contextmanager
def published_pipeline(
    home: Path,
    url: str,
    size: DemoSize,
    run_config: dict,
    prepare: Callable[[DemoData], None] | None = None,
    retrains: int = 1,
) -> Iterator[PipelineState]:
    """Load demo data (optionally altered by ``prepare``) and run the weekly retrain ``retrains``
    times; the state's environment is set while the caller's tests run."""
    env = state_env(home, url)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        settings = Settings.from_env()
        settings.export_defaults()
        data = generate_demo_data(size, datetime.now(UTC))
        if prepare is not None:
            prepare(data)
        with db.connect(url) as conn:
            load_demo_data(conn, data)
        outcome = None
        for _ in range(retrains):
            outcome = run_weekly_retrain(settings, run_config)
            assert outcome.success, outcome.reasons
        yield PipelineState(settings, url, env, outcome)


# The app's tables as the migrations define them (what the demo data and the MovieLens benchmark load).
APP_COLUMNS = {
    "videos": ["id", "title", "description", "genre", "maker", "price", "duration_seconds", "created_at"],
    "tags": ["id", "name"],
    "video_tags": ["video_id", "tag_id"],
    "performers": ["id", "name"],
    "video_performers": ["video_id", "performer_id"],
    "likes": ["id", "user_id", "video_id", "created_at"],
    "profiles": ["id", "age_range", "region", "created_at"],
}


def tiny_feature_spec() -> FeatureSpec:
    """A hand-made feature spec: 30 videos, 3 genres, 2 makers, 2 text terms (tower and loss tests)."""
    return FeatureSpec(
        videos=Vocabulary([f"v{i}" for i in range(30)]), genres=Vocabulary(["a", "b", "c"]),
        makers=Vocabulary(["m1", "m2"]), performers=Vocabulary(["p1"]), tags=Vocabulary(["t1", "t2"]),
        text_terms=["word", "other"], text_idf=[1.0, 2.0], price=LogNormaliser(7.0, 1.0),
        duration=LogNormaliser(8.0, 1.0), popularity=LogNormaliser(1.0, 1.0), age=LogNormaliser(3.0, 1.0),
        reference_time="2026-11-01T00:00:00+00:00",
    )
