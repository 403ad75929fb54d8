"""The two high-volume series: per-iteration metrics and per-step rewards.

Writes go through a :class:`~repositories.batch_writer.BatchWriter` (one columnar
insert per batch); reads use FINAL, so an iteration or step logged twice (after a
resume) is read once.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import func

from repositories.base import Repository
from repositories.batch_writer import (
    TRAINING_METRICS_SCHEMA,
    BatchWriter,
    reward_history_writer,
    training_metrics_writer,
)
from repositories.errors import InvalidInputError, as_uuid, validate
from repositories.query import Query
from repositories.records import EpisodeSummary, MetricPoint, RewardPoint
from repositories.run_metrics import LoggedCalls
from repositories.runs import AgentRunRepository, TrainingRunRepository
from suho_models import RewardStep, TrainingMetric
from suho_models.db import Database

_MAX_UINT32 = 2**32 - 1
_NOT_METRICS = ("run_id", "iteration_number", "recorded_at")
_METRIC_COLUMNS = tuple(n for n in TRAINING_METRICS_SCHEMA.names if n not in _NOT_METRICS)
_METRIC_SET = frozenset(_METRIC_COLUMNS)
_METRIC_COLUMNS_GE = _METRIC_SET.issuperset
_PLAIN_GE = frozenset({float, int}).issuperset


def _non_negative(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInputError(f"{name}: must be a non-negative integer (got {value!r})")
    return value


def _write_all(writer: BatchWriter, run_id: uuid.UUID, records: list[Any]) -> int:
    """One columnar batch, checked as a whole before any row is queued."""
    with writer:
        if records:
            names = type(records[0]).model_fields
            writer.log_columns(
                {
                    "run_id": run_id,
                    **{name: [_stored(getattr(r, name)) for r in records] for name in names},
                }
            )
    return len(records)


def _stored(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


class MetricLogger:
    """Logs one run's iterations; the run was checked to exist when this was made.

    ``log`` is the hot path of training callbacks (the README's per-row API), so it
    keeps each call's keys and values in flat lists (no object per row, nothing for
    the garbage collector), after C-level checks (known columns, plain int/float
    values). ``max_rows`` of them, or ``max_seconds`` after the first,
    become one columnar batch of the writer (``log_columns``): about 5x cheaper per
    row than the writer's own per-row ``log``. Anything else (a datetime, a numpy
    value, an unknown column, a bad value) goes through the writer's ``log``, which
    converts it or raises naming the field and the value; earlier rows are sealed
    first, so the order is kept. What a kill -9 loses: rows not yet sealed, as
    with the writer.
    """

    def __init__(self, writer: BatchWriter, run_id: uuid.UUID) -> None:
        self.writer = writer
        self.run_id = run_id
        self._calls = LoggedCalls()
        self._lock = threading.Lock()
        self._seal_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._max_rows = writer.max_rows

    def log(self, iteration_number: int, **metrics: Any) -> None:
        """Queue one iteration; a bad value raises here, naming the field and the value
        (:class:`~repositories.batch_writer.InvalidRowError`)."""
        if (
            iteration_number.__class__ is not int
            or not 0 <= iteration_number <= _MAX_UINT32
            or not metrics
            or not _METRIC_COLUMNS_GE(metrics)
            or not _PLAIN_GE(map(type, metrics.values()))
        ):
            self._seal()
            self.writer.log(run_id=self.run_id, iteration_number=iteration_number, **metrics)
            return
        with self._lock:
            calls = self._calls
            calls.keys.extend(metrics)  # flat lists of atoms: nothing for the GC to track
            calls.values.extend(metrics.values())
            calls.steps.append(iteration_number)
            calls.lengths.append(len(metrics))
            n = len(calls.steps)
        if n == 1:
            self._start_timer()
        elif n >= self._max_rows:
            self._seal()

    def _start_timer(self) -> None:
        timer = threading.Timer(self.writer.max_seconds, self._seal)
        timer.daemon = True
        with self._lock:
            if self._timer is not None or not self._calls.steps:
                return
            self._timer = timer
        timer.start()

    def _seal(self) -> None:
        """The kept calls as one columnar batch of the writer."""
        with self._seal_lock:
            with self._lock:
                calls, self._calls = self._calls, LoggedCalls()
                timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
            if not calls.steps:
                return
            steps, columns = calls.columns_for(_METRIC_SET)
            iterations = np.fromiter(steps, np.uint32, len(steps))
            self.writer.log_columns(
                {"run_id": self.run_id, "iteration_number": iterations, **columns}
            )

    def flush(self) -> bool:
        self._seal()
        return self.writer.flush()

    @property
    def memory_rows(self) -> int:
        """Rows neither inserted nor spooled: the only ones a crash would lose."""
        return len(self._calls.steps) + self.writer.memory_rows

    def close(self) -> bool:
        self._seal()
        return self.writer.close()

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RewardLogger:
    """Logs one run's environment steps; the run was checked to exist."""

    def __init__(self, writer: BatchWriter, run_id: uuid.UUID) -> None:
        self.writer = writer
        self.run_id = run_id

    def log(self, episode_number: int, timestep_number: int, **values: Any) -> None:
        """Queue one step; a bad value raises here, naming the field and the value."""
        self.writer.log(
            run_id=self.run_id,
            episode_number=episode_number,
            timestep_number=timestep_number,
            **values,
        )

    def log_columns(self, columns: Mapping[str, Any]) -> None:
        """Queue many steps as columns (numpy / Arrow arrays); all or nothing, a bad value
        raises here naming the field, the value and its index."""
        self.writer.log_columns({"run_id": self.run_id, **columns})

    def flush(self) -> bool:
        return self.writer.flush()

    @property
    def memory_rows(self) -> int:
        """Rows neither inserted nor spooled: the only ones a crash would lose."""
        return self.writer.memory_rows

    def close(self) -> bool:
        return self.writer.close()

    def __enter__(self) -> RewardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TrainingMetricRepository(Repository[MetricPoint]):
    model = TrainingMetric
    record = MetricPoint

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.runs = TrainingRunRepository(db)

    def logger(self, run_id: uuid.UUID | str, **writer_options: Any) -> MetricLogger:
        """A buffered logger for one run (the hot path of training callbacks)."""
        key = self.runs.require(run_id)
        return MetricLogger(training_metrics_writer(self.db, **writer_options), key)

    def log_many(
        self, run_id: uuid.UUID | str, points: Iterable[MetricPoint | Mapping[str, Any]]
    ) -> int:
        """Validate and write a batch of points at once; returns the row count.

        All or nothing: one bad point raises, naming the field and the value, and no
        point of the batch is written."""
        records = [validate(MetricPoint, p) for p in points]
        key = self.runs.require(run_id)
        return _write_all(training_metrics_writer(self.db), key, records)

    def log_columns(self, run_id: uuid.UUID | str, columns: Mapping[str, Any]) -> None:
        """Write iterations given as columns (lists or numpy arrays, None = NULL) now;
        all or nothing, a bad value raises naming the field, the value and its index."""
        key = self.runs.require(run_id)
        with training_metrics_writer(self.db) as writer:
            writer.log_columns({"run_id": key, **columns})

    def learning_curve_query(self, run_id: uuid.UUID | str) -> Query:
        """What :meth:`learning_curve` and :meth:`learning_curve_arrow` send; its
        ``sql()`` is the statement as SQL text (benches measure exactly that)."""
        c = self.table.c
        return self.read(
            c.run_id == as_uuid(run_id, "run_id"), columns=self.record_columns(MetricPoint)
        ).order_by(c.iteration_number)

    def learning_curve(self, run_id: uuid.UUID | str) -> list[MetricPoint]:
        """Every iteration of a run, in order, one row per iteration."""
        return [MetricPoint.model_validate(r) for r in self.learning_curve_query(run_id).rows()]

    def learning_curve_arrow(self, run_id: uuid.UUID | str) -> pa.Table:
        """The same curve as Arrow columns (plots, large runs)."""
        return self.learning_curve_query(run_id).arrow()

    def count(self, run_id: uuid.UUID | str) -> int:
        return self._count(self.table.c.run_id == as_uuid(run_id, "run_id"))

    def delete_after(self, run_id: uuid.UUID | str, iteration_number: int) -> None:
        """Forget iterations past a checkpoint: a resumed run re-trains them, and
        readers must see only the final trajectory."""
        self.db.execute(
            "DELETE FROM training_metrics WHERE run_id = %(r)s AND iteration_number > %(i)s",
            {
                "r": as_uuid(run_id, "run_id"),
                "i": _non_negative("iteration_number", iteration_number),
            },
        )

    def last_iteration(self, run_id: uuid.UUID | str) -> int | None:
        c = self.table.c
        value = self.read(
            c.run_id == as_uuid(run_id, "run_id"), columns=[func.maxOrNull(c.iteration_number)]
        ).scalar()
        return None if value is None else int(value)


class RewardHistoryRepository(Repository[RewardPoint]):
    model = RewardStep
    record = RewardPoint

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.runs = AgentRunRepository(db)

    def logger(self, run_id: uuid.UUID | str, **writer_options: Any) -> RewardLogger:
        key = self.runs.require(run_id)
        return RewardLogger(reward_history_writer(self.db, **writer_options), key)

    def log_many(
        self, run_id: uuid.UUID | str, points: Iterable[RewardPoint | Mapping[str, Any]]
    ) -> int:
        """Validate and write a batch of steps at once (all or nothing); returns the count."""
        records = [validate(RewardPoint, p) for p in points]
        key = self.runs.require(run_id)
        return _write_all(reward_history_writer(self.db), key, records)

    def log_columns(self, run_id: uuid.UUID | str, columns: Mapping[str, Any]) -> None:
        """Write steps given as columns now (all or nothing, see ``log_many``)."""
        key = self.runs.require(run_id)
        with reward_history_writer(self.db) as writer:
            writer.log_columns({"run_id": key, **columns})

    def steps(
        self,
        run_id: uuid.UUID | str,
        episode_number: int | None = None,
        *,
        after_timestep: int | None = None,
        episode_ends_only: bool = False,
    ) -> list[RewardPoint]:
        """Steps of a run (or of one episode) in time order; ``after_timestep`` and
        ``episode_ends_only`` let an incremental reader (the MLflow mirror) fetch only
        what it has not seen, or the episode-end rows with their losses."""
        c = self.table.c
        where = [c.run_id == as_uuid(run_id, "run_id")]
        if episode_number is not None:
            where.append(c.episode_number == episode_number)
        if after_timestep is not None:
            where.append(c.timestep_number > _non_negative("after_timestep", after_timestep))
        if episode_ends_only:
            where.append(c.is_episode_end == 1)
        rows = self._select(
            *where, order_by=[c.timestep_number], columns=self.record_columns(RewardPoint)
        )
        return [RewardPoint.model_validate(dict(r)) for r in rows]

    def reward_curve(self, run_id: uuid.UUID | str) -> list[EpisodeSummary]:
        """One point per finished episode: its total reward and Sharpe ratio."""
        c = self.table.c
        rows = self._select(
            c.run_id == as_uuid(run_id, "run_id"),
            c.is_episode_end == 1,
            order_by=[c.episode_number],
            columns=self.record_columns(EpisodeSummary),
        )
        return [EpisodeSummary.model_validate(dict(r)) for r in rows]

    def count(self, run_id: uuid.UUID | str) -> int:
        return self._count(self.table.c.run_id == as_uuid(run_id, "run_id"))

    def delete_after(self, run_id: uuid.UUID | str, timestep_number: int) -> None:
        """Forget steps past a checkpoint: a resumed run replays them."""
        self.db.execute(
            "DELETE FROM reward_history WHERE run_id = %(r)s AND timestep_number > %(t)s",
            {
                "r": as_uuid(run_id, "run_id"),
                "t": _non_negative("timestep_number", timestep_number),
            },
        )

    def last_step(self, run_id: uuid.UUID | str) -> tuple[int, int] | None:
        """(episode_number, timestep_number) of the last stored step, for resume."""
        c = self.table.c
        rows = self._select(
            c.run_id == as_uuid(run_id, "run_id"),
            order_by=[c.timestep_number.desc()],
            limit=1,
            columns=[c.episode_number, c.timestep_number],
        )
        return (int(rows[0]["episode_number"]), int(rows[0]["timestep_number"])) if rows else None
