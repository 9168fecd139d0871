"""The one place that knows how to reach the app's PostgreSQL.

Every connection works through a transaction-mode pooler (Supabase's pooler on port 6543, PgBouncer
with ``pool_mode = transaction``), where each transaction may run on another server connection and
whatever a client leaves on one is found there by the next client. So the pipeline leaves nothing:
no server-side prepared statements (below), settings only with ``set local`` / ``set_config(...,
true)``, advisory locks only ``pg_advisory_xact_lock``, no ``LISTEN``, temp tables or ``WITH HOLD``
cursors; ``VACUUM`` runs as a single autocommit statement, which a transaction pooler passes through.
``twotower_pipeline_tests/test_pooler.py`` runs the migrations and the weekly job through PgBouncer.
"""

from __future__ import annotations

import psycopg
import sqlalchemy
from pgvector.psycopg import register_vector

from twotower_pipeline.db.embedded import EmbeddedPostgres
from twotower_pipeline.settings import Settings

# psycopg prepares a statement from its 6th execution on a connection, as "_pg3_0", "_pg3_1", ...;
# through a transaction pooler the next transaction may run on another server connection, which lacks
# that statement or already holds one of that name from another client ("prepared statement "_pg3_0"
# already exists"). Disabled always, not only for URLs that look like a pooler's: a pooler cannot be
# told from its URL (6543 is Supabase's convention, PgBouncer's default is 6432, either port can run
# either mode), and two code paths would need two test runs. The cost is nil here: a weekly retrain
# executes 164 statements through psycopg and SQLAlchemy (37 distinct; measured on a first run at
# 3,000 videos: the count does not grow with the catalogue), and only 11 would be prepared (the per-shard
# advisory locks of one write); preparing saves 0.005-0.02 ms per small statement on the embedded
# server, so under 1 ms per run. recommend_videos called from psycopg measured 2.2-2.9 ms either way
# (the noise is larger than any difference; the function's own plans are cached by PL/pgSQL anyway).
CONNECT_OPTIONS: dict[str, object] = {"prepare_threshold": None}


def database_url(settings: Settings) -> str:
    """The configured database, or the embedded one (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return EmbeddedPostgres(settings.embedded_database_dir).ensure_running()


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=autocommit, **CONNECT_OPTIONS)
    register_vector(conn)
    return conn


def sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError(f"database URL must start with postgresql:// (got a URL starting {url[:12]!r})")


def create_engine(url: str) -> sqlalchemy.Engine:
    # connect_args reach psycopg.connect: the engine's connections follow the same rules.
    return sqlalchemy.create_engine(sqlalchemy_url(url), pool_pre_ping=True, connect_args=dict(CONNECT_OPTIONS))
