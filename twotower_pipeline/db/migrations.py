"""Applies supabase/migrations/*.sql to a database, tracked the way the Supabase CLI tracks them.

The migration files are the schema's one source of truth. Each pending file runs in its own
transaction together with its row in ``supabase_migrations.schema_migrations`` (version, name,
statements), so `supabase migration list` / `db push` see the same history, a failing file
leaves nothing behind, and running again applies nothing twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from twotower_pipeline.db import CONNECT_OPTIONS

_FILE_PATTERN = re.compile(r"^(?P<version>\d+)_(?P<name>.+)\.sql$")
# The same statements the Supabase CLI runs before it reads or writes its history.
_CREATE_HISTORY = (
    "CREATE SCHEMA IF NOT EXISTS supabase_migrations",
    "CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY)",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[]",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text",
)
_LOCK_KEY = 0x7477_6F74  # serialises concurrent migrators on one database


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def discover_migrations(directory: Path) -> list[Migration]:
    if not directory.is_dir():
        raise MigrationError(
            f"migrations folder {directory} does not exist; set TWOTOWER_MIGRATIONS_DIR to the "
            "project's supabase/migrations"
        )
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_PATTERN.match(path.name)
        if match is None:
            raise MigrationError(
                f"migration file {path.name} does not follow the Supabase naming rule "
                "<timestamp>_<name>.sql; rename it"
            )
        migrations.append(Migration(match["version"], match["name"], path))
    return migrations


def applied_versions(conn: psycopg.Connection) -> set[str]:
    exists = conn.execute("select to_regclass('supabase_migrations.schema_migrations')").fetchone()[0]
    if exists is None:
        return set()
    return {row[0] for row in conn.execute("select version from supabase_migrations.schema_migrations")}


def apply_migrations(database_url: str, directory: Path) -> list[Migration]:
    """Apply every pending migration in version order; return the ones applied now."""
    migrations = discover_migrations(directory)
    applied_now: list[Migration] = []
    with psycopg.connect(database_url, autocommit=True, **CONNECT_OPTIONS) as conn:
        with conn.transaction():
            _lock(conn)
            for statement in _CREATE_HISTORY:
                conn.execute(statement)
        for migration in migrations:
            with conn.transaction():
                _lock(conn)
                if migration.version in applied_versions(conn):
                    continue
                sql = migration.sql
                try:
                    conn.execute(sql.encode())
                except psycopg.Error as error:
                    message = error.diag.message_primary or str(error)
                    raise MigrationError(
                        f"migration {migration.path.name} failed and was rolled back: {message}{_hint(message)}"
                    ) from error
                conn.execute(
                    "insert into supabase_migrations.schema_migrations (version, name, statements) "
                    "values (%s, %s, %s)",
                    (migration.version, migration.name, [sql]),
                )
            applied_now.append(migration)
    return applied_now


def _lock(conn: psycopg.Connection) -> None:
    """Within the transaction only (a transaction pooler runs the next one on another server
    connection, and a session setting would stay behind on this one for its next client): wait at
    most 60 s for a lock, and take the migrators' lock."""
    conn.execute("select set_config('lock_timeout', '60s', true)")
    conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))


def _hint(message: str) -> str:
    if "vector" in message and ("extension" in message or "type" in message):
        return (". The database needs the pgvector extension (>= 0.8): on Supabase enable it under "
                "Database > Extensions; elsewhere install it and run `create extension vector` as a superuser")
    if "permission denied" in message:
        return ". Connect as the database owner (on Supabase, the postgres role of the connection string)"
    return ""
