"""Optuna tuning with time-series cross-validation and pruning.

The objective is the mean validation loss (log loss or RMSE) over expanding-window
folds of the training split, minimized. Pruning uses the library's own Optuna
callback (from ``optuna-integration``) on the first fold, where every trial
reports the same steps. Every finished trial, pruned and failed ones included,
goes to ``hyperparameters_log`` with its fold scores.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from repositories.kinds import SUPERVISED
from suho_models.enums import TaskType, TrialState, TuningMethod
from trainers.data.split import time_series_cv
from trainers.study import (
    StudySpec,
    TrialLog,
    load_study,
    log_once,
    optimize_remaining,
    suggest,
    trial_state,
    worker_of,
)
from trainers.supervised.boosters import Booster
from trainers.supervised.config import SupervisedConfig
from trainers.supervised.metrics import classification_metrics, regression_metrics


def fold_loss(booster: Booster, model: Any, X: np.ndarray, y: np.ndarray, task: TaskType) -> float:
    pred = booster.predict(model, X, task)
    if task is TaskType.CLASSIFICATION:
        return classification_metrics(y, pred)["loss"]
    return regression_metrics(y, pred)["loss"]


def cross_validate(
    booster: Booster,
    X: np.ndarray,
    y: np.ndarray,
    times: np.ndarray,
    config: SupervisedConfig,
    task: TaskType,
    params: dict[str, Any],
    pruning: Any | None = None,
) -> list[float]:
    """Validation loss per expanding-window fold (grouped by timestamp, with gap)."""
    scores = []
    for fold, (train_idx, val_idx) in enumerate(
        time_series_cv(times, n_splits=config.cv_folds, gap=config.cv_gap)
    ):
        model = booster.fit(
            X[train_idx],
            y[train_idx],
            X[val_idx],
            y[val_idx],
            task=task,
            params=params,
            rounds=config.rounds,
            early_stopping=config.early_stopping,
            pruning=pruning if fold == 0 else None,
        )
        scores.append(fold_loss(booster, model, X[val_idx], y[val_idx], task))
    return scores


def study_spec(
    booster: Booster,
    X: np.ndarray,
    y: np.ndarray,
    times: np.ndarray,
    config: SupervisedConfig,
    task: TaskType,
    run_id: uuid.UUID,
    trials: TrialLog,
    on_trial: Callable[[int], None] | None = None,
) -> StudySpec:
    """The run's study: objective, trial logging and options (one process or workers)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = {**booster.default_params(task, config.seed), **config.params}
    study_name = config.tuning.study_name or f"{run_id}"

    def objective(trial: optuna.Trial) -> float:
        space = {**booster.search_space(task), **config.tuning.search_space}
        params = {**base, **{name: suggest(trial, name, spec) for name, spec in space.items()}}
        pruning = booster.pruning_callback(trial, task) if config.tuning.pruning else None
        scores = cross_validate(booster, X, y, times, config, task, params, pruning)
        trial.set_user_attr("scores", scores)
        return float(np.mean(scores))

    def record(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        state = trial_state(frozen)
        duration = frozen.duration.total_seconds() if frozen.duration else 0.0
        worker = worker_of(frozen)
        trials.log_trial(
            run_id,
            {
                "trial_number": frozen.number,
                "study_name": study_name,
                "hyperparameters": json.dumps({**base, **frozen.params}, default=str),
                "objective_value": frozen.value if state is TrialState.COMPLETE else None,
                "scores": frozen.user_attrs.get("scores", []),
                "tuning_method": TuningMethod.OPTUNA,
                "state": state,
                "duration_seconds": duration,
                "worker_host": worker["host"],
                "worker_pid": worker["pid"],
            },
        )
        if on_trial is not None:
            on_trial(frozen.number)

    options = {
        "direction": SUPERVISED.direction,
        "sampler": optuna.samplers.TPESampler(seed=config.seed),
        "pruner": optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=5),
    }
    return StudySpec(study_name, objective, record, options)


def best_params(study: Any, base: dict[str, Any]) -> dict[str, Any]:
    import optuna

    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return base
    return {**base, **study.best_trial.params}


def tune(
    booster: Booster,
    X: np.ndarray,
    y: np.ndarray,
    times: np.ndarray,
    config: SupervisedConfig,
    task: TaskType,
    run_id: uuid.UUID,
    trials: TrialLog,
    on_trial: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run the study; returns the best parameters (merged over the defaults)."""
    spec = study_spec(booster, X, y, times, config, task, run_id, trials, on_trial)
    study = load_study(run_id, config.tuning.storage, study_name=spec.name, **spec.options)
    optimize_remaining(
        study,
        spec.objective,
        config.tuning.trials,
        config.tuning.timeout_seconds,
        log_once(spec.record, trials.finished_trials(run_id)),
    )
    return best_params(study, {**booster.default_params(task, config.seed), **config.params})
