"""Walk-forward evaluation, shared by both trainers: K folds in time order, each
retraining on the past and testing on the next block.

One test split is one period of one market: a model can be lucky in it. qlib's rolling
retraining and every backtester's walk-forward answer with several out-of-sample
blocks, so a run also says how its figures spread. The folds reuse the settings the
main run chose (its parameters and its number of rounds or steps); nothing is tuned on
a fold's test block.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeGuard

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from trainers.config_file import config_model
from trainers.data.split import time_series_cv

KEY_PREFIX = "walk_forward/"
"""Per-fold metrics go to ``run_metrics`` under this prefix, one step per fold."""

SUMMARY_PREFIX = "walk_forward_"
"""The final checkpoint's metrics hold ``walk_forward_<metric>_mean`` and ``_std``."""


@config_model
class WalkForwardConfig(BaseModel):
    """``--walk-forward K`` (and ``--walk-forward-mode rolling``)."""

    model_config = ConfigDict(extra="forbid")

    folds: int = Field(ge=2, le=100)
    """Out-of-sample blocks; the data's timestamps are cut into folds + 1 equal blocks."""
    mode: Literal["expanding", "rolling"] = "expanding"
    """expanding: train on every earlier block; rolling: on a window as long as the first."""


def fold_indices(
    times: pd.Series | pd.Index | np.ndarray, config: WalkForwardConfig
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train_rows, test_rows)`` positions per fold, grouped by timestamp (a panel's
    symbols share their blocks). Too few timestamps are refused, naming the setting."""
    n_times = len(pd.unique(np.asarray(times)))
    block = n_times // (config.folds + 1)
    if block < 2:
        raise ValueError(
            f"walk_forward.folds={config.folds}: {n_times} timestamps are too few "
            f"(each of the {config.folds + 1} blocks needs at least 2)"
        )
    window = n_times - config.folds * block if config.mode == "rolling" else None
    return time_series_cv(times, n_splits=config.folds, window=window)


def summarise(per_fold: Sequence[Mapping[str, float | None]]) -> dict[str, float]:
    """Mean and spread (population std) of every metric all folds have a number for."""
    summary: dict[str, float] = {f"{SUMMARY_PREFIX}folds": float(len(per_fold))}
    if not per_fold:
        return summary
    keys = [k for k in per_fold[0] if all(_finite(f.get(k)) for f in per_fold)]
    for key in keys:
        values = np.array([float(f[key]) for f in per_fold])  # type: ignore[arg-type]
        summary[f"{SUMMARY_PREFIX}{key}_mean"] = float(values.mean())
        summary[f"{SUMMARY_PREFIX}{key}_std"] = float(values.std())
    return summary


_NOT_FIGURES = ("_rows", "_bars", "_window", "majority_class")


def describe_walk_forward(summary: Mapping[str, float | None]) -> str:
    """One line: each metric's mean ± spread over the folds."""
    folds = int(summary.get(f"{SUMMARY_PREFIX}folds") or 0)
    parts = []
    for key, mean in summary.items():
        if not (key.startswith(SUMMARY_PREFIX) and key.endswith("_mean") and _finite(mean)):
            continue
        name = key[len(SUMMARY_PREFIX) : -len("_mean")]
        if name.endswith(_NOT_FIGURES) or name.startswith("eval_"):
            continue  # sizes and trading activity: in the metrics, not in the headline
        spread = summary.get(f"{SUMMARY_PREFIX}{name}_std")
        spread = float("nan") if spread is None else spread
        parts.append(f"{name} {mean:.4g} ± {spread:.2g}")
    return f"walk-forward ({folds} folds): " + ", ".join(parts)


def fold_means(summary: Mapping[str, float | None]) -> dict[str, float]:
    """``{metric: mean over the folds}`` from a summary (empty: no walk-forward)."""
    return {
        key[len(SUMMARY_PREFIX) : -len("_mean")]: float(value)
        for key, value in summary.items()
        if key.startswith(SUMMARY_PREFIX) and key.endswith("_mean") and _finite(value)
    }


def log_folds(logger: Any, per_fold: Sequence[Mapping[str, float | None]]) -> None:
    """Each fold's metrics as ``walk_forward/<metric>`` at step = fold number (1..K)."""
    for number, metrics in enumerate(per_fold, start=1):
        values = {f"{KEY_PREFIX}{k}": float(v) for k, v in metrics.items() if _finite(v)}
        if values:
            logger.log(values, step=number)


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and math.isfinite(value)
