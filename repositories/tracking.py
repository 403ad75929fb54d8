"""One door to run tracking: runs, their series, trials and checkpoints, for
supervised and RL runs alike (the role of MLflow's ``AbstractStore``).

Both trainers, the CLI, the demo and the reports go through
:class:`RunTrackingService`; whatever comes later (tuning workers, a UI, an
export) should too. What it owns:

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
* **One resume protocol** (:meth:`RunTrackingService.resume`).
* **Which kind is this run?** (:func:`find_run`, :func:`find_checkpoint`).
* **Deployment** (:meth:`RunTrackingService.deploy_best`).
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
import signal
import threading
import uuid
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from repositories.base import utcnow
from repositories.checkpoints import (
    AgentCheckpointRepository,
    CheckpointRepository,
    ModelCheckpointRepository,
)
from repositories.errors import (
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    enum_value,
)
from repositories.object_store import ObjectStore
from repositories.records import AgentTrainingRun, TrainingRun
from repositories.runs import AgentRunRepository, TrainingRunRepository, _RunRepository
from repositories.series import RewardHistoryRepository, TrainingMetricRepository
from repositories.trials import HyperparameterTrialRepository, RLTrialRepository
from suho_models.db import Database
from suho_models.enums import CheckpointKind, DeploymentStatus, RunStatus

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
"""How often a guarded run refreshes ``heartbeat_at``."""

STALE_AFTER_BEATS = 3
"""A running run whose last sign of life is older than this many heartbeats is stale."""

FINAL_KINDS = (CheckpointKind.FINAL, CheckpointKind.BEST)
"""Kinds that mean "the model the run ended with": ``best`` is the legacy name."""


class RunKind(StrEnum):
    SUPERVISED = "supervised"
    RL = "rl"


DEFAULT_RANKING = {RunKind.SUPERVISED: "final_test_accuracy", RunKind.RL: "final_sharpe_ratio"}
"""The run column ``deploy_best`` ranks by unless told otherwise."""

_REPOSITORIES: dict[RunKind, tuple[type, type, type, type]] = {
    RunKind.SUPERVISED: (
        TrainingRunRepository,
        ModelCheckpointRepository,
        HyperparameterTrialRepository,
        TrainingMetricRepository,
    ),
    RunKind.RL: (
        AgentRunRepository,
        AgentCheckpointRepository,
        RLTrialRepository,
        RewardHistoryRepository,
    ),
}


class Terminated(KeyboardInterrupt):
    """SIGTERM while a run is guarded: a KeyboardInterrupt, so Ctrl-C's flush and
    cleanup paths run for it too."""


class RunTrackingService:
    """Tracking of one kind of run; every run write of the instance is serialized."""

    def __init__(
        self,
        db: Database,
        kind: RunKind | str,
        *,
        store: ObjectStore | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        try:
            self.kind = RunKind(kind)
        except ValueError:
            raise InvalidInputError(
                f"kind: expected one of {', '.join(RunKind)} (got {kind!r})"
            ) from None
        if not heartbeat_seconds > 0:
            raise InvalidInputError(f"heartbeat_seconds: expected > 0 (got {heartbeat_seconds!r})")
        runs, checkpoints, trials, series = _REPOSITORIES[self.kind]
        self.db = db
        self.runs: _RunRepository[Any] = runs(db)
        self.checkpoints: CheckpointRepository[Any] = checkpoints(db, store)
        self.trials = trials(db)
        self.series = series(db)
        self.heartbeat_seconds = heartbeat_seconds
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ lifecycle
    def create(self, data: BaseModel | Mapping[str, Any]) -> Any:
        return self.runs.create(data)

    def start(self, run_id: uuid.UUID | str) -> Any:
        with self._lock:
            return self.runs.start(run_id)

    def update(self, run_id: uuid.UUID | str, **fields: Any) -> Any:
        with self._lock:
            return self.runs.update(run_id, **fields)

    def complete(self, run_id: uuid.UUID | str, metrics: Any = None) -> Any:
        with self._lock:
            return self.runs.complete(run_id, metrics)

    def fail(self, run_id: uuid.UUID | str, error: str | BaseException) -> Any:
        with self._lock:
            return self.runs.fail(run_id, error)

    def cancel(self, run_id: uuid.UUID | str, reason: str = "") -> Any:
        with self._lock:
            return self.runs.cancel(run_id, reason)

    def end(self, run_id: uuid.UUID | str, status: RunStatus | str, reason: str = "") -> Any:
        """End a run by hand (``suho runs fail|cancel``): failed or cancelled."""
        target = enum_value(RunStatus, status, "status")
        if target is RunStatus.FAILED:
            return self.fail(run_id, reason or "marked failed by hand")
        if target is RunStatus.CANCELLED:
            return self.cancel(run_id, reason or "cancelled by hand")
        raise InvalidInputError(f"status: expected failed or cancelled (got {status!r})")

    def resume(self, run_id: uuid.UUID | str, *, require_state: bool = False) -> tuple[Any, Any]:
        """The one resume protocol: ``(run, latest checkpoint or None)``, the run marked
        running again.

        A completed or pending run is refused; so is, with ``require_state``, a run
        with neither a checkpoint nor a tuning trial to continue from. Both before
        anything is written. A run left ``running`` by a killed process is
        resumable: the caller asserts that process is gone.
        """
        run = self.runs.get(run_id)
        self.runs.check_resumable(run)
        latest = self.checkpoints.latest(run.run_id)
        if require_state and latest is None and not self.trials.finished_numbers(run.run_id):
            raise NotFoundError(f"run {run_id} has no checkpoint (or tuning trials) to resume from")
        with self._lock:
            return self.runs.resume(run.run_id, current=run), latest

    # ------------------------------------------------------------------ guard
    @contextlib.contextmanager
    def guard(self, run_id: uuid.UUID | str) -> Iterator[None]:
        """Train inside this: failures and interruptions are recorded, heartbeats sent.

        Any exception marks the run failed (its type and message kept); Ctrl-C,
        and SIGTERM (raised as :class:`Terminated` in the main thread), mark it
        cancelled. The exception is re-raised either way.
        """
        stop = threading.Event()
        beats = threading.Thread(
            target=self._beat, args=(run_id, stop), name=f"heartbeat-{run_id}", daemon=True
        )
        with _sigterm_raises():  # until the end is recorded: a 2nd SIGTERM cannot cut it
            self.heartbeat(run_id)
            beats.start()
            try:
                yield
            except KeyboardInterrupt as exc:
                stop.set()
                reason = (
                    "terminated (SIGTERM)"
                    if isinstance(exc, Terminated)
                    else "interrupted (KeyboardInterrupt)"
                )
                self._record_end(self.cancel, run_id, reason)
                raise
            except BaseException as exc:
                stop.set()
                self._record_end(self.fail, run_id, exc)
                raise
            finally:
                stop.set()
                beats.join()

    def _record_end(self, transition: Any, run_id: uuid.UUID | str, why: Any) -> None:
        """Mark the run; a run already finished keeps its status (the original
        exception, not this one, is what the caller must see)."""
        try:
            transition(run_id, why)
        except InvalidTransitionError as exc:
            log.warning("run %s: status not changed after the error: %s", run_id, exc)

    def heartbeat(self, run_id: uuid.UUID | str) -> bool:
        """Refresh ``heartbeat_at`` if the run is running; whether it was written."""
        with self._lock:
            return self.runs.heartbeat(run_id) is not None

    def _beat(self, run_id: uuid.UUID | str, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_seconds):
            try:
                if not self.heartbeat(run_id):
                    return
            except Exception as exc:  # noqa: BLE001 - a missed beat must not end training
                log.warning("run %s: heartbeat not written: %s", run_id, exc)

    # ------------------------------------------------------------------ staleness
    def stale_cutoff(self, now: dt.datetime | None = None) -> dt.datetime:
        return (now or utcnow()) - dt.timedelta(seconds=STALE_AFTER_BEATS * self.heartbeat_seconds)

    def is_stale(self, run: TrainingRun | AgentTrainingRun, now: dt.datetime | None = None) -> bool:
        """Running, with no sign of life for :data:`STALE_AFTER_BEATS` heartbeats."""
        if run.status is not RunStatus.RUNNING:
            return False
        last_seen = run.heartbeat_at or run.started_at or run.created_at
        return last_seen < self.stale_cutoff(now)

    def stale_runs(self) -> list[Any]:
        return self.runs.stale(self.stale_cutoff())

    def sweep_stale(self) -> list[Any]:
        """Mark every stale run failed; returns them as now stored."""
        ended = []
        for run in self.stale_runs():
            seen = run.heartbeat_at or run.started_at or run.created_at
            ended.append(self.fail(run.run_id, f"stale: no heartbeat since {seen.isoformat()}"))
        return ended

    # ------------------------------------------------------------------ checkpoints
    def final_checkpoint(self, run_id: uuid.UUID | str) -> Any:
        """The model the run ended with (kind ``final``, or legacy ``best``); else its
        latest checkpoint; None if it has none."""
        infos = self.checkpoints.list(run_id)
        finals = [i for i in infos if i.kind in FINAL_KINDS]
        if finals:
            return finals[-1]
        return infos[-1] if infos else None

    def deploy_best(
        self,
        by: str | None = None,
        mode: str = "max",
        stage: DeploymentStatus | str = DeploymentStatus.PRODUCTION,
        *,
        type: str | None = None,
    ) -> Any:
        """Put the final model of the best completed run in ``stage`` (the previous
        holder of the stage for that model name or agent type is archived).

        ``by`` is a run column (default :data:`DEFAULT_RANKING`), ``mode`` max or
        min; runs without the value are skipped, ties go to the newest run.
        ``type`` narrows to one model or agent type.
        """
        metric = by or DEFAULT_RANKING[self.kind]
        run = self.runs.best_completed(metric, mode, type=type)
        if run is None:
            narrowed = f" of type {type}" if type is not None else ""
            raise NotFoundError(f"no completed {self.kind.value} run{narrowed} with {metric}")
        checkpoint = self.final_checkpoint(run.run_id)
        if checkpoint is None:
            raise NotFoundError(f"run {run.run_id} has no checkpoint to deploy")
        return self.checkpoints.deploy(checkpoint.checkpoint_id, stage)


# --------------------------------------------------------------------------- lookups
def find_run(db: Database, run_id: uuid.UUID | str) -> tuple[RunKind, Any]:
    """``(kind, record)`` of a run of either kind; NotFoundError if neither has it."""
    for kind, (runs, *_) in _REPOSITORIES.items():
        repo = runs(db)
        if repo.exists(run_id):
            return kind, repo.get(run_id)
    raise NotFoundError(f"no supervised or RL run with run_id {run_id}")


def find_checkpoint(db: Database, checkpoint_id: uuid.UUID | str) -> tuple[RunKind, Any, Any]:
    """``(kind, checkpoint repository, info)`` of a checkpoint of either kind."""
    for kind, (_, checkpoints, *_) in _REPOSITORIES.items():
        repo = checkpoints(db)
        try:
            return kind, repo, repo.get(checkpoint_id)
        except NotFoundError:
            continue
    raise NotFoundError(f"no model or agent checkpoint with checkpoint_id {checkpoint_id}")


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """In the main thread, turn the first SIGTERM into :class:`Terminated` (later ones
    are ignored while cleanup runs); the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = False

    def on_sigterm(signum: int, frame: Any) -> None:
        nonlocal received
        if received:
            return
        received = True
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = [
    "DEFAULT_RANKING",
    "FINAL_KINDS",
    "HEARTBEAT_SECONDS",
    "STALE_AFTER_BEATS",
    "RunKind",
    "RunTrackingService",
    "Terminated",
    "find_checkpoint",
    "find_run",
]
