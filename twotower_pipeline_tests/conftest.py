"""Shared fixtures: a real embedded PostgreSQL + pgvector per test session, and a fresh,
fully migrated database per test (cloned from a template, so each test starts clean)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from twotower_pipeline.db.embedded import EmbeddedPostgres
from twotower_pipeline.db.migrations import apply_migrations
from twotower_pipeline.settings import PROJECT_ROOT

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
