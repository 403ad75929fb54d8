"""Process supervision: :class:`LocalServer` starts the engine process, waits, stops it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from types import TracebackType

from suho_models.db.server.auth import resolve_password
from suho_models.db.server.config import (
    READY_FILE_NAME,
    ServerError,
    client_host,
    free_port,
    is_loopback,
    native_url,
    ping,
    server_dir,
    url_host,
    validate,
    write_extra_config,
)

log = logging.getLogger(__name__)


def _terminate_process(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM ``proc`` and wait for it; SIGKILL after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("server pid %d ignored SIGTERM for %.0fs; killing it", proc.pid, timeout)
            proc.kill()
            proc.wait()
    return proc.returncode


class LocalServer:
    """Runs the engine process (``python -m suho_models.db.server``) as a context manager.

    For tests and tools that need a shared server for a while: ``start()``
    returns once ``/ping`` answers and the server wrote its ready file (so the
    port belongs to our process), ``stop()`` sends SIGTERM and waits (SIGKILL
    after ``stop_timeout``). ``None`` ports pick free ones. Without ``password``
    a loopback server uses the data folder's password file (generated on first
    use), and :meth:`native_url` carries it. The subprocess's stderr goes to
    ``<path>/server/server.log``; its tail is in start errors. ``extra_config`` is XML
    placed inside ``<clickhouse>`` of the server's configuration (e.g. ``<remote_servers>``
    and ``<macros>`` of a cluster node).
    """

    def __init__(
        self,
        path: Path,
        tcp_port: int | None = None,
        http_port: int | None = None,
        host: str = "127.0.0.1",
        password: str | None = None,
        *,
        start_timeout: float = 30.0,
        stop_timeout: float = 30.0,
        extra_config: str = "",
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.extra_config = extra_config
        self.host = host
        self._password = password
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        bind = client_host(host)
        self._tcp_port = tcp_port if tcp_port is not None else free_port(bind)
        self._http_port = http_port if http_port is not None else free_port(bind)
        while self._http_port == self._tcp_port and http_port is None:
            self._http_port = free_port(bind)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- properties ---------------------------------------------------------

    @property
    def password(self) -> str | None:
        """The given password, else (loopback) the data folder's, generated on first use."""
        if self._password is None and is_loopback(self.host):
            self._password = resolve_password(self.path, self.host, None)
        return self._password

    @property
    def tcp_port(self) -> int:
        return self._tcp_port

    @property
    def http_port(self) -> int:
        return self._http_port

    @property
    def client_host(self) -> str:
        """Address clients on this machine connect to (127.0.0.1 for loopback/wildcards)."""
        return client_host(self.host)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status once stopped (0 after a clean stop), else ``None``."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return server_dir(self.path) / "server.log"

    @property
    def ready_path(self) -> Path:
        return server_dir(self.path) / READY_FILE_NAME

    def native_url(self, database: str = "suho_analytics", *, http: bool = True) -> str:
        """SQLAlchemy URL for the native (TCP) driver, with the password; with ``http``,
        it also names the HTTP port, over which ``Database.query_arrow`` reads."""
        return native_url(
            self.host,
            self.tcp_port,
            database,
            password=self.password,
            http_port=self.http_port if http else None,
        )

    def http_url(self) -> str:
        """Base HTTP URL (no credentials), e.g. for ``/ping`` or an HTTP client."""
        return f"http://{url_host(self.client_host)}:{self.http_port}"

    # -- life cycle ---------------------------------------------------------

    def start(self) -> LocalServer:
        """Start the subprocess and wait until it serves; raises ``ServerError`` otherwise."""
        if self._proc is not None and self._proc.poll() is None:
            raise ServerError(f"server already running (pid {self._proc.pid})")
        validate(self.host, self.tcp_port, self.http_port, self._password)
        self.log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_extra_config(server_dir(self.path), self.extra_config)
        spec = {
            "path": str(self.path),
            "tcp_port": self.tcp_port,
            "http_port": self.http_port,
            "host": self.host,
            "password": self.password,
        }
        env = os.environ.copy()
        root = str(Path(__file__).resolve().parents[3])  # so `-m suho_models...` imports
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        with open(self.log_path, "ab") as log_file:
            self._log_offset = log_file.tell()
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "suho_models.db.server"],
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=log_file,
                env=env,
            )
        # A forgotten server is stopped when this object is collected or Python exits.
        weakref.finalize(self, _terminate_process, self._proc, self.stop_timeout)
        try:
            assert self._proc.stdin is not None
            with self._proc.stdin:
                self._proc.stdin.write(json.dumps(spec).encode())
            self._wait_ready()
        except BaseException:
            self._terminate()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServerError(
                    f"server exited with code {code} before it was ready; "
                    f"stderr tail:\n{self.stderr_tail()}"
                )
            if self._ready_pid() == self._proc.pid and ping(self.http_url(), timeout=1.0):
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"server did not answer {self.http_url()}/ping within "
                    f"{self.start_timeout:.0f}s; stderr tail:\n{self.stderr_tail()}"
                )
            time.sleep(0.05)

    def _ready_pid(self) -> int | None:
        try:
            return int(json.loads(self.ready_path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def stderr_tail(self, max_bytes: int = 4000) -> str:
        """The end of what this run of the subprocess wrote to stderr."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(self._log_offset, size - max_bytes))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM the server and wait (SIGKILL after ``stop_timeout``); returns its exit code."""
        return self._terminate()

    def _terminate(self) -> int | None:
        if self._proc is None:
            return None
        return _terminate_process(self._proc, self.stop_timeout)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
