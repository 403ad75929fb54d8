"""The RL metrics (trainers.rl.metrics) on series whose values are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from repositories.records import AgentFinalMetrics
from trainers.rl import metrics as m

# 100 -> 110 -> 99 -> 108.9: returns +10 %, -10 %, +10 %.
VALUES = [100.0, 110.0, 99.0, 108.9]
MEAN = 1 / 30
STD = 1 / math.sqrt(75)  # sample std (ddof=1) of (0.1, -0.1, 0.1)
DOWNSIDE = math.sqrt(0.01 / 3)  # sqrt(mean(min(r, 0)^2))


def test_returns() -> None:
    assert m.returns_from_values(VALUES) == pytest.approx([0.1, -0.1, 0.1])
    assert m.returns_from_values([5.0]).size == 0


def test_known_series() -> None:
    r = m.returns_from_values(VALUES)
    assert m.sharpe_ratio(r) == pytest.approx(math.sqrt(252) * MEAN / STD)
    assert m.sharpe_ratio(r) == pytest.approx(math.sqrt(18900) / 30)  # 4.5826
    assert m.sortino_ratio(r) == pytest.approx(math.sqrt(252) * MEAN / DOWNSIDE)
    assert m.annual_volatility(r) == pytest.approx(STD * math.sqrt(252))
    assert m.total_return(VALUES) == pytest.approx(0.089)
    assert m.max_drawdown(VALUES) == pytest.approx(0.1)
    assert m.annual_return(VALUES) == pytest.approx(1.089 ** (252 / 3) - 1)
    assert m.calmar_ratio(VALUES) == pytest.approx((1.089 ** (252 / 3) - 1) / 0.1)
    assert m.mean_reward([1.0, 2.0, 6.0]) == pytest.approx(3.0)


def test_periods_per_year_scales_by_its_root() -> None:
    r = m.returns_from_values(VALUES)
    assert m.sharpe_ratio(r, 6048) == pytest.approx(m.sharpe_ratio(r) * math.sqrt(6048 / 252))
    assert m.annual_volatility(r, 1) == pytest.approx(STD)


def test_sharpe_matches_finrl_formula() -> None:
    """FinRL's env: (252 ** 0.5) * pct_change().mean() / pct_change().std()."""
    rng = np.random.default_rng(1)
    values = 1e6 * np.cumprod(1 + rng.normal(0, 0.01, 300))
    daily = pd.Series(values).pct_change(1)
    finrl = (252**0.5) * daily.mean() / daily.std()
    assert m.episode_sharpe(values) == pytest.approx(finrl, rel=1e-12)


def test_drawdown_takes_the_deepest_fall() -> None:
    # Peak 120, trough 60 (-50 %), later a new peak 200 and a fall to 150 (-25 %).
    assert m.max_drawdown([100, 120, 60, 200, 150]) == pytest.approx(0.5)
    assert m.max_drawdown([1, 2, 3]) == 0.0


def test_undefined_is_nan() -> None:
    flat = [100.0, 100.0, 100.0]
    r = m.returns_from_values(flat)
    assert math.isnan(m.sharpe_ratio(r))
    assert math.isnan(m.sortino_ratio(r))
    assert math.isnan(m.calmar_ratio(flat))
    assert m.max_drawdown(flat) == 0.0
    assert math.isnan(m.sharpe_ratio([0.1]))  # one return: no standard deviation
    assert math.isnan(m.sortino_ratio(m.returns_from_values([1, 2, 3])))  # no downside
    assert math.isnan(m.total_return([1.0]))
    assert math.isnan(m.mean_reward([]))
    with pytest.raises(ValueError):
        m.returns_from_values([1.0, float("nan")])


def test_performance_metrics_and_final_columns() -> None:
    perf = m.performance_metrics(VALUES, [0.5, -0.5, 0.3])
    assert perf.sharpe_ratio == pytest.approx(math.sqrt(18900) / 30)
    assert perf.mean_reward == pytest.approx(0.1)
    final = perf.final_columns()
    # Exactly the run's final_* columns, so it validates as AgentFinalMetrics.
    assert set(final) == set(AgentFinalMetrics.model_fields) - {"total_timesteps", "total_episodes"}
    AgentFinalMetrics.model_validate(final)
    flat = m.performance_metrics([1.0, 1.0, 1.0]).final_columns()
    assert flat["final_sharpe_ratio"] is None and flat["final_max_drawdown"] == 0.0
