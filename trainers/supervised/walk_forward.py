"""Walk-forward folds of a supervised run: the booster retrained on each fold's past
with the run's parameters and number of rounds, scored on the next block beside the
same baselines as the run's test split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from suho_models.enums import TaskType
from trainers.baselines import supervised_baselines
from trainers.supervised.boosters import Booster
from trainers.supervised.metrics import evaluate
from trainers.walk_forward import WalkForwardConfig, fold_indices

EVAL_ROWS = 1000
"""Rows of the fold's own training tail the booster reports on while it trains (the
libraries want an evaluation set; with no early stopping it decides nothing)."""


def walk_forward_folds(
    booster: Booster,
    frame: pd.DataFrame,
    *,
    time: str,
    symbol: str | None,
    features: list[str],
    target: str,
    task: TaskType,
    params: dict[str, Any],
    rounds: int,
    config: WalkForwardConfig,
    on_fold: Callable[[], None] | None = None,
) -> list[dict[str, float]]:
    """Each fold's ``test_<metric>`` and ``baseline_*`` figures, in fold order."""
    ordered = frame.sort_values(time, kind="stable")
    X = ordered[features].to_numpy(dtype=float)
    y = ordered[target].to_numpy()
    kind = TaskType(task).value
    results = []
    for train_idx, test_idx in fold_indices(ordered[time], config):
        eval_idx = train_idx[-EVAL_ROWS:]
        model = booster.fit(
            X[train_idx],
            y[train_idx],
            X[eval_idx],
            y[eval_idx],
            task=task,
            params=params,
            rounds=rounds,
            early_stopping=None,
        )
        y_test = y[test_idx]
        scores = evaluate(kind, y_test, booster.predict(model, X[test_idx], task))
        fold = {f"test_{k}": v for k, v in scores.items()}
        test_rows = ordered.iloc[test_idx]
        fold.update(supervised_baselines(kind, y[train_idx], test_rows, target, symbol))
        fold["train_rows"] = float(len(train_idx))
        fold["test_rows"] = float(len(test_idx))
        results.append(fold)
        if on_fold is not None:
            on_fold()
    return results
