"""The batch writer's disk spool: sealed batches that are not in the database yet.

A spool file is one Arrow IPC file per batch, written to a temporary name, fsynced
and renamed, so a file is either complete or absent. Names sort in writing order
(nanosecond clock, pid, sequence) and carry their row count, so a new writer can
queue the leftovers of a dead one without reading them. A file is deleted only
after its INSERT succeeded.

Each file holds one batch and its ``insert_deduplication_token`` (in the Arrow
schema metadata): the batch may already have been attempted, so its replay must
send exactly those rows under exactly that token for ClickHouse to drop what an
earlier attempt wrote. That is also why files are never merged or split, and why
a file replayed twice (a crash between its INSERT and its deletion) lands once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa

logger = logging.getLogger(__name__)

_SUFFIX = ".arrow"
_NAME = re.compile(r"^(\d{20})-(\d+)-(\d{6})-(\d+)r\.arrow$")
_TMP_NAME = re.compile(r"^\.(.+)\.(\d+)\.tmp$")

DEDUP_TOKEN_KEY = b"suho_dedup_token"
"""Schema metadata key of a spool file's ``insert_deduplication_token``."""


class SpooledBatch(NamedTuple):
    table: pa.Table
    token: str | None
    """None: a file from before tokens were written (the caller derives a stable one)."""


class SpoolDir:
    """One table's spool folder (one per store and table)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        self._seq = 0

    def write(self, table: pa.Table, token: str) -> Path:
        """Write one batch and its dedup token durably; the returned file exists
        complete once this returns."""
        self.path.mkdir(parents=True, exist_ok=True)
        metadata = {**(table.schema.metadata or {}), DEDUP_TOKEN_KEY: token.encode()}
        table = table.replace_schema_metadata(metadata)
        self._seq = (self._seq + 1) % 1_000_000
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}-{table.num_rows}r"
        path = self.path / (name + _SUFFIX)
        tmp = self.path / f".{path.name}.{os.getpid()}.tmp"
        try:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
                out.write_table(table)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return path

    def read(self, path: Path) -> SpooledBatch | None:
        """A spooled batch (rows as written, token), or None when another writer
        replayed it already or the file is unreadable (then moved aside to ``*.bad``,
        with an error logged)."""
        try:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_file(source).read_all()
        except FileNotFoundError:
            return None
        except (pa.ArrowInvalid, OSError) as exc:
            bad = path.with_name(path.name + ".bad")
            with contextlib.suppress(OSError):
                path.rename(bad)
            logger.error("unreadable spool file %s moved to %s: %s", path, bad, exc)
            return None
        metadata = dict(table.schema.metadata or {})
        token = metadata.pop(DEDUP_TOKEN_KEY, None)
        return SpooledBatch(
            table.replace_schema_metadata(metadata or None),
            None if token is None else token.decode(),
        )

    @staticmethod
    def remove(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def leftovers(self) -> list[tuple[Path, int]]:
        """(file, rows) left by earlier writers, oldest first; half-written files of
        dead processes are deleted (their batch was never acknowledged)."""
        if not self.path.is_dir():
            return []
        found = []
        for entry in self.path.iterdir():
            tmp = _TMP_NAME.match(entry.name)
            if tmp is not None:
                if not pid_alive(int(tmp.group(2))):
                    with contextlib.suppress(OSError):
                        entry.unlink()
                continue
            match = _NAME.match(entry.name)
            if match is not None:
                found.append((entry.name, entry, int(match.group(4))))
        found.sort()
        return [(path, rows) for _, path, rows in found]


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
