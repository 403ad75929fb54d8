"""The default store, shared by every process: a loopback server started on first use.

A chDB directory is locked to one process, so with no ``SUHO_DATABASE_URL`` the
processes of one store (UI, trainers, CLI, tuning workers, a notebook) do not open
it themselves: the first that needs it starts the engine in a background process
(the ``suho db serve`` machinery: loopback, the 0600 password file), later ones
connect to it, and it stops by itself after ``SUHO_SERVER_IDLE_SECONDS`` with no
client (see :mod:`.idle`). A client that finds it gone (a crash, an idle stop)
starts it again, on the same ports when they are free.

Files under ``<path>/server/`` (0700): ``start.lock`` (flock: one starter at a
time, and a stopping server holds it until it is gone), ``endpoint.json`` (the
ports, kept across restarts, so a client's URL stays valid), ``ready.json``
(the live server) and ``clients/<pid>`` (the processes using it).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from suho_models.db.server.auth import ensure_password_file

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
from suho_models.db.server.config import (
    READY_FILE_NAME,
    ServerError,
    check_port_free,
    free_port,
    http_request,
    native_url,
    ping,
    server_dir,
    write_private,
)
from suho_models.db.server.holders import (
    alive,
    holder,
    process_start_time,
    read_json,
    started_servers,
)

log = logging.getLogger(__name__)

LOCK_FILE_NAME = "start.lock"
ENDPOINT_FILE_NAME = "endpoint.json"
CLIENTS_DIR_NAME = "clients"
HOST = "127.0.0.1"

_BOOT = """
import os, sys, types
# The server needs chDB and this package only: skip suho_models' and suho_models.db's
# __init__ (the SQLAlchemy models, pyarrow, ...), seconds of a cold start.
for name in ("suho_models", "suho_models.db"):
    module = types.ModuleType(name)
    module.__path__ = [os.path.join(sys.argv[1], *name.split("."))]
    sys.modules[name] = module
from suho_models.db.server.__main__ import main
sys.exit(main())
"""

_registered: dict[Path, int] = {}  # path -> open SharedStore count in this process
_registry_lock = threading.Lock()


class StoreUnavailableError(RuntimeError):
    """The default store's server cannot be started or reached (one line: why, what to do)."""


@dataclass(frozen=True)
class Endpoint:
    pid: int
    tcp_port: int
    http_port: int

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"


@contextlib.contextmanager
def start_lock(path: Path, *, timeout: float = 0.0) -> Iterator[bool]:
    """The store's start lock (flock), waited for up to ``timeout`` seconds; yields
    whether it was taken."""
    folder = server_dir(path)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(folder / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        yield True
    finally:
        os.close(fd)


def live_clients(path: Path) -> list[int]:
    """Pids registered under ``clients/`` that still run (dead ones' files are removed)."""
    folder = server_dir(path) / CLIENTS_DIR_NAME
    pids = []
    for file in folder.glob("*") if folder.is_dir() else []:
        try:
            pid = int(file.name)
            started = file.read_text().strip()
        except (OSError, ValueError):
            continue
        if alive(pid) and (not started or process_start_time(pid) in (started, None)):
            pids.append(pid)
        else:
            file.unlink(missing_ok=True)
    return pids


class SharedStore:
    """A client's handle on the shared server of the store at ``path``.

    :meth:`ensure` returns the live server's endpoint, starting it when none runs;
    it is cheap when the server this handle last saw is alive (a pid check), so
    callers run it before each use. ``close()`` ends this process's registration
    (also at exit; a killed process's registration lapses with its pid).
    """

    lock_timeout = 15.0
    """How long a client waits for another one's start (or a server's stop)."""

    def __init__(self, path: Path, *, idle_seconds: float, start_timeout: float = 60.0) -> None:
        self.path = Path(path).expanduser().resolve()
        self.idle_seconds = idle_seconds
        self.start_timeout = start_timeout
        self._endpoint: Endpoint | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.password = self._prepare()
        self.ensure()
        with _registry_lock:
            _registered[self.path] = _registered.get(self.path, 0) + 1

    def _prepare(self) -> str:
        """The folder (0700: other users cannot read the store) and the password (0600)."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path, 0o700)
        return ensure_password_file(self.path)

    def url(self, database: str) -> str:
        endpoint = self.ensure()
        return native_url(
            HOST, endpoint.tcp_port, database, password=self.password, http_port=endpoint.http_port
        )

    def check(self, tcp_port: int | None, http_port: int | None) -> None:
        """Before each use: the server lives (else it starts again), on these ports."""
        endpoint = self.ensure()
        if (endpoint.tcp_port, endpoint.http_port) != (tcp_port, http_port):
            raise StoreUnavailableError(
                f"the store's server at {self.path} came back on other ports (the old ones "
                "were taken): restart this process"
            )

    def create_database(self, database: str) -> None:
        """``CREATE DATABASE IF NOT EXISTS`` (a fresh store has none yet)."""
        if not database.replace("_", "").isalnum():
            raise ValueError(f"database: expected letters, digits and _ (got {database!r})")
        endpoint = self.ensure()
        sql = f"CREATE DATABASE IF NOT EXISTS `{database}`"
        http_request(f"{endpoint.base_url}/", sql.encode(), password=self.password, timeout=30)

    def ensure(self) -> Endpoint:
        seen = self._endpoint
        if seen is not None and alive(seen.pid):
            return seen
        with self._lock:
            current = self._endpoint
            if current is not None and current is not seen and alive(current.pid):
                return current
            self._endpoint = self._join_or_start()
            return self._endpoint

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _registry_lock:
            left = _registered.get(self.path, 0) - 1
            if left > 0:
                _registered[self.path] = left
                return
            _registered.pop(self.path, None)
        _unregister(self.path)

    # -- starting -----------------------------------------------------------------

    def _join_or_start(self) -> Endpoint:
        # A server that is stopping holds the lock until it is gone; a starting client
        # holds it while its server starts.
        with start_lock(self.path, timeout=self.lock_timeout) as taken:
            if not taken:
                raise StoreUnavailableError(
                    f"the store's server at {self.path} is being started or stopped by "
                    f"another process and was not ready within {self.lock_timeout:.0f}s; "
                    "try again"
                )
            endpoint = self._live_endpoint()
            if endpoint is None:
                endpoint = self._start()
            _register(self.path)
            return endpoint

    def _live_endpoint(self) -> Endpoint | None:
        ready = read_json(server_dir(self.path) / READY_FILE_NAME)
        if ready is None:
            return None
        try:
            endpoint = Endpoint(
                int(str(ready["pid"])), int(str(ready["tcp_port"])), int(str(ready["http_port"]))
            )
        except (KeyError, ValueError):
            return None
        if alive(endpoint.pid) and ping(endpoint.base_url, timeout=2.0):
            return endpoint
        return None

    def _ports(self) -> tuple[int, int]:
        """The recorded ports when free (clients' URLs stay valid), else fresh ones."""
        recorded = read_json(server_dir(self.path) / ENDPOINT_FILE_NAME) or {}
        try:
            tcp, http = int(str(recorded["tcp_port"])), int(str(recorded["http_port"]))
            check_port_free(HOST, tcp)
            check_port_free(HOST, http)
            return tcp, http
        except (KeyError, ValueError, ServerError):
            pass
        tcp = free_port(HOST)
        http = free_port(HOST)
        while http == tcp:
            http = free_port(HOST)
        return tcp, http

    def _start(self) -> Endpoint:
        self._wait_unlocked()
        tcp_port, http_port = self._ports()
        folder = server_dir(self.path)
        write_private(
            folder / ENDPOINT_FILE_NAME, json.dumps({"tcp_port": tcp_port, "http_port": http_port})
        )
        spec = {
            "path": str(self.path),
            "tcp_port": tcp_port,
            "http_port": http_port,
            "host": HOST,
            "password": self.password,
            "idle_seconds": self.idle_seconds,
        }
        env = os.environ.copy()
        root = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        log_path = folder / "server.log"
        with open(log_path, "ab") as log_file:
            offset = log_file.tell()
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, root],
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=log_file,
                env=env,
                cwd=self.path,  # not server/: the engine would read an old config.xml at import
                start_new_session=True,  # outlives its starter; Ctrl-C there does not stop it
            )
        started_servers[proc.pid] = proc
        assert proc.stdin is not None
        with proc.stdin:
            proc.stdin.write(json.dumps(spec).encode())
        deadline = time.monotonic() + self.start_timeout
        while True:
            endpoint = self._live_endpoint()
            if endpoint is not None and endpoint.pid == proc.pid:
                log.info("started the store's server (pid %d, tcp %d)", proc.pid, tcp_port)
                return endpoint
            code = proc.poll()
            if code is not None or time.monotonic() > deadline:
                if code is None:
                    proc.kill()
                raise StoreUnavailableError(
                    f"the store's server at {self.path} did not start "
                    f"({'exit code ' + str(code) if code is not None else 'timed out'}): "
                    f"{_last_error(log_path, offset)}; see {log_path}"
                )
            time.sleep(0.05)

    def _wait_unlocked(self) -> None:
        """Wait for an engine that is going away to release the directory; refuse one
        that holds it (another process opened the store in process)."""
        status = self.path / "status"
        deadline = time.monotonic() + 10.0
        while status.exists():
            with open(status, "rb") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(fh, fcntl.LOCK_UN)
                    return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                who = holder(self.path) or "another process"
                raise StoreUnavailableError(
                    f"the store at {self.path} is open in process by {who} "
                    "(a clickhouse+chdb:// URL): stop it, or let it use the shared store by "
                    "unsetting SUHO_DATABASE_URL"
                )
            time.sleep(0.1)


def open_shared_store(url: URL, idle_seconds: float) -> tuple[SharedStore, URL]:
    """The store of a ``clickhouse+local:///<dir>/<database>`` URL (its server started
    when none runs, its database created) and the native URL of that server."""
    from sqlalchemy.engine import make_url

    from suho_models.db.dialect import split_chdb_url

    path, database = split_chdb_url(url)
    store = SharedStore(Path(path), idle_seconds=idle_seconds)
    try:
        store.create_database(database)  # as the embedded driver does on connect
        return store, make_url(store.url(database))
    except BaseException:
        store.close()
        raise


def _last_error(log_path: Path, offset: int) -> str:
    try:
        with open(log_path, "rb") as fh:
            fh.seek(offset)
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "no log"
    errors = [line for line in lines if " ERROR " in line or "Exception" in line]
    return " ".join((errors or lines or ["no output"])[-1].split())[:300]


def _register(path: Path) -> None:
    """Mark this process as a client (under the start lock: the idle stop reads it there)."""
    folder = server_dir(path) / CLIENTS_DIR_NAME
    folder.mkdir(exist_ok=True, mode=0o700)
    file = folder / str(os.getpid())
    if not file.exists():
        file.write_text(process_start_time(os.getpid()) or "")


def _unregister(path: Path) -> None:
    (server_dir(path) / CLIENTS_DIR_NAME / str(os.getpid())).unlink(missing_ok=True)


@atexit.register
def _unregister_all() -> None:
    for path in list(_registered):
        _unregister(path)


def stop_server(path: Path, timeout: float = 30.0) -> int | None:
    """Stop the store's server now (SIGTERM, wait); its pid, or None when none ran."""
    import signal

    path = Path(path).expanduser().resolve()
    ready = read_json(server_dir(path) / READY_FILE_NAME)
    if ready is None:
        return None
    pid = int(str(ready.get("pid", 0)))
    if not pid or not alive(pid):
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    return pid
