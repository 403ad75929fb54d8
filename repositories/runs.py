"""Run lifecycle for supervised and RL runs: create, read, list, and checked
status transitions (pending -> running -> completed / failed / cancelled)."""

from __future__ import annotations

import builtins
import datetime as dt
import subprocess
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import func

from repositories import queries
from repositories.base import Repository, next_version, utcnow
from repositories.errors import (
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    as_uuid,
    enum_value,
    validate,
)
from repositories.params import param_filter
from repositories.records import (
    AgentFinalMetrics,
    AgentTrainingRun,
    AgentTrainingRunCreate,
    SupervisedFinalMetrics,
    TrainingRun,
    TrainingRunCreate,
)
from suho_models import AgentTrainingRun as AgentTrainingRunModel
from suho_models import TrainingRun as TrainingRunModel
from suho_models.enums import TERMINAL_STATUSES, RunStatus

ALLOWED_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}),
    # A crashed or interrupted run may be resumed from its checkpoints.
    RunStatus.FAILED: frozenset({RunStatus.RUNNING}),
    RunStatus.CANCELLED: frozenset({RunStatus.RUNNING}),
    # (``resume`` also takes a run left ``running`` by a killed process.)
    RunStatus.COMPLETED: frozenset(),
}


def git_commit_hash() -> str:
    """HEAD of the git checkout we run in; empty (not an error) outside one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


RunT = TypeVar("RunT", TrainingRun, AgentTrainingRun)
"""The run record a repository reads and writes: the lifecycle code below uses the
fields both share (status, run_id, started_at, created_at, updated_at)."""


class RunRepository(Repository[RunT], Generic[RunT]):
    create_record: ClassVar[type[BaseModel]]
    final_metrics: ClassVar[type[BaseModel]]
    type_column: ClassVar[str]

    # ------------------------------------------------------------------ create / read
    def create(self, data: BaseModel | Mapping[str, Any]) -> RunT:
        spec = validate(self.create_record, data)
        now = utcnow()
        row = spec.model_dump()
        if row.get("git_commit_hash") is None:
            row["git_commit_hash"] = git_commit_hash()
        row.update(
            run_id=uuid.uuid4(),
            status=RunStatus.PENDING,
            error_message="",
            created_at=now,
            updated_at=now,
        )
        record = validate(self.record, row)
        self._insert_rows([self._to_row(record)])
        return record

    def get(self, run_id: uuid.UUID | str) -> RunT:
        run = self.get_one_or_none(self.table.c.run_id == as_uuid(run_id, "run_id"))
        if run is None:
            raise NotFoundError(f"{self.table.name}: no run with run_id {run_id}")
        return run

    def exists(self, run_id: uuid.UUID | str) -> bool:
        return self._count(self.table.c.run_id == as_uuid(run_id, "run_id")) > 0

    def require(self, run_id: uuid.UUID | str) -> uuid.UUID:
        """The run's id, or NotFoundError: ClickHouse has no foreign keys, we check."""
        key = as_uuid(run_id, "run_id")
        if not self.exists(key):
            raise NotFoundError(f"{self.table.name}: no run with run_id {run_id}")
        return key

    def list(
        self,
        *,
        status: RunStatus | str | None = None,
        type: str | None = None,
        name_like: str | None = None,
        created_from: dt.datetime | None = None,
        created_to: dt.datetime | None = None,
        order_by: str = "created_at",
        descending: bool = True,
        limit: int | None = 100,
        offset: int = 0,
        params: Mapping[str, Any] | None = None,
    ) -> list[RunT]:
        """Runs matching every given filter; ``name_like`` is a SQL LIKE pattern,
        ``params`` values of the run's config (:func:`repositories.params.param_filter`)."""
        c = self.table.c
        where = [param_filter(c.config_json, k, v) for k, v in (params or {}).items()]
        if status is not None:
            where.append(c.status == enum_value(RunStatus, status, "status").value)
        if type is not None:
            where.append(c[self.type_column] == str(type))
        if name_like is not None:
            where.append(c.run_name.like(name_like))
        if created_from is not None:
            where.append(c.created_at >= created_from)
        if created_to is not None:
            where.append(c.created_at <= created_to)
        if order_by not in c:
            raise ValueError(f"order_by: unknown column {order_by!r}")
        column = c[order_by]
        return self._list(
            *where,
            order_by=[column.desc() if descending else column.asc(), c.run_id],
            limit=limit,
            offset=offset,
        )

    # ------------------------------------------------------------------ transitions
    def start(self, run_id: uuid.UUID | str) -> RunT:
        return self._transition(run_id, RunStatus.RUNNING, started_at=utcnow(), error_message="")

    def check_resumable(self, run: RunT) -> None:
        """Refuse to resume a completed or pending run (the one resume rule).

        A process killed with SIGKILL leaves its run ``running``; that is resumable
        too: whoever resumes it asserts the earlier process is gone.
        """
        status = run.status
        if status in (RunStatus.COMPLETED, RunStatus.PENDING):
            raise InvalidTransitionError(
                f"run {run.run_id} is {status.value}: only a running (crashed), "
                "failed or cancelled run can be resumed"
            )

    def resume(self, run_id: uuid.UUID | str, *, current: RunT | None = None) -> RunT:
        """Mark a crashed, failed or cancelled run as running again (``current``: the
        run as just read, to save reading it twice)."""
        current = self.get(run_id) if current is None else current
        self.check_resumable(current)
        return self._write(
            current,
            {
                "status": RunStatus.RUNNING,
                "error_message": "",
                "completed_at": None,
                "duration_seconds": None,
                "heartbeat_at": utcnow(),
            },
        )

    def heartbeat(self, run_id: uuid.UUID | str) -> RunT | None:
        """Record a sign of life of a running run; None (nothing written) otherwise.

        A heartbeat is a whole new row version: callers serialize it with their own
        status changes (``RunTrackingService`` does), or it could resurrect a status
        it read before the change.
        """
        current = self.get(run_id)
        if current.status is not RunStatus.RUNNING:
            return None
        return self._write(current, {"heartbeat_at": utcnow()})

    def stale(self, older_than: dt.datetime) -> builtins.list[RunT]:
        """Runs still ``running`` whose last sign of life (heartbeat, else start, else
        creation) is before ``older_than``: their process is gone."""
        c = self.table.c
        last_seen = func.coalesce(c.heartbeat_at, c.started_at, c.created_at)
        rows = self._select(
            c.status == RunStatus.RUNNING.value,
            last_seen < older_than,
            order_by=[last_seen, c.run_id],
        )
        return [self._to_record(r) for r in rows]

    def best_completed(
        self, metric: str, mode: str = "max", *, type: str | None = None
    ) -> RunT | None:
        """The completed run with the highest (``max``) or lowest (``min``) ``metric``, a
        numeric run column; runs without it (NULL or NaN) are skipped, ties go to the
        newest run. Ranked in ClickHouse: one row comes back."""
        c = self.table.c
        if metric not in c or not metric.startswith(("final_", "total_")):
            allowed = ", ".join(x.name for x in c if x.name.startswith(("final_", "total_")))
            raise InvalidInputError(
                f"metric: {self.table.name} has no metric column {metric!r} (one of {allowed})"
            )
        if mode not in ("max", "min"):
            raise InvalidInputError(f"mode: expected 'max' or 'min' (got {mode!r})")
        column = c[metric]
        where = [c.status == RunStatus.COMPLETED.value, column.isnot(None), func.isNaN(column) == 0]
        if type is not None:
            where.append(c[self.type_column] == str(type))
        rows = self._select(
            *where,
            order_by=[column.desc() if mode == "max" else column.asc(), c.created_at.desc()],
            limit=1,
        )
        return self._to_record(rows[0]) if rows else None

    def complete(
        self, run_id: uuid.UUID | str, metrics: BaseModel | Mapping[str, Any] | None = None
    ) -> RunT:
        final = validate(self.final_metrics, metrics or {}).model_dump(exclude_none=True)
        return self._transition(run_id, RunStatus.COMPLETED, **final)

    def fail(self, run_id: uuid.UUID | str, error: str | BaseException) -> RunT:
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return self._transition(run_id, RunStatus.FAILED, error_message=message)

    def cancel(self, run_id: uuid.UUID | str, reason: str = "") -> RunT:
        return self._transition(run_id, RunStatus.CANCELLED, error_message=reason)

    def update(self, run_id: uuid.UUID | str, **fields: Any) -> RunT:
        """Change descriptive fields (split info, dims) of a run that is not finished."""
        current = self.get(run_id)
        if current.status in TERMINAL_STATUSES:
            raise InvalidTransitionError(
                f"run {run_id} is {current.status.value}: it can no longer be changed"
            )
        return self._write(current, fields)

    def _transition(self, run_id: uuid.UUID | str, target: RunStatus, **fields: Any) -> RunT:
        current = self.get(run_id)
        status = current.status
        if target not in ALLOWED_TRANSITIONS[status]:
            raise InvalidTransitionError(
                f"run {run_id}: cannot go from {status.value} to {target.value}"
            )
        now = utcnow()
        fields["status"] = target
        if target in TERMINAL_STATUSES:
            fields["completed_at"] = now
            started = current.started_at or current.created_at
            fields["duration_seconds"] = (now - started).total_seconds()
        return self._write(current, fields)

    def _write(self, current: RunT, fields: Mapping[str, Any]) -> RunT:
        data = current.model_dump()
        data.update(fields)
        data["updated_at"] = next_version(current.updated_at)
        record = validate(self.record, data)
        self._insert_rows([self._to_row(record)])
        return record


class TrainingRunRepository(RunRepository[TrainingRun]):
    model = TrainingRunModel
    record = TrainingRun
    create_record = TrainingRunCreate
    final_metrics = SupervisedFinalMetrics
    type_column = "model_type"

    def compare_model_performance(self, limit: int = 10) -> list[dict[str, Any]]:
        """The seed's "Compare Model Performance", reading current rows only."""
        return self.db.execute_mappings(queries.COMPARE_MODEL_PERFORMANCE_FINAL, {"limit": limit})


class AgentRunRepository(RunRepository[AgentTrainingRun]):
    model = AgentTrainingRunModel
    record = AgentTrainingRun
    create_record = AgentTrainingRunCreate
    final_metrics = AgentFinalMetrics
    type_column = "agent_type"

    def best_agents(self, limit: int = 10) -> list[dict[str, Any]]:
        """The seed's "Best RL Agents", reading current rows only."""
        return self.db.execute_mappings(queries.BEST_RL_AGENTS_FINAL, {"limit": limit})
