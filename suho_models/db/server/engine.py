"""The engine process: ``serve()`` runs chDB's ClickHouse with its listeners open.

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
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from suho_models.db.server.auth import AuthServer, resolve_password
from suho_models.db.server.config import (
    READY_FILE_NAME,
    ServerError,
    check_port_free,
    client_host,
    config_xml,
    http_request,
    listen_address,
    ping,
    server_dir,
    url_host,
    users_xml,
    validate,
    write_private,
)
from suho_models.db.server.holders import check_path_unlocked

log = logging.getLogger(__name__)

_BLOCK_MARK = "suho-server-block"
_STOP_TIMEOUT_S = 30.0
_QUERY_GRACE_S = 3.0  # for running client queries at stop
_CONTROL_MARK = "suho-server-control"  # in the text of our own stop statements
_served = False  # the engine can start once per process


def serve(
    path: Path,
    tcp_port: int = 9000,
    http_port: int = 8123,
    host: str = "127.0.0.1",
    password: str | None = None,
    idle_seconds: float | None = None,
) -> None:
    """Run a ClickHouse server on ``path`` in this process until SIGTERM or SIGINT.

    Blocks. Other processes share the data through the TCP/HTTP ports, which a
    chDB directory (locked to one process) cannot do. On SIGTERM/SIGINT the
    serving query is killed, the listeners close and this returns; the data is
    intact for the next start on the same ``path``.

    Without ``password``, a loopback server uses the data folder's password file,
    generated on first start (see :mod:`.auth`). Raises ``ValueError`` for a
    non-loopback ``host`` without ``password`` (the ``default`` user would be
    open to the network) and for bad ports;
    ``ServerError`` when the engine cannot start or stops on its own. Must be
    called from the main thread (signal handlers), once per process (the
    engine starts once).

    With ``idle_seconds``, it also stops by itself once no client has used it for
    that long (the shared default store, :mod:`.idle`).

    ``<path>/server/ready.json`` holds ``{"pid", "host", "tcp_port", "http_port"}``
    from the moment ``/ping`` answers until the stop.
    """
    global _served
    validate(host, tcp_port, http_port, password)
    host = listen_address(host).ip  # a name is resolved once: bind what was checked
    if threading.current_thread() is not threading.main_thread():
        raise ServerError("serve() must run in the main thread (it handles SIGTERM/SIGINT)")
    if _served:
        raise ServerError("serve() can run once per process: the chDB engine starts only once")

    path = Path(path).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    folder = server_dir(path)
    folder.mkdir(mode=0o700, exist_ok=True)
    check_path_unlocked(path)
    check_port_free(host, tcp_port)
    check_port_free(host, http_port)
    password = resolve_password(path, host, password)
    ready_file = folder / READY_FILE_NAME
    wrote_ready = False

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
    auth = AuthServer(password)
    old_cwd = os.getcwd()
    try:
        # Importing chdb may change the cwd, so it comes before the chdir.
        from chdb import _chdb

        auth.start()
        write_private(folder / "config.xml", config_xml(host, tcp_port, http_port, auth.uri))
        write_private(folder / "users.xml", users_xml())
        os.chdir(folder)

        _served = True
        block_id = f"{_BLOCK_MARK}:{secrets.token_hex(8)}"
        sql = (
            f"{auth.seal_sql}; SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; "
            "SELECT number FROM system.numbers WHERE sleepEachRow(0.1) "
            f"SETTINGS max_block_size = 1, max_execution_time = 0 /* {block_id} */"
        )
        outcome: dict[str, Any] = {}

        def run_engine() -> None:
            try:
                # _chdb is a compiled extension that chdb ships without a stub.
                outcome["result"] = _chdb.query(sql, "TabSeparated", path=str(path))  # type: ignore[attr-defined]
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

        base_url = f"http://{url_host(client_host(host))}:{http_port}"
        ready = False
        while not stop.is_set() and engine.is_alive():
            if ping(base_url, timeout=0.5):
                ready = True
                break
            stop.wait(0.1)

        if ready:
            # Re-assert our handlers in case the engine installed its own at start-up.
            for sig in previous:
                signal.signal(sig, on_signal)
            record = {"pid": os.getpid(), "host": host, "tcp_port": tcp_port}
            write_private(ready_file, json.dumps({**record, "http_port": http_port}))
            wrote_ready = True
            log.info(
                "ClickHouse server ready in %.1fs: tcp://%s:%d http://%s:%d data=%s pid=%d "
                "(password required)",
                time.monotonic() - started,
                host,
                tcp_port,
                host,
                http_port,
                path,
                os.getpid(),
            )
            watch = None
            if idle_seconds is not None:
                from suho_models.db.server.idle import IdleWatch

                watch = IdleWatch(path, base_url, password, idle_seconds)
            while not stop.wait(0.2):
                if not engine.is_alive():
                    break
                if watch is not None and watch.should_stop():
                    stop.set()

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
        auth.close()
        if wrote_ready:
            with contextlib.suppress(OSError):
                ready_file.unlink()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_engine(engine: threading.Thread, base_url: str, block_id: str, password: str) -> None:
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
        return http_request(url, data=sql.encode(), password=password, timeout=timeout)

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
