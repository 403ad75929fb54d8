"""Tuning workers: processes, on this machine or others, that share one run's study.

``suho tune supervised|rl --trials N --workers W`` creates the run and its study
(:func:`create_tuning_run`), starts W worker processes here and shows one
progress bar for the whole study (:func:`launch`); ``suho tune worker RUN_ID``
(:func:`run_worker`) joins from any machine that reaches the study's storage
and the database. How the study stays exact is in :mod:`trainers.study`: N
slots, claimed atomically, so exactly N trials finish whatever W is; a killed
worker's trial stops beating, another worker fails it, logs it as failed and
enqueues it again.

Every worker loads the run's data itself (the coordinator stored the split and
the selected features on the run). When the last slot is finished, the
workers still there race for the study's election token: the one that claims
it retrains the best trial, checkpoints it and completes the run, through the
trainer's own code path, once.

Trial rows: a worker logs each trial it ran (host and pid in their own
columns). If the database is unreachable then, the row is not lost: the study
holds the trial, and the final training logs every finished trial the table
lacks before it trains, so the table ends complete.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from repositories.errors import InvalidInputError
from repositories.kinds import RunKind, RunRecord
from repositories.tracking import AnyTracking, RunTrackingService, tracking_for_run
from suho_models.db import Database
from suho_models.enums import RunStatus
from trainers.kinds import TrainerKind, trainer_kind
from trainers.study import (
    TrialHeartbeat,
    claim_final,
    create_shared_study,
    final_beating,
    final_done,
    finish_final,
    slots_finished,
    storage_url,
    study_done,
    study_storage,
    work,
)

log = logging.getLogger(__name__)

STUDY_COMPLETE = "study complete"


@dataclass
class WorkerResult:
    run_id: uuid.UUID
    trials_run: int
    finished_run: bool
    """This worker won the election and completed the run."""
    message: str


def _tuning_trials(config: Any) -> int:
    return int(config.tuning.trials)


# --------------------------------------------------------------------------- the run
def create_tuning_run(kind: RunKind | str, config: Any, db: Database) -> RunRecord:
    """Create and start the run, store its data preparation, create its shared study."""
    trainer = trainer_kind(kind)
    if not config.tuning.trials:
        raise InvalidInputError("tuning.trials: expected at least 1 for a tuning run (got 0)")
    tracking: AnyTracking = RunTrackingService(db, trainer.data.kind)
    run = tracking.create(trainer.run_fields(config))
    tracking.start(run.run_id)
    with tracking.guard(run.run_id):  # bad data fails here, not in W workers
        trainer.prepare(config, db, tracking, run.run_id)
        create_shared_study(
            run.run_id,
            study_storage(config.tuning.storage, run.run_id),
            study_name=config.tuning.study_name or str(run.run_id),
            trials=config.tuning.trials,
            # the sampler and pruner are each worker's own
            direction=trainer.data.direction,
        )
    return tracking.get(run.run_id)


# --------------------------------------------------------------------------- a worker
def run_worker(
    run_id: uuid.UUID | str,
    db: Database,
    *,
    heartbeat: TrialHeartbeat | None = None,
    on_trial: Callable[[int], None] | None = None,
) -> WorkerResult:
    """Join the run's study, run slots until none is left, and finish the run if this
    worker is the one that claims the election token."""
    heartbeat = heartbeat or TrialHeartbeat()
    tracking, run = tracking_for_run(db, run_id)
    run_id = run.run_id
    trainer = trainer_kind(tracking.kind)
    config = trainer.config(run.config_json)
    if run.status is RunStatus.COMPLETED:
        return WorkerResult(run_id, 0, False, STUDY_COMPLETE)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = study_storage(config.tuning.storage, run_id, heartbeat=heartbeat)
    name = config.tuning.study_name or str(run_id)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise InvalidInputError(
            f"run_id: run {run_id} has no shared study {name!r} in "
            f"{storage_url(config.tuning.storage) or 'the local journal'} "
            "(start it with `suho tune supervised|rl`)"
        ) from None
    if study_done(study) and final_done(study):
        return WorkerResult(run_id, 0, False, STUDY_COMPLETE)

    with tracking.beating(run_id):  # the run is not stale while this worker works
        ran = 0
        if not study_done(study):
            spec = trainer.study_spec(config, db, tracking, run_id, on_trial)
            # Each worker samples with its own seed: the same seed everywhere would
            # draw the same parameters in every worker.
            sampler = optuna.samplers.TPESampler(seed=(config.seed * 7919 + os.getpid()) % 2**32)
            study = optuna.load_study(
                study_name=name, storage=storage, sampler=sampler, pruner=spec.options["pruner"]
            )
            with trainer.threads(config):
                ran = work(study, spec.objective, _tolerant(spec.record), heartbeat)
        claim = claim_final(study, heartbeat)
        if claim is None:
            return WorkerResult(run_id, ran, False, STUDY_COMPLETE)
    ok = False
    try:
        with final_beating(claim, heartbeat):
            _wait_for_database(db)
            _finish(trainer, config, db, tracking, run_id)
        ok = True
    finally:
        finish_final(claim, ok)
    return WorkerResult(run_id, ran, True, "finished the run")


def _finish(
    trainer: TrainerKind, config: Any, db: Database, tracking: AnyTracking, run_id: uuid.UUID
) -> None:
    """Retrain the best trial and complete the run: the trainer's own path, whose
    tuning step finds the study finished (and logs the trials the table lacks)."""
    run = tracking.get(run_id)
    if run.status is not RunStatus.RUNNING:  # a finisher before this one failed
        run, _ = tracking.resume(run_id)
    with tracking.guard(run_id):
        trainer.finish(config, db, tracking, run_id)


def _wait_for_database(db: Database, timeout: float = 600.0) -> None:
    """Block until the database answers (a worker may have tuned through an outage);
    the final training must not start against a database that is away."""
    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        try:
            db.current_revision()
            return
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            if time.monotonic() > deadline:
                raise
            log.warning("database not reachable (%s); retrying in %.0fs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _tolerant(record: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """``record`` that survives a lost database: the trial stays in the study, and
    the final training logs it (see the module docstring)."""

    def callback(study: Any, frozen: Any) -> None:
        try:
            record(study, frozen)
        except Exception as exc:  # noqa: BLE001 - the study keeps the trial
            log.warning(
                "trial %d not logged yet (%s); the final training logs it", frozen.number, exc
            )

    return callback


# --------------------------------------------------------------------------- launching
def worker_command(run_id: uuid.UUID, heartbeat: TrialHeartbeat | None = None) -> list[str]:
    """``suho tune worker RUN_ID`` as this Python runs it."""
    beat = heartbeat or TrialHeartbeat()
    return [
        sys.executable,
        "-m",
        "suho",
        "tune",
        "worker",
        str(run_id),
        f"--heartbeat={beat.interval}",
        f"--grace={beat.grace}",
    ]


def local_workers_allowed(db: Database, workers: int) -> None:
    """A chDB directory belongs to one process: several workers need a server."""
    if workers > 1 and db.is_embedded:
        raise InvalidInputError(
            f"workers: {workers} processes cannot share a store opened in process (a "
            "clickhouse+chdb:// URL: a chDB directory is locked to one process). Unset "
            "SUHO_DATABASE_URL to use the shared default store, then start the tuning again."
        )


def launch(
    run: RunRecord,
    kind: RunKind | str,
    db: Database,
    workers: int,
    *,
    progress: bool = True,
    env: Mapping[str, str] | None = None,
    heartbeat: TrialHeartbeat | None = None,
    poll_seconds: float = 0.5,
) -> list[int]:
    """Start ``workers`` worker processes for ``run`` here and wait for them, with one
    progress bar for the whole study; returns their exit codes. One worker on the
    embedded store runs in this process (the store is already open here)."""
    from trainers.progress import Progress

    local_workers_allowed(db, workers)
    config = trainer_kind(kind).config(run.config_json)
    total = _tuning_trials(config)
    if db.is_embedded:
        with Progress(progress).task("tuning", total) as advance:
            run_worker(run.run_id, db, heartbeat=heartbeat, on_trial=lambda _n: advance())
        return [0]
    child_env = {**os.environ, **(env or {})}
    if db.is_shared:  # the default store: the workers join its server as any process does
        from suho_models.settings import get_settings

        child_env["SUHO_DATA_DIR"] = str(get_settings().data_dir.resolve())
    else:
        child_env["SUHO_DATABASE_URL"] = db.url.render_as_string(hide_password=False)
    command = worker_command(run.run_id, heartbeat)
    procs = [
        subprocess.Popen(command, env=child_env, stdout=subprocess.DEVNULL) for _ in range(workers)
    ]
    import optuna

    storage = study_storage(config.tuning.storage, run.run_id)
    study = optuna.load_study(
        study_name=config.tuning.study_name or str(run.run_id), storage=storage
    )
    with Progress(progress).task("tuning", total) as advance:
        shown = 0
        while any(p.poll() is None for p in procs):
            done = min(slots_finished(study), total)
            advance(done - shown)
            shown = done
            time.sleep(poll_seconds)
        advance(min(slots_finished(study), total) - shown)
    return [p.wait() for p in procs]


__all__ = [
    "STUDY_COMPLETE",
    "WorkerResult",
    "create_tuning_run",
    "launch",
    "local_workers_allowed",
    "run_worker",
    "worker_command",
]
