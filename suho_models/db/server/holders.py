"""Who holds a store: the processes that opened it, named in "in use" errors.

A leaf of the server package (it imports only :mod:`.config`), so the in-process
driver and the server's start-up checks can both name the holder without importing
the shared store's machinery.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from suho_models.db.server.config import READY_FILE_NAME, ServerError, server_dir, write_private

HOLDER_FILE_NAME = "holder.json"
"""``{"pid", "command"}`` of the process that opened the directory in process (embedded)."""

started_servers: dict[int, subprocess.Popen[bytes]] = {}  # servers this process started
_holding: set[Path] = set()  # paths this process opened in process


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a reused pid from the one recorded)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def alive(pid: int) -> bool:
    child = started_servers.get(pid)
    if child is not None:
        return child.poll() is None  # reaps our own dead server (no zombie "alive")
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return not Path("/proc").is_dir() or process_start_time(pid) is not None


def read_json(file: Path) -> dict[str, object] | None:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def holder(path: Path) -> str:
    """Who holds ``path`` open, as words for an error ("pid 123 (suho ui)"), or ""."""
    for file, what in (
        (server_dir(path) / READY_FILE_NAME, "the store's background server"),
        (path / HOLDER_FILE_NAME, ""),
    ):
        data = read_json(file)
        if data is None:
            continue
        try:
            pid = int(str(data["pid"]))
        except (KeyError, ValueError):
            continue
        if alive(pid):
            return f"pid {pid} ({what or data.get('command') or 'a chDB process'})"
    return ""


def record_holder(path: Path) -> None:
    """Note this process as the in-process (embedded) user of ``path``, for error messages."""
    if path in _holding:
        return
    _holding.add(path)
    argv = getattr(sys, "orig_argv", sys.argv)[:4]
    command = " ".join(Path(a).name if i < 2 else a[:40] for i, a in enumerate(argv))
    with contextlib.suppress(OSError):
        write_private(path / HOLDER_FILE_NAME, json.dumps({"pid": os.getpid(), "command": command}))


def check_path_unlocked(path: Path) -> None:
    """Fail early when another engine holds ``<path>/status`` (clickhouse-local flocks it)."""
    status = path / "status"
    if not status.exists():
        return
    import fcntl

    with open(status, "rb") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            who = holder(path)
            raise ServerError(
                f"{path} is in use by another ClickHouse/chDB process"
                f"{', ' + who if who else ''} ({status} is locked); stop it first "
                "(the default store's own server: `suho db stop`)"
            ) from exc
        fcntl.flock(fh, fcntl.LOCK_UN)
