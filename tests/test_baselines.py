"""Naive baselines: exact figures on small hand-made cases, and the verdict lines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainers.baselines import (
    never_traded,
    rl_verdict,
    supervised_baselines,
    supervised_verdict,
    trend_rule,
)


def test_majority_class_and_last_move_on_the_same_test_rows() -> None:
    test = pd.DataFrame(
        {
            "symbol": ["A", "B", "A", "B", "A", "B"],
            "target_direction": [1, 0, 1, 0, 0, 1],
        }
    )
    got = supervised_baselines("classification", np.array([1, 1, 0]), test,
                               "target_direction", "symbol")  # fmt: skip
    assert got["baseline_majority_class"] == 1
    assert got["baseline_majority_accuracy"] == pytest.approx(3 / 6)
    # Last move per symbol (first row of each: the majority): A 1,1,1 vs 1,1,0; B 1,0,0 vs 0,0,1.
    assert got["baseline_last_move_accuracy"] == pytest.approx(3 / 6)
    line = supervised_verdict("classification", {**got, "test_accuracy": 0.45})
    assert line.startswith("model did NOT beat the baselines: accuracy 0.450")
    assert "beat every baseline" in supervised_verdict("classification",
                                                       {**got, "test_accuracy": 0.6})  # fmt: skip


def test_regression_baselines() -> None:
    test = pd.DataFrame({"target_return": [0.01, -0.02, 0.03, 0.01]})
    got = supervised_baselines("regression", np.zeros(3), test, "target_return", None)
    assert got["baseline_zero_rmse"] == pytest.approx(np.sqrt(np.mean(test["target_return"] ** 2)))
    assert got["baseline_last_move_direction_accuracy"] == pytest.approx(1 / 4)


def test_trend_rule_is_long_above_its_mean_and_pays_costs() -> None:
    dates = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    closes = pd.DataFrame({"X": [10.0, 10.0, 12.0, 13.0, 11.0, 12.0]}, index=dates)
    values = trend_rule(closes, dates[2], 1000.0, 0.0, window=2)
    # Held over a bar when the previous close was above the 2-bar mean:
    # d2 close 12 > mean 11 -> long into d3 (+1/12); d3 13 > 12.5 -> long into d4 (-2/13);
    # d4 11 < 12 -> flat into d5.
    expected = 1000.0 * np.cumprod([1.0, 1 + 1 / 12, 1 - 2 / 13, 1.0])
    np.testing.assert_allclose(values.to_numpy(), expected)
    costly = trend_rule(closes, dates[2], 1000.0, 0.01, window=2)
    assert costly.iloc[-1] < values.iloc[-1]


def test_rl_verdict_and_the_never_traded_warning() -> None:
    metrics = {"sharpe_ratio": 0.47, "benchmark_sharpe_ratio": 1.04, "trend_sharpe_ratio": 0.2}
    assert rl_verdict(metrics) == (
        "model beat trend rule only: Sharpe 0.470 against buy-and-hold 1.040, trend rule 0.200"
    )
    flat = rl_verdict({"sharpe_ratio": float("nan"), "benchmark_sharpe_ratio": 1.04})
    assert flat.startswith("model did NOT beat the baselines: no Sharpe") and "1.040" in flat
    stuck = {"eval_moving_steps": 0, "eval_steps": 400, "eval_share_saturated": 0.88,
             "eval_constant_actions": 1}  # fmt: skip
    warning = never_traded(stuck)
    assert warning is not None and "never traded" in warning and "88%" in warning
    assert "same action at every step" in warning
    assert never_traded({"eval_moving_steps": 3}) is None


def test_regression_compares_direction_first_and_rmse_lower_is_better() -> None:
    from trainers.baselines import supervised_comparisons

    metrics = {"test_direction_accuracy": 0.56, "baseline_last_move_direction_accuracy": 0.5,
               "test_rmse": 0.012, "baseline_zero_rmse": 0.010}  # fmt: skip
    direction, rmse = supervised_comparisons("regression", metrics)
    assert direction.verdict() == supervised_verdict("regression", metrics)
    assert direction.outcome() == "beat every baseline"
    assert not rmse.higher and rmse.beaten() == [] and rmse.outcome().startswith("did NOT")
    assert rmse.verdict() == (
        "model did NOT beat the baselines: RMSE 0.012 against zero forecast 0.010"
    )
