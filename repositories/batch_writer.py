"""Buffered, columnar, never-losing writer for the high-volume series tables.

``training_metrics`` and ``reward_history`` receive millions of rows per run, one
per iteration or environment step. A single-row INSERT into MergeTree costs
milliseconds and makes a part per row, so trainers never insert directly: they
``log()`` rows into a :class:`BatchWriter`, which buffers them cheaply and writes
them as one columnar Arrow INSERT per batch.

Why the design is what it is:

* **Cheap per row, checked per row.** ``log()``/``log_row()`` check each value
  against its column (:mod:`repositories.arrow_schema`) and raise at once, naming
  the field and the value; then they take a lock and append each value to its
  column's list. Both are compiled per schema (no loop over the columns), which
  measured about twice as fast as a plain loop (``bench/results/writer_appenders.md``).
  Conversion to Arrow happens once per batch ("sealing"). ``log_columns()`` takes
  whole numpy/Arrow columns: the fast path for bulk.
* **Flushes** happen at ``max_rows`` (in the logging thread, which gives
  back-pressure), ``max_seconds`` after the oldest unflushed row (a daemon
  thread), on ``flush()``/``close()``, and at interpreter exit (``atexit``).
* **Never drop rows, exactly once.** What happens to a batch once it is sealed
  (inserting it, spooling it to disk while the database fails, replaying, the
  retry backoff and the reachability probe, deduplication tokens) is
  :class:`repositories.batch_delivery.BatchDelivery`, this class's base.
* **Never lose rows silently.** Rows that can be neither inserted nor spooled (the
  database failing and the spool's disk full or unwritable) stay in memory, up to
  ``max_buffered_rows``; past that, ``log()`` blocks up to ``block_seconds`` for
  room, then raises :class:`RowsNotStoredError` and refuses rows until there is
  room (back-pressure: memory stays bounded). ``close()`` raises
  :class:`RowsNotStoredError` with the count of rows it could not keep.
* **What a kill -9 can lose:** only rows not yet acknowledged by an INSERT or a
  spool file: those logged since the last seal (fewer than ``max_rows``, logged
  within the last ``max_seconds``) and, while the database answers, the sealed
  batch whose first INSERT is in flight. Everything sealed during an outage is on
  disk.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from repositories.arrow_schema import (
    RECORDED_AT,
    REWARD_HISTORY_SCHEMA,
    TRAINING_METRICS_SCHEMA,
    UUID_ARROW_TYPE,
    ColumnRule,
    InvalidRowError,
    RowsRejectedError,
    arrow_schema,
    column_rules,
    column_to_arrow,
    is_scalar,
    values_to_arrow,
)
from repositories.batch_delivery import Batch, BatchDelivery, RowsNotStoredError
from repositories.spool import DEFAULT_SEGMENT_ROWS
from suho_models.db.database import Database
from suho_models.rl import RewardStep
from suho_models.supervised import TrainingMetric

logger = logging.getLogger(__name__)

_CONVERSION_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError, AttributeError)


# --------------------------------------------------------------------------- writer
class BatchWriter(BatchDelivery):
    """Buffers rows for one table and writes them as columnar Arrow INSERTs.

    Thread-safe: any number of threads may log concurrently. Use as a context
    manager (or call :meth:`close`) so the last rows are flushed; an unclosed
    writer still flushes at interpreter exit.
    """

    log: Callable[..., None]
    """``log(**row)``: queue one row given by column name. A Nullable column left
    out is NULL, a column with a default (``iteration_duration_ms``,
    ``is_episode_end``) takes it, ``recorded_at`` is "now"; any other missing value,
    an unknown column, or a value its column cannot hold raises
    :class:`InvalidRowError` naming the field and the value, and nothing of the row
    is kept. Compiled per instance (:meth:`_compile_appenders`)."""

    log_row: Callable[[Sequence[Any]], None]
    """``log_row(values)``: the same with one value per column in schema order
    (``None`` for NULL / default)."""

    def __init__(
        self,
        db: Database,
        table: str,
        schema: pa.Schema,
        *,
        max_rows: int = 50_000,
        max_seconds: float = 0.5,
        max_buffered_rows: int = 1_000_000,
        spool_dir: Path | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        probe_interval: float = 1.0,
        block_seconds: float = 30.0,
        spool_segment_rows: int = DEFAULT_SEGMENT_ROWS,
    ) -> None:
        if max_rows < 1 or max_buffered_rows < 1:
            raise ValueError("max_rows and max_buffered_rows must be positive")
        if block_seconds < 0:
            raise ValueError(f"block_seconds: must be >= 0 (got {block_seconds!r})")
        super().__init__(
            db,
            table,
            max_seconds=max_seconds,
            spool_dir=spool_dir,
            spool_segment_rows=spool_segment_rows,
            retry_initial=retry_initial,
            retry_max=retry_max,
            probe_interval=probe_interval,
        )
        self.schema = schema
        self.max_rows = min(max_rows, max_buffered_rows)
        self.max_buffered_rows = max_buffered_rows
        self.block_seconds = block_seconds

        self._names = tuple(schema.names)
        self._name_set = frozenset(self._names)
        self._width = len(self._names)
        self._rules: list[ColumnRule] = column_rules(table, schema)
        self._has_recorded_at = RECORDED_AT in self._name_set
        self._required = tuple(r.field.name for r in self._rules if not r.may_be_none)

        # Open rows, one list per column, guarded by the base's _lock. Values are mostly
        # atomic (float, int, str, one shared UUID), so buffering creates no GC-tracked
        # object per row; a list of row dicts made the cyclic GC cost more than the append.
        self._columns: list[list[Any]] = [[] for _ in self._names]
        self._rows_first_at: float | None = None
        self._closed = False
        self._rows_taken = 0  # rows that left the open columns, plus log_columns rows
        self._rows_rejected = 0
        self._first_rejection: str | None = None
        self._refusing = False  # back-pressure: log() raises until rows can be kept
        self._seal_lock = threading.Lock()  # batches enter the queue in logging order

        self.log, self.log_row = self._compile_appenders()
        self._warm_up()
        self._start()
        atexit.register(self._at_exit)

    # ------------------------------------------------------------------ logging
    def _compile_appenders(self) -> tuple[Any, Any]:
        """log/log_row specialised to this schema: each column's check inlined (a
        class test, plus a range test for integers; anything else goes through its
        :class:`ColumnRule`), then one bound ``append`` per column under the lock."""
        width = self._width
        namespace: dict[str, Any] = {f"a{i}": c.append for i, c in enumerate(self._columns)}
        for i, rule in enumerate(self._rules):
            namespace[f"c{i}"] = rule.check
            namespace[f"t{i}"] = rule.fast
        namespace.update(
            writer=self,
            lock=self._lock,
            first=self._columns[0],
            names_ge=self._name_set.issuperset,
            monotonic=time.monotonic,
            wake=self._wake.set,
            width=width,
            max_rows=self.max_rows,
        )
        checks = "".join(_inline_check(i, rule) for i, rule in enumerate(self._rules))
        by_name = "".join(f"    v{i} = get({n!r})\n" for i, n in enumerate(self._names))
        unpack = "".join(f"v{i}, " for i in range(width))
        appends = "".join(f"        a{i}(v{i})\n" for i in range(width))
        tail = f"""    if writer._refusing:
        writer._at_limit()
    with lock:
        if writer._closed:
            writer._raise_closed()
{appends}        n = len(first)
        if n == 1:
            writer._rows_first_at = monotonic()
    if n == 1:
        wake()  # start the max_seconds clock
    if n >= max_rows:
        writer._on_full()
"""
        source = f"""
def log(**row):
    if not names_ge(row):
        writer._unknown_columns(row)
    get = row.get
{by_name}{checks}{tail}
def log_row(row):
    if len(row) != width:
        writer._wrong_width(row)
    {unpack}= row
{checks}{tail}
"""
        exec(compile(source, f"<BatchWriter {self.table}>", "exec"), namespace)
        return namespace["log"], namespace["log_row"]

    def _warm_up(self) -> None:
        """Convert and serialise an empty batch now, so that the lazy imports behind
        them (pyarrow imports pandas on its first ``pa.array``) do not happen in the
        ``atexit`` flush, where imports that register exit hooks fail."""
        table = self._columns_to_table([[] for _ in self._names])
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as out:
            out.write_table(table)

    def _unknown_columns(self, row: Mapping[str, Any]) -> None:
        unknown = sorted(set(row) - self._name_set)
        values = ", ".join(f"{name}={row[name]!r:.200}" for name in unknown)
        raise InvalidRowError(f"{self.table} has no column(s) {', '.join(unknown)} (got {values})")

    def _wrong_width(self, row: Sequence[Any]) -> None:
        raise InvalidRowError(
            f"{self.table} rows have {self._width} values ({', '.join(self._names)}), "
            f"got {len(row)}: {tuple(row)!r:.300}"
        )

    def _raise_closed(self) -> None:
        raise RuntimeError(f"BatchWriter for {self.table} is closed")

    def log_columns(self, columns: Mapping[str, Any]) -> None:
        """Queue a columnar batch: column -> sequence / numpy / Arrow array, or a scalar
        to broadcast (e.g. the run id). The fast path for bulk: no per-row Python work.

        All or nothing: a value a column cannot hold, or a missing required value,
        raises :class:`InvalidRowError` naming the field, the value and its index,
        and no row of the batch is kept.
        """
        unknown = set(columns) - self._name_set
        if unknown:
            self._unknown_columns(columns)
        length = None
        for values in columns.values():
            if not is_scalar(values):
                n = len(values)
                if length is not None and n != length:
                    raise InvalidRowError(
                        f"log_columns({self.table}): columns have different lengths"
                    )
                length = n
        if length is None:
            length = 1  # all scalars: one row
        if length == 0:
            return
        if self._refusing:
            self._at_limit()
        arrays = [self._column(rule, columns, length) for rule in self._rules]
        table = self._with_recorded_at(pa.Table.from_arrays(arrays, schema=self.schema))
        with self._seal_lock:
            self._seal_holding_seal_lock()  # keep this thread's earlier rows ahead
            with self._lock:
                if self._closed:
                    self._raise_closed()
                self._rows_taken += length
                self._batches.append(Batch(table, time.monotonic(), self._new_token()))
                self._batch_rows += table.num_rows
                first = len(self._batches) == 1
                full = self._batch_rows >= self.max_rows
        if first:
            self._wake.set()
        if full:
            self._on_full()

    def _column(self, rule: ColumnRule, columns: Mapping[str, Any], length: int) -> pa.Array:
        field = rule.field
        if field.name not in columns:
            array = pa.nulls(length, field.type)
        else:
            array = column_to_arrow(columns[field.name], rule, length)
        if array.null_count and not rule.may_be_none:
            if rule.default is None:
                index = pc.index(pc.is_null(array), True).as_py()
                raise InvalidRowError(
                    f"{rule.label}: required, no value given (got None at index {index})"
                )
            array = pc.fill_null(array, pa.scalar(rule.default, field.type))
        return array

    # ------------------------------------------------------------------ public control
    def flush(self) -> bool:
        """Insert everything queued now (spooled files first); True when nothing is left.

        Ignores the retry backoff (not the probe: while the server is unreachable no
        INSERT is tried). A failure does not raise: the rows are in spool files
        (durable), ``last_error`` says why, and the background thread keeps retrying;
        rows the spool could not take either are counted by ``memory_rows``
        (``spool_error`` in :meth:`stats` says why) and ``close()`` raises for them.
        """
        self._seal()
        return self._flush(force=True)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush and stop; True when every row landed in the database.

        Retries failed inserts until ``timeout`` seconds have passed; whatever is
        still queued then is written to ``spool_dir`` and replayed by the next
        writer for this table, and close returns False.

        Raises :class:`RowsNotStoredError`, with their count, when rows could be
        neither inserted nor spooled (they are only in memory, lost at exit).
        Raises :class:`RowsRejectedError` (after everything else is stored or
        spooled) when any row was rejected at sealing: rows are checked when logged,
        so that means a value passed the checks but not Arrow's conversion.
        """
        with self._lock:
            already = self._closed
            self._closed = True
        done = (not self.pending_rows) if already else self._close(timeout)
        held = self.memory_rows
        if held:
            rejected = f"; {self._rows_rejected} more rejected" if self._rows_rejected else ""
            raise self._not_stored(held, f"were logged but not kept{rejected}")
        if self._rows_rejected:
            raise RowsRejectedError(
                f"BatchWriter({self.table}) rejected {self._rows_rejected} row(s) that were "
                f"logged but could not be stored; the first: {self._first_rejection}"
            )
        return done

    def _close(self, timeout: float) -> bool:
        with contextlib.suppress(Exception):
            atexit.unregister(self._at_exit)
        try:
            self._seal()
        except Exception:
            logger.exception(
                "BatchWriter(%s): %d row(s) logged since the last batch could not be "
                "converted and are lost",
                self.table,
                len(self._columns[0]),
            )
        return self._drain(timeout)

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except RowsNotStoredError as err:
            if exc is None or isinstance(exc, RowsNotStoredError):
                raise
            if not isinstance(exc, Exception):  # Ctrl-C, SIGTERM: that stays the cause
                logger.error("%s (closing after %r)", err, exc)
                return
            raise RowsNotStoredError(
                f"{err} (the block had raised {type(exc).__name__}: {exc})",
                table=err.table,
                rows=err.rows,
            ) from exc
        except RowsRejectedError:
            if exc is None:
                raise
            logger.exception("BatchWriter(%s): closing after %r", self.table, exc)

    # ------------------------------------------------------------------ stats
    @property
    def rows_logged(self) -> int:
        """Rows accepted by log/log_row/log_columns (rows refused there not included)."""
        with self._lock:
            return self._rows_taken + len(self._columns[0])

    @property
    def rows_rejected(self) -> int:
        """Accepted rows that could not be converted at sealing (close() raises for them)."""
        return self._rows_rejected

    def stats(self) -> dict[str, Any]:
        """All counters at once, e.g. for a progress line."""
        return {
            "rows_logged": self.rows_logged,
            "rows_flushed": self.rows_flushed,
            "rows_rejected": self.rows_rejected,
            "flush_count": self.flush_count,
            "pending_rows": self.pending_rows,
            "memory_rows": self.memory_rows,
            "spooled_files": self.spooled_files,
            "spooled_rows": self.spooled_rows,
            "last_error": repr(self._last_error) if self._last_error else None,
            "spool_error": repr(self._spool_error) if self._spool_error else None,
        }

    def __repr__(self) -> str:
        return (
            f"BatchWriter({self.table!r}, logged={self.rows_logged}, "
            f"flushed={self._rows_flushed}, pending={self.pending_rows}, "
            f"spooled_files={self.spooled_files}, rejected={self._rows_rejected})"
        )

    # ------------------------------------------------------------------ sealing
    def _seal(self) -> None:
        """Turn the open rows into an Arrow batch at the end of the queue."""
        with self._seal_lock:
            self._seal_holding_seal_lock()

    def _seal_holding_seal_lock(self) -> None:
        # Take the columns under _lock, convert outside it (other threads keep
        # logging), append the batch under _lock; _seal_lock keeps batches in order.
        with self._lock:
            n = len(self._columns[0])
            if not n:
                return
            data = [column[:] for column in self._columns]
            for column in self._columns:
                column.clear()  # the same lists: the compiled appenders hold their append
            first_at = self._rows_first_at or time.monotonic()
            self._rows_first_at = None
            self._rows_taken += n
            self._sealing_rows = n
        try:
            table = self._columns_to_table(data)
        except BaseException:
            # Not a bad value (those are rejected row by row) but e.g. an import
            # failing at shutdown: put the rows back, in front, and report.
            with self._lock:
                for column, taken in zip(self._columns, data, strict=True):
                    column[:0] = taken
                self._rows_taken -= n
                self._sealing_rows = 0
                self._rows_first_at = first_at
            raise
        with self._lock:
            self._sealing_rows = 0
            if table.num_rows:
                self._batches.append(Batch(table, first_at, self._new_token()))
                self._batch_rows += table.num_rows

    def _columns_to_table(self, data: list[list[Any]]) -> pa.Table:
        try:
            table = self._to_table(data)
        except _CONVERSION_ERRORS:
            return self._rows_to_table_one_by_one(list(zip(*data, strict=True)))
        return self._with_recorded_at(table)

    def _to_table(self, data: list[list[Any]]) -> pa.Table:
        table = pa.Table.from_arrays(
            [values_to_arrow(data[i], f) for i, f in enumerate(self.schema)], schema=self.schema
        )
        for name in self._required:
            if table.column(name).null_count:
                raise ValueError(f"{self.table}.{name}: required, no value given")
        return table

    def _rows_to_table_one_by_one(self, rows: list[Any]) -> pa.Table:
        """Slow path after a conversion error: keep the good rows, reject the bad ones.

        The checks in log() make this a safety net (a type without a fast check, or a
        bug): the rejected rows are counted and close() raises for them."""
        good: list[pa.Table] = []
        for row in rows:
            try:
                good.append(self._to_table([[value] for value in row]))
            except _CONVERSION_ERRORS as e:
                self._reject(f"{e} in row {row!r:.300}")
        if not good:
            return self.schema.empty_table()
        return self._with_recorded_at(pa.concat_tables(good))

    def _with_recorded_at(self, table: pa.Table) -> pa.Table:
        """Fill ``recorded_at`` left out with now, in one Arrow call (building 1M
        datetime objects first took 0.25 s)."""
        if self._has_recorded_at:
            i = table.schema.get_field_index(RECORDED_AT)
            col = table.column(i)
            if col.null_count:
                filled = pc.fill_null(col, pa.scalar(_utc_now(), type=col.type))
                table = table.set_column(i, table.schema.field(i), filled)
        return table

    def _reject(self, reason: str) -> None:
        with self._lock:
            self._rows_rejected += 1
            self._first_rejection = self._first_rejection or reason
        logger.error("BatchWriter(%s) rejected a row: %s", self.table, reason)

    # ------------------------------------------------------------------ flushing
    def _on_full(self) -> None:
        """The logging thread sealed a full batch: flush now (back-pressure) unless the
        database is failing, in which case the batch goes to the spool (write-ahead)."""
        self._seal()
        self._make_room(self.max_buffered_rows)
        if self.memory_rows > self.max_buffered_rows:
            self._wait_for_room()

    def _wait_for_room(self) -> None:
        """Back-pressure when rows can be neither inserted nor spooled: block the
        logging thread up to ``block_seconds`` while the background thread retries,
        then raise and refuse rows (:meth:`_at_limit`) until memory is back in bounds."""
        deadline = time.monotonic() + self.block_seconds
        while (held := self.memory_rows) > self.max_buffered_rows:
            left = deadline - time.monotonic()
            if left <= 0:
                self._refusing = True
                raise self._not_stored(
                    held,
                    f"held in memory, over max_buffered_rows={self.max_buffered_rows:,} "
                    f"for {self.block_seconds:g}s; log() refuses rows until they can be kept",
                )
            time.sleep(min(0.1, left))

    def _at_limit(self) -> None:
        """log()'s gate while refusing: pass again once there is room."""
        held = self.memory_rows
        if held <= self.max_buffered_rows:
            self._refusing = False
            return
        raise self._not_stored(
            held, f"held in memory, over max_buffered_rows={self.max_buffered_rows:,}; row refused"
        )

    def _at_exit(self) -> None:
        try:
            self.close()
        except Exception:
            logger.exception("BatchWriter(%s): flush at exit failed", self.table)


def _inline_check(i: int, rule: ColumnRule) -> str:
    """The source of column ``i``'s check in the compiled appenders."""
    v = f"v{i}"
    if rule.fast is None:
        if rule.may_be_none:
            return f"    if {v} is not None:\n        {v} = c{i}({v})\n"
        return f"    {v} = c{i}({v})\n"
    test = f"{v}.__class__ is not t{i}"
    if rule.low is not None:
        test += f" or not {rule.low!r} <= {v}"
    if rule.high is not None:
        test += f" or not {v} <= {rule.high!r}"
    if rule.may_be_none:
        test = f"{v} is not None and ({test})"
    return f"    if {test}:\n        {v} = c{i}({v})\n"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def training_metrics_writer(db: Database, **kwargs: Any) -> BatchWriter:
    """A :class:`BatchWriter` for ``training_metrics``."""
    return BatchWriter(db, TrainingMetric.__tablename__, TRAINING_METRICS_SCHEMA, **kwargs)


def reward_history_writer(db: Database, **kwargs: Any) -> BatchWriter:
    """A :class:`BatchWriter` for ``reward_history``."""
    return BatchWriter(db, RewardStep.__tablename__, REWARD_HISTORY_SCHEMA, **kwargs)


__all__ = [
    "REWARD_HISTORY_SCHEMA",
    "TRAINING_METRICS_SCHEMA",
    "UUID_ARROW_TYPE",
    "BatchWriter",
    "InvalidRowError",
    "RowsNotStoredError",
    "RowsRejectedError",
    "arrow_schema",
    "reward_history_writer",
    "training_metrics_writer",
]
