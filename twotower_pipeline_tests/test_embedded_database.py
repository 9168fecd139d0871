"""The embedded default: a real PostgreSQL + pgvector server kept in the state folder."""

from pathlib import Path

import psycopg

from twotower_pipeline.db.embedded import EmbeddedPostgres


def test_starts_with_pgvector_keeps_data_across_restarts_and_stops(tmp_path: Path):
    server = EmbeddedPostgres(tmp_path / "postgres")
    url = server.ensure_running()
    try:
        assert url.startswith("postgresql://postgres:") and "@127.0.0.1:" in url
        with psycopg.connect(url) as conn:
            conn.execute("create extension if not exists vector")
            version = conn.execute("select extversion from pg_extension where extname = 'vector'").fetchone()[0]
            conn.execute("create table kept (v vector(3))")
            conn.execute("insert into kept values ('[1,2,3]')")
        assert tuple(int(p) for p in version.split(".")[:2]) >= (0, 8)
        assert server.ensure_running() == url  # already running: same server, same address

        assert server.stop() is True
        assert server.is_running() is False
        assert server.stop() is False

        url_again = server.ensure_running()
        with psycopg.connect(url_again) as conn:
            assert conn.execute("select v::text from kept").fetchone()[0] == "[1,2,3]"
    finally:
        server.stop()


def test_password_is_required_over_tcp(tmp_path: Path):
    server = EmbeddedPostgres(tmp_path / "postgres")
    url = server.ensure_running()
    try:
        without_password = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        try:
            psycopg.connect(without_password, connect_timeout=5).close()
            connected = True
        except psycopg.OperationalError:
            connected = False
        assert not connected
        assert (tmp_path / "postgres" / "password").stat().st_mode & 0o077 == 0
        psycopg.connect(url).close()
    finally:
        server.stop()
