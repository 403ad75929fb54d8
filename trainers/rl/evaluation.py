"""Deterministic evaluation of an agent on a period: the equity curve, buy-and-hold
beside it, and the metrics of :mod:`trainers.rl.metrics`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trainers.baselines import TREND_WINDOW, trend_rule
from trainers.rl.config import RLConfig
from trainers.rl.environment import make_env
from trainers.rl.finrl_env import MarketData, buy_and_hold
from trainers.rl.metrics import DEFAULT_PERIODS_PER_YEAR, PerformanceMetrics, performance_metrics

SATURATED = 0.999
"""An action component this close to +-1 counts as saturated (a tanh at its bound)."""


@dataclass(frozen=True)
class Activity:
    """Whether an agent trades at all: what a stuck agent shows (issue 14).

    FinRL's ``trades`` counter counts attempted buys even of 0 shares; these count
    shares actually moved (the env's record of executed shares)."""

    steps: int
    moving_steps: int
    """Steps on which some ticker's holding changed."""
    share_moved: float
    """moving_steps / steps."""
    share_saturated: float
    """Share of action components at +-1 (|a| >= 0.999)."""
    constant_actions: bool
    """Every step's greedy action equal: the policy ignores its observation."""

    def to_dict(self) -> dict[str, float | int]:
        return {
            "eval_steps": self.steps,
            "eval_moving_steps": self.moving_steps,
            "eval_share_moved": self.share_moved,
            "eval_share_saturated": self.share_saturated,
            "eval_constant_actions": int(self.constant_actions),
        }

    @classmethod
    def of(cls, actions: np.ndarray, executed: np.ndarray) -> Activity:
        """From the raw actions (steps, tickers) and the executed shares (steps, tickers)."""
        actions = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        executed = np.asarray(executed, dtype=np.float64)
        steps = len(executed)
        moving = int(np.count_nonzero((executed != 0).any(axis=1))) if steps else 0
        return cls(
            steps=steps,
            moving_steps=moving,
            share_moved=moving / steps if steps else 0.0,
            share_saturated=float(np.mean(np.abs(actions) >= SATURATED)) if actions.size else 0.0,
            constant_actions=bool(len(actions) > 1 and np.ptp(actions, axis=0).max() <= 1e-6),
        )


@dataclass(frozen=True)
class Evaluation:
    """One deterministic episode over a period."""

    metrics: PerformanceMetrics
    benchmark: PerformanceMetrics
    """Buy-and-hold's metrics over the same days (its mean_reward is NaN)."""
    equity: pd.DataFrame
    """Columns date, account_value (the agent) and buy_and_hold, one row per day."""
    rewards: np.ndarray
    """Step rewards, one per trading step (FinRL's terminal no-op left out)."""
    actions: np.ndarray
    """The agent's raw actions, one row per step."""
    activity: Activity
    """Shares moved, saturation and constant actions of this episode."""
    trend: PerformanceMetrics | None = None
    """The trend rule's (``trainers.baselines.trend_rule``) over the same days."""

    def baseline_metrics(self) -> dict[str, float | None]:
        """Buy-and-hold's and the trend rule's figures, stored beside the agent's."""
        out: dict[str, float | None] = {
            "benchmark_total_return": self.benchmark.total_return,
            "benchmark_sharpe_ratio": self.benchmark.sharpe_ratio,
        }
        if self.trend is not None:
            out["trend_total_return"] = self.trend.total_return
            out["trend_sharpe_ratio"] = self.trend.sharpe_ratio
            out["trend_window"] = float(TREND_WINDOW)
        return out

    @property
    def account_values(self) -> np.ndarray:
        values: np.ndarray = self.equity["account_value"].to_numpy()
        return values


def run_episode(model: Any, env: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """(account values, rewards of trading steps, actions, dates) of one greedy episode."""
    obs, _ = env.reset()
    rewards: list[float] = []
    actions: list[np.ndarray] = []
    while True:
        action, _ = model.predict(obs, deterministic=True)
        actions.append(np.asarray(action))
        obs, reward, terminated, truncated, info = env.step(action)
        if not info.get("no_op"):
            rewards.append(float(reward))
        if terminated or truncated:
            break
    values = np.asarray(info["episode_account_values"], dtype=np.float64)
    dates = list(env.unwrapped.date_memory)
    return values, np.asarray(rewards), np.asarray(actions), dates


def evaluate_agent(
    model: Any, data: pd.DataFrame, market: MarketData, config: RLConfig
) -> Evaluation:
    """Run ``model`` greedily (``deterministic=True``) over ``data`` once."""
    env = make_env(data, market, config)
    values, rewards, actions, dates = run_episode(model, env)
    memory = env.unwrapped.actions_memory  # type: ignore[attr-defined]  # FinRL's env
    executed = np.asarray(memory, dtype=np.float64).reshape(-1, market.stock_dim)
    bench = buy_and_hold(data, config.initial_amount, config.buy_cost_pct)
    equity = pd.DataFrame(
        {
            "date": pd.to_datetime(dates[: len(values)], utc=True),
            "account_value": values,
        }
    )
    equity["buy_and_hold"] = bench.reindex(equity["date"]).to_numpy()
    per_year = market.extra.get("annualisation")
    ppy = config.periods_per_year or (
        per_year.periods_per_year if per_year is not None else DEFAULT_PERIODS_PER_YEAR
    )
    trend = _trend(data, market, config)
    if trend is not None:
        equity["trend_rule"] = trend.reindex(equity["date"]).to_numpy()
    return Evaluation(
        trend=None
        if trend is None
        else performance_metrics(equity["trend_rule"].ffill().to_numpy(), None, ppy),
        metrics=performance_metrics(values, rewards, ppy),
        benchmark=performance_metrics(equity["buy_and_hold"].to_numpy(), None, ppy),
        equity=equity,
        rewards=rewards,
        actions=actions,
        activity=Activity.of(actions[: len(executed)], executed),
    )


def _trend(data: pd.DataFrame, market: MarketData, config: RLConfig) -> pd.Series | None:
    """The trend rule over ``data``'s dates, its mean warmed on the bars before them."""
    history = pd.concat([market.train, data]).drop_duplicates(["date", "tic"])
    closes = history.pivot(index="date", columns="tic", values="close")
    start = data["date"].min()
    if closes.empty or pd.isna(start):
        return None
    series = trend_rule(closes, start, config.initial_amount, config.buy_cost_pct)
    series.index = pd.to_datetime(series.index, utc=True)
    return series


__all__ = ["Activity", "Evaluation", "evaluate_agent", "run_episode"]
