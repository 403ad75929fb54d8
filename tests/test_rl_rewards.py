"""Reward wrappers on hand-computed account paths, and on FinRL's real environment."""

from __future__ import annotations

import math
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

from suho_models.enums import RewardFunctionType
from trainers.data.synth import generate_ml_features
from trainers.rl.config import DEFAULT_INDICATORS
from trainers.rl.finrl_env import (
    EnvConfig,
    make_finrl_env,
    split_periods,
    state_space,
    stock_trading_env_class,
    to_finrl_frame,
)
from trainers.rl.rewards import (
    REWARD_WRAPPERS,
    DifferentialSharpe,
    DrawdownPenalized,
    LogReturn,
    PortfolioValueChange,
    wrap_reward,
)

PATH = [100.0, 110.0, 99.0, 108.9]  # returns +10 %, -10 %, +10 %


class FakeFinRL(gym.Env):
    """Follows an account-value path the way FinRL's env does: one value appended per
    trading step, then a terminal no-op step that re-emits the last reward."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
    action_space = gym.spaces.Box(-1, 1, shape=(1,), dtype=np.float32)

    def __init__(self, path: list[float]) -> None:
        self.path = path

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[list, dict]:
        self.day = 0
        self.asset_memory = [self.path[0]]
        self.last = 0.0
        return [1, 2.0, np.float64(3.0)], {}

    def step(self, action: Any) -> tuple[list, float, bool, bool, dict]:
        if self.day >= len(self.path) - 1:
            return [1, 2.0, 3.0], self.last, True, False, {}
        self.day += 1
        self.asset_memory.append(self.path[self.day])
        self.last = 12345.0  # whatever FinRL returns: the wrappers recompute
        return [1, 2.0, 3.0], self.last, False, False, {}


def rollout(env: gym.Env) -> tuple[list[float], list[dict]]:
    env.reset()
    rewards, infos = [], []
    while True:
        obs, reward, terminated, truncated, info = env.step(np.zeros(1, dtype=np.float32))
        assert isinstance(obs, np.ndarray) and obs.dtype == np.float32
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            return rewards, infos


def test_portfolio_value_change() -> None:
    rewards, infos = rollout(PortfolioValueChange(FakeFinRL(PATH), scaling=1e-4))
    assert rewards == pytest.approx([10e-4, -11e-4, 9.9e-4, 0.0])
    assert [i["account_value"] for i in infos] == [110.0, 99.0, 108.9, 108.9]
    assert [bool(i.get("no_op")) for i in infos] == [False, False, False, True]
    np.testing.assert_array_equal(infos[-1]["episode_account_values"], PATH)
    assert "episode_account_values" not in infos[0]


def test_log_return() -> None:
    rewards, _ = rollout(LogReturn(FakeFinRL(PATH)))
    assert rewards == pytest.approx([math.log(1.1), math.log(0.9), math.log(1.1), 0.0])


def test_differential_sharpe_by_hand() -> None:
    # eta = 0.5, R = 0.1, -0.1, 0.1; A and B start at 0.
    # 1: variance 0 -> D = 0; A = 0.05, B = 0.005.
    # 2: dA = -0.15, dB = 0.005, var = 0.0025: D = (0.005 * -0.15 - 0.5 * 0.05 * 0.005)
    #    / 0.0025 ** 1.5 = -7; A = -0.025, B = 0.0075.
    # 3: dA = 0.125, dB = 0.0025, var = 0.006875:
    #    D = (0.0075 * 0.125 + 0.5 * 0.025 * 0.0025) / 0.006875 ** 1.5.
    env = DifferentialSharpe(FakeFinRL(PATH), eta=0.5)
    rewards, _ = rollout(env)
    assert rewards == pytest.approx([0.0, -7.0, 0.00096875 / 0.006875**1.5, 0.0])
    # After 3: A = -0.025 + 0.5 * 0.125, B = 0.0075 + 0.5 * 0.0025; the no-op changed nothing.
    assert (env.a, env.b) == pytest.approx((0.0375, 0.00875))
    again, _ = rollout(env)  # reset restarts the moments
    assert again == pytest.approx(rewards)


def test_drawdown_penalized_by_hand() -> None:
    rewards, _ = rollout(DrawdownPenalized(FakeFinRL(PATH), penalty=0.5))
    expected = [
        math.log(1.1),  # new peak 110, no drawdown
        math.log(0.9) - 0.5 * (1 - 99 / 110),  # 10 % under the peak
        math.log(1.1) - 0.5 * (1 - 108.9 / 110),  # 1 % under the peak
        0.0,
    ]
    assert rewards == pytest.approx(expected)


def test_factory_and_registry() -> None:
    assert set(REWARD_WRAPPERS) == set(RewardFunctionType)
    env = wrap_reward(FakeFinRL(PATH), "differential_sharpe", eta=0.1)
    assert isinstance(env, DifferentialSharpe) and env.reward_params() == {
        "eta": 0.1,
        "scaling": 1.0,
    }
    with pytest.raises(ValueError):
        DrawdownPenalized(FakeFinRL(PATH), penalty=-1)


# --------------------------------------------------------------------------- FinRL's env
@pytest.fixture(scope="module")
def finrl_frame() -> pd.DataFrame:
    features = generate_ml_features(("EURUSD", "XAUUSD"), periods=160, seed=5)
    return to_finrl_frame(features, list(DEFAULT_INDICATORS))


def test_finrl_imported_without_its_package_init(finrl_frame: pd.DataFrame) -> None:
    env_class = stock_trading_env_class()
    assert env_class.__module__ == "finrl.meta.env_stock_trading.env_stocktrading"
    assert "finrl.train" not in sys.modules  # finrl/__init__ would have imported it
    assert getattr(sys.modules["finrl"], "__suho_stub__", False)


def test_finrl_frame_is_a_full_panel(finrl_frame: pd.DataFrame) -> None:
    data = finrl_frame
    assert list(data.columns[:7]) == ["date", "tic", "open", "high", "low", "close", "volume"]
    assert data.groupby("date")["tic"].nunique().eq(2).all()
    assert (data.index.to_numpy() == np.repeat(np.arange(len(data) // 2), 2)).all()
    # A ticker missing on one day drops that day.
    holey = generate_ml_features(("EURUSD", "XAUUSD"), periods=160, seed=5)
    holey = holey.drop(index=holey.index[3])
    assert len(to_finrl_frame(holey, list(DEFAULT_INDICATORS))) == len(data) - 2
    train, trade = split_periods(data, trade_ratio=0.25)
    assert train["date"].max() < trade["date"].min()
    assert train.index.min() == 0 and trade.index.min() == 0
    assert trade.index.nunique() == round(data.index.nunique() * 0.25)


@pytest.mark.parametrize("tickers", [("EURUSD", "XAUUSD"), ("XAUUSD",)])
def test_portfolio_value_change_equals_finrl_reward(
    finrl_frame: pd.DataFrame, tickers: tuple[str, ...]
) -> None:
    """On every trading step the wrapper's reward is FinRL's own; on the terminal no-op
    FinRL repeats the last reward and the wrapper gives 0."""
    data = finrl_frame[finrl_frame["tic"].isin(tickers)].copy()
    data.index = pd.factorize(data["date"])[0]
    indicators = list(DEFAULT_INDICATORS)
    config = EnvConfig(reward_scaling=1e-4)
    raw = make_finrl_env(data, indicators, config)
    wrapped = PortfolioValueChange(make_finrl_env(data, indicators, config), scaling=1e-4)
    obs, _ = wrapped.reset()
    raw.reset()
    assert obs.shape == (state_space(len(tickers), len(indicators)),)
    rng = np.random.default_rng(0)
    steps = 0
    while True:
        action = rng.uniform(-1, 1, len(tickers)).astype(np.float32)
        _, raw_reward, raw_done, _, _ = raw.step(action)
        obs, reward, done, _, info = wrapped.step(action)
        steps += 1
        assert done == raw_done
        if done:
            assert info["no_op"] and reward == 0.0 and raw_reward != 0.0
            break
        assert reward == pytest.approx(raw_reward, rel=1e-12, abs=1e-15)
    assert steps == data.index.nunique()  # one step per day, the last a no-op
    np.testing.assert_allclose(info["episode_account_values"], raw.asset_memory)


def test_wrapped_env_passes_sb3_check_env(finrl_frame: pd.DataFrame) -> None:
    from stable_baselines3.common.env_checker import check_env

    env = make_finrl_env(finrl_frame, list(DEFAULT_INDICATORS), EnvConfig())
    check_env(LogReturn(env), warn=False)
