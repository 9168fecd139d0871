"""The one place that knows how to reach the app's PostgreSQL."""

from __future__ import annotations

import psycopg
import sqlalchemy
from pgvector.psycopg import register_vector

from twotower_pipeline.db.embedded import EmbeddedPostgres
from twotower_pipeline.settings import Settings


def database_url(settings: Settings) -> str:
    """The configured database, or the embedded one (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return EmbeddedPostgres(settings.embedded_database_dir).ensure_running()


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=autocommit)
    register_vector(conn)
    return conn


def sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError(f"database URL must start with postgresql:// (got a URL starting {url[:12]!r})")


def create_engine(url: str) -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(sqlalchemy_url(url), pool_pre_ping=True)
