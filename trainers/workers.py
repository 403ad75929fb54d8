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
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from repositories.errors import InvalidInputError
from repositories.tracking import RunKind, RunTrackingService, find_run
from suho_models.db import Database
from suho_models.enums import RunStatus
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


def _config_class(kind: RunKind) -> type:
    if kind is RunKind.SUPERVISED:
        from trainers.supervised.config import SupervisedConfig

        return SupervisedConfig
    from trainers.rl.config import RLConfig

    return RLConfig


def _tuning_trials(config: Any) -> int:
    return int(config.tuning.trials)


# --------------------------------------------------------------------------- the run
def create_tuning_run(kind: RunKind | str, config: Any, db: Database) -> Any:
    """Create and start the run, store its data preparation, create its shared study."""
    kind = RunKind(kind)
    if not config.tuning.trials:
        raise InvalidInputError("tuning.trials: expected at least 1 for a tuning run (got 0)")
    if kind is RunKind.SUPERVISED:
        from trainers.supervised.trainer import SupervisedTrainer

        trainer: Any = SupervisedTrainer(config.model_copy(update={"progress": False}), db)
        run = trainer.tracking.create(_supervised_run_fields(config))
        trainer.tracking.start(run.run_id)
        with trainer.tracking.guard(run.run_id):
            _supervised_inputs(trainer, trainer.tracking.runs.get(run.run_id), prepare=True)
    else:
        from trainers.rl.environment import env_config_json, load_market
        from trainers.rl.trainer import RLTrainer

        trainer = RLTrainer(config, db)
        run = trainer.tracking.create(_rl_run_fields(config))
        trainer.tracking.start(run.run_id)
        with trainer.tracking.guard(run.run_id):  # bad data fails here, not in W workers
            market = load_market(config, db)
            trainer.tracking.update(
                run.run_id,
                state_dim=market.state_dim,
                action_dim=market.action_dim,
                tickers=market.tickers,
                env_config_json=env_config_json(market, config),
                **market.period_fields(),
            )
    with trainer.tracking.guard(run.run_id):
        spec_options = _study_options(kind, config)
        create_shared_study(
            run.run_id,
            study_storage(config.tuning.storage, run.run_id),
            study_name=config.tuning.study_name or str(run.run_id),
            trials=config.tuning.trials,
            **spec_options,
        )
    return trainer.tracking.runs.get(run.run_id)


def _study_options(kind: RunKind, config: Any) -> dict[str, Any]:
    """Direction of the study (the sampler and pruner are each worker's own)."""
    return {"direction": "minimize" if kind is RunKind.SUPERVISED else "maximize"}


def _supervised_run_fields(config: Any) -> dict[str, Any]:
    from suho_models.enums import TaskType

    return {
        "run_name": config.run_name or f"{config.resolved_model_name}-{int(time.time())}",
        "model_type": config.model_type,
        "task_type": config.task or TaskType.CLASSIFICATION,
        "target_variable": config.target,
        "train_ratio": config.split_ratios[0],
        "val_ratio": config.split_ratios[1],
        "test_ratio": config.split_ratios[2],
        "config_json": config.model_dump_json(),
    }


def _rl_run_fields(config: Any) -> dict[str, Any]:
    return {
        "run_name": config.run_name or f"{config.agent.value}-{int(time.time())}",
        "agent_type": config.agent,
        "reward_function_type": config.reward,
        "initial_amount": config.initial_amount,
        "buy_cost_pct": config.buy_cost_pct,
        "sell_cost_pct": config.sell_cost_pct,
        "config_json": config.model_dump_json(),
    }


def _supervised_inputs(trainer: Any, run: Any, *, prepare: bool) -> tuple[Any, ...]:
    """The training split the study tunes on; ``prepare`` selects the features and
    stores them with the split on the run (the coordinator), else they are read back."""
    from trainers.data.source import load_features
    from trainers.data.split import chronological_split
    from trainers.supervised.selection import select_features
    from trainers.supervised.trainer import _split_fields, infer_task

    config = trainer.config
    frame, roles = load_features(
        config.source, config.features, trainer.db, config.start, config.end, config.symbols
    )
    task = config.task or infer_task(frame[config.target])
    split = chronological_split(frame, roles.time, config.split_ratios)
    y = split.train[config.target].to_numpy()
    if prepare:
        features = select_features(
            split.train[roles.features], y, config.selection, task, config.seed
        )
        trainer.tracking.update(
            run.run_id, task_type=task, features_used=features, **_split_fields(split)
        )
    else:
        features = list(run.features_used)
    X = split.train[features].to_numpy(dtype=float)
    return X, y, split.train[roles.time].to_numpy(), task


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
    kind, run = find_run(db, run_id)
    run_id = run.run_id
    config = _config_class(kind).model_validate_json(run.config_json)
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

    tracking = RunTrackingService(db, kind)
    with _run_heartbeat(tracking, run_id):
        ran = 0
        if not study_done(study):
            spec = _study_spec(kind, config, db, run, on_trial)
            # Each worker samples with its own seed: the same seed everywhere would
            # draw the same parameters in every worker.
            sampler = optuna.samplers.TPESampler(seed=(config.seed * 7919 + os.getpid()) % 2**32)
            study = optuna.load_study(
                study_name=name, storage=storage, sampler=sampler, pruner=spec.options["pruner"]
            )
            with _torch_threads(kind, config):
                ran = work(study, spec.objective, _tolerant(spec.record), heartbeat)
        claim = claim_final(study, heartbeat)
        if claim is None:
            return WorkerResult(run_id, ran, False, STUDY_COMPLETE)
    ok = False
    try:
        with final_beating(claim, heartbeat):
            _wait_for_database(db)
            _finish(kind, config, db, tracking, run_id)
        ok = True
    finally:
        finish_final(claim, ok)
    return WorkerResult(run_id, ran, True, "finished the run")


def _study_spec(
    kind: RunKind, config: Any, db: Database, run: Any, on_trial: Callable[[int], None] | None
) -> Any:
    if kind is RunKind.SUPERVISED:
        from trainers.supervised.trainer import SupervisedTrainer
        from trainers.supervised.tuning import study_spec

        trainer: Any = SupervisedTrainer(config.model_copy(update={"progress": False}), db)
        X, y, times, task = _supervised_inputs(trainer, run, prepare=False)
        spec = study_spec(
            trainer.booster, X, y, times, trainer.config, task, run.run_id, trainer.trials, on_trial
        )
        return spec
    from trainers.rl.environment import load_market
    from trainers.rl.trainer import RLTrainer
    from trainers.rl.tuning import study_spec as rl_spec

    trainer = RLTrainer(config, db)
    market = load_market(config, db)
    return rl_spec(config, market, run.run_id, trainer.trials, on_trial)


def _finish(
    kind: RunKind, config: Any, db: Database, tracking: RunTrackingService, run_id: uuid.UUID
) -> None:
    """Retrain the best trial and complete the run: the trainer's own path, whose
    tuning step finds the study finished (and logs the trials the table lacks)."""
    run = tracking.runs.get(run_id)
    if run.status is not RunStatus.RUNNING:  # a finisher before this one failed
        run, _ = tracking.resume(run_id)
    with tracking.guard(run_id):
        if kind is RunKind.SUPERVISED:
            from trainers.supervised.trainer import SupervisedTrainer

            quiet = config.model_copy(update={"progress": False})
            SupervisedTrainer(quiet, db, tracking=tracking)._train(run_id)
            return
        from trainers.rl.trainer import RLTrainer, torch_threads

        trainer = RLTrainer(config, db)
        trainer.tracking = tracking
        with torch_threads(config.torch_threads):
            trainer._train(tracking.runs.get(run_id), config, None)


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


@contextmanager
def _run_heartbeat(tracking: RunTrackingService, run_id: uuid.UUID) -> Iterator[None]:
    """Keep the run's ``heartbeat_at`` fresh while this worker works (not stale)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(tracking.heartbeat_seconds):
            try:
                if not tracking.heartbeat(run_id):
                    return
            except Exception as exc:  # noqa: BLE001 - a missed beat must not end the worker
                log.warning("run %s: heartbeat not written: %s", run_id, exc)

    thread = threading.Thread(target=beat, name=f"run-heartbeat-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def _torch_threads(kind: RunKind, config: Any) -> Iterator[None]:
    if kind is not RunKind.RL:
        yield
        return
    from trainers.rl.trainer import torch_threads

    with torch_threads(config.torch_threads):
        yield


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
    run: Any,
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
    config = _config_class(RunKind(kind)).model_validate_json(run.config_json)
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
