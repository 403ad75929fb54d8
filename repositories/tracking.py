"""One door to run tracking: runs, their series, trials and checkpoints, for
supervised and RL runs alike (the role of MLflow's ``AbstractStore``).

Every consumer (both trainers, the tuning workers, the CLI, the UI, the reports,
deployment, the MLflow mirror) goes through :class:`RunTrackingService`; its
repositories are its own. What a kind of run is (tables, records, objective,
series, seed query) is looked up in :mod:`repositories.kinds`. What it owns:

* **Guarding** (:meth:`RunTrackingService.guard`): any exception marks the run
  ``failed`` with the error, Ctrl-C and SIGTERM mark it ``cancelled``; the
  exception is re-raised, so the caller's flush and cleanup paths run. While
  guarded, a background thread refreshes the run's ``heartbeat_at``.
* **Heartbeats and staleness.** A run row is a ReplacingMergeTree version: every
  write re-inserts the whole row. A heartbeat that read the row before a status
  change and wrote after it would resurrect the old status, so every write of a
  service goes through one lock and a heartbeat is only written while the run is
  ``running``. A ``running`` run whose last sign of life is older than
  :data:`STALE_AFTER_BEATS` heartbeats is *stale*: its process is gone.
* **The protocols callers would otherwise assemble**: a checkpoint is saved only
  after the series rows up to it are flushed (:meth:`~RunTrackingService.save_checkpoint`);
  a resume trims the series rows past its checkpoint
  (:meth:`~RunTrackingService.open_series`); the final checkpoint has one rule
  (:meth:`~RunTrackingService.final_checkpoint`); a deployed checkpoint comes with its
  verified bytes and its run (:meth:`~RunTrackingService.deployed`); start and resume
  call the hooks given (``on_run``: the MLflow mirror follows the run that way).
* **The checkpoint-kind vocabulary.** Both trainers save the model a run ends
  with as ``CheckpointKind.FINAL`` and the ones along the way as
  ``INTERMEDIATE``. Supervised runs stored before this stored their final model
  as ``best``; :data:`FINAL_KINDS` reads those as final too. ``best`` is not
  written any more.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar, cast, overload

from pydantic import BaseModel

from repositories.base import utcnow
from repositories.errors import InvalidInputError, InvalidTransitionError, NotFoundError, enum_value
from repositories.guard import Terminated, beating, guarded
from repositories.kinds import (
    FINAL_KINDS,
    PROFILES,
    CheckpointInfo,
    KindProfile,
    Placement,
    RunKind,
    RunRecord,
    SeriesLogger,
    TrialRecord,
    kind_of_checkpoint,
    kind_of_run,
    profile_of,
)
from repositories.metrics_door import MetricsDoor
from repositories.object_store import ObjectStore
from repositories.serialization import CheckpointBytes
from repositories.ui_queries import Curve, CurveReader, RunBrowser, RunPage, SeriesPoint
from suho_models.db import Database
from suho_models.enums import CheckpointKind, DeploymentStatus, ModelFormat, RunStatus

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
"""How often a guarded run refreshes ``heartbeat_at``."""

STALE_AFTER_BEATS = 3
"""A running run whose last sign of life is older than this many heartbeats is stale."""

DEFAULT_RANKING = {kind: profile.ranking_metric for kind, profile in PROFILES.items()}
"""The run column ``deploy_best`` ranks by unless told otherwise."""

R = TypeVar("R", bound="RunRecord")
I = TypeVar("I", bound="CheckpointInfo")  # noqa: E741
T = TypeVar("T", bound="TrialRecord")
L = TypeVar("L")

RunHook = Callable[[uuid.UUID], None]
"""Called with the run's id after the service starts or resumes it."""


class Flushable(Protocol):
    """What :meth:`RunTrackingService.save_checkpoint` flushes first (a series logger)."""

    def flush(self) -> bool: ...
    @property
    def memory_rows(self) -> int: ...


@dataclass(frozen=True)
class DeployedCheckpoint(Generic[R, I]):
    """A checkpoint in a deployment stage: its record, its verified bytes, its run."""

    info: I
    data: CheckpointBytes
    run: R


class RunTrackingService(MetricsDoor, Generic[R, I, T, L]):
    """Tracking of one kind of run; every run write of the instance is serialized.

    ``kind`` is a profile of :mod:`repositories.kinds` (typed: the records it returns
    are that kind's) or a kind's name. ``on_run`` is called after every start and
    resume.
    """

    @overload
    def __init__(
        self: RunTrackingService[R, I, T, L],
        db: Database,
        kind: KindProfile[R, I, T, L],
        *,
        store: ObjectStore | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        on_run: RunHook | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: RunTrackingService[RunRecord, CheckpointInfo, TrialRecord, SeriesLogger],
        db: Database,
        kind: RunKind | str,
        *,
        store: ObjectStore | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        on_run: RunHook | None = None,
    ) -> None: ...

    def __init__(
        self,
        db: Database,
        kind: KindProfile[Any, Any, Any, Any] | RunKind | str,
        *,
        store: ObjectStore | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        on_run: RunHook | None = None,
    ) -> None:
        profile: KindProfile[Any, Any, Any, Any] = (
            kind if isinstance(kind, KindProfile) else profile_of(kind)
        )
        if not heartbeat_seconds > 0:
            raise InvalidInputError(f"heartbeat_seconds: expected > 0 (got {heartbeat_seconds!r})")
        self.profile = profile
        self.kind = profile.kind
        self.db = db
        self._runs, self._checkpoints, self._trials, self._series = profile.repositories(db, store)
        self._browser: RunBrowser | None = None
        self._curves: CurveReader | None = None
        self.heartbeat_seconds = heartbeat_seconds
        self._hooks: list[RunHook] = [on_run] if on_run is not None else []
        self._lock = threading.RLock()

    def add_run_hook(self, hook: RunHook) -> None:
        """Call ``hook`` with the run's id after every later start and resume."""
        self._hooks.append(hook)

    def _announce(self, run_id: uuid.UUID) -> None:
        for hook in self._hooks:
            hook(run_id)

    # ------------------------------------------------------------------ reading runs
    def get(self, run_id: uuid.UUID | str) -> R:
        return cast(R, self._runs.get(run_id))

    def exists(self, run_id: uuid.UUID | str) -> bool:
        return bool(self._runs.exists(run_id))

    def list_runs(
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
    ) -> list[R]:
        """Runs matching every filter (``type``: the model or agent type)."""
        return cast(
            list[R],
            self._runs.list(
                status=status,
                type=type,
                name_like=name_like,
                created_from=created_from,
                created_to=created_to,
                order_by=order_by,
                descending=descending,
                limit=limit,
            ),
        )

    def seed_ranking(self, limit: int = 10) -> list[dict[str, Any]]:
        """The seed's query of this kind ("Compare Model Performance", "Best RL Agents")."""
        return self.profile.seed_rows(self._runs, limit)

    # ------------------------------------------------------------------ lifecycle
    def create(self, data: BaseModel | Mapping[str, Any]) -> R:
        return cast(R, self._runs.create(data))

    def start(self, run_id: uuid.UUID | str) -> R:
        with self._lock:
            run = self._runs.start(run_id)
        self._announce(run.run_id)
        return cast(R, run)

    def update(self, run_id: uuid.UUID | str, **fields: Any) -> R:
        with self._lock:
            return cast(R, self._runs.update(run_id, **fields))

    def complete(self, run_id: uuid.UUID | str, metrics: Any = None) -> R:
        with self._lock:
            return cast(R, self._runs.complete(run_id, metrics))

    def fail(self, run_id: uuid.UUID | str, error: str | BaseException) -> R:
        with self._lock:
            return cast(R, self._runs.fail(run_id, error))

    def cancel(self, run_id: uuid.UUID | str, reason: str = "") -> R:
        with self._lock:
            return cast(R, self._runs.cancel(run_id, reason))

    def end(self, run_id: uuid.UUID | str, status: RunStatus | str, reason: str = "") -> R:
        """End a run by hand (``suho runs fail|cancel``): failed or cancelled."""
        target = enum_value(RunStatus, status, "status")
        if target is RunStatus.FAILED:
            return self.fail(run_id, reason or "marked failed by hand")
        if target is RunStatus.CANCELLED:
            return self.cancel(run_id, reason or "cancelled by hand")
        raise InvalidInputError(f"status: expected failed or cancelled (got {status!r})")

    def resume(self, run_id: uuid.UUID | str, *, require_state: bool = False) -> tuple[R, I | None]:
        """The one resume protocol: ``(run, latest checkpoint or None)``, the run marked
        running again.

        A completed or pending run is refused; so is, with ``require_state``, a run
        with neither a checkpoint nor a tuning trial to continue from. Both before
        anything is written. A run left ``running`` by a killed process is
        resumable: the caller asserts that process is gone. Its series rows past the
        checkpoint go when the series is opened with it (:meth:`open_series`).
        """
        run = self._runs.get(run_id)
        self._runs.check_resumable(run)
        latest = self._checkpoints.latest(run.run_id)
        if require_state and latest is None and not self._trials.finished_numbers(run.run_id):
            raise NotFoundError(f"run {run_id} has no checkpoint (or tuning trials) to resume from")
        with self._lock:
            resumed = self._runs.resume(run.run_id, current=run)
        self._announce(resumed.run_id)
        return cast(R, resumed), cast("I | None", latest)

    # ------------------------------------------------------------------ guard
    def guard(self, run_id: uuid.UUID | str) -> contextlib.AbstractContextManager[None]:
        """Train inside this: failures and interruptions are recorded, heartbeats sent.

        Any exception marks the run failed (its type and message kept); Ctrl-C,
        and SIGTERM (raised as :class:`Terminated` in the main thread), mark it
        cancelled. The exception is re-raised either way.
        """
        return guarded(
            run_id,
            heartbeat=self.heartbeat,
            every=self.heartbeat_seconds,
            cancel=self.cancel,
            fail=self.fail,
        )

    def beating(self, run_id: uuid.UUID | str) -> contextlib.AbstractContextManager[None]:
        """Keep the run's ``heartbeat_at`` fresh while the block runs (a tuning
        worker between trials), without recording how it ends."""
        return beating(run_id, self.heartbeat, self.heartbeat_seconds)

    def heartbeat(self, run_id: uuid.UUID | str) -> bool:
        """Refresh ``heartbeat_at`` if the run is running; whether it was written."""
        with self._lock:
            return self._runs.heartbeat(run_id) is not None

    # ------------------------------------------------------------------ staleness
    def stale_cutoff(self, now: dt.datetime | None = None) -> dt.datetime:
        return (now or utcnow()) - dt.timedelta(seconds=STALE_AFTER_BEATS * self.heartbeat_seconds)

    def is_stale(self, run: RunRecord, now: dt.datetime | None = None) -> bool:
        """Running, with no sign of life for :data:`STALE_AFTER_BEATS` heartbeats."""
        if run.status is not RunStatus.RUNNING:
            return False
        last_seen = run.heartbeat_at or run.started_at or run.created_at
        return last_seen < self.stale_cutoff(now)

    def stale_runs(self) -> list[R]:
        return cast(list[R], self._runs.stale(self.stale_cutoff()))

    def sweep_stale(self) -> list[R]:
        """Mark every stale run failed; returns them as now stored."""
        ended = []
        for run in self.stale_runs():
            seen = run.heartbeat_at or run.started_at or run.created_at
            ended.append(self.fail(run.run_id, f"stale: no heartbeat since {seen.isoformat()}"))
        return ended

    # ------------------------------------------------------------------ series
    def open_series(
        self, run_id: uuid.UUID | str, resume_from: I | None = None, *, resuming: bool | None = None
    ) -> L:
        """A buffered logger of the run's series (close it, or use it as a context).

        Resuming (by default: when ``resume_from`` is given), the rows past the
        checkpoint, or all of them without one, are deleted first (after the spool
        files a dead writer left are replayed), so readers see each step of the
        final trajectory once.
        """
        logger = self._series.logger(run_id)
        if resume_from is not None if resuming is None else resuming:
            logger.flush()  # replays spool files a dead writer left, before the delete
            keep = 0 if resume_from is None else self.profile.series_position(resume_from)
            self._series.delete_after(run_id, keep)
        return cast(L, logger)

    def log_series(self, run_id: uuid.UUID | str, points: Sequence[Mapping[str, Any]]) -> int:
        """Validate and write a batch of series rows at once (all or nothing)."""
        return int(self._series.log_many(run_id, points))

    def series_count(self, run_id: uuid.UUID | str) -> int:
        return int(self._series.count(run_id))

    def series(
        self,
        run_id: uuid.UUID | str,
        curve: str | None = None,
        *,
        columns: Sequence[str] | None = None,
        after: int | None = None,
    ) -> list[SeriesPoint]:
        """Every row of one of the run's curves (default: its first), in x order,
        not downsampled; ``after``: only rows whose x is past it."""
        spec = self.profile.curves[0] if curve is None else self.profile.curve(curve)
        if spec is None:
            names = ", ".join(c.name for c in self.profile.curves)
            raise InvalidInputError(f"curve: expected one of {names} (got {curve!r})")
        return self._curve_reader().points(run_id, spec, columns=columns, after=after)

    # ------------------------------------------------------------------ listing and curves
    def _listing(self) -> RunBrowser:
        if self._browser is None:
            self._browser = RunBrowser(self.db, self.kind)
        return self._browser

    def _curve_reader(self) -> CurveReader:
        if self._curves is None:
            self._curves = CurveReader(self.db)
        return self._curves

    @property
    def type_column(self) -> str:
        return self.profile.type_column

    @property
    def metric_columns(self) -> list[str]:
        """Numeric result columns (``final_*``, ``total_*``): sortable and filterable."""
        return self._listing().metric_columns

    @property
    def list_columns(self) -> list[str]:
        return self._listing().list_columns

    @property
    def sortable_columns(self) -> list[str]:
        return self._listing().sortable

    def page(self, **filters: Any) -> RunPage:
        """One page of runs and how many match (see :meth:`RunBrowser.page`)."""
        return self._listing().page(**filters)

    def running(self, limit: int = 100) -> list[dict[str, Any]]:
        """Runs now ``running``, newest first."""
        return self._listing().running(limit)

    def curve(
        self,
        run_id: uuid.UUID | str,
        name: str | None = None,
        *,
        points: int = 1_500,
        x_from: float | None = None,
        x_to: float | None = None,
        series: Sequence[str] | None = None,
    ) -> Curve:
        """One of the run's curves, LTTB-downsampled (see :meth:`CurveReader.curve`)."""
        chosen = name or self.profile.curves[0].name
        if self.profile.curve(chosen) is None:
            allowed = ", ".join(c.name for c in self.profile.curves)
            raise InvalidInputError(
                f"curve: {chosen!r} is not a {self.profile.label} curve ({allowed})"
            )
        return self._curve_reader().curve(
            run_id, chosen, points=points, x_from=x_from, x_to=x_to, series=series
        )

    # ------------------------------------------------------------------ trials
    def log_trial(self, run_id: uuid.UUID | str, trial: BaseModel | Mapping[str, Any]) -> T:
        return cast(T, self._trials.log(run_id, trial))

    def trials(self, run_id: uuid.UUID | str) -> list[T]:
        return cast(list[T], self._trials.list(run_id))

    def finished_trials(self, run_id: uuid.UUID | str) -> set[int]:
        """Numbers of the run's trials that finished (complete, pruned or failed)."""
        return set(self._trials.finished_numbers(run_id))

    def best_trials(self, run_id: uuid.UUID | str, n: int = 1) -> list[T]:
        """The ``n`` best complete trials, in the kind's objective direction."""
        return cast(list[T], self._trials.best(run_id, n=n, direction=self.profile.direction))

    @property
    def objective_column(self) -> str:
        return self.profile.objective_column

    def objective(self, trial: TrialRecord) -> float | None:
        value = getattr(trial, self.profile.objective_column)
        return None if value is None else float(value)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(
        self,
        run_id: uuid.UUID | str,
        data: object,
        format: ModelFormat | str,
        metrics: Mapping[str, Any] | None = None,
        *,
        kind: CheckpointKind | str = CheckpointKind.INTERMEDIATE,
        iteration: int = 0,
        episode_number: int = 0,
        timestep: int = 0,
        model_name: str | None = None,
        replay_buffer: bytes | None = None,
        flush: Flushable | SeriesLogger | None = None,
    ) -> I:
        """Save a checkpoint of the run (placement: ``iteration`` for a model,
        ``episode_number``/``timestep`` for an agent).

        ``flush``: the run's series logger, flushed first, so a checkpoint never claims
        rows a crash could lose; spooled rows count as kept (replayed before a resume
        trims). Else nothing is saved (:class:`SeriesNotStoredError`).
        """
        if flush is not None and not flush.flush() and flush.memory_rows:
            raise SeriesNotStoredError(
                f"run {run_id}: series rows not stored yet; checkpoint not saved"
            )
        at = Placement(iteration, episode_number, timestep, model_name, replay_buffer)
        return cast(
            I, self.profile.save(self._checkpoints, run_id, data, format, metrics, kind, at)
        )

    def checkpoint(self, checkpoint_id: uuid.UUID | str) -> I:
        return cast(I, self._checkpoints.get(checkpoint_id))

    def checkpoints(
        self, run_id: uuid.UUID | str, kind: CheckpointKind | str | None = None
    ) -> list[I]:
        """The run's checkpoints in training order (of one ``kind`` if given)."""
        return cast(list[I], self._checkpoints.list(run_id, kind=kind))

    def latest_checkpoint(self, run_id: uuid.UUID | str) -> I | None:
        return cast("I | None", self._checkpoints.latest(run_id))

    def load_checkpoint(self, checkpoint_id: uuid.UUID | str) -> CheckpointBytes:
        """The checkpoint's bytes, checked against its SHA-256 (and signature)."""
        data: CheckpointBytes = self._checkpoints.load_checkpoint(checkpoint_id)
        return data

    def load_replay_buffer(self, checkpoint_id: uuid.UUID | str) -> CheckpointBytes | None:
        """An agent checkpoint's replay buffer (verified); None when it has none."""
        load = getattr(self._checkpoints, "load_replay_buffer", None)
        return None if load is None else cast("CheckpointBytes | None", load(checkpoint_id))

    def prune(self, run_id: uuid.UUID | str, keep_last: int = 3) -> list[uuid.UUID]:
        """Delete all but the ``keep_last`` newest intermediate checkpoints."""
        return list(self._checkpoints.prune(run_id, keep_last=keep_last))

    def delete_checkpoint(self, checkpoint_id: uuid.UUID | str, *, force: bool = False) -> I:
        return cast(I, self._checkpoints.delete(checkpoint_id, force=force))

    def final_checkpoint(self, run_id: uuid.UUID | str) -> I | None:
        """The model the run ended with (kind ``final``, or legacy ``best``); else its
        latest checkpoint; None if it has none. The one rule of "final"."""
        infos = self._checkpoints.list(run_id)
        finals = [i for i in infos if i.kind in FINAL_KINDS]
        if finals:
            return cast(I, finals[-1])
        return cast(I, infos[-1]) if infos else None

    def deploy(self, checkpoint_id: uuid.UUID | str, stage: DeploymentStatus | str) -> I:
        """Put a checkpoint in ``stage`` (the previous holder for its name is archived)."""
        return cast(I, self._checkpoints.deploy(checkpoint_id, stage))

    def deploy_best(
        self,
        by: str | None = None,
        mode: Literal["min", "max"] | str = "max",
        stage: DeploymentStatus | str = DeploymentStatus.PRODUCTION,
        *,
        type: str | None = None,
    ) -> I:
        """Put the final model of the best completed run in ``stage`` (the previous
        holder of the stage for that model name or agent type is archived).

        ``by`` is a run column (default: the kind's ranking metric), ``mode`` max or
        min; runs without the value are skipped, ties go to the newest run.
        ``type`` narrows to one model or agent type.
        """
        metric = by or self.profile.ranking_metric
        run = self._runs.best_completed(metric, mode, type=type)
        if run is None:
            narrowed = f" of type {type}" if type is not None else ""
            raise NotFoundError(f"no completed {self.kind.value} run{narrowed} with {metric}")
        checkpoint = self.final_checkpoint(run.run_id)
        if checkpoint is None:
            raise NotFoundError(f"run {run.run_id} has no checkpoint to deploy")
        return self.deploy(checkpoint.checkpoint_id, stage)

    def deployed(
        self, name: str, stage: DeploymentStatus | str = DeploymentStatus.PRODUCTION
    ) -> DeployedCheckpoint[R, I]:
        """The checkpoint in ``stage`` for a model name or agent type, with its bytes
        (verified) and its run; NotFoundError when the stage is empty."""
        info = self._checkpoints.deployed(name, stage)
        if info is None:
            raise NotFoundError(
                f"no {self.profile.label} checkpoint {name} in {DeploymentStatus(stage).value}"
            )
        data = self.load_checkpoint(info.checkpoint_id)
        return DeployedCheckpoint(cast(I, info), data, self.get(info.run_id))


class SeriesNotStoredError(InvalidTransitionError):
    """The series rows up to a checkpoint could not be stored: the checkpoint is not
    saved (it would claim rows the table lacks)."""


AnyTracking = RunTrackingService[RunRecord, CheckpointInfo, TrialRecord, SeriesLogger]
"""A service of a kind known only at run time."""


# --------------------------------------------------------------------------- lookups
def tracking_for_run(
    db: Database, run_id: uuid.UUID | str, *, store: ObjectStore | None = None
) -> tuple[AnyTracking, RunRecord]:
    """The service of the kind that holds ``run_id``, and the run."""
    tracking: AnyTracking = RunTrackingService(db, kind_of_run(db, run_id).kind, store=store)
    return tracking, tracking.get(run_id)


def tracking_for_checkpoint(
    db: Database, checkpoint_id: uuid.UUID | str, *, store: ObjectStore | None = None
) -> tuple[AnyTracking, CheckpointInfo]:
    """The service of the kind that holds ``checkpoint_id``, and the checkpoint."""
    kind = kind_of_checkpoint(db, checkpoint_id).kind
    tracking: AnyTracking = RunTrackingService(db, kind, store=store)
    return tracking, tracking.checkpoint(checkpoint_id)


def find_run(db: Database, run_id: uuid.UUID | str) -> tuple[RunKind, RunRecord]:
    """``(kind, record)`` of a run of either kind; NotFoundError if neither has it."""
    tracking, run = tracking_for_run(db, run_id)
    return tracking.kind, run


def find_checkpoint(
    db: Database, checkpoint_id: uuid.UUID | str
) -> tuple[RunKind, AnyTracking, CheckpointInfo]:
    """``(kind, tracking service, info)`` of a checkpoint of either kind."""
    tracking, info = tracking_for_checkpoint(db, checkpoint_id)
    return tracking.kind, tracking, info


__all__ = [
    "DEFAULT_RANKING",
    "FINAL_KINDS",
    "HEARTBEAT_SECONDS",
    "STALE_AFTER_BEATS",
    "AnyTracking",
    "DeployedCheckpoint",
    "RunKind",
    "RunTrackingService",
    "SeriesNotStoredError",
    "Terminated",
    "find_checkpoint",
    "find_run",
    "tracking_for_checkpoint",
    "tracking_for_run",
]
