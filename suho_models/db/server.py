"""A real ClickHouse server on loopback, run from the embedded chDB engine.

A chDB data directory is locked to one process (``<path>/status``), so several
processes (trainers, the CLI, a notebook) cannot open it at once. This module
runs the engine once, in a process of its own, with clickhouse-local's TCP and
HTTP listeners open, and every other process talks to it as to any ClickHouse
server (clickhouse-driver, clickhouse-connect, clickhouse-sqlalchemy).

How the engine is driven (measured on chdb-core 26.9, see
``shared/notes/clickhouse-on-chdb.md``):

* ``chdb._chdb.query(sql, fmt, path=...)`` runs clickhouse-local's full start-up,
  which reads ``config.xml`` from the current working directory. That directory
  is ``<path>/server``; the data stays under ``<path>``.
* One call runs ``SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP;`` and then a
  query that never ends; the listeners stay open for as long as it runs.
* Stopping is ``KILL QUERY`` on that query, sent over the server's own HTTP
  port when SIGTERM or SIGINT arrives (client queries still running after 3 s
  are cancelled first). The engine then closes its listeners and the process
  exits with status 0, every acknowledged insert on disk.
* Once the serving query ends, the engine waits 5 s for open client
  connections and then exits the process with status 1. So idle connections
  must notice the stop sooner: ``keep_alive_timeout`` is 3 s (HTTP) and the
  default profile's ``poll_interval`` is 1 s (native TCP).
* The engine runs once per process: a second ``_chdb.query`` in the same
  process fails, hence ``serve()`` refuses a second call.

The password. chDB's own in-process session always logs in as ``default`` with
an empty password, before any listener opens, so a password written into
``users.xml`` stops the engine from starting at all. With a password the
``default`` user therefore authenticates through an HTTP authentication server
(ClickHouse's ``http_authentication``) that this process runs on loopback: it
accepts the password (compared by SHA-256 digest), and an empty password
exactly once, for the engine's own session, which logs in before
``SYSTEM START LISTEN`` runs. Every network client must give the password.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

PASSWORD_ENV = "SUHO_SERVER_PASSWORD"
"""Environment variable the CLI reads the password from when ``--password`` is absent.

``LocalServer`` passes the password this way so that it never shows in ``ps``.
"""

SERVER_DIR_NAME = "server"
"""Subfolder of the data path that holds ``config.xml``/``users.xml`` (the engine's cwd)."""

_BLOCK_MARK = "suho-server-block"
_AUTH_SERVER_NAME = "suho_auth"
_STOP_TIMEOUT_S = 30.0
_QUERY_GRACE_S = 3.0  # for running client queries at stop
_CONTROL_MARK = "suho-server-control"  # in the text of our own stop statements
_served = False  # the engine can start once per process


class ServerError(RuntimeError):
    """The server could not start, or stopped on its own."""


# ---------------------------------------------------------------------------
# Host and port checks
# ---------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether ``host`` only reaches this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _client_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to ``host``."""
    bare = host.strip("[]")
    if bare.lower() == "localhost" or bare in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bare == "::":
        return "::1"
    return bare


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _validate(host: str, tcp_port: int, http_port: int, password: str | None) -> None:
    """Raise ``ValueError`` for settings that must never reach the engine."""
    if not host or not host.strip():
        raise ValueError("host must not be empty")
    for name, port in (("tcp_port", tcp_port), ("http_port", http_port)):
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"{name} must be an integer in 1..65535, got {port!r}")
    if tcp_port == http_port:
        raise ValueError(f"tcp_port and http_port must differ (both are {tcp_port})")
    if password is not None and password == "":
        raise ValueError("password must not be empty (pass None for no password)")
    if password is None and not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host!r} without a password: the default user would "
            "be open to the network. Bind a loopback address (127.0.0.1, ::1, localhost) "
            "or set a password."
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (another process may still take it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host.strip("[]"), 0))
        return int(sock.getsockname()[1])


def _check_port_free(host: str, port: int) -> None:
    """Fail early and clearly when a port is taken (the engine would only print an error)."""
    bare = host.strip("[]")
    if bare.lower() == "localhost":
        bare = "127.0.0.1"
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bare, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServerError(f"port {port} on {host} is already in use") from exc
            raise ServerError(f"cannot bind {host}:{port}: {exc}") from exc


def _check_path_unlocked(path: Path) -> None:
    """Fail early when another engine holds ``<path>/status`` (clickhouse-local flocks it)."""
    status = path / "status"
    if not status.exists():
        return
    import fcntl

    with open(status, "rb") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise ServerError(
                f"{path} is in use by another ClickHouse/chDB process ({status} is locked)"
            ) from exc
        fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------
# Configuration files
# ---------------------------------------------------------------------------


def _config_xml(host: str, tcp_port: int, http_port: int, auth_uri: str | None) -> str:
    auth = ""
    if auth_uri is not None:
        auth = f"""
  <http_authentication_servers>
    <{_AUTH_SERVER_NAME}>
      <uri>{escape(auth_uri)}</uri>
      <connection_timeout_ms>2000</connection_timeout_ms>
      <receive_timeout_ms>5000</receive_timeout_ms>
      <send_timeout_ms>2000</send_timeout_ms>
      <max_tries>3</max_tries>
      <retry_initial_backoff_ms>50</retry_initial_backoff_ms>
      <retry_max_backoff_ms>500</retry_max_backoff_ms>
    </{_AUTH_SERVER_NAME}>
  </http_authentication_servers>"""
    return f"""<?xml version="1.0"?>
<!-- Written by suho_models.db.server on every start; edits are overwritten. -->
<clickhouse>
  <listen_host>{escape(host.strip("[]"))}</listen_host>
  <tcp_port>{tcp_port}</tcp_port>
  <http_port>{http_port}</http_port>
  <users_config>users.xml</users_config>
  <!-- Idle keep-alive HTTP connections must end before the engine's shutdown
       wait (5 s), or it exits forcefully with status 1. -->
  <keep_alive_timeout>3</keep_alive_timeout>{auth}
</clickhouse>
"""


def _users_xml(with_password: bool) -> str:
    if with_password:
        auth = (
            f"<http_authentication><server>{_AUTH_SERVER_NAME}</server>"
            "<scheme>basic</scheme></http_authentication>"
        )
    else:
        auth = "<no_password/>"
    return f"""<?xml version="1.0"?>
<!-- Written by suho_models.db.server on every start; edits are overwritten. -->
<clickhouse>
  <profiles>
    <default>
      <!-- Idle native connections notice a stop within 1 s (10 s by default,
           longer than the engine's 5 s shutdown wait). -->
      <poll_interval>1</poll_interval>
    </default>
  </profiles>
  <users>
    <default>
      {auth}
      <networks>
        <ip>::/0</ip>
      </networks>
      <profile>default</profile>
      <quota>default</quota>
      <named_collection_control>1</named_collection_control>
    </default>
  </users>
  <quotas>
    <default></default>
  </quotas>
</clickhouse>
"""


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only, replacing it atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# The password check (ClickHouse http_authentication)
# ---------------------------------------------------------------------------


class _AuthServer:
    """Loopback HTTP endpoint that ClickHouse asks whether a ``default`` login may pass.

    Allows the password, and an empty password once: for the engine's own
    session, which logs in before the listeners open. The engine then fetches
    ``seal_path`` (``seal_sql``) before it opens them, which ends that window
    for good. The URLs carry a random token so that nothing else on the machine
    can use up the one empty login.
    """

    def __init__(self, password: str) -> None:
        self._digest = hashlib.sha256(password.encode("utf-8")).digest()
        self._token = secrets.token_urlsafe(16)
        self._bootstrap_left = True
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(send_body=True)

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def _answer(self, send_body: bool) -> None:
                if self.path == owner.seal_path:
                    owner.seal()
                    ok = True
                else:
                    ok = owner._allowed(self.path, self.headers.get("Authorization", ""))
                body = b"{}"
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), name="suho-auth", daemon=True
        )

    @property
    def uri(self) -> str:
        """Where ClickHouse checks credentials (``http_authentication_servers``)."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{self._token}"

    @property
    def seal_path(self) -> str:
        return f"/{self._token}/seal"

    @property
    def seal_sql(self) -> str:
        """A statement with which the engine ends the empty-password window itself.

        It runs right before ``SYSTEM START LISTEN``, so no network client can
        ever use that window, even if a future engine did not log in with it.
        """
        url = f"http://127.0.0.1:{self._httpd.server_address[1]}{self.seal_path}"
        return f"SELECT count() FROM url('{url}', 'RawBLOB') FORMAT Null"

    def seal(self) -> None:
        with self._lock:
            used = not self._bootstrap_left
            self._bootstrap_left = False
        log.debug("empty-password window closed (the engine used it: %s)", used)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()  # waits for serve_forever, so only once started
        self._httpd.server_close()

    def _allowed(self, request_path: str, authorization: str) -> bool:
        if request_path.split("?", 1)[0] != f"/{self._token}":
            return False
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        if user != "default" or not sep:
            return False
        digest = hashlib.sha256(password.encode("utf-8")).digest()
        if hmac.compare_digest(digest, self._digest):
            return True
        with self._lock:
            if password == "" and self._bootstrap_left:
                self._bootstrap_left = False
                return True
        return False


# ---------------------------------------------------------------------------
# serve()
# ---------------------------------------------------------------------------


def _http_request(
    url: str, data: bytes | None = None, password: str | None = None, timeout: float = 2.0
) -> str:
    request = urllib.request.Request(url, data=data)
    if password is not None:
        token = base64.b64encode(f"default:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read().decode("utf-8", "replace")


def _ping(base_url: str, timeout: float = 1.0) -> bool:
    try:
        return _http_request(f"{base_url}/ping", timeout=timeout).strip() == "Ok."
    except (OSError, urllib.error.URLError):
        return False


def serve(
    path: Path,
    tcp_port: int = 9000,
    http_port: int = 8123,
    host: str = "127.0.0.1",
    password: str | None = None,
    ready_file: Path | None = None,
) -> None:
    """Run a ClickHouse server on ``path`` in this process until SIGTERM or SIGINT.

    Blocks. Other processes share the data through the TCP/HTTP ports, which a
    chDB directory (locked to one process) cannot do. On SIGTERM/SIGINT the
    serving query is killed, the listeners close and this returns; the data is
    intact for the next start on the same ``path``.

    Raises ``ValueError`` for a non-loopback ``host`` without ``password`` (the
    ``default`` user would be open to the network) and for bad ports;
    ``ServerError`` when the engine cannot start or stops on its own. Must be
    called from the main thread (signal handlers), once per process (the
    engine starts once).

    ``ready_file``, if given, receives ``{"pid", "host", "tcp_port",
    "http_port"}`` as JSON once ``/ping`` answers, and is removed on stop.
    """
    global _served
    _validate(host, tcp_port, http_port, password)
    if threading.current_thread() is not threading.main_thread():
        raise ServerError("serve() must run in the main thread (it handles SIGTERM/SIGINT)")
    if _served:
        raise ServerError("serve() can run once per process: the chDB engine starts only once")

    path = Path(path).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    server_dir = path / SERVER_DIR_NAME
    server_dir.mkdir(mode=0o700, exist_ok=True)
    _check_path_unlocked(path)
    _check_port_free(host, tcp_port)
    _check_port_free(host, http_port)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("received %s again; already stopping", signal.Signals(signum).name)
        else:
            log.info(
                "received %s; stopping (the engine then reports its serving query as "
                "cancelled, code 394: expected)",
                signal.Signals(signum).name,
            )
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    auth: _AuthServer | None = None
    old_cwd = os.getcwd()
    try:
        # Importing chdb may change the cwd, so it comes before the chdir.
        from chdb import _chdb

        if password is not None:
            auth = _AuthServer(password)
            auth.start()
        _write_private(
            server_dir / "config.xml",
            _config_xml(host, tcp_port, http_port, auth.uri if auth else None),
        )
        _write_private(server_dir / "users.xml", _users_xml(password is not None))
        os.chdir(server_dir)

        _served = True
        block_id = f"{_BLOCK_MARK}:{secrets.token_hex(8)}"
        sql = (
            (f"{auth.seal_sql}; " if auth else "")
            + "SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; "
            "SELECT number FROM system.numbers WHERE sleepEachRow(0.1) "
            f"SETTINGS max_block_size = 1, max_execution_time = 0 /* {block_id} */"
        )
        outcome: dict[str, Any] = {}

        def run_engine() -> None:
            try:
                outcome["result"] = _chdb.query(sql, "TabSeparated", path=str(path))
            except BaseException as exc:  # reported by the main thread
                outcome["error"] = exc

        engine = threading.Thread(target=run_engine, name="suho-clickhouse", daemon=True)
        started = time.monotonic()
        engine.start()
        log.info(
            "starting ClickHouse on %s (tcp %d, http %d), data in %s",
            host,
            tcp_port,
            http_port,
            path,
        )

        base_url = f"http://{_url_host(_client_host(host))}:{http_port}"
        ready = False
        while not stop.is_set() and engine.is_alive():
            if _ping(base_url, timeout=0.5):
                ready = True
                break
            stop.wait(0.1)

        if ready:
            # Re-assert our handlers in case the engine installed its own at start-up.
            for sig in previous:
                signal.signal(sig, on_signal)
            if ready_file is not None:
                ready_file = Path(ready_file)
                ready_file.parent.mkdir(parents=True, exist_ok=True)
                _write_private(
                    ready_file,
                    json.dumps(
                        {
                            "pid": os.getpid(),
                            "host": host,
                            "tcp_port": tcp_port,
                            "http_port": http_port,
                        }
                    ),
                )
            log.info(
                "ClickHouse server ready in %.1fs: tcp://%s:%d http://%s:%d data=%s pid=%d%s",
                time.monotonic() - started,
                host,
                tcp_port,
                host,
                http_port,
                path,
                os.getpid(),
                " (password required)" if password else "",
            )
            while not stop.wait(0.2):
                if not engine.is_alive():
                    break

        if engine.is_alive():
            _stop_engine(engine, base_url, block_id, password)
        engine.join(timeout=_STOP_TIMEOUT_S)
        if engine.is_alive():
            raise ServerError(f"ClickHouse did not stop within {_STOP_TIMEOUT_S:.0f}s")
        if "error" in outcome:
            raise ServerError(f"ClickHouse failed: {outcome['error']}") from outcome["error"]
        if not stop.is_set():
            if not ready:
                raise ServerError(
                    "ClickHouse stopped before it was ready; its error is printed above (stderr)"
                )
            log.warning("the serving query ended (KILL QUERY from a client?); stopping")
        log.info("ClickHouse server stopped; data in %s", path)
    finally:
        os.chdir(old_cwd)
        if auth is not None:
            auth.close()
        if ready_file is not None:
            with contextlib.suppress(OSError):
                Path(ready_file).unlink()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_engine(
    engine: threading.Thread, base_url: str, block_id: str, password: str | None
) -> None:
    """Stop the engine through its own HTTP port so that it exits cleanly.

    The engine waits 5 s for open connections once the serving query ends,
    then exits the process with status 1. So: give running client queries
    ``_QUERY_GRACE_S`` to finish, cancel the rest, then kill the serving query
    (retrying, as during start-up the port may not listen yet).
    """
    # Our own statements carry the control mark, so they never match `others`;
    # the block mark is split so that no statement here matches itself.
    head, tail = block_id[:5], block_id[5:]
    is_block = f"position(query, concat('{head}', '{tail}')) > 0"
    others = f"NOT {is_block} AND position(query, '{_CONTROL_MARK}') = 0"
    url = f"{base_url}/"

    def send(sql: str, timeout: float) -> str:
        return _http_request(url, data=sql.encode(), password=password, timeout=timeout)

    try:
        deadline = time.monotonic() + _QUERY_GRACE_S
        running = int(send(f"SELECT count() FROM system.processes WHERE {others} FORMAT TSV", 2.0))
        while running and time.monotonic() < deadline:
            time.sleep(0.1)
            running = int(
                send(f"SELECT count() FROM system.processes WHERE {others} FORMAT TSV", 2.0)
            )
        if running:
            log.info(
                "cancelling %d client queries still running after %.0fs", running, _QUERY_GRACE_S
            )
            send(f"KILL QUERY WHERE {others} SYNC FORMAT Null", 10.0)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        log.debug("could not look at running queries: %s", exc)

    kill = f"KILL QUERY WHERE {is_block} SYNC FORMAT Null"
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while engine.is_alive() and time.monotonic() < deadline:
        try:
            send(kill, 10.0)
        except (OSError, urllib.error.URLError) as exc:
            # Not listening yet (a signal during start-up) or going down already.
            log.debug("KILL QUERY not sent yet: %s", exc)
        engine.join(timeout=0.5)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m suho_models.db.server",
        description="Run a ClickHouse server (embedded chDB engine) on a data directory, "
        "so that several processes can share it. Stops cleanly on SIGTERM or Ctrl-C.",
    )
    parser.add_argument("--path", type=Path, required=True, help="data directory")
    parser.add_argument("--tcp-port", type=int, default=9000, help="native port (9000)")
    parser.add_argument("--http-port", type=int, default=8123, help="HTTP port (8123)")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1)")
    parser.add_argument(
        "--password",
        default=None,
        help=f"password of the default user; required for a non-loopback host. "
        f"Prefer the {PASSWORD_ENV} environment variable: arguments show in `ps`.",
    )
    parser.add_argument("--ready-file", type=Path, default=None, help="write JSON here once ready")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (INFO)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 after a clean stop, 2 for refused settings, 1 when the engine fails."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    password = args.password if args.password is not None else os.environ.get(PASSWORD_ENV)
    try:
        serve(
            args.path,
            tcp_port=args.tcp_port,
            http_port=args.http_port,
            host=args.host,
            password=password or None,
            ready_file=args.ready_file,
        )
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    except ServerError as exc:
        log.error("%s", exc)
        return 1
    return 0


# ---------------------------------------------------------------------------
# LocalServer: a server subprocess for tests and tools
# ---------------------------------------------------------------------------


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


def _write_extra_config(server_dir: Path, fragment: str) -> None:
    """Put ``fragment`` (XML elements of ``<clickhouse>``: remote_servers, macros, ...)
    where the engine merges it into ``config.xml`` (``config.d/``), or remove it."""
    extra = server_dir / "config.d" / "suho_extra.xml"
    if not fragment.strip():
        extra.unlink(missing_ok=True)
        return
    extra.parent.mkdir(mode=0o700, exist_ok=True)
    _write_private(extra, f'<?xml version="1.0"?>\n<clickhouse>\n{fragment}\n</clickhouse>\n')


class LocalServer:
    """Runs ``python -m suho_models.db.server`` as a subprocess, as a context manager.

    For tests and tools that need a shared server for a while: ``start()``
    returns once ``/ping`` answers and the server wrote its ready file (so the
    port belongs to our process), ``stop()`` sends SIGTERM and waits (SIGKILL
    after ``stop_timeout``). ``None`` ports pick free ones. The subprocess's
    stderr goes to ``<path>/server/server.log``; its tail is in start errors.
    ``extra_config`` is XML placed inside ``<clickhouse>`` of the server's
    configuration (e.g. ``<remote_servers>`` and ``<macros>`` of a cluster node).
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
        self.password = password
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        bind = _client_host(host)
        self._tcp_port = tcp_port if tcp_port is not None else free_port(bind)
        self._http_port = http_port if http_port is not None else free_port(bind)
        while self._http_port == self._tcp_port and http_port is None:
            self._http_port = free_port(bind)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- properties ---------------------------------------------------------

    @property
    def tcp_port(self) -> int:
        return self._tcp_port

    @property
    def http_port(self) -> int:
        return self._http_port

    @property
    def client_host(self) -> str:
        """Address clients on this machine connect to (127.0.0.1 for loopback/wildcards)."""
        return _client_host(self.host)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status once stopped (0 after a clean stop), else ``None``."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.path / SERVER_DIR_NAME / "server.log"

    @property
    def ready_path(self) -> Path:
        return self.path / SERVER_DIR_NAME / "ready.json"

    def native_url(self, database: str = "suho_analytics", *, http: bool = True) -> str:
        """SQLAlchemy URL for the native (TCP) driver; with ``http``, it also names the
        HTTP port, over which ``Database.query_arrow`` reads."""
        creds = ""
        if self.password is not None:
            creds = f"default:{urllib.parse.quote(self.password, safe='')}@"
        url = f"clickhouse+native://{creds}{_url_host(self.client_host)}:{self.tcp_port}/{database}"
        return f"{url}?http_port={self.http_port}" if http else url

    def http_url(self) -> str:
        """Base HTTP URL (no credentials), e.g. for ``/ping`` or an HTTP client."""
        return f"http://{_url_host(self.client_host)}:{self.http_port}"

    # -- life cycle ---------------------------------------------------------

    def start(self) -> LocalServer:
        """Start the subprocess and wait until it serves; raises ``ServerError`` otherwise."""
        if self._proc is not None and self._proc.poll() is None:
            raise ServerError(f"server already running (pid {self._proc.pid})")
        _validate(self.host, self.tcp_port, self.http_port, self.password)
        self.log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.ready_path.unlink()
        _write_extra_config(self.path / SERVER_DIR_NAME, self.extra_config)

        env = os.environ.copy()
        root = str(Path(__file__).resolve().parents[2])  # so `-m suho_models...` imports
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.pop(PASSWORD_ENV, None)
        if self.password is not None:
            env[PASSWORD_ENV] = self.password
        cmd = [
            sys.executable, "-m", "suho_models.db.server",
            "--path", str(self.path),
            "--tcp-port", str(self.tcp_port),
            "--http-port", str(self.http_port),
            "--host", self.host,
            "--ready-file", str(self.ready_path),
        ]  # fmt: skip
        with open(self.log_path, "ab") as log_file:
            self._log_offset = log_file.tell()
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, env=env
            )
        # A forgotten server is stopped when this object is collected or Python exits.
        weakref.finalize(self, _terminate_process, self._proc, self.stop_timeout)
        try:
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
            if self._ready_pid() == self._proc.pid and _ping(self.http_url(), timeout=1.0):
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


if __name__ == "__main__":
    sys.exit(main())
