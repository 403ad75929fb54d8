"""The shared store's server stops by itself once nobody uses it (see :mod:`.shared`).

Busy means: a registered client process still runs (``clients/<pid>``), a
connection is open (native or HTTP, beyond this check's own), or a query runs.
After ``idle_seconds`` of none of these the server takes the store's start lock,
checks once more, removes ``ready.json`` and stops, holding the lock until its
process is gone: a client that comes meanwhile waits, then starts a new server.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import urllib.error
from pathlib import Path

from suho_models.db.server.config import READY_FILE_NAME, http_request, server_dir
from suho_models.db.server.shared import LOCK_FILE_NAME, live_clients

log = logging.getLogger(__name__)

_CHECK_EVERY_S = 1.0
_BUSY_SQL = (
    "SELECT (SELECT toInt64(sum(value)) FROM system.metrics "
    "WHERE metric IN ('TCPConnection', 'HTTPConnection')) - 1, "
    "(SELECT count() FROM system.processes) - 2 FORMAT TSV"
)  # minus this check's own connection and query, and the serving query
_held_lock: list[int] = []  # the start lock's fd, held until the process exits


class IdleWatch:
    def __init__(self, path: Path, base_url: str, password: str, idle_seconds: float) -> None:
        self.path = path
        self.base_url = base_url
        self.password = password
        self.idle_seconds = idle_seconds
        self._idle_since = time.monotonic()
        self._next_check = 0.0

    def busy(self) -> bool:
        if live_clients(self.path):
            return True
        try:
            answer = http_request(
                f"{self.base_url}/", _BUSY_SQL.encode(), password=self.password, timeout=5.0
            )
            connections, queries = (int(x) for x in answer.split())
        except (OSError, ValueError, urllib.error.URLError) as exc:
            log.debug("idle check failed: %s", exc)
            return True
        return connections > 0 or queries > 0

    def should_stop(self) -> bool:
        """Called often; True once, when the server should stop (the lock is then held)."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + _CHECK_EVERY_S
        if self.busy():
            self._idle_since = now
            return False
        if now - self._idle_since < self.idle_seconds:
            return False
        fd = os.open(server_dir(self.path) / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a client is joining right now
            os.close(fd)
            return False
        if self.busy():
            os.close(fd)
            self._idle_since = now
            return False
        (server_dir(self.path) / READY_FILE_NAME).unlink(missing_ok=True)
        _held_lock.append(fd)
        log.info("no client for %.0fs: stopping", self.idle_seconds)
        return True
