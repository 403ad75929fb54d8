"""Feature selection on the training split: variance, correlation, importance top-k."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from suho_models.enums import TaskType
from trainers.supervised.config import SelectionConfig


def variance_filter(X: pd.DataFrame, threshold: float) -> list[str]:
    """Columns whose variance is above ``threshold`` (constant columns carry nothing)."""
    variances = X.var(axis=0, skipna=True)
    return [c for c in X.columns if variances[c] > threshold]


def correlation_filter(X: pd.DataFrame, threshold: float) -> list[str]:
    """Greedy: keep a column unless it correlates above ``threshold`` with a kept one."""
    corr = np.abs(np.nan_to_num(np.corrcoef(X.to_numpy(dtype=float, na_value=0.0), rowvar=False)))
    kept: list[int] = []
    for j in range(corr.shape[0]):
        if all(corr[j, k] <= threshold for k in kept):
            kept.append(j)
    return [X.columns[j] for j in kept]


def importance_top_k(
    X: pd.DataFrame, y: np.ndarray, k: int, task: TaskType, seed: int
) -> list[str]:
    """The k most important columns of a quick LightGBM fit, in their original order."""
    import lightgbm as lgb

    from trainers.supervised.boosters import free_cores

    params: dict[str, Any] = {
        "objective": "binary" if task is TaskType.CLASSIFICATION else "regression",
        "num_leaves": 15,
        "learning_rate": 0.1,
        "verbosity": -1,
        "seed": seed,
        "num_threads": free_cores(),
        "deterministic": True,
        "feature_pre_filter": False,
    }
    booster = lgb.train(params, lgb.Dataset(X.to_numpy(dtype=float), label=y), num_boost_round=50)
    gains = booster.feature_importance(importance_type="gain")
    top = set(np.argsort(-gains, kind="stable")[:k])
    return [c for j, c in enumerate(X.columns) if j in top]


def select_features(
    X: pd.DataFrame, y: np.ndarray, config: SelectionConfig, task: TaskType, seed: int
) -> list[str]:
    columns = variance_filter(X, config.variance_threshold)
    if config.correlation_threshold is not None and len(columns) > 1:
        columns = correlation_filter(X[columns], config.correlation_threshold)
    if config.top_k is not None and len(columns) > config.top_k:
        columns = importance_top_k(X[columns], y, config.top_k, task, seed)
    if not columns:
        raise ValueError("feature selection left no features: loosen variance_threshold")
    return columns
