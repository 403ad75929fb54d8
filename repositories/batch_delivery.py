"""The delivery half of :class:`repositories.batch_writer.BatchWriter`: getting
sealed batches into the database, or onto disk until it answers.

:mod:`repositories.batch_writer` is the front that callers see (checking,
buffering and sealing rows, back-pressure, ``close()`` and the counters); this base
class is what happens to a batch once it is sealed. The two share one lock and one
queue, so they are one object; the split is for the reader.

* **Never drop rows.** A batch whose insert fails goes to the spool in ``spool_dir``
  at once (write-ahead, :mod:`repositories.spool`), and while the database keeps
  failing every newly sealed batch does too, appended to one segment file (a few
  large files per outage, not one per batch). Spooled files are replayed first, in
  order, and deleted only after their insert succeeded; a new writer for the same
  table replays files a crashed process left behind. Failed
  inserts are retried with exponential backoff, and while the server cannot be
  reached a cheap TCP probe every ``probe_interval`` seconds notices its return,
  so rows arrive within about that long after it is back.
* **Exactly once, raw rows included.** An INSERT that failed may still have
  landed (the acknowledgement was lost to a timeout), or landed on some shards of
  a Distributed table only; a spool file may be replayed twice (a crash between
  its INSERT and its deletion). So every batch gets an ``insert_deduplication_token``
  when it is sealed, and a batch that has been attempted is only ever retried
  whole, with the same rows in the same order under the same token: in memory,
  in its own spool file (the token in the file) and on replay. ClickHouse then
  drops the blocks it already has. Batches never attempted may still be coalesced
  into one INSERT; the group is fixed, under a token of its own, at its first
  attempt. ClickHouse remembers the last ``non_replicated_deduplication_window``
  blocks of a table (revision 0004 sets it on both tables, cluster mode on every
  local table); a replay later than that, and any duplicate the window missed,
  is still read once: both tables are ReplacingMergeTree on their natural key,
  read with ``FINAL``, and a batch is sealed once, so its retries carry the same
  ``recorded_at`` (the version and the partition key).
"""

from __future__ import annotations

import abc
import logging
import socket
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import pyarrow as pa

from repositories.errors import RepositoryError
from repositories.spool import SpoolDir
from suho_models.db.database import Database
from suho_models.settings import get_settings

logger = logging.getLogger("repositories.batch_writer")  # one logger for the writer

_IDLE_WAIT_S = 1.0
_DEFAULT_PORTS = {"native": 9000}  # other network drivers speak HTTP


class RowsNotStoredError(RepositoryError):
    """Rows were logged that the writer could neither insert nor spool to disk: they
    live only in this process's memory (``rows`` of them) and are lost when it exits.

    Raised by ``close()`` (after everything else was stored or spooled) and, as
    back-pressure, by ``log()``/``log_columns()`` once ``max_buffered_rows`` such rows
    are held. The message names the table, the count and both causes."""

    def __init__(self, message: str, *, table: str, rows: int) -> None:
        super().__init__(message)
        self.table = table
        self.rows = rows


class Batch:
    """A sealed, immutable Arrow batch waiting in memory for its insert.

    ``token`` is its ``insert_deduplication_token``, fixed here. Once ``attempted``
    the batch is never merged, split or re-tokenised: a retry must repeat the first
    attempt exactly for ClickHouse to recognise what already landed.
    """

    __slots__ = ("table", "rows", "logged_at", "token", "attempted")

    def __init__(self, table: pa.Table, logged_at: float, token: str) -> None:
        self.table = table
        self.rows = table.num_rows
        self.logged_at = logged_at
        self.token = token
        self.attempted = False


def _short(exc: BaseException | None) -> str:
    """An error's first line, bounded (a driver's message can run to pages)."""
    if exc is None:
        return "no error"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


class BatchDelivery(abc.ABC):
    """Inserts sealed batches for one table, spools and replays them while the
    database fails, and runs the background thread that does it on time.

    The subclass owns the open rows (``_columns``, ``_rows_first_at``) and turns
    them into batches (:meth:`_seal`); everything else here is this class's own.
    """

    # The open rows, owned by the subclass; read here for timing and counting.
    _columns: list[list[Any]]
    _rows_first_at: float | None
    _thread: threading.Thread

    def __init__(
        self,
        db: Database,
        table: str,
        *,
        max_seconds: float,
        spool_dir: Path | None,
        spool_segment_rows: int,
        retry_initial: float,
        retry_max: float,
        probe_interval: float,
    ) -> None:
        self.db = db
        self.table = table
        self.max_seconds = max_seconds
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.probe_interval = probe_interval
        self._spool_files = SpoolDir(
            spool_dir
            if spool_dir is not None
            else get_settings().data_dir / "spool" / db.store_key / table,
            segment_rows=spool_segment_rows,
        )
        self.spool_dir = self._spool_files.path

        # Guarded by _lock, which is held only for list operations, never for I/O.
        self._lock = threading.Lock()
        self._batches: deque[Batch] = deque()
        self._batch_rows = 0
        self._spool: deque[tuple[Path, int]] = deque()
        self._spool_rows = 0
        self._rows_flushed = 0
        self._flush_count = 0
        self._failures = 0  # failed attempts since the last success
        self._backoff_step = 0  # the same, restarted when the server comes back
        self._retry_at = 0.0
        self._down = False  # the probe found the server unreachable
        self._probe_at = 0.0
        self._last_error: BaseException | None = None
        self._spool_error: OSError | None = None  # the last failed spool write

        self._sealing_rows = 0  # rows being converted outside _lock
        self._spooling_rows = 0  # a batch being appended to the spool outside _lock
        self._flush_lock = threading.Lock()  # one insert loop at a time
        self._spool_lock = threading.Lock()  # spool files are written in order
        self._wake = threading.Event()
        self._stop = threading.Event()

    def _start(self) -> None:
        """Queue the spool files earlier writers left, then start the background thread."""
        self._adopt_spool_leftovers()
        self._thread = threading.Thread(
            target=self._run, name=f"batch-writer-{self.table}", daemon=True
        )
        self._thread.start()

    @abc.abstractmethod
    def _seal(self) -> None:
        """Turn the open rows into a :class:`Batch` at the end of ``_batches``."""

    def _new_token(self) -> str:
        """A dedup token unique to one batch; store and table only make it readable
        in the server's logs (ClickHouse keys it per table anyway)."""
        return f"{self.db.store_key}:{self.table}:{uuid.uuid4().hex}"

    @property
    def rows_flushed(self) -> int:
        """Rows whose INSERT succeeded (replayed spool rows included)."""
        return self._rows_flushed

    @property
    def flush_count(self) -> int:
        """Successful INSERT statements."""
        return self._flush_count

    @property
    def pending_rows(self) -> int:
        """Rows queued in memory or in spool files, not yet inserted."""
        with self._lock:
            open_rows = len(self._columns[0])
            in_memory = open_rows + self._sealing_rows + self._spooling_rows + self._batch_rows
            return in_memory + self._spool_rows

    @property
    def memory_rows(self) -> int:
        """Pending rows held only in memory (open, sealing or sealed, not spooled):
        those a crash would lose, and those ``close()`` raises for if they remain."""
        with self._lock:
            held = self._sealing_rows + self._spooling_rows + self._batch_rows
            return len(self._columns[0]) + held

    @property
    def spooled_files(self) -> int:
        """Spool files waiting to be replayed (this writer's open segment included)."""
        return len(self._spool) + (1 if self._spool_files.open_rows else 0)

    @property
    def spooled_rows(self) -> int:
        """Rows in those spool files."""
        return self._spool_rows

    @property
    def last_error(self) -> BaseException | None:
        """The most recent insert failure (kept after recovery, for diagnostics)."""
        return self._last_error

    def _make_room(self, max_buffered_rows: int) -> None:
        """A full batch was sealed in the logging thread: insert now (back-pressure)
        unless the database is failing, in which case it goes to the spool (write-ahead)."""
        if self._failures:
            self._spool_memory()
            return
        with self._lock:
            over = self._batch_rows > max_buffered_rows
        # Wait for another thread's flush only when memory is over its bound.
        if over:
            self._flush(force=False)
        elif self._flush_lock.acquire(blocking=False):
            try:
                self._flush_locked(force=False)
            finally:
                self._flush_lock.release()
        if self._batch_rows > max_buffered_rows:
            self._spool_memory(keep_rows=max_buffered_rows)

    def _not_stored(self, rows: int, what: str) -> RowsNotStoredError:
        return RowsNotStoredError(
            f"BatchWriter({self.table}): {rows:,} row(s) {what}. They could not be inserted "
            f"({_short(self._last_error)}) nor spooled to {self.spool_dir} "
            f"({_short(self._spool_error)}), and are lost when this process exits",
            table=self.table,
            rows=rows,
        )

    def _drain(self, timeout: float) -> bool:
        """Stop the background thread, retry inserting until ``timeout``, then spool
        what is left; True when every sealed row landed in the database."""
        deadline = time.monotonic() + max(timeout, 0.0)
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=max(timeout, 0.1))

        done = self._flush(force=True, lock_timeout=max(deadline - time.monotonic(), 0.0))
        while not done and time.monotonic() < deadline:
            time.sleep(min(self._backoff(), max(deadline - time.monotonic(), 0.0)))
            done = self._flush(force=True, lock_timeout=max(deadline - time.monotonic(), 0.0))
        if not done:
            self._spool_memory()
        try:
            self._close_segment()
        except OSError as exc:
            logger.error("BatchWriter(%s): closing the spool segment: %s", self.table, exc)
        if not done:
            with self._lock:
                files, spooled = len(self._spool), self._spool_rows
            held = self.memory_rows
            (logger.error if held else logger.warning)(
                "BatchWriter(%s) closed with %d row(s) not inserted (%s): %d in %d spool "
                "file(s) under %s, replayed by the next writer for %s; %d held only in "
                "memory (not spooled: %s)",
                self.table,
                spooled + held,
                _short(self._last_error),
                spooled,
                files,
                self.spool_dir,
                self.table,
                held,
                _short(self._spool_error),
            )
        return done

    def _flush(self, *, force: bool, lock_timeout: float = -1) -> bool:
        if not self._flush_lock.acquire(timeout=lock_timeout):
            return False
        try:
            return self._flush_locked(force=force)
        finally:
            self._flush_lock.release()

    def _flush_locked(self, *, force: bool) -> bool:
        """Insert spool files, one INSERT each, then the sealed memory batches: the
        attempted one at the front alone, else all of them as one INSERT.

        Returns True when nothing sealed is left. Never raises for database errors:
        the batches go to the spool instead.
        """
        if not force and self._failures and time.monotonic() < self._retry_at:
            return False
        if self._down and not self._reachable():
            # Still unreachable: no INSERT to try, and the open spool segment stays
            # open (closing it for every retry would make a file per retry).
            self._spool_memory()
            return False
        try:
            while True:
                with self._lock:
                    spooled = self._spool[0] if self._spool else None
                    segment = spooled is None and self._spool_files.open_rows > 0
                    batch = None if spooled or segment else self._next_attempt()
                if spooled is not None:
                    self._replay(*spooled)
                elif segment:
                    self._close_segment()  # replayed next, before newer memory batches
                elif batch is not None:
                    self._insert(batch)
                else:
                    break
        except Exception as exc:
            self._on_failure(exc)
            self._spool_memory()
            return False
        if self._failures:
            logger.info(
                "BatchWriter(%s): inserts work again after %d failed attempt(s)",
                self.table,
                self._failures,
            )
        self._failures = self._backoff_step = 0
        self._retry_at = 0.0
        self._down = False
        return True

    def _next_attempt(self) -> Batch | None:
        """The memory batch to insert next, marked attempted (call under ``_lock``).

        An attempted batch is only ever at the front (new batches join at the end,
        and spooling takes from the front), and goes again alone, as it is. Otherwise
        the batches, none attempted yet, become one batch with a token of its own:
        one INSERT (one part) for many small ``log_columns`` calls, fixed from now on.
        """
        if not self._batches:
            return None
        first = self._batches[0]
        if not first.attempted and len(self._batches) > 1:
            group = list(self._batches)
            first = Batch(
                pa.concat_tables(b.table for b in group), group[0].logged_at, self._new_token()
            )
            self._batches.clear()
            self._batches.append(first)
        first.attempted = True
        return first

    def _insert(self, batch: Batch) -> None:
        self.db.insert_arrow(self.table, batch.table, dedup_token=batch.token)
        with self._lock:
            # A batch spooled meanwhile (close under a hung insert) is no longer at the
            # front; its file replays later under the same token, so it lands once.
            if self._batches and self._batches[0] is batch:
                self._batches.popleft()
                self._batch_rows -= batch.rows
            self._rows_flushed += batch.rows
            self._flush_count += 1

    def _replay(self, path: Path, rows: int) -> None:
        """Insert one spool file, group by group (each under its fixed token), then
        delete it; a failure part-way repeats the whole file later, deduplicated."""
        groups = self._spool_files.read(path)
        for group in groups or ():
            token = group.token or f"{self.db.store_key}:{self.table}:spool:{group.key}"
            self.db.insert_arrow(self.table, group.table, dedup_token=token)
        if groups is not None:
            self._spool_files.remove(path)
        with self._lock:
            if self._spool and self._spool[0][0] == path:
                self._spool.popleft()
                self._spool_rows -= rows
            if groups is not None:
                self._rows_flushed += sum(g.table.num_rows for g in groups)
                self._flush_count += len(groups)

    def _on_failure(self, exc: BaseException) -> None:
        self._failures += 1
        self._backoff_step += 1
        self._last_error = exc
        delay = self._backoff()
        now = time.monotonic()
        self._retry_at = now + delay
        if not self._down and not self._reachable():
            self._down = True  # probe until it answers, between the backoff steps
            self._probe_at = now + self.probe_interval
        log = logger.warning if self._failures == 1 else logger.debug
        log(
            "BatchWriter(%s): insert failed (attempt %d), %d rows kept, retrying in %.1fs%s: %s",
            self.table,
            self._failures,
            self.pending_rows,
            delay,
            " or when the server answers" if self._down else "",
            exc,
        )

    def _backoff(self) -> float:
        exponent = min(max(self._backoff_step - 1, 0), 30)
        return min(self.retry_max, self.retry_initial * 2.0**exponent)

    def _probe(self) -> None:
        """While the server is unreachable: is it back? Then retry now, backoff restarted."""
        self._probe_at = time.monotonic() + self.probe_interval
        if self._reachable():
            self._down = False
            self._backoff_step = 0
            self._retry_at = 0.0

    def _reachable(self) -> bool:
        """A TCP connect to the server (cheap, bounded by ``probe_interval``); the
        embedded engine is always reachable, so its failures follow the backoff."""
        if self.db.is_embedded:
            return True
        if self.db.is_shared:  # the default store: start its server again if it is gone
            try:
                return self.db.revive()
            except Exception:  # noqa: BLE001 - still down; the backoff goes on
                return False
        url = self.db.url
        port = url.port or _DEFAULT_PORTS.get(self.db.driver, 8123)
        try:
            socket.create_connection(
                (url.host or "localhost", port), timeout=min(self.probe_interval, 1.0)
            ).close()
        except OSError:
            return False
        return True

    # ------------------------------------------------------------------ spool
    def _spool_memory(self, *, keep_rows: int = 0) -> None:
        """Move the oldest memory batches to the spool until at most ``keep_rows``
        remain: appended to the open segment, one record per batch with its token
        and whether it was attempted, never split."""
        with self._spool_lock:
            while True:
                self._seal()
                with self._lock:
                    if self._batch_rows <= keep_rows or not self._batches:
                        return
                    batch = self._batches.popleft()
                    self._batch_rows -= batch.rows
                    self._spooling_rows = batch.rows
                try:
                    closed = self._spool_files.append(
                        batch.table, batch.token, attempted=batch.attempted
                    )
                except OSError as exc:
                    with self._lock:  # put it back: memory is better than nothing
                        self._batches.appendleft(batch)
                        self._batch_rows += batch.rows
                        self._spooling_rows = 0
                    self._on_spool_failure(exc)
                    return
                with self._lock:
                    self._spooling_rows = 0
                    self._spool_rows += batch.rows
                    if closed is not None:
                        self._spool.append(closed)
                if self._spool_error is not None:
                    logger.warning("BatchWriter(%s): spooling works again", self.table)
                    self._spool_error = None

    def _on_spool_failure(self, exc: OSError) -> None:
        first = self._spool_error is None
        self._spool_error = exc
        (logger.error if first else logger.debug)(
            "BatchWriter(%s): cannot spool to %s (%s): %d of %d pending row(s) are held "
            "only in memory (lost if this process exits)",
            self.table,
            self.spool_dir,
            exc,
            self.memory_rows,
            self.pending_rows,
        )

    def _close_segment(self) -> None:
        """Close the open spool segment and queue it for replay (after older files)."""
        with self._spool_lock:
            closed = self._spool_files.close_segment()
        if closed is not None:
            with self._lock:
                self._spool.append(closed)

    def _adopt_spool_leftovers(self) -> None:
        """Queue spool files from earlier (crashed or failed) writers, oldest first."""
        found = self._spool_files.leftovers()
        for path, rows in found:
            self._spool.append((path, rows))
            self._spool_rows += rows
        if found:
            logger.info(
                "BatchWriter(%s): replaying %d spooled row(s) from %d file(s) in %s",
                self.table,
                self._spool_rows,
                len(found),
                self.spool_dir,
            )

    # ------------------------------------------------------------------ background
    def _run(self) -> None:
        """Daemon loop: time-based seals and flushes, probes and retries."""
        while not self._stop.is_set():
            self._wake.wait(self._seconds_to_next_step())
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._step()
            except Exception:  # never let the daemon die
                logger.exception("BatchWriter(%s): background flush crashed", self.table)

    def _step(self) -> None:
        if not self._failures:
            if self._seconds_to_next_step() <= 0:
                self._seal()
                self._flush(force=False)
            return
        now = time.monotonic()
        with self._lock:
            due = bool(self._columns[0]) and self._open_rows_due(now)
            held = bool(self._batches)
        if due or held:
            if due:
                self._seal()
            self._spool_memory()  # write-ahead: the database is failing
        if self._down and now >= self._probe_at:
            self._probe()
        if time.monotonic() >= self._retry_at:
            self._flush(force=False)

    def _open_rows_due(self, now: float) -> bool:
        return (self._rows_first_at or now) + self.max_seconds <= now

    def _seconds_to_next_step(self) -> float:
        now = time.monotonic()
        with self._lock:
            open_rows = len(self._columns[0])
            if self._failures and (open_rows or self._batches or self._spool_rows):
                wait = self._retry_at - now
                if self._down:
                    wait = min(wait, self._probe_at - now)
                if open_rows:
                    wait = min(wait, (self._rows_first_at or now) + self.max_seconds - now)
                return min(max(wait, 0.0), _IDLE_WAIT_S)
            if self._spool_rows:
                return 0.0
            oldest = None
            if self._batches:
                oldest = self._batches[0].logged_at
            elif open_rows:
                oldest = self._rows_first_at or now
        if oldest is None:
            return _IDLE_WAIT_S
        return min(max(oldest + self.max_seconds - now, 0.0), _IDLE_WAIT_S)


__all__ = ["Batch", "BatchDelivery", "RowsNotStoredError"]
