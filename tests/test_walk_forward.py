"""Walk-forward folds: in time order, grouped by timestamp, expanding or rolling, and
refused naming the setting when the data are too short."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from trainers.walk_forward import WalkForwardConfig, fold_indices, fold_means, summarise


def panel(n_times: int, symbols: int = 2) -> pd.Series:
    times = pd.date_range("2024-01-01", periods=n_times, freq="h")
    return pd.Series(np.tile(times, symbols))  # a panel: every symbol at every time


@pytest.mark.parametrize("mode", ["expanding", "rolling"])
def test_folds_test_the_next_block_after_their_past(mode: str) -> None:
    times = panel(40)
    folds = fold_indices(times, WalkForwardConfig(folds=4, mode=mode))
    assert len(folds) == 4
    tested = np.concatenate([test for _, test in folds])
    assert len(np.unique(tested)) == len(tested)  # no row tested twice
    sizes = []
    for train, test in folds:
        assert times.iloc[train].max() < times.iloc[test].min()  # only the past
        assert set(times.iloc[test]).isdisjoint(set(times.iloc[train]))
        assert len(test) == 2 * 8  # 40 times / 5 blocks, both symbols
        sizes.append(len(train))
    if mode == "expanding":
        assert sizes == [16, 32, 48, 64]
    else:
        assert sizes == [16, 16, 16, 16]
        # the window slides: each fold's past ends where its test block starts
        for train, test in folds:
            assert times.iloc[train].max() + pd.Timedelta(hours=1) == times.iloc[test].min()


def test_too_short_data_and_bad_settings_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match=r"walk_forward.folds=5: 9 timestamps are too few"):
        fold_indices(panel(9), WalkForwardConfig(folds=5))
    with pytest.raises(ValidationError, match="folds"):
        WalkForwardConfig(folds=1)
    with pytest.raises(ValidationError, match="mode"):
        WalkForwardConfig(folds=3, mode="sideways")  # type: ignore[arg-type]


def test_summary_is_the_mean_and_spread_of_what_every_fold_has() -> None:
    folds = [
        {"test_accuracy": 0.5, "test_auc": 0.6},
        {"test_accuracy": 0.7, "test_auc": float("nan")},  # one fold without AUC
    ]
    summary = summarise(folds)
    assert summary["walk_forward_folds"] == 2
    assert summary["walk_forward_test_accuracy_mean"] == pytest.approx(0.6)
    assert summary["walk_forward_test_accuracy_std"] == pytest.approx(0.1)
    assert "walk_forward_test_auc_mean" not in summary  # not invented from one fold
    assert fold_means(summary) == {"test_accuracy": pytest.approx(0.6)}
