"""Buffered, columnar, never-losing writer for the high-volume series tables.

``training_metrics`` and ``reward_history`` receive millions of rows per run, one
per iteration or environment step. A single-row INSERT into MergeTree costs
milliseconds and makes a part per row, so trainers never insert directly: they
``log()`` rows into a :class:`BatchWriter`, which buffers them cheaply and writes
them as one columnar Arrow INSERT per batch.

Why the design is what it is:

* **Cheap per row.** ``log()``/``log_row()`` take a lock and append each value
  to its column's list (code generated per schema, no loop, no per-row object
  kept). Conversion to Arrow happens once per batch ("sealing").
  ``log_columns()`` takes whole numpy/Arrow columns: the fast path for bulk.
* **Flushes** happen at ``max_rows`` (in the logging thread, which gives
  back-pressure), ``max_seconds`` after the oldest unflushed row (a daemon
  thread), on ``flush()``/``close()``, and at interpreter exit (``atexit``).
* **Never drop rows.** A failed insert leaves its batches queued, in order; they
  are retried with exponential backoff. Past ``max_buffered_rows`` the oldest
  batches go to Arrow IPC files in ``spool_dir`` (written to a temporary name
  and renamed, so a file is either complete or absent). Spooled files are
  replayed first, in order, and deleted only after their insert succeeded; a new
  writer for the same table replays files a crashed process left behind.
* **Exactly once as readers see it.** Both tables are ReplacingMergeTree on
  their natural key, read with ``FINAL``; a retried batch that partially landed,
  or a spool file replayed twice, only re-inserts identical rows. A batch is
  sealed once, so retries carry the same ``recorded_at`` (the version and the
  partition key) as the first attempt, which is what makes the duplicates
  collapse.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_sqlalchemy import types as ch
from sqlalchemy.types import TypeEngine

from suho_models.db.database import Database
from suho_models.rl import RewardStep
from suho_models.settings import get_settings
from suho_models.supervised import TrainingMetric

logger = logging.getLogger(__name__)

_UUID_AS_STRING = not hasattr(pa, "uuid")  # pyarrow < 18 has no arrow.uuid type
UUID_ARROW_TYPE: pa.DataType = pa.string() if _UUID_AS_STRING else pa.uuid()
"""Arrow type for ClickHouse ``UUID``.

Measured on chdb-core 26.9 / pyarrow 26: the canonical ``arrow.uuid`` extension
type (16 bytes) is accepted by both insert paths (embedded Arrow format, and
clickhouse-driver via ``to_pylist`` -> ``uuid.UUID``) and inserts 1M rows about
2.4x faster embedded than 36-character strings. Plain ``fixed_size_binary(16)``
works embedded but not on the native path (``to_pylist`` gives ``bytes``).
"""

RECORDED_AT = "recorded_at"
_SPOOL_SUFFIX = ".arrow"
_SPOOL_NAME = re.compile(r"^(\d{20})-(\d+)-(\d{6})-(\d+)r\.arrow$")
_TMP_NAME = re.compile(r"^\.(.+)\.(\d+)\.tmp$")
_IDLE_WAIT_S = 1.0


# --------------------------------------------------------------------------- schemas
def _arrow_type(type_: TypeEngine) -> tuple[pa.DataType, bool]:
    """(Arrow type, nullable) for a clickhouse-sqlalchemy column type."""
    if isinstance(type_, ch.Nullable):
        inner, _ = _arrow_type(_instance(type_.nested_type))
        return inner, True
    if isinstance(type_, ch.LowCardinality):
        return _arrow_type(_instance(type_.nested_type))
    if isinstance(type_, ch.UUID):
        return UUID_ARROW_TYPE, False
    if isinstance(type_, ch.DateTime64):
        precision = type_.precision if type_.precision is not None else 3
        unit = {0: "s", 3: "ms", 6: "us", 9: "ns"}.get(precision)
        if unit is None:
            raise TypeError(f"no Arrow unit for DateTime64({precision})")
        return pa.timestamp(unit, tz=type_.timezone or "UTC"), False
    if isinstance(type_, ch.Array):
        inner, _ = _arrow_type(_instance(type_.item_type))
        return pa.list_(inner), False
    simple = {
        ch.UInt8: pa.uint8(),
        ch.UInt16: pa.uint16(),
        ch.UInt32: pa.uint32(),
        ch.UInt64: pa.uint64(),
        ch.Int8: pa.int8(),
        ch.Int16: pa.int16(),
        ch.Int32: pa.int32(),
        ch.Int64: pa.int64(),
        ch.Float32: pa.float32(),
        ch.Float64: pa.float64(),
        ch.String: pa.string(),
    }
    for cls, arrow in simple.items():
        if type(type_) is cls:
            return arrow, False
    raise TypeError(f"no Arrow type for ClickHouse type {type_!r}")


def _instance(type_: TypeEngine | type[TypeEngine]) -> TypeEngine:
    return type_() if isinstance(type_, type) else type_


def arrow_schema(model: type) -> pa.Schema:
    """The Arrow schema of a model's table, column order as declared.

    ``Nullable(T)`` columns are nullable fields; all others are not, and a row
    with no value for them (other than ``recorded_at``) is rejected at sealing.
    """
    fields = []
    for column in model.__table__.columns:
        arrow, nullable = _arrow_type(column.type)
        fields.append(pa.field(column.name, arrow, nullable=nullable))
    return pa.schema(fields)


TRAINING_METRICS_SCHEMA: pa.Schema = arrow_schema(TrainingMetric)
"""``training_metrics``: run_id uuid, iteration_number uint32, six nullable float64
metrics, iteration_duration_ms float64, recorded_at timestamp[ms, UTC]."""

REWARD_HISTORY_SCHEMA: pa.Schema = arrow_schema(RewardStep)
"""``reward_history``: run_id uuid, episode_number uint32, timestep_number uint64,
float64 rewards, nullable float64 extras, is_episode_end uint8, recorded_at."""


# --------------------------------------------------------------------------- conversion
def _uuid_value(value: Any) -> Any:
    """One UUID-ish value (UUID, str, 16 bytes) in the storage form of UUID_ARROW_TYPE."""
    if value is None:
        return None
    if not isinstance(value, uuid.UUID):
        if isinstance(value, bytes | bytearray) and len(value) == 16:
            value = uuid.UUID(bytes=bytes(value))
        else:
            value = uuid.UUID(str(value))
    return str(value) if _UUID_AS_STRING else value.bytes


def _uuid_array(values: Sequence[Any]) -> pa.Array:
    """UUID column from Python values; runs have few distinct ids, so convert each once.

    Deduplicated by object identity (C-speed ``id``; ``UUID.__hash__`` is Python code).
    """
    ids = list(map(id, values))
    storage_type = pa.string() if _UUID_AS_STRING else pa.binary(16)
    if ids and values[0] is not None and ids.count(ids[0]) == len(ids):
        # One logger's rows: the same UUID object throughout (3x less sealing time).
        one = pa.array([_uuid_value(values[0])], storage_type)
        storage = one.take(pa.array(np.zeros(len(ids), dtype=np.int64)))
    else:
        mapping = {i: _uuid_value(v) for i, v in dict(zip(ids, values, strict=True)).items()}
        storage = pa.array(list(map(mapping.__getitem__, ids)), storage_type)
    if _UUID_AS_STRING:
        return storage
    return pa.ExtensionArray.from_storage(UUID_ARROW_TYPE, storage)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(
        value, str | bytes | uuid.UUID | int | float | dt.datetime | np.generic
    )


def _column_to_arrow(values: Any, field: pa.Field, length: int | None) -> pa.Array:
    """A whole column (Arrow, numpy, pandas, list, or a scalar to broadcast) as ``field.type``."""
    target = field.type
    if _is_scalar(values):
        one = _column_to_arrow([values], field, 1)
        return one.take(pa.array(np.zeros(length or 0, dtype=np.int64)))
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if values.type == target:
            return values
        if target == UUID_ARROW_TYPE and not _UUID_AS_STRING:
            if values.type == pa.binary(16):
                return pa.ExtensionArray.from_storage(UUID_ARROW_TYPE, values)
            return _uuid_array(values.to_pylist())
        return _cast(values, target)
    if target == UUID_ARROW_TYPE:
        return _uuid_array(list(values))
    if hasattr(values, "__arrow_array__") or type(values).__module__.startswith("pandas"):
        # pandas: NaN stays NaN and only a missing value (None, pd.NA, NaT) is NULL.
        return _cast(pa.array(values, from_pandas=False), target)
    if isinstance(values, np.ndarray) and values.dtype != object:
        return _cast(pa.array(values, from_pandas=False), target)
    return pa.array(list(values), type=target, from_pandas=False)


def _cast(array: pa.Array, target: pa.DataType) -> pa.Array:
    if array.type == target:
        return array
    if pa.types.is_timestamp(target) and pa.types.is_timestamp(array.type):
        # Finer clocks (ns from numpy) truncate to the column's precision.
        return array.cast(target, safe=False)
    return array.cast(target)


class _Batch:
    """A sealed, immutable Arrow batch waiting in memory for its insert."""

    __slots__ = ("table", "rows", "logged_at")

    def __init__(self, table: pa.Table, logged_at: float) -> None:
        self.table = table
        self.rows = table.num_rows
        self.logged_at = logged_at


# --------------------------------------------------------------------------- writer
class BatchWriter:
    """Buffers rows for one table and writes them as columnar Arrow INSERTs.

    Thread-safe: any number of threads may log concurrently. Use as a context
    manager (or call :meth:`close`) so the last rows are flushed; an unclosed
    writer still flushes at interpreter exit.
    """

    def __init__(
        self,
        db: Database,
        table: str,
        schema: pa.Schema,
        *,
        max_rows: int = 50_000,
        max_seconds: float = 2.0,
        max_buffered_rows: int = 1_000_000,
        spool_dir: Path | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        if max_rows < 1 or max_buffered_rows < 1:
            raise ValueError("max_rows and max_buffered_rows must be positive")
        self.db = db
        self.table = table
        self.schema = schema
        self.max_rows = min(max_rows, max_buffered_rows)
        self.max_seconds = max_seconds
        self.max_buffered_rows = max_buffered_rows
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.spool_dir = Path(
            spool_dir
            if spool_dir is not None
            else get_settings().data_dir / "spool" / db.store_key / table
        ).resolve()

        self._names = tuple(schema.names)
        self._name_set = frozenset(self._names)
        self._width = len(self._names)
        self._has_recorded_at = RECORDED_AT in self._name_set
        self._required = tuple(f.name for f in schema if not f.nullable and f.name != RECORDED_AT)

        # Guarded by _lock, which is held only for list operations, never for I/O.
        self._lock = threading.Lock()
        # Open rows, one list per column. Values are mostly atomic (float, int,
        # str, one shared UUID), so buffering creates no GC-tracked object per row;
        # a list of row dicts made the cyclic GC cost more than the append itself.
        self._columns: list[list[Any]] = [[] for _ in self._names]
        self._rows_first_at: float | None = None
        self._batches: deque[_Batch] = deque()
        self._batch_rows = 0
        self._spool: deque[tuple[Path, int]] = deque()
        self._spool_rows = 0
        self._closed = False
        self._rows_taken = 0  # rows that left the queue, plus log_columns rows
        self._rows_flushed = 0
        self._rows_rejected = 0
        self._flush_count = 0
        self._failures = 0
        self._retry_at = 0.0
        self._last_error: BaseException | None = None

        self._sealing_rows = 0  # rows being converted outside _lock
        self._seal_lock = threading.Lock()  # batches enter the queue in logging order
        self._flush_lock = threading.Lock()  # one insert loop at a time
        self._spool_lock = threading.Lock()  # spool files are written in order
        self._spool_seq = 0
        self._wake = threading.Event()
        self._stop = threading.Event()

        self.log, self.log_row = self._compile_appenders()  # type: ignore[method-assign]
        self._warm_up()
        self._adopt_spool_leftovers()
        self._thread = threading.Thread(target=self._run, name=f"batch-writer-{table}", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    # ------------------------------------------------------------------ logging
    # log() and log_row() below are the reference implementation; each instance
    # replaces them with equivalents compiled for its schema (_compile_appenders),
    # which append to each column without a loop.
    def log(self, **row: Any) -> None:
        """Queue one row given by column name; missing Nullable columns become NULL."""
        if not self._name_set.issuperset(row):
            self._unknown_columns(row)
        with self._lock:
            if self._closed:
                self._raise_closed()
            for column, name in zip(self._columns, self._names, strict=True):
                column.append(row.get(name))
            n = len(self._columns[0])
            if n == 1:
                self._rows_first_at = time.monotonic()
        if n == 1:
            self._wake.set()
        if n >= self.max_rows:
            self._on_full()

    def log_row(self, row: Sequence[Any]) -> None:
        """Queue one row as a tuple in schema column order (``None`` for NULL / default)."""
        if len(row) != self._width:
            self._wrong_width(row)
        with self._lock:
            if self._closed:
                self._raise_closed()
            for column, value in zip(self._columns, row, strict=True):
                column.append(value)
            n = len(self._columns[0])
            if n == 1:
                self._rows_first_at = time.monotonic()
        if n == 1:
            self._wake.set()
        if n >= self.max_rows:
            self._on_full()

    def _compile_appenders(self) -> tuple[Any, Any]:
        """log/log_row specialised to this schema: one bound ``append`` per column."""
        width = self._width
        namespace: dict[str, Any] = {f"a{i}": c.append for i, c in enumerate(self._columns)}
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
        by_name = "\n".join(f"        a{i}(get({n!r}))" for i, n in enumerate(self._names))
        by_position = "\n".join(f"        a{i}(v{i})" for i in range(width))
        unpack = "".join(f"v{i}, " for i in range(width))
        tail = """
        n = len(first)
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
    with lock:
        if writer._closed:
            writer._raise_closed()
{by_name}{tail}
def log_row(row):
    if len(row) != width:
        writer._wrong_width(row)
    {unpack}= row
    with lock:
        if writer._closed:
            writer._raise_closed()
{by_position}{tail}
"""
        exec(compile(source, f"<BatchWriter {self.table}>", "exec"), namespace)
        log, log_row = namespace["log"], namespace["log_row"]
        log.__doc__, log_row.__doc__ = BatchWriter.log.__doc__, BatchWriter.log_row.__doc__
        return log, log_row

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
        raise TypeError(f"{self.table} has no column(s) {', '.join(unknown)}")

    def _wrong_width(self, row: Sequence[Any]) -> None:
        raise ValueError(
            f"{self.table} rows have {self._width} values ({', '.join(self._names)}), "
            f"got {len(row)}"
        )

    def _raise_closed(self) -> None:
        raise RuntimeError(f"BatchWriter for {self.table} is closed")

    def log_columns(self, columns: Mapping[str, Any]) -> None:
        """Queue a columnar batch: column -> sequence / numpy / Arrow array, or a scalar
        to broadcast (e.g. the run id). The fast path for bulk: no per-row Python work.
        """
        unknown = set(columns) - self._name_set
        if unknown:
            raise TypeError(f"{self.table} has no column(s) {', '.join(sorted(unknown))}")
        length = None
        for values in columns.values():
            if not _is_scalar(values):
                n = len(values)
                if length is not None and n != length:
                    raise ValueError("log_columns: columns have different lengths")
                length = n
        if length is None:
            length = 1  # all scalars: one row
        if length == 0:
            return
        arrays = []
        for field in self.schema:
            if field.name in columns:
                arrays.append(_column_to_arrow(columns[field.name], field, length))
            else:
                arrays.append(pa.nulls(length, field.type))
        table = self._validated(pa.Table.from_arrays(arrays, schema=self.schema), _utc_now())
        with self._seal_lock:
            self._seal_holding_seal_lock()  # keep this thread's earlier rows ahead
            with self._lock:
                if self._closed:
                    raise RuntimeError(f"BatchWriter for {self.table} is closed")
                self._rows_taken += length
                if table.num_rows:
                    self._batches.append(_Batch(table, time.monotonic()))
                    self._batch_rows += table.num_rows
                first = len(self._batches) == 1
                full = self._batch_rows >= self.max_rows
        if first:
            self._wake.set()
        if full:
            self._on_full()

    # ------------------------------------------------------------------ public control
    def flush(self) -> bool:
        """Insert everything queued now (spooled files first); True when nothing is left.

        Ignores the retry backoff. A failure does not raise: the rows stay queued,
        ``last_error`` says why, and the background thread keeps retrying.
        """
        self._seal()
        return self._flush(force=True)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush and stop; True when every row landed in the database.

        Retries failed inserts until ``timeout`` seconds have passed; whatever is
        still queued then is written to ``spool_dir`` (never lost) and replayed
        by the next writer for this table.
        """
        with self._lock:
            if self._closed:
                return not self._batches and not self._spool
            self._closed = True
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
            self._spool_memory(keep_rows=0)
            with self._lock:
                files, rows = len(self._spool), self._spool_rows
            logger.warning(
                "BatchWriter(%s) closed with %d rows not inserted (%s); they are in %d "
                "spool file(s) under %s and will be replayed by the next writer for %s",
                self.table,
                rows,
                self._last_error,
                files,
                self.spool_dir,
                self.table,
            )
        return done

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ stats
    @property
    def rows_logged(self) -> int:
        """Rows accepted by log/log_row/log_columns (rejected rows included)."""
        with self._lock:
            return self._rows_taken + len(self._columns[0])

    @property
    def rows_flushed(self) -> int:
        """Rows whose INSERT succeeded (replayed spool rows included)."""
        return self._rows_flushed

    @property
    def rows_rejected(self) -> int:
        """Rows dropped at sealing because they could not be converted (logged as errors)."""
        return self._rows_rejected

    @property
    def flush_count(self) -> int:
        """Successful INSERT statements."""
        return self._flush_count

    @property
    def pending_rows(self) -> int:
        """Rows queued in memory or in spool files, not yet inserted."""
        with self._lock:
            open_rows = len(self._columns[0])
            return open_rows + self._sealing_rows + self._batch_rows + self._spool_rows

    @property
    def spooled_files(self) -> int:
        """Spool files waiting to be replayed."""
        return len(self._spool)

    @property
    def spooled_rows(self) -> int:
        """Rows in those spool files."""
        return self._spool_rows

    @property
    def last_error(self) -> BaseException | None:
        """The most recent insert failure (kept after recovery, for diagnostics)."""
        return self._last_error

    def stats(self) -> dict[str, Any]:
        """All counters at once, e.g. for a progress line."""
        return {
            "rows_logged": self.rows_logged,
            "rows_flushed": self.rows_flushed,
            "rows_rejected": self.rows_rejected,
            "flush_count": self.flush_count,
            "pending_rows": self.pending_rows,
            "spooled_files": self.spooled_files,
            "spooled_rows": self.spooled_rows,
            "last_error": repr(self._last_error) if self._last_error else None,
        }

    def __repr__(self) -> str:
        return (
            f"BatchWriter({self.table!r}, logged={self.rows_logged}, "
            f"flushed={self._rows_flushed}, pending={self.pending_rows}, "
            f"spooled_files={self.spooled_files})"
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
                self._batches.append(_Batch(table, first_at))
                self._batch_rows += table.num_rows

    def _columns_to_table(self, data: list[list[Any]]) -> pa.Table:
        now = _utc_now()
        try:
            table = pa.Table.from_arrays(
                [self._values_to_arrow(data[i], f) for i, f in enumerate(self.schema)],
                schema=self.schema,
            )
        except (pa.ArrowException, ValueError, TypeError, OverflowError, AttributeError):
            return self._rows_to_table_one_by_one(list(zip(*data, strict=True)), now)
        return self._validated(table, now)

    def _values_to_arrow(self, values: list[Any], field: pa.Field) -> pa.Array:
        if field.type == UUID_ARROW_TYPE:
            return _uuid_array(values)
        # recorded_at left out stays NULL here; _validated fills it in one Arrow call
        # (building 1M datetime objects first took 0.25 s).
        return pa.array(values, type=field.type, from_pandas=False)

    def _rows_to_table_one_by_one(self, rows: list[Any], now: dt.datetime) -> pa.Table:
        """Slow path after a conversion error: keep the good rows, reject the bad ones."""
        good: list[pa.Table] = []
        first_error: Exception | None = None
        for row in rows:
            try:
                columns = [[value] for value in row]
                good.append(
                    pa.Table.from_arrays(
                        [self._values_to_arrow(columns[i], f) for i, f in enumerate(self.schema)],
                        schema=self.schema,
                    )
                )
            except (pa.ArrowException, ValueError, TypeError, OverflowError, AttributeError) as e:
                first_error = first_error or e
                self._reject(1, f"{e} in row {row!r}")
        if not good:
            return self.schema.empty_table()
        return self._validated(pa.concat_tables(good), now)

    def _validated(self, table: pa.Table, now: dt.datetime) -> pa.Table:
        """Fill ``recorded_at``; drop rows with NULL in a non-Nullable column."""
        if self._has_recorded_at:
            i = table.schema.get_field_index(RECORDED_AT)
            col = table.column(i)
            if col.null_count:
                filled = pc.fill_null(col, pa.scalar(now, type=col.type))
                table = table.set_column(i, table.schema.field(i), filled)
        bad = None
        for name in self._required:
            col = table.column(name)
            if col.null_count:
                nulls = pc.is_null(col)
                bad = nulls if bad is None else pc.or_(bad, nulls)
        if bad is None:
            return table
        n_bad = pc.sum(bad).as_py()
        missing = [n for n in self._required if table.column(n).null_count]
        self._reject(n_bad, f"no value for non-Nullable column(s) {', '.join(missing)}")
        return table.filter(pc.invert(bad))

    def _reject(self, rows: int, reason: str) -> None:
        with self._lock:
            self._rows_rejected += rows
        logger.error("BatchWriter(%s) rejected %d row(s): %s", self.table, rows, reason)

    # ------------------------------------------------------------------ flushing
    def _on_full(self) -> None:
        """The logging thread sealed a full batch: flush now (back-pressure) unless the
        database is failing, in which case keep memory bounded by spooling."""
        self._seal()
        with self._lock:
            over = self._batch_rows > self.max_buffered_rows
        if self._failures == 0:
            # Wait for another thread's flush only when memory is over its bound.
            if over:
                self._flush(force=False)
            elif self._flush_lock.acquire(blocking=False):
                try:
                    self._flush_locked(force=False)
                finally:
                    self._flush_lock.release()
        if self._batch_rows > self.max_buffered_rows:
            self._spool_memory(keep_rows=self.max_buffered_rows)

    def _flush(self, *, force: bool, lock_timeout: float = -1) -> bool:
        if not self._flush_lock.acquire(timeout=lock_timeout):
            return False
        try:
            return self._flush_locked(force=force)
        finally:
            self._flush_lock.release()

    def _flush_locked(self, *, force: bool) -> bool:
        """Insert spool files, then the sealed memory batches as one INSERT.

        Returns True when nothing sealed is left. Never raises for database errors.
        """
        if not force and self._failures and time.monotonic() < self._retry_at:
            return False
        try:
            while True:
                with self._lock:
                    spooled = self._spool[0] if self._spool else None
                    batches = list(self._batches) if spooled is None else []
                if spooled is not None:
                    self._replay(*spooled)
                elif batches:
                    self._insert_batches(batches)
                else:
                    break
        except Exception as exc:
            self._on_failure(exc)
            if self._batch_rows > self.max_buffered_rows:
                self._spool_memory(keep_rows=self.max_buffered_rows)
            return False
        if self._failures:
            logger.info(
                "BatchWriter(%s): inserts work again after %d failed attempt(s)",
                self.table,
                self._failures,
            )
        self._failures = 0
        self._retry_at = 0.0
        return True

    def _insert_batches(self, batches: list[_Batch]) -> None:
        table = (
            batches[0].table if len(batches) == 1 else pa.concat_tables(b.table for b in batches)
        )
        self.db.insert_arrow(self.table, table)
        with self._lock:
            for batch in batches:
                # A batch spooled meanwhile (close under a hung insert) is no longer at
                # the front; its file replays later, a harmless duplicate under FINAL.
                if self._batches and self._batches[0] is batch:
                    self._batches.popleft()
                    self._batch_rows -= batch.rows
            self._rows_flushed += table.num_rows
            self._flush_count += 1

    def _replay(self, path: Path, rows: int) -> None:
        try:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_file(source).read_all()
        except FileNotFoundError:
            table = None  # another writer replayed it already
        except (pa.ArrowInvalid, OSError) as exc:
            bad = path.with_name(path.name + ".bad")
            with contextlib.suppress(OSError):
                path.rename(bad)
            logger.error(
                "BatchWriter(%s): unreadable spool file %s moved to %s: %s",
                self.table,
                path,
                bad,
                exc,
            )
            table = None
        if table is not None and table.num_rows:
            self.db.insert_arrow(self.table, table)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with self._lock:
            if self._spool and self._spool[0][0] == path:
                self._spool.popleft()
                self._spool_rows -= rows
            if table is not None:
                self._rows_flushed += table.num_rows
                self._flush_count += 1

    def _on_failure(self, exc: BaseException) -> None:
        self._failures += 1
        self._last_error = exc
        delay = self._backoff()
        self._retry_at = time.monotonic() + delay
        log = logger.warning if self._failures == 1 else logger.debug
        log(
            "BatchWriter(%s): insert failed (attempt %d), %d rows kept, retrying in %.1fs: %s",
            self.table,
            self._failures,
            self.pending_rows,
            delay,
            exc,
        )

    def _backoff(self) -> float:
        exponent = min(max(self._failures - 1, 0), 30)
        return min(self.retry_max, self.retry_initial * (2**exponent))

    # ------------------------------------------------------------------ spool
    def _spool_memory(self, *, keep_rows: int) -> None:
        """Move the oldest memory batches to spool files until at most ``keep_rows`` remain."""
        with self._spool_lock:
            while True:
                self._seal()
                with self._lock:
                    if self._batch_rows <= keep_rows or not self._batches:
                        return
                    batch = self._batches.popleft()
                    self._batch_rows -= batch.rows
                try:
                    path = self._write_spool_file(batch.table)
                except OSError as exc:
                    with self._lock:  # put it back: memory is better than nothing
                        self._batches.appendleft(batch)
                        self._batch_rows += batch.rows
                    logger.error(
                        "BatchWriter(%s): cannot spool to %s, keeping rows in memory: %s",
                        self.table,
                        self.spool_dir,
                        exc,
                    )
                    return
                with self._lock:
                    self._spool.append((path, batch.rows))
                    self._spool_rows += batch.rows

    def _write_spool_file(self, table: pa.Table) -> Path:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._spool_seq = (self._spool_seq + 1) % 1_000_000
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._spool_seq:06d}-{table.num_rows}r"
        path = self.spool_dir / (name + _SPOOL_SUFFIX)
        tmp = self.spool_dir / f".{path.name}.{os.getpid()}.tmp"
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
            fd = os.open(self.spool_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return path

    def _adopt_spool_leftovers(self) -> None:
        """Queue spool files from earlier (crashed or failed) writers, oldest first."""
        if not self.spool_dir.is_dir():
            return
        found = []
        for entry in self.spool_dir.iterdir():
            tmp = _TMP_NAME.match(entry.name)
            if tmp is not None:
                if not _pid_alive(int(tmp.group(2))):
                    with contextlib.suppress(OSError):
                        entry.unlink()  # an interrupted write: the batch was never acknowledged
                continue
            match = _SPOOL_NAME.match(entry.name)
            if match is not None:
                found.append((entry.name, entry, int(match.group(4))))
        found.sort()
        for _, path, rows in found:
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
        """Daemon loop: time-based flushes and retries with backoff."""
        while not self._stop.is_set():
            self._wake.wait(self._seconds_to_next_flush())
            self._wake.clear()
            if self._stop.is_set():
                return
            if self._seconds_to_next_flush() > 0:
                continue
            try:
                self._seal()
                self._flush(force=False)
            except Exception:  # never let the daemon die
                logger.exception("BatchWriter(%s): background flush crashed", self.table)

    def _seconds_to_next_flush(self) -> float:
        now = time.monotonic()
        with self._lock:
            open_rows = len(self._columns[0])
            if self._failures and (open_rows or self._batches or self._spool):
                return max(self._retry_at - now, 0.0)
            if self._spool:
                return 0.0
            oldest = None
            if self._batches:
                oldest = self._batches[0].logged_at
            elif open_rows:
                oldest = self._rows_first_at or now
        if oldest is None:
            return _IDLE_WAIT_S
        return min(max(oldest + self.max_seconds - now, 0.0), _IDLE_WAIT_S)

    def _at_exit(self) -> None:
        try:
            self.close()
        except Exception:
            logger.exception("BatchWriter(%s): flush at exit failed", self.table)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    "arrow_schema",
    "reward_history_writer",
    "training_metrics_writer",
]
