"""``run_metrics``: metrics of any name, written by a buffered columnar logger.

A training loop calls ``log({"loss": 0.41, "val_auc": 0.7}, step=i)`` hundreds of
thousands of times a second; a row per call through the
:class:`~repositories.batch_writer.BatchWriter`'s per-row path costs about 5 µs a
value. So :class:`RunMetricLogger` keeps each call as it came, ``(step, dict)`` in
one list (one C-level append, the dict copied), checks the values with a loop
that only looks at each value's class, and turns a full buffer into four Arrow
columns in one go (``itertools.chain`` over the dicts, no Python work per value).
The columns go to the BatchWriter's ``log_columns`` and are flushed at once, in a
background thread, so the logging thread only ever appends.

What a kill -9 loses: the values logged since the last *seal* (a buffer written
to the database, or to the writer's spool when the database fails). A seal happens
when ``max_values`` values are buffered, ``max_seconds`` after the first value of
a buffer, and on :meth:`RunMetricLogger.flush` / :meth:`RunMetricLogger.close`.
Memory is bounded: at most ``max_values`` open values and two buffers waiting
for the background thread; a logger that outruns the database waits.
"""

from __future__ import annotations

import math
import numbers
import queue
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import func

from repositories.arrow_schema import arrow_schema
from repositories.base import Repository
from repositories.batch_writer import BatchWriter
from repositories.errors import InvalidInputError, NotFoundError, as_uuid
from repositories.records import Record, UtcDatetime
from repositories.runs import AgentRunRepository, TrainingRunRepository
from suho_models import RunMetric
from suho_models.db import Database

RUN_METRICS_SCHEMA: pa.Schema = arrow_schema(RunMetric)
"""``run_metrics`` as Arrow columns (``key`` is LowCardinality(String) in the table)."""

MAX_KEY_LENGTH = 250
"""Longest metric name, in characters (W&B and MLflow allow about as much)."""

MAX_KEYS_PER_LOG = 1000
"""Most keys in one ``log`` call: a 10,000-key dict is a mistake (a tensor's elements
logged one by one), refused before it floods the table with one-off keys."""

MAX_STEP = 2**64 - 1

Sink = Callable[["LoggedCalls"], None]
"""Gets every sealed buffer too, after it is written (the copy into the seed's series)."""


class RunMetricPoint(Record):
    """One row of ``run_metrics`` (``run_id`` is the logger's, added when written)."""

    key: str
    step: int
    value: float
    recorded_at: UtcDatetime | None = None


class RunMetricSummary(Record):
    """One key of a run: how many steps it has, its last step and value there."""

    key: str
    count: int
    last_step: int
    last_value: float


def run_metrics_writer(db: Database, **kwargs: Any) -> BatchWriter:
    """A :class:`BatchWriter` for ``run_metrics``."""
    return BatchWriter(db, RunMetric.__tablename__, RUN_METRICS_SCHEMA, **kwargs)


# --------------------------------------------------------------------------- checks
def check_key(key: Any) -> str:
    """A metric name: a non-empty string of at most :data:`MAX_KEY_LENGTH` characters,
    without control characters."""
    if not isinstance(key, str):
        raise InvalidInputError(f"metric key: expected a string (got {key!r:.100})")
    if not key or not key.strip():
        raise InvalidInputError(f"metric key: must not be empty (got {key!r})")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInputError(
            f"metric key: at most {MAX_KEY_LENGTH} characters (got {len(key)}: {key[:60]!r}...)"
        )
    if not key.isprintable():
        raise InvalidInputError(f"metric key: control characters are not allowed (got {key!r})")
    return key


def check_value(key: str, value: Any) -> float:
    """A metric value as a float: int, float, bool, numpy scalars and one-element
    arrays or tensors (``.item()``). NaN and infinities are kept: a diverged loss
    is a training outcome (as in ``training_metrics``)."""
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)
    size = getattr(value, "size", None)
    size = size() if callable(size) else size
    numel = getattr(value, "numel", None)
    one = numel() == 1 if callable(numel) else size in (1, ())
    if callable(item) and one:
        try:
            scalar = item()
        except (TypeError, ValueError, RuntimeError):
            scalar = None
        if isinstance(scalar, numbers.Real):
            return float(scalar)
    raise InvalidInputError(
        f"metric {key!r}: expected a number (got {value!r:.100} of type {type(value).__name__})"
    )


def check_step(step: Any) -> int:
    """A step: an integer from 0 to 2**64-1 (numpy integers taken, bools and floats not)."""
    if isinstance(step, bool | np.bool_) or not isinstance(step, numbers.Integral):
        raise InvalidInputError(f"step: expected a non-negative integer (got {step!r:.100})")
    number = int(step)
    if not 0 <= number <= MAX_STEP:
        raise InvalidInputError(f"step: expected a non-negative integer (got {step!r})")
    return number


# --------------------------------------------------------------------------- logger
class RunMetricLogger:
    """Buffered logger of one run's metrics of any name; thread-safe.

    ``log`` refuses a bad call whole (naming the key and the value) before anything
    of it is kept. Without ``step`` a call takes the step after the previous call's.
    """

    def __init__(
        self,
        writer: BatchWriter,
        run_id: uuid.UUID,
        *,
        max_values: int = 100_000,
        max_seconds: float = 1.0,
        sink: Sink | None = None,
        first_step: int = 0,
    ) -> None:
        if max_values < 1 or not max_seconds > 0:
            raise InvalidInputError("max_values and max_seconds: expected positive values")
        self.writer = writer
        self.run_id = run_id
        self.max_values = max_values
        self.max_seconds = max_seconds
        self.sink = sink
        self.next_step = first_step
        self._known: set[str] = set()
        self._known_ge = self._known.issuperset
        self._buffer = LoggedCalls()
        self._lock = threading.Lock()
        self._sealed: queue.Queue[LoggedCalls | None] = queue.Queue(2)
        self._error: BaseException | None = None
        self._writing = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"run-metrics-{run_id}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ hot path
    def log(self, values: Mapping[str, Any], step: int | None = None) -> int:
        """Queue ``values`` at ``step`` (default: the next step); returns the step.

        The fast path makes no object per value: keys and values are appended to two
        flat lists (``extend``), after two C-level checks (every key seen before,
        every value a plain float or int); anything else (new keys, numpy scalars,
        tensors, bad values) takes :meth:`_checked`, which converts the values to
        floats or names the bad key or value.
        """
        if (
            values.__class__ is not dict
            or not self._known_ge(values)
            or not _plain_ge(map(type, values.values()))
        ):
            values = self._checked(values)
        n = len(values)
        if n > MAX_KEYS_PER_LOG:
            self._too_many(values)
        with self._lock:
            if self._closed:
                raise InvalidInputError(
                    f"run {self.run_id}: log after finish (got {values!r:.200})"
                )
            if step is None:
                step = self.next_step
            elif step.__class__ is not int or step < 0 or step > MAX_STEP:
                step = check_step(step)
            self.next_step = step + 1
            buffer = self._buffer
            buffer.keys.extend(values)
            buffer.values.extend(values.values())
            buffer.steps.append(step)
            buffer.lengths.append(n)
            full = len(buffer.keys) >= self.max_values
        if full:
            self._hand_off()
        return step

    def _too_many(self, values: Mapping[str, Any]) -> None:
        raise InvalidInputError(
            f"log: at most {MAX_KEYS_PER_LOG} keys per call (got {len(values)}, "
            f"the first {next(iter(values))!r})"
        )

    def _checked(self, values: Any) -> dict[str, float]:
        """The slow path: not a dict, new keys, or values that are not plain numbers."""
        if not isinstance(values, Mapping):
            raise InvalidInputError(
                f"log: expected a dict of metric name -> number (got {values!r:.100})"
            )
        if len(values) > MAX_KEYS_PER_LOG:
            self._too_many(values)
        out = {check_key(k): check_value(k, v) for k, v in values.items()}
        self._known.update(out)
        return out

    # ------------------------------------------------------------------ sealing
    def _hand_off(self) -> None:
        """Give the open buffer to the background thread (waits while two are queued)."""
        with self._lock:
            buffer, self._buffer = self._buffer, LoggedCalls()
        if buffer.steps:
            self._sealed.put(buffer)

    def _run(self) -> None:
        while True:
            try:
                buffer = self._sealed.get(timeout=self.max_seconds)
            except queue.Empty:
                with self._lock:
                    buffer, self._buffer = self._buffer, LoggedCalls()
                if buffer.steps:
                    self._write(buffer)
                continue
            try:
                if buffer is None:
                    return
                self._write(buffer)
            finally:
                self._sealed.task_done()

    def _write(self, buffer: LoggedCalls) -> None:
        with self._writing:
            self._write_now(buffer)

    def _write_now(self, buffer: LoggedCalls) -> None:
        try:
            self.writer.log_columns(buffer.columns(self.run_id))
            self.writer.flush()
            if self.sink is not None:
                self.sink(buffer)
        except BaseException as exc:  # noqa: BLE001 - raised in the logging thread
            self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(
                f"run {self.run_id}: metrics could not be written: {error}"
            ) from error

    # ------------------------------------------------------------------ control
    def flush(self) -> bool:
        """Seal everything logged so far and wait until it is written (or spooled);
        True when nothing is left in memory."""
        self._hand_off()
        self._sealed.join()
        with self._writing:  # a buffer the timer sealed may still be on its way
            pass
        self._raise_error()
        return self.writer.flush()

    def close(self) -> bool:
        """Flush, stop the background thread and close the writer; later logs are refused."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        self._hand_off()
        self._sealed.put(None)
        self._thread.join()
        self._raise_error()
        return self.writer.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def memory_rows(self) -> int:
        """Values neither inserted nor spooled (the open buffer's and the writer's)."""
        return len(self._buffer.keys) + self.writer.memory_rows

    def __enter__(self) -> RunMetricLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_plain_ge = frozenset({float, int}).issuperset


class LoggedCalls:
    """Logged calls, flat: every key and value in call order, a step and a length per call."""

    __slots__ = ("keys", "values", "steps", "lengths")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.values: list[Any] = []
        self.steps: list[int] = []
        self.lengths: list[int] = []

    def columns(self, run_id: uuid.UUID) -> dict[str, Any]:
        """The calls as ``run_metrics`` columns, without Python work per value: keys
        become dictionary codes, values a float64 array, steps repeated per call."""
        return columns_of(run_id, self.keys, self.values, self.steps, self.lengths)

    def calls(self, touching: frozenset[str]) -> list[tuple[int, dict[str, float]]]:
        """The calls that logged any of ``touching``, as (step, values); found without a
        Python loop when no key of the buffer is among them (the usual case)."""
        if touching.isdisjoint(self.keys):
            return []
        out = []
        position = 0
        for step, n in zip(self.steps, self.lengths, strict=True):
            end = position + n
            keys = self.keys[position:end]
            if not touching.isdisjoint(keys):
                values = [float(v) for v in self.values[position:end]]
                out.append((step, dict(zip(keys, values, strict=True))))
            position = end
        return out

    def columns_for(self, touching: frozenset[str]) -> tuple[list[int], dict[str, list[Any]]]:
        """``(steps, key -> values)`` of the calls that logged any of ``touching``, one
        value per call (None where a call did not log the key). When every call
        logged the same keys (the usual loop) the columns are slices of the flat
        values: no Python work per call."""
        if not self.steps or touching.isdisjoint(self.keys):
            return [], {}
        width = self.lengths[0]
        first = self.keys[:width]
        if width * len(self.lengths) == len(self.keys) and self.keys == first * len(self.lengths):
            columns = {k: self.values[j::width] for j, k in enumerate(first) if k in touching}
            return list(self.steps), columns
        calls = self.calls(touching)
        names: set[str] = set()
        for _, values in calls:
            names.update(values.keys() & touching)
        return [s for s, _ in calls], {k: [d.get(k) for _, d in calls] for k in sorted(names)}


def columns_of(
    run_id: uuid.UUID,
    keys: list[str],
    values: list[Any],
    steps: list[int],
    lengths: list[int],
) -> dict[str, Any]:
    """Flat keys/values and per-call steps/lengths as ``run_metrics`` columns."""
    first = keys[: lengths[0]]
    if len(first) * len(lengths) == len(keys) and keys == first * len(lengths):
        # Every call logged the same keys in the same order (the usual loop).
        names = pa.array(first, pa.string())
        codes = np.tile(np.arange(len(first), dtype=np.int32), len(lengths))
    else:
        codes_of = {key: code for code, key in enumerate(dict.fromkeys(keys))}
        codes = np.fromiter(map(codes_of.__getitem__, keys), dtype=np.int32, count=len(keys))
        names = pa.array(list(codes_of), pa.string())
    key_column = pa.DictionaryArray.from_arrays(codes, names).cast(pa.string())
    value_column = np.fromiter(values, dtype=np.float64, count=len(values))
    step_column = np.repeat(
        np.fromiter(steps, dtype=np.uint64, count=len(steps)),
        np.fromiter(lengths, dtype=np.int64, count=len(lengths)),
    )
    return {"run_id": run_id, "key": key_column, "step": step_column, "value": value_column}


# --------------------------------------------------------------------------- repository
class RunMetricRepository(Repository[RunMetricPoint]):
    """Reads and writes ``run_metrics`` for runs of either kind."""

    model = RunMetric
    record = RunMetricPoint

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._runs = (TrainingRunRepository(db), AgentRunRepository(db))

    def require_run(self, run_id: uuid.UUID | str) -> uuid.UUID:
        key = as_uuid(run_id, "run_id")
        if not any(repo.exists(key) for repo in self._runs):
            raise NotFoundError(f"no supervised or RL run with run_id {run_id}")
        return key

    def logger(
        self,
        run_id: uuid.UUID | str,
        *,
        sink: Sink | None = None,
        first_step: int = 0,
        **options: Any,
    ) -> RunMetricLogger:
        """A buffered logger for one run (``options``: max_values, max_seconds)."""
        key = self.require_run(run_id)
        return RunMetricLogger(
            run_metrics_writer(self.db), key, sink=sink, first_step=first_step, **options
        )

    def log_many(self, run_id: uuid.UUID | str, values: Mapping[str, Any], step: int) -> int:
        """Write one step's values now (all or nothing); returns the number written."""
        key = self.require_run(run_id)
        checked = {check_key(k): check_value(k, v) for k, v in values.items()}
        step = check_step(step)
        if not checked:
            return 0
        with run_metrics_writer(self.db) as writer:
            writer.log_columns(
                columns_of(key, list(checked), list(checked.values()), [step], [len(checked)])
            )
        return len(checked)

    def keys(self, run_id: uuid.UUID | str) -> list[RunMetricSummary]:
        """Every key of a run, with its step count, last step and the value there."""
        c = self.table.c
        query = self.read(
            c.run_id == as_uuid(run_id, "run_id"),
            columns=[
                c.key.label("key"),
                func.count().label("count"),
                func.max(c.step).label("last_step"),
                func.argMax(c.value, c.step).label("last_value"),
            ],
        )
        with self.db.engine.connect() as conn:
            rows = conn.execute(query.statement.group_by(c.key).order_by(c.key)).mappings()
        return [RunMetricSummary.model_validate(dict(r)) for r in rows]

    def series(self, run_id: uuid.UUID | str, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` of one key, in step order; a re-logged step read once."""
        c = self.table.c
        rows = (
            self.read(
                c.run_id == as_uuid(run_id, "run_id"),
                c.key == check_key(key),
                columns=[c.step, c.value],
            )
            .order_by(c.step)
            .rows()
        )
        return [(int(r["step"]), float(r["value"])) for r in rows]

    def by_step(self, run_id: uuid.UUID | str, prefix: str) -> dict[int, dict[str, float]]:
        """Every key starting with ``prefix`` in one read, as ``{step: {key without
        the prefix: value}}`` in step order (walk-forward folds: one step per fold)."""
        c = self.table.c
        rows = (
            self.read(
                c.run_id == as_uuid(run_id, "run_id"),
                func.startsWith(c.key, check_key(prefix)),
                columns=[c.step, c.key, c.value],
            )
            .order_by(c.step, c.key)
            .rows()
        )
        out: dict[int, dict[str, float]] = {}
        for r in rows:
            out.setdefault(int(r["step"]), {})[str(r["key"])[len(prefix) :]] = float(r["value"])
        return out

    def series_arrow(self, run_id: uuid.UUID | str, key: str) -> pa.Table:
        c = self.table.c
        return (
            self.read(
                c.run_id == as_uuid(run_id, "run_id"),
                c.key == check_key(key),
                columns=[c.step, c.value],
            )
            .order_by(c.step)
            .arrow()
        )

    def count(self, run_id: uuid.UUID | str) -> int:
        return self._count(self.table.c.run_id == as_uuid(run_id, "run_id"))

    def last_step(self, run_id: uuid.UUID | str) -> int | None:
        c = self.table.c
        value = self.read(
            c.run_id == as_uuid(run_id, "run_id"), columns=[func.maxOrNull(c.step)]
        ).scalar()
        return None if value is None else int(value)


def finite(value: float) -> float | None:
    """JSON has no NaN or infinity: None for those (UIs, ``--json``)."""
    return value if math.isfinite(value) else None


__all__ = [
    "MAX_KEYS_PER_LOG",
    "MAX_KEY_LENGTH",
    "RUN_METRICS_SCHEMA",
    "RunMetricLogger",
    "RunMetricPoint",
    "RunMetricRepository",
    "RunMetricSummary",
    "check_key",
    "check_step",
    "check_value",
    "columns_of",
    "finite",
    "run_metrics_writer",
]
