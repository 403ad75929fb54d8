"""The batch writer's disk spool: sealed batches that are not in the database yet.

Batches are appended to a **segment** file, one record per batch, each record
fsynced before the append returns: an outage fills a few large files (one per
``segment_rows`` rows, or per reconnection) instead of one small file per batch.
A record is a fixed header (magic, payload length, rows, CRC-32, flags) followed by
the batch as an Arrow IPC file with its ``insert_deduplication_token`` in the
schema metadata. A failed append (a full disk) truncates the segment back to its
last whole record, so the file stays readable; a record torn by a crash fails its
length or CRC check and is ignored on reading (it was never acknowledged).

A segment being appended to is ``<ns>-<pid>-<seq>.open``, held under an exclusive
``flock`` by its writer; once closed it is renamed ``<ns>-<pid>-<seq>-<rows>r.seg``
and never changes again. Names sort in writing order and closed ones carry their
row count, so a new writer queues the leftovers of a dead one without reading
them; an ``.open`` segment is adopted only when its lock is free, i.e. its writer
is gone (its content is then fixed too). The lock, not the pid, decides: in a
container a restarted process often gets the dead one's pid.

Replay must send rows a batch's earlier INSERT attempt may have written under the
same token: an **attempted** record is inserted alone with its own token. Records
never attempted (spooled straight away during an outage) are inserted together,
each run of consecutive ones under a token derived from the segment's name and the
record range: the segment never changes once closed, so a segment replayed twice
(a crash between its INSERT and its deletion) repeats the same INSERTs under the
same tokens and lands once. A file is deleted only after every INSERT succeeded.
Files of the older one-batch-per-file layout (``*.arrow``) are still replayed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import struct
import time
import zlib
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa

logger = logging.getLogger(__name__)

_LEGACY = re.compile(r"^(\d{20})-(\d+)-(\d{6})-(\d+)r\.arrow$")
_CLOSED = re.compile(r"^(\d{20}-(\d+)-\d{6})-(\d+)r\.seg$")
_OPEN = re.compile(r"^(\d{20}-(\d+)-\d{6})\.open$")
_TMP_NAME = re.compile(r"^\.(.+)\.(\d+)\.tmp$")

_MAGIC = b"SUHOSPL1"
_HEADER = struct.Struct("<8sQQII")  # magic, payload bytes, rows, crc32(payload), flags
_ATTEMPTED = 1

DEDUP_TOKEN_KEY = b"suho_dedup_token"
"""Schema metadata key of a spooled batch's ``insert_deduplication_token``."""

DEFAULT_SEGMENT_ROWS = 1_000_000


class SpooledBatch(NamedTuple):
    """One INSERT of a replay: rows in order and the token to send them under."""

    table: pa.Table
    token: str | None
    """None: a legacy file from before tokens were written; the caller derives one
    from ``key`` (stable for that file)."""
    key: str
    """Names the file (and record range) this INSERT came from, stable across replays."""


class SpoolDir:
    """One table's spool folder (one per store and table), with this writer's open
    segment. Not thread-safe: the writer serialises appends and closes."""

    def __init__(self, path: Path, *, segment_rows: int = DEFAULT_SEGMENT_ROWS) -> None:
        self.path = Path(path).resolve()
        self.segment_rows = segment_rows
        self._seq = 0
        self._last_ns = 0
        self._open: Path | None = None
        self._fd: int | None = None
        self._size = 0
        self.open_rows = 0
        """Rows in this writer's open segment (durable, not yet queued for replay)."""

    # ------------------------------------------------------------------ writing
    def append(self, table: pa.Table, token: str, *, attempted: bool) -> tuple[Path, int] | None:
        """Append one batch durably (fsynced) to the open segment, opening one if
        needed. Returns the segment (file, rows) it closed because it reached
        ``segment_rows``, else None. On an error (a full disk) nothing of the batch is kept and the
        segment is as before."""
        metadata = {**(table.schema.metadata or {}), DEDUP_TOKEN_KEY: token.encode()}
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema.with_metadata(metadata)) as out:
            out.write_table(table.replace_schema_metadata(metadata))
        payload = sink.getvalue()
        header = _HEADER.pack(
            _MAGIC, payload.size, table.num_rows, zlib.crc32(payload), _ATTEMPTED * attempted
        )
        fd = self._open_segment()
        try:
            _write_all(fd, header)
            _write_all(fd, memoryview(payload))
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
            raise
        self._size += len(header) + payload.size
        self.open_rows += table.num_rows
        if self.open_rows >= self.segment_rows:
            return self.close_segment()
        return None

    def close_segment(self) -> tuple[Path, int] | None:
        """Close the open segment (renamed with its row count): (file, rows), or None
        when there is none or it is empty."""
        fd, path, rows = self._fd, self._open, self.open_rows
        if fd is None or path is None:
            return None
        self._fd = self._open = None
        self._size = self.open_rows = 0
        try:  # renamed (or removed) while still locked: no one adopts it half-way
            if not rows:
                with contextlib.suppress(OSError):
                    path.unlink()
                return None
            closed = path.with_name(f"{path.name.removesuffix('.open')}-{rows}r.seg")
            try:
                os.replace(path, closed)
            except OSError as exc:  # still whole and readable under its open name
                logger.warning("spool segment %s could not be renamed: %s", path, exc)
                return path, rows
        finally:
            os.close(fd)
        self._sync_dir()
        return closed, rows

    def write(self, table: pa.Table, token: str) -> Path:
        """One batch in a segment of its own, closed at once (a spool file in the
        former one-file-per-batch way; used by tests and tools)."""
        if self._fd is not None:
            raise RuntimeError("write() while a segment is open: close it first")
        closed = self.append(table, token, attempted=True) or self.close_segment()
        assert closed is not None
        return closed[0]

    def _open_segment(self) -> int:
        if self._fd is not None:
            return self._fd
        self.path.mkdir(parents=True, exist_ok=True)
        # Names sort in writing order even if the wall clock steps back.
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        self._seq = (self._seq + 1) % 1_000_000
        path = self.path / f"{self._last_ns:020d}-{os.getpid()}-{self._seq:06d}.open"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until closed or dead
        self._fd, self._open, self._size = fd, path, 0
        self._sync_dir()
        return self._fd

    def _sync_dir(self) -> None:
        with contextlib.suppress(OSError):  # make a creation or rename itself durable
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # ------------------------------------------------------------------ reading
    def read(self, path: Path) -> list[SpooledBatch] | None:
        """The INSERTs that replay a file, in order; None when another writer replayed
        it already or it is unreadable (then moved aside to ``*.bad``, error logged)."""
        try:
            with pa.memory_map(str(path)) as source:
                data = source.read_buffer()
            if path.suffix == ".arrow":
                table, token = _batch(data)
                return [SpooledBatch(table, token, path.name)]
            match = _CLOSED.match(path.name) or _OPEN.match(path.name)
            stem = match.group(1) if match is not None else path.name
            return _groups(stem, _records(data, path))
        except FileNotFoundError:
            return None
        except (pa.ArrowInvalid, OSError) as exc:
            bad = path.with_name(path.name + ".bad")
            with contextlib.suppress(OSError):
                path.rename(bad)
            logger.error("unreadable spool file %s moved to %s: %s", path, bad, exc)
            return None

    @staticmethod
    def remove(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def leftovers(self) -> list[tuple[Path, int]]:
        """(file, rows) left by earlier writers, oldest first: closed segments, open
        segments of dead processes, legacy files. Half-written legacy temporary files
        of dead processes are deleted (their batch was never acknowledged)."""
        if not self.path.is_dir():
            return []
        found = []
        for entry in self.path.iterdir():
            name = entry.name
            if (tmp := _TMP_NAME.match(name)) is not None:
                if not pid_alive(int(tmp.group(2))):
                    with contextlib.suppress(OSError):
                        entry.unlink()
            elif (match := _CLOSED.match(name)) is not None:
                found.append((name, entry, int(match.group(3))))
            elif (match := _LEGACY.match(name)) is not None:
                found.append((name, entry, int(match.group(4))))
            elif _OPEN.match(name) is not None and (rows := _abandoned_rows(entry)) is not None:
                found.append((name, entry, rows))
        found.sort()
        return [(path, rows) for _, path, rows in found]


def _abandoned_rows(path: Path) -> int | None:
    """Rows of an ``.open`` segment whose writer is gone (its lock is free); None
    while a writer holds it, in this process or another."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # held: a live writer appends to it
        with pa.memory_map(str(path)) as source:
            return sum(rows for _, rows, _ in _records(source.read_buffer(), path))
    except OSError:
        return None
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _records(data: pa.Buffer, path: Path) -> list[tuple[pa.Buffer, int, bool]]:
    """(payload, rows, attempted) of each whole record; stops at a torn tail."""
    out = []
    offset, size = 0, data.size
    while offset + _HEADER.size <= size:
        magic, length, rows, crc, flags = _HEADER.unpack(
            data.slice(offset, _HEADER.size).to_pybytes()
        )
        start = offset + _HEADER.size
        if magic != _MAGIC or start + length > size:
            break
        payload = data.slice(start, length)
        if zlib.crc32(payload) != crc:
            break
        out.append((payload, rows, bool(flags & _ATTEMPTED)))
        offset = start + length
    if offset != size:
        logger.warning(
            "spool file %s: %d byte(s) after its last whole record ignored (a torn write "
            "that was never acknowledged)",
            path,
            size - offset,
        )
    return out


def _batch(payload: pa.Buffer) -> tuple[pa.Table, str | None]:
    table = pa.ipc.open_file(payload).read_all()
    metadata = dict(table.schema.metadata or {})
    token = metadata.pop(DEDUP_TOKEN_KEY, None)
    return table.replace_schema_metadata(metadata or None), (
        None if token is None else token.decode()
    )


def _groups(name: str, records: list[tuple[pa.Buffer, int, bool]]) -> list[SpooledBatch]:
    """Attempted records alone under their token; each run of consecutive records
    never attempted as one INSERT, keyed by the segment and the record range."""
    groups: list[SpooledBatch] = []
    run: list[tuple[int, pa.Table]] = []

    def end_run() -> None:
        if run:
            key = f"{name}:{run[0][0]}-{run[-1][0]}"
            groups.append(SpooledBatch(pa.concat_tables(t for _, t in run), None, key))
            run.clear()

    for i, (payload, _rows, attempted) in enumerate(records):
        table, token = _batch(payload)
        if attempted:
            end_run()
            groups.append(SpooledBatch(table, token, f"{name}:{i}"))
        else:
            run.append((i, table))
    end_run()
    return groups


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
