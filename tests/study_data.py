"""A real Optuna study, stored as the tuners store theirs (for the UI's study tests)."""

from __future__ import annotations

import math
from typing import Any

import optuna

from repositories.kinds import RunKind
from repositories.tracking import RunTrackingService
from suho_models.db import Database

BASE = {"objective": "binary:logistic", "nthread": 1}
"""Parameters every trial has the same: fixed, not tuned."""


def objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("learning_rate", 1e-3, 1.0, log=True)
    depth = trial.suggest_int("max_depth", 1, 8)
    booster = trial.suggest_categorical("booster", ["dart", "gblinear", "gbtree"])
    noise = trial.suggest_float("subsample", 0.5, 1.0)
    if depth == 7:
        raise optuna.TrialPruned()
    penalty = {"dart": 0.05, "gblinear": 0.2, "gbtree": 0.0}[booster]
    return (math.log10(lr) + 1.5) ** 2 + 0.02 * depth + penalty + 0.01 * noise


def run_study(trials: int = 40) -> optuna.Study:
    """A minimising study whose first trials sit on the search space's bounds, so
    the space a rebuilt study infers from the values is the one sampled from."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=1))
    corners: list[dict[str, Any]] = [
        {"learning_rate": 1e-3, "max_depth": 1, "booster": "dart", "subsample": 0.5},
        {"learning_rate": 1.0, "max_depth": 8, "booster": "gblinear", "subsample": 1.0},
        {"learning_rate": 0.05, "max_depth": 3, "booster": "gbtree", "subsample": 0.8},
    ]
    for corner in corners:
        study.enqueue_trial(corner)
    study.optimize(objective, n_trials=trials)
    return study


def store_study(db: Database, run_id: Any, study: optuna.Study) -> None:
    """Each trial as ``trainers/supervised/tuning.py`` logs it (base + tuned parameters)."""
    tracking = RunTrackingService(db, RunKind.SUPERVISED)
    states = {
        optuna.trial.TrialState.COMPLETE: "complete",
        optuna.trial.TrialState.PRUNED: "pruned",
        optuna.trial.TrialState.FAIL: "failed",
    }
    for t in study.trials:
        tracking.log_trial(
            run_id,
            {
                "trial_number": t.number,
                "hyperparameters": {**BASE, **t.params},
                "objective_value": t.value,
                "state": states[t.state],
                "duration_seconds": 0.5,
            },
        )
