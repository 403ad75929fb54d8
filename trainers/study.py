"""Optuna pieces both trainers' tuning uses: where a study is stored, search-space
overrides, trial states as the trial tables store them, and running what a
(possibly resumed) study lacks.

One storage policy for both trainers: a configured storage URL, else a journal
file per run under ``<data_dir>/optuna``. So a killed study, supervised or RL,
continues where it stopped: trials a killed process left running are closed as
failed, and no trial reaches the trial table twice."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection
from typing import Any

from suho_models.enums import TrialState

log = logging.getLogger(__name__)


def study_storage(configured: str | None, run_id: uuid.UUID) -> Any:
    """The configured Optuna storage URL, or the run's own journal file (resumable)."""
    if configured:
        return configured
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from suho_models.settings import get_settings

    directory = get_settings().data_dir / "optuna"
    directory.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(directory / f"{run_id}.journal")))


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


__all__ = [
    "load_study",
    "log_once",
    "optimize_remaining",
    "study_storage",
    "suggest",
    "trial_state",
]
