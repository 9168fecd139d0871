"""The `twotower` command as a user runs it, in fresh state folders."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from twotower_pipeline import db
from twotower_pipeline.demo_data import (
    generate_demo_data,
    load_demo_data,
    tiny_demo_size,
)

TWOTOWER = str(Path(sys.executable).with_name("twotower"))


def _env(home: Path, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TWOTOWER_DATABASE_URL", "MLFLOW_TRACKING_URI", "DAGSTER_HOME")}
    env["TWOTOWER_HOME"] = str(home)
    if database_url:
        env["TWOTOWER_DATABASE_URL"] = database_url
    return env


def _run(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TWOTOWER, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_db_url_starts_the_embedded_database_and_db_stop_stops_it(tmp_path):
    env = _env(tmp_path / "state")
    first = _run(["db", "url"], env)
    assert first.returncode == 0, first.stderr
    url = first.stdout.strip()
    with psycopg.connect(url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert _run(["db", "url"], env).stdout.strip() == url  # left running, same address
    stopped = _run(["db", "stop"], env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3)


def test_db_migrate_applies_the_migrations_to_the_configured_database_once(tmp_path, empty_database_url):
    env = _env(tmp_path / "state", empty_database_url)
    first = _run(["db", "migrate"], env)
    assert first.returncode == 0, first.stderr
    assert "applied 20250902000000_app_schema" in first.stdout
    again = _run(["db", "migrate"], env)
    assert again.stdout.strip() == "schema is up to date"
    assert not (tmp_path / "state" / "postgres").exists()  # a configured database needs no embedded one


def test_retrain_exits_non_zero_with_the_failed_rule_when_a_blocking_check_fails(tmp_path, database_url):
    with db.connect(database_url) as conn:
        load_demo_data(conn, generate_demo_data(tiny_demo_size(), datetime.now(UTC)))
        conn.execute("update public.likes set user_id = null where random() < 0.5")
        conn.commit()
    result = _run(["retrain"], _env(tmp_path / "state", database_url))
    assert result.returncode == 1
    assert "retrain stopped" in result.stdout
    assert "user_id is present" in result.stdout and "data_quality" in result.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from public.embedding_model_versions").fetchone()[0] == 0


def test_demo_runs_end_to_end_on_the_embedded_default(tmp_path):
    env = _env(tmp_path / "state")
    try:
        result = _run(["demo", "--videos", "800", "--users", "80", "--likes", "8000", "--seed", "3"], env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        out = result.stdout
        assert "Active model version: tt-" in out
        assert out.count("Top 10 for user") == 3
        assert "recall_at_50" in out and "Time per asset" in out and "active_model_version" in out
        # The hints run as printed: this command as it is reachable from here, not a bare `twotower`.
        me = os.path.relpath(TWOTOWER)
        assert f"{me} ui" in out and f"psql \"$({me} db url)\"" in out
        assert "The embedded database is still running" in out and f"{me} db stop" in out
        again = _run(["demo", "--videos", "800", "--users", "80", "--likes", "8000"], env)  # enough held-out likes for the gate
        assert again.returncode == 0
        assert "using the 800 videos already in the database" in again.stdout
    finally:
        _run(["db", "stop"], env)


def _wait_for(url: str, process: subprocess.Popen, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "paths"),
    [(["ui", "--port", "{port}", "--mlflow-port", "{port2}"], ["{port}/server_info", "{port2}/health"]),
     (["mlflow-ui", "--port", "{port}"], ["{port}/health"])],
)
def test_ui_commands_serve_on_loopback_and_stop_on_sigterm(tmp_path, database_url, command, paths):
    ports = {"port": _free_port(), "port2": _free_port()}
    args = [part.format(**ports) for part in command]
    process = subprocess.Popen([TWOTOWER, *args], env=_env(tmp_path / f"state-{uuid.uuid4().hex[:6]}", database_url),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for path in paths:
            assert _wait_for(f"http://127.0.0.1:{path.format(**ports)}", process, 150) == 200
        time.sleep(3)  # the command polls every second before it says a UI is ready
        if command[0] == "ui":
            # One code server for the webserver and the daemon: none of their own, which the daemon
            # would replace every 60 s.
            tree = _descendants(process.pid)
            proxies = [pid for pid, _, cmd in tree if "code-server start" in cmd]
            assert len(proxies) == 1, tree
            # Every process serving the code is the shared server's own child (it reloads code that way).
            assert all(parent == proxies[0] for _, parent, cmd in tree if " api grpc " in cmd), tree
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output[-2000:]
    assert output.count("is ready: http://127.0.0.1:") == len(paths), output[-2000:]


def _descendants(pid: int) -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of a process's descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    parent_of = {child: parent for parent, kids in children.items() for child in kids}
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        todo += children.get(child, [])
        try:
            command = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        found.append((child, parent_of[child], command))
    return found


def test_read_only_commands_leave_a_stopped_database_stopped(tmp_path):
    env = _env(tmp_path / "state")
    assert _run(["db", "start"], env).returncode == 0
    assert _run(["db", "stop"], env).returncode == 0
    for args in (["status"], ["versions"]):
        result = _run(args, env)
        assert result.returncode == 1
        assert "is stopped; start it with" in result.stderr and "db start" in result.stderr
    url_file = tmp_path / "state" / "postgres"
    from twotower_pipeline.db.embedded import EmbeddedPostgres

    assert not EmbeddedPostgres(url_file).is_running()
