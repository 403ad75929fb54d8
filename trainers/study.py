"""Optuna pieces both trainers' tuning uses: where a study is stored, search-space
overrides, trial states as the trial tables store them, and running what a
(possibly resumed) study lacks.

One storage policy for both trainers: a configured storage URL, else a journal
file per run under ``<data_dir>/optuna``. So a killed study, supervised or RL,
continues where it stopped: trials a killed process left running are closed as
failed, and no trial reaches the trial table twice."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from suho_models.enums import TrialState

log = logging.getLogger(__name__)


class TrialLog(Protocol):
    """Where a study's trials are recorded: the run's tracking service."""

    def log_trial(self, run_id: uuid.UUID | str, trial: Any) -> object: ...

    def finished_trials(self, run_id: uuid.UUID | str) -> set[int]: ...


def storage_url(configured: str | None) -> str | None:
    """The study storage URL: the config's, else ``SUHO_OPTUNA_STORAGE``; None means the
    run's journal file. A bare ``postgresql://`` gets the installed psycopg 3 driver."""
    from suho_models.settings import get_settings

    url = configured or get_settings().optuna_storage
    if url and url.startswith("postgresql://") and not _has_module("psycopg2"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url or None


def study_storage(
    configured: str | None, run_id: uuid.UUID, *, heartbeat: TrialHeartbeat | None = None
) -> Any:
    """The storage of the run's study: the configured URL (``redis://`` is the journal
    on Redis), or the run's own journal file (resumable, shared by the processes of
    this machine).

    With ``heartbeat`` (tuning workers) every storage beats for its running trials:
    RDB storages with Optuna's own heartbeat (the database's clock), journals with
    :class:`_BeatingJournal` (the workers' clocks), so a killed worker's trial is
    found stale and failed by the others.
    """
    url = storage_url(configured)
    if url is None:
        from optuna.storages.journal import JournalFileBackend

        from suho_models.settings import get_settings

        directory = get_settings().data_dir / "optuna"
        directory.mkdir(parents=True, exist_ok=True)
        return _journal(JournalFileBackend(str(directory / f"{run_id}.journal")), heartbeat)
    if url.startswith(("redis://", "rediss://", "unix://")):
        import warnings

        from optuna.exceptions import ExperimentalWarning
        from optuna.storages.journal import JournalRedisBackend

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return _journal(JournalRedisBackend(url), heartbeat)
    if heartbeat is None:
        return url
    from optuna.storages import RDBStorage

    return RDBStorage(
        url,
        engine_kwargs={"pool_pre_ping": True},
        heartbeat_interval=heartbeat.interval,
        grace_period=heartbeat.grace,
    )


@dataclass(frozen=True)
class TrialHeartbeat:
    """How often a worker beats for its trial, and after how long without a beat
    the trial counts as its worker's death."""

    interval: int = 5
    grace: int = 30


HEARTBEAT_ATTR = "suho:heartbeat"
"""System attribute of a running trial: the unix time of its worker's last beat (journals)."""


def _journal(backend: Any, heartbeat: TrialHeartbeat | None) -> Any:
    from optuna.storages import JournalStorage

    if heartbeat is None:
        return JournalStorage(backend)
    return _beating_journal_class()(backend, heartbeat)


@functools.cache
def _beating_journal_class() -> type:
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState as OptunaState

    class _BeatingJournal(JournalStorage, BaseHeartbeat):
        """A journal with the heartbeat Optuna gives only RDB storages: a beat is a
        system attribute of the running trial; a trial is stale when neither its
        last beat nor its start is within the grace period."""

        def __init__(self, backend: Any, heartbeat: TrialHeartbeat) -> None:
            super().__init__(backend)
            self._heartbeat = heartbeat

        def record_heartbeat(self, trial_id: int) -> None:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            cutoff = time.time() - self._heartbeat.grace
            stale = []
            for trial in self.get_all_trials(
                study_id, deepcopy=False, states=(OptunaState.RUNNING,)
            ):
                started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
                # A retried trial carries its failed original's last beat: its start counts.
                if max(float(trial.system_attrs.get(HEARTBEAT_ATTR, 0.0)), started) < cutoff:
                    stale.append(trial._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int | None:
            return self._heartbeat.interval

        def get_heartbeat_stale_trial_callback(self) -> Any:
            return None

    return _BeatingJournal


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@dataclass
class StudySpec:
    """What a trainer's tuning gives the study, for one process or many workers."""

    name: str
    objective: Callable[[Any], float]
    record: Callable[[Any, Any], None]
    """Logs a finished trial to the run's trial table."""
    options: dict[str, Any]
    """``optuna.create_study`` options: direction, sampler, pruner."""


def load_study(
    run_id: uuid.UUID, storage: str | None, *, study_name: str, **create_options: Any
) -> Any:
    """Create the run's study, or continue it; trials a killed process left RUNNING
    will never finish and are closed as failed."""
    import optuna

    study = optuna.create_study(
        study_name=study_name,
        storage=study_storage(storage, run_id),
        load_if_exists=True,
        **create_options,
    )
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
    return study


def log_once(
    record: Callable[[Any, Any], None], logged: Collection[int]
) -> Callable[[Any, Any], None]:
    """``record``, skipping trial numbers already in the trial table (``logged``)."""
    seen = set(logged)

    def callback(study: Any, frozen: Any) -> None:
        if frozen.number in seen:
            return
        seen.add(frozen.number)
        record(study, frozen)

    return callback


def suggest(trial: Any, name: str, spec: dict[str, Any]) -> Any:
    """One search-space override: {"type": "int"|"float"|"categorical", ...}."""
    kind = spec.get("type")
    if kind == "int":
        return trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
    if kind == "float":
        return trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
    if kind == "categorical":
        return trial.suggest_categorical(name, spec["choices"])
    raise ValueError(f"search_space.{name}.type: expected int, float or categorical (got {kind!r})")


def trial_state(frozen: Any) -> TrialState:
    """Optuna's state as stored: complete, pruned, or failed (anything else)."""
    import optuna

    return {
        optuna.trial.TrialState.COMPLETE: TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED: TrialState.PRUNED,
    }.get(frozen.state, TrialState.FAILED)


def optimize_remaining(
    study: Any,
    objective: Callable[[Any], float],
    trials: int,
    timeout_seconds: float | None,
    on_trial: Callable[[Any, Any], None],
) -> list[Any]:
    """Run the trials ``study`` still lacks of ``trials`` (a resumed study keeps its
    earlier ones), calling ``on_trial`` after each; returns the completed trials.

    Finished trials of a resumed study go to ``on_trial`` first: those closed as
    failed on load, or by an interrupt (Optuna runs no callback then). Wrap
    ``on_trial`` in :func:`log_once` so the ones already logged are skipped.
    """
    import optuna

    for frozen in study.get_trials(deepcopy=False):
        if frozen.state.is_finished():
            on_trial(study, frozen)
    remaining = trials - len(study.trials)
    started = time.perf_counter()
    if remaining > 0:
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=timeout_seconds,
            callbacks=[on_trial],
            catch=(Exception,),
            gc_after_trial=False,
        )
    log.info(
        "study %s: %d trials in %.1fs",
        study.study_name,
        len(study.trials),
        time.perf_counter() - started,
    )
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


# --------------------------------------------------------------------------- workers
SLOTS_ATTR = "suho_trials"
"""User attribute of a shared study: the trials it is to finish."""

WORKER_ATTR = "suho:worker"
"""System attribute of a trial: ``{"host", "pid"}`` of the worker that claimed it."""

MAX_RETRIES = 3
"""A trial whose worker died runs again (same parameters) at most this many times."""


def final_study_name(study_name: str) -> str:
    """The study holding the election token of ``study_name``'s final training."""
    return f"{study_name}:final"


def create_shared_study(
    run_id: uuid.UUID, storage: Any, *, study_name: str, trials: int, **create_options: Any
) -> Any:
    """Create a study for workers: ``trials`` waiting slots, and the final training's
    election token in :func:`final_study_name`.

    Why slots: Optuna's ``MaxTrialsCallback`` only stops workers from *starting*
    trials once the count is reached; the ones running then still finish, so W
    workers can overshoot by W-1. A slot is a waiting trial, and claiming one
    (WAITING -> RUNNING) is atomic in every storage (a row lock in RDB, the log's
    order in a journal), so exactly ``trials`` run, whatever the number of
    workers. A slot whose worker died is failed and enqueued again (Optuna's
    ``RetryFailedTrialCallback``), so the total of complete and pruned trials still
    reaches ``trials``. Creating it again (same name) adds nothing.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name, storage=storage, load_if_exists=True, **create_options
    )
    if SLOTS_ATTR not in study.user_attrs:
        for _ in range(trials - len(study.trials)):
            study.enqueue_trial({}, skip_if_exists=False)
        study.set_user_attr(SLOTS_ATTR, trials)
    final = optuna.create_study(
        study_name=final_study_name(study_name), storage=storage, load_if_exists=True
    )
    if not final.trials:
        final.enqueue_trial({}, skip_if_exists=False)
    log.info("run %s: study %s with %d trials", run_id, study_name, trials)
    return study


def worker_identity() -> dict[str, Any]:
    import os
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid()}


def worker_of(frozen: Any) -> dict[str, Any]:
    """Host and pid of the worker that ran ``frozen`` (this process if unknown)."""
    return frozen.system_attrs.get(WORKER_ATTR) or worker_identity()


def study_done(study: Any) -> bool:
    """No slot is waiting or running any more."""
    import optuna

    S = optuna.trial.TrialState
    return not study.get_trials(deepcopy=False, states=(S.WAITING, S.RUNNING))


def slots_finished(study: Any) -> int:
    """Slots that reached their end: finished trials, less the failed ones that were
    enqueued again (their retry stands for the slot)."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(1 for t in trials if t.state.is_finished() and t.number not in retried)


def _claim(study: Any) -> int | None:
    """Take a waiting trial (a slot or a retry) for this worker; None when none is left."""
    import optuna

    storage = study._storage
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(frozen._trial_id, optuna.trial.TrialState.RUNNING):
                storage.set_trial_system_attr(frozen._trial_id, WORKER_ATTR, worker_identity())
                return int(frozen._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def fail_stale(study: Any, on_trial: Callable[[Any, Any], None]) -> list[int]:
    """Fail the running trials whose worker stopped beating, enqueue each again (same
    parameters) and log it as failed; returns their numbers. Several workers may
    race here: only the one whose FAIL lands logs and retries a trial."""
    import optuna

    storage = study._storage
    if not hasattr(storage, "_get_stale_trial_ids"):
        return []
    failed = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        try:
            if not storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first
        frozen = storage.get_trial(trial_id)
        log.warning(
            "trial %d: its worker %s stopped beating; failed", frozen.number, worker_of(frozen)
        )
        _retry_callback()(study, frozen)
        on_trial(study, frozen)
        failed.append(frozen.number)
    return failed


def _retry_callback() -> Any:
    import warnings

    from optuna import storages
    from optuna.exceptions import ExperimentalWarning

    warnings.simplefilter("ignore", ExperimentalWarning)

    cls = (
        getattr(storages, "RetryHeartbeatStaleTrialCallback", None)
        or storages.RetryFailedTrialCallback
    )
    return cls(max_retry=MAX_RETRIES)


def work(
    study: Any,
    objective: Callable[[Any], float],
    on_trial: Callable[[Any, Any], None],
    heartbeat: TrialHeartbeat,
) -> int:
    """Claim slots and run them until the study is done; returns the trials this worker ran.

    The loop of ``Study.optimize`` (which would create new trials once the slots
    are gone): stale trials are failed first, the trial beats while it runs, a
    pruned or failing objective ends it as pruned or failed, and ``on_trial``
    logs it once its state is stored.
    """
    import optuna

    ran = 0
    while True:
        fail_stale(study, on_trial)
        trial_id = _claim(study)
        if trial_id is None:
            if study_done(study):
                return ran
            # Others still run trials: stay, so that a dead one's trial is failed and
            # run again here, and the last worker standing finishes the run.
            time.sleep(heartbeat.interval)
            continue
        study._thread_local.cached_all_trials = None  # the sampler sees the latest trials
        trial = optuna.Trial(study, trial_id)
        value, state = None, None
        with _beating(study._storage, trial_id, heartbeat):
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                state = optuna.trial.TrialState.PRUNED
            except Exception as exc:  # noqa: BLE001 - a failed trial, as optimize(catch=...)
                log.warning("trial %d failed: %r", trial.number, exc)
                state = optuna.trial.TrialState.FAIL
        if study._storage.get_trial(trial_id).state.is_finished():
            continue  # declared stale while it ran: whoever failed it logged it
        frozen = study.tell(
            trial, value if state is None else None, state=state, skip_if_finished=True
        )
        on_trial(study, frozen)
        ran += 1


@contextlib.contextmanager
def _beating(storage: Any, trial_id: int, heartbeat: TrialHeartbeat) -> Iterator[None]:
    """Beat for ``trial_id`` every ``heartbeat.interval`` seconds while the block runs."""
    if not hasattr(storage, "record_heartbeat"):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception as exc:  # noqa: BLE001 - a missed beat must not end the trial
                log.warning("trial heartbeat not written: %s", exc)
            if stop.wait(heartbeat.interval):
                return

    thread = threading.Thread(target=beat, name=f"trial-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def claim_final(study: Any, heartbeat: TrialHeartbeat) -> Any | None:
    """Win the election for the final training: the study's token trial, claimed
    atomically (WAITING -> RUNNING) by exactly one worker. A winner that died (its
    token stopped beating) is failed and the token enqueued again, so a later
    worker takes over. Returns the claimed token's id, or None."""
    import optuna

    final = optuna.load_study(study_name=final_study_name(study.study_name), storage=study._storage)
    fail_stale(final, lambda *_: None)
    trial_id = _claim(final)
    return None if trial_id is None else (final, trial_id)


def final_beating(claim: Any, heartbeat: TrialHeartbeat) -> Any:
    final, trial_id = claim
    return _beating(final._storage, trial_id, heartbeat)


def finish_final(claim: Any, ok: bool) -> None:
    """Close the election token: complete, or failed (and enqueued again) on error."""
    import optuna

    final, trial_id = claim
    state = optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL
    storage = final._storage
    try:
        storage.set_trial_state_values(trial_id, state, [0.0] if ok else None)
    except optuna.exceptions.UpdateFinishedTrialError:
        return  # declared stale meanwhile: whoever failed it enqueued it again
    if not ok:
        _retry_callback()(final, storage.get_trial(trial_id))


def final_done(study: Any) -> bool:
    """The final training finished (its token is complete)."""
    import optuna

    final = optuna.load_study(study_name=final_study_name(study.study_name), storage=study._storage)
    return bool(final.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


__all__ = [
    "StudySpec",
    "TrialHeartbeat",
    "claim_final",
    "create_shared_study",
    "fail_stale",
    "final_done",
    "finish_final",
    "load_study",
    "log_once",
    "optimize_remaining",
    "slots_finished",
    "storage_url",
    "study_done",
    "study_storage",
    "work",
    "worker_of",
    "suggest",
    "trial_state",
]
