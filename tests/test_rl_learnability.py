"""Do the agents learn? A market the test plants a signal in, and one it does not.

The planted market: one ticker whose next-day return correlates about 0.2 with a
persistent feature ``signal`` (the rule "long while signal > 0" has a Sharpe near 1.5);
beside it two noise features. The random walk: the same, with the returns independent
of the signal. On a fixed step budget PPO and SAC, with the default configuration
(notional sizing, scaled observations, log_return x 100), must beat both doing nothing
(Sharpe 0) and buy-and-hold by a margin in Sharpe on the held-out period, for two seeds,
and must not on the random walk (one seed). The fast env keeps it within the suite's budget.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainers.rl.agents import build_model
from trainers.rl.config import RLConfig
from trainers.rl.environment import make_vec_env
from trainers.rl.evaluation import evaluate_agent
from trainers.rl.finrl_env import MarketData, reindex_days
from trainers.rl.trainer import rollout_params, torch_threads

TRAIN_DAYS = 1000
TRADE_DAYS = 1000
INDICATORS = ["signal", "noise_a", "noise_b"]
MARGIN = 0.4
"""Sharpe margin over max(0, buy-and-hold): about one sampling error of a 1,000-day Sharpe."""

BUDGET = {"ppo": 24_576, "sac": 1_500}
PARAMS = {
    "ppo": {"net_arch": "small", "n_steps": 256, "batch_size": 256, "learning_rate": 3e-4},
    "sac": {
        "net_arch": "small",
        "learning_starts": 200,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "train_freq": 2,
    },
}


def planted_market(seed: int, correlation: float) -> MarketData:
    """One ticker, daily vol 1%, no drift; ``signal`` an AR(1) (phi 0.9), and tomorrow's
    return ``0.01 * (c * signal + sqrt(1 - c^2) * noise)``."""
    rng = np.random.default_rng(seed)
    days = TRAIN_DAYS + TRADE_DAYS
    shocks = rng.standard_normal(days)
    signal = np.empty(days)
    signal[0] = shocks[0]
    for t in range(1, days):
        signal[t] = 0.9 * signal[t - 1] + np.sqrt(1 - 0.81) * shocks[t]
    noise = rng.standard_normal(days)
    returns = np.zeros(days)
    returns[1:] = 0.01 * (correlation * signal[:-1] + np.sqrt(1 - correlation**2) * noise[1:])
    close = 100.0 * np.exp(np.cumsum(returns))
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2020-01-01", periods=days, freq="D", tz="UTC"),
            "tic": "PLANTED",
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": 1.0,
            "signal": signal,
            "noise_a": rng.standard_normal(days),
            "noise_b": rng.standard_normal(days),
        }
    )
    train, trade = frame.iloc[:TRAIN_DAYS], frame.iloc[TRAIN_DAYS:]
    return MarketData(reindex_days(train), reindex_days(trade), ["PLANTED"], INDICATORS)


def sharpe_edge(agent: str, seed: int, correlation: float) -> tuple[float, float]:
    """(agent's held-out Sharpe, max(0, buy-and-hold's)) after the fixed budget."""
    market = planted_market(seed, correlation)
    config = RLConfig(
        agent=agent,
        indicators=INDICATORS,
        buy_cost_pct=1e-4,
        sell_cost_pct=1e-4,
        n_envs=8 if agent == "ppo" else 1,
        agent_params=PARAMS[agent],
        seed=seed,
    )
    with torch_threads(1):
        env = make_vec_env(market.train, market, config)
        model = build_model(agent, env, rollout_params(config), timesteps=BUDGET[agent], seed=seed)
        model.learn(BUDGET[agent])
        evaluation = evaluate_agent(model, market.trade, market, config)
    sharpe = evaluation.metrics.sharpe_ratio
    benchmark = max(0.0, evaluation.benchmark.sharpe_ratio)
    return (0.0 if np.isnan(sharpe) else sharpe), benchmark


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["ppo", "sac"])
def test_agents_learn_a_planted_signal_and_find_none_in_a_random_walk(agent: str) -> None:
    planted = [sharpe_edge(agent, seed, 0.2) for seed in (1, 2)]
    for sharpe, benchmark in planted:
        assert sharpe > benchmark + MARGIN, (agent, planted)
    sharpe, benchmark = sharpe_edge(agent, 1, 0.0)  # one seed: the test's time budget
    assert sharpe <= benchmark + MARGIN, (agent, "edge on a random walk", sharpe, benchmark)
