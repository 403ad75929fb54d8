"""The performance metrics of RL runs: one definition each, used everywhere.

The trainer's final ``final_*`` columns, the checkpoints' metrics, the episode
Sharpe ratio in ``reward_history`` and the tuning trials all call these
functions, so a number read from any table can be recomputed from the stored
account values with the same code.

Conventions (documented once, here):

* **Returns** are simple period returns of the account value,
  ``r_t = V_t / V_{t-1} - 1``; a series of ``n + 1`` values gives ``n`` returns.
* **Annualization** uses ``periods_per_year`` (default 252, trading days, as
  FinRL does). The environment steps once per bar of the feature table, so with
  hourly bars the default treats each bar as a day; pass the real number of bars
  per year (e.g. 24 * 252 = 6048 for hourly FX) to get calendar-true figures.
* **Risk-free rate** is 0 for every ratio.
* **Sharpe** = ``sqrt(p) * mean(r) / std(r)``, sample standard deviation
  (``ddof=1``, as pandas and FinRL compute it).
* **Sortino** = ``sqrt(p) * mean(r) / DD`` with downside deviation
  ``DD = sqrt(mean(min(r, 0)^2))`` over all periods (target return 0).
* **Annual volatility** = ``std(r) * sqrt(p)`` (``ddof=1``).
* **Maximum drawdown** is a positive fraction: the largest fall from a running
  peak, ``max_t (1 - V_t / max_{s<=t} V_s)``; 0.25 means a 25 % drop.
* **Annual return** (CAGR) = ``(V_n / V_0) ** (p / n) - 1`` over ``n`` returns.
* **Calmar** = annual return / maximum drawdown.
* **Mean reward** is the mean of the step rewards given.

A ratio whose denominator is zero, or that needs more data than given (fewer
than two returns for a standard deviation), is NaN: "undefined", never 0 or inf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_PERIODS_PER_YEAR = 252
"""Trading days per year, FinRL's annualization factor."""

ArrayLike = Sequence[float] | np.ndarray

NAN = float("nan")


def _values(values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError("account values must be finite")
    return arr


def returns_from_values(values: ArrayLike) -> np.ndarray:
    """Simple returns ``V_t / V_{t-1} - 1`` of an account-value series."""
    v = _values(values)
    if v.size < 2:
        return np.empty(0)
    if np.any(v[:-1] == 0):
        raise ValueError("account values must be non-zero to form returns")
    returns: np.ndarray = v[1:] / v[:-1] - 1.0
    return returns


def total_return(values: ArrayLike) -> float:
    """``V_end / V_0 - 1``; NaN for fewer than two values."""
    v = _values(values)
    return float(v[-1] / v[0] - 1.0) if v.size >= 2 else NAN


def sharpe_ratio(returns: ArrayLike, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR) -> float:
    """Annualized Sharpe ratio of period returns, rf = 0 (see the module docstring)."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return NAN
    std = float(r.std(ddof=1))
    if std == 0.0 or not math.isfinite(std):
        return NAN
    return float(math.sqrt(periods_per_year) * r.mean() / std)


def sortino_ratio(returns: ArrayLike, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR) -> float:
    """Annualized Sortino ratio (target 0, downside deviation over all periods)."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 1:
        return NAN
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    if downside == 0.0:
        return NAN
    return float(math.sqrt(periods_per_year) * r.mean() / downside)


def annual_volatility(
    returns: ArrayLike, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR
) -> float:
    """Standard deviation of period returns (ddof=1) times ``sqrt(periods_per_year)``."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return NAN
    return float(r.std(ddof=1) * math.sqrt(periods_per_year))


def max_drawdown(values: ArrayLike) -> float:
    """Largest peak-to-trough fall of the account value, as a positive fraction."""
    v = _values(values)
    if v.size < 1:
        return NAN
    peaks = np.maximum.accumulate(v)
    return float(np.max(1.0 - v / peaks))


def annual_return(values: ArrayLike, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR) -> float:
    """Compound annual growth rate over the series (``n`` returns = ``n`` periods)."""
    v = _values(values)
    if v.size < 2 or v[0] <= 0 or v[-1] < 0:
        return NAN
    growth = v[-1] / v[0]
    return float(growth ** (periods_per_year / (v.size - 1)) - 1.0)


def calmar_ratio(values: ArrayLike, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR) -> float:
    """Annual return divided by maximum drawdown; NaN without a drawdown."""
    mdd = max_drawdown(values)
    if not mdd or math.isnan(mdd):
        return NAN
    return float(annual_return(values, periods_per_year) / mdd)


def mean_reward(rewards: ArrayLike) -> float:
    """Mean of step rewards; NaN for none."""
    r = np.asarray(rewards, dtype=np.float64)
    return float(r.mean()) if r.size else NAN


def episode_sharpe(
    account_values: ArrayLike, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR
) -> float:
    """The Sharpe ratio of one episode's account values (``reward_history.sharpe_ratio``)."""
    return sharpe_ratio(returns_from_values(account_values), periods_per_year)


@dataclass(frozen=True)
class PerformanceMetrics:
    """Every metric of one account-value series (and its step rewards)."""

    mean_reward: float
    sharpe_ratio: float
    total_return: float
    max_drawdown: float
    annual_volatility: float
    sortino_ratio: float
    calmar_ratio: float
    annual_return: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def final_columns(self) -> dict[str, float | None]:
        """As ``agent_training_runs.final_*`` values; NaN (undefined) becomes NULL."""
        return {
            f"final_{name}": (None if math.isnan(value) else value)
            for name, value in self.to_dict().items()
            if name != "annual_return"
        }


def performance_metrics(
    account_values: ArrayLike,
    rewards: ArrayLike | None = None,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
) -> PerformanceMetrics:
    """All metrics of a series; ``rewards`` (the step rewards) only feed ``mean_reward``."""
    returns = returns_from_values(account_values)
    return PerformanceMetrics(
        mean_reward=mean_reward(rewards if rewards is not None else []),
        sharpe_ratio=sharpe_ratio(returns, periods_per_year),
        total_return=total_return(account_values),
        max_drawdown=max_drawdown(account_values),
        annual_volatility=annual_volatility(returns, periods_per_year),
        sortino_ratio=sortino_ratio(returns, periods_per_year),
        calmar_ratio=calmar_ratio(account_values, periods_per_year),
        annual_return=annual_return(account_values, periods_per_year),
    )


__all__ = [
    "DEFAULT_PERIODS_PER_YEAR",
    "PerformanceMetrics",
    "annual_return",
    "annual_volatility",
    "calmar_ratio",
    "episode_sharpe",
    "max_drawdown",
    "mean_reward",
    "performance_metrics",
    "returns_from_values",
    "sharpe_ratio",
    "sortino_ratio",
    "total_return",
]
