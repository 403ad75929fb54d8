"""Optuna pieces both trainers' tuning uses: search-space overrides, trial states as
the trial tables store them, and running what a (possibly resumed) study lacks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from suho_models.enums import TrialState

log = logging.getLogger(__name__)


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
    earlier ones), calling ``on_trial`` after each; returns the completed trials."""
    import optuna

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


__all__ = ["optimize_remaining", "suggest", "trial_state"]
