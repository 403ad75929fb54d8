"""Golden tests: the numpy envs against FinRL's real ``StockTradingEnv``, bit for bit.

The market is synthetic (its own seed): prices at levels where 100 shares can cost
more than the cash (cash-bound buys), a first indicator that is exactly 1.0 on some
days (FinRL's "disabled" quirk), and a turbulence column crossing its threshold
(sell-all days). Actions: random, extreme (+-1), tied (equal after ``int``
truncation, and exactly equal), and zero. Every comparison is exact equality.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from trainers.data.synth import generate_ml_features
from trainers.rl.config import DEFAULT_INDICATORS
from trainers.rl.fast_env import FastStockTradingEnv, MarketArrays
from trainers.rl.fast_vec_env import FastVecEnv
from trainers.rl.finrl_env import (
    EnvConfig,
    make_finrl_env,
    state_space,
    stock_trading_env_class,
    to_finrl_frame,
)
from trainers.rl.rewards import wrap_reward

INDICATORS = ["ind_a", "ind_b", "ind_c"]
LEVELS = [45.0, 6_200.0, 12_500.0, 820.0]  # 100 shares of the second cost more than the cash
THRESHOLD = 2.0
DAYS = 48


def market_frame(n_tickers: int, days: int = DAYS, seed: int = 7) -> pd.DataFrame:
    """FinRL's long frame: rows by (date, tic), index = day number."""
    rng = np.random.default_rng(seed)
    tics = [f"T{i}" for i in range(n_tickers)]
    dates = pd.date_range("2024-01-01", periods=days, freq="D", tz="UTC")
    returns = rng.normal(0.0, 0.03, size=(days, n_tickers))
    close = np.array(LEVELS[:n_tickers]) * np.exp(np.cumsum(returns, axis=0))
    first = rng.normal(1.0, 0.5, size=(days, n_tickers))
    first[rng.random((days, n_tickers)) < 0.15] = 1.0  # FinRL: "disabled" that day
    turbulence = rng.exponential(1.0, size=days)
    turbulence[rng.random(days) < 0.12] = THRESHOLD  # exactly at the threshold: >=
    frame = pd.DataFrame(
        {
            "date": np.repeat(dates, n_tickers),
            "tic": np.tile(tics, days),
            "close": close.ravel(),
            "ind_a": first.ravel(),
            "ind_b": rng.normal(0.0, 1.0, size=days * n_tickers),
            "ind_c": rng.integers(0, 5, size=days * n_tickers).astype(float),
            "turbulence": np.repeat(turbulence, n_tickers),
        }
    )
    frame.index = np.repeat(np.arange(days), n_tickers)
    return frame


ENV_KW: dict[str, Any] = {
    "hmax": 100,
    "initial_amount": 500_000.0,
    "buy_cost_pct": 0.001,
    "sell_cost_pct": 0.0015,
    "reward_scaling": 1e-4,
}


def finrl_env(frame: pd.DataFrame, turbulence_threshold: float | None = THRESHOLD) -> Any:
    n = int(frame["tic"].nunique())
    return stock_trading_env_class()(
        df=frame,
        stock_dim=n,
        hmax=ENV_KW["hmax"],
        initial_amount=ENV_KW["initial_amount"],
        num_stock_shares=[0] * n,
        buy_cost_pct=[ENV_KW["buy_cost_pct"]] * n,
        sell_cost_pct=[ENV_KW["sell_cost_pct"]] * n,
        reward_scaling=ENV_KW["reward_scaling"],
        state_space=state_space(n, len(INDICATORS)),
        action_space=n,
        tech_indicator_list=INDICATORS,
        turbulence_threshold=turbulence_threshold,
        print_verbosity=10**9,
    )


def fast_env(frame: pd.DataFrame, turbulence_threshold: float | None = THRESHOLD) -> Any:
    return FastStockTradingEnv(
        MarketArrays.from_frame(frame, INDICATORS),
        **ENV_KW,
        turbulence_threshold=turbulence_threshold,
    )


def fast_vec_env(frame: pd.DataFrame, n_envs: int, **kw: Any) -> FastVecEnv:
    market = MarketArrays.from_frame(frame, INDICATORS)
    return FastVecEnv(market, n_envs, **ENV_KW, turbulence_threshold=THRESHOLD, **kw)


# --------------------------------------------------------------------------- actions
def random_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(-1, 1, size=n).astype(np.float32)


def extreme_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=n)


def tied_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    """Equal actions, or different ones that truncate to the same share count."""
    base = rng.choice(np.array([-0.5, 0.3, 0.73, 1.0, -1.0], dtype=np.float32))
    jitter = rng.uniform(0, 0.009, size=n).astype(np.float32) * rng.integers(0, 2)
    return (np.full(n, base, dtype=np.float32) + np.sign(base) * jitter).clip(-1, 1)


def mixed_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.integers(0, 4)
    if kind == 3:
        return np.zeros(n, dtype=np.float32)
    return (random_actions, extreme_actions, tied_actions)[kind](rng, n)


ACTIONS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "random": random_actions,
    "extreme": extreme_actions,
    "tied": tied_actions,
    "mixed": mixed_actions,
}


def assert_same_env(finrl: Any, fast: FastStockTradingEnv) -> None:
    """Every piece of FinRL's episode bookkeeping, exactly."""
    assert np.array_equal(np.array(finrl.state, dtype=np.float64), fast.state)
    assert np.array_equal(np.array(finrl.asset_memory, dtype=np.float64), fast.asset_memory)
    assert np.array_equal(np.array(finrl.rewards_memory, dtype=np.float64), fast.rewards_memory)
    assert len(finrl.actions_memory) == len(fast.actions_memory)
    for a, b in zip(finrl.actions_memory, fast.actions_memory, strict=True):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    assert finrl.cost == fast.cost and finrl.trades == fast.trades
    assert finrl.day == fast.day and finrl.turbulence == fast.turbulence
    assert list(finrl.date_memory) == list(fast.date_memory)


def run_lockstep(
    n_tickers: int, actions: str, episodes: int, seed: int, threshold: float | None = THRESHOLD
) -> dict[str, int]:
    """Step FinRL and the fast env with the same actions; compare after every step."""
    frame = market_frame(n_tickers, seed=seed)
    finrl, fast = finrl_env(frame, threshold), fast_env(frame, threshold)
    rng = np.random.default_rng(seed + 100)
    seen = {"steps": 0, "sell_all": 0, "cash_bound": 0, "disabled": 0, "negative_cash": 0}
    for _ in range(episodes):
        a, _ = finrl.reset()
        b, _ = fast.reset()
        assert np.array_equal(np.array(a, dtype=np.float64), b)
        assert_same_env(finrl, fast)
        assert finrl.episode == fast.episode
        while True:
            action = ACTIONS[actions](rng, n_tickers)
            if threshold is not None and finrl.turbulence >= threshold:
                seen["sell_all"] += 1
            wanted = (action * 100).astype(int)
            cash, prices = finrl.state[0], np.array(finrl.state[1 : 1 + n_tickers])
            seen["cash_bound"] += bool(((wanted > 0) & (wanted * prices > cash)).any())
            seen["disabled"] += bool(
                (np.array(finrl.state[1 + 2 * n_tickers : 1 + 3 * n_tickers]) == 1.0).any()
            )
            s1, r1, t1, u1, _ = finrl.step(action.copy())
            s2, r2, t2, u2, _ = fast.step(action.copy())
            seen["steps"] += 1
            assert np.array_equal(np.array(s1, dtype=np.float64), s2)
            assert r1 == r2 and t1 == t2 and u1 == u2
            assert_same_env(finrl, fast)
            seen["negative_cash"] += fast.cash < 0
            if t1:
                break
    return seen


@pytest.mark.parametrize("n_tickers", [1, 2, 4])
@pytest.mark.parametrize("actions", list(ACTIONS))
def test_fast_env_equals_finrl_bit_for_bit(n_tickers: int, actions: str) -> None:
    seen = run_lockstep(n_tickers, actions, episodes=3, seed=11 + n_tickers)
    assert seen["steps"] == 3 * DAYS
    # The cases the test is for did happen.
    assert seen["sell_all"] > 0 and seen["disabled"] > 0
    if n_tickers > 1 and actions in ("random", "extreme"):
        assert seen["cash_bound"] > 0


def test_fast_env_equals_finrl_without_turbulence_threshold() -> None:
    seen = run_lockstep(4, "mixed", episodes=2, seed=5, threshold=None)
    assert seen["steps"] == 2 * DAYS and seen["sell_all"] == 0


def test_fast_env_equals_finrl_on_project_frame() -> None:
    """The frame the trainer builds from ml_features (no turbulence column)."""
    features = generate_ml_features(("EURUSD", "XAUUSD"), periods=160, seed=3)
    frame = to_finrl_frame(features, list(DEFAULT_INDICATORS))
    config = EnvConfig()
    finrl = make_finrl_env(frame, list(DEFAULT_INDICATORS), config)
    market = MarketArrays.from_frame(frame, DEFAULT_INDICATORS)
    fast = FastStockTradingEnv.from_config(market, config)
    rng = np.random.default_rng(0)
    for _ in range(2):
        finrl.reset()
        fast.reset()
        done = False
        while not done:
            action = mixed_actions(rng, 2)
            s1, r1, done, _, _ = finrl.step(action)
            s2, r2, t2, _, _ = fast.step(action)
            assert np.array_equal(np.array(s1, dtype=np.float64), s2)
            assert r1 == r2 and done == t2
        assert_same_env(finrl, fast)
    # The project's reward wrappers read asset_memory, so they work unchanged.
    wrapped_finrl = wrap_reward(
        make_finrl_env(frame, list(DEFAULT_INDICATORS), config), "log_return"
    )
    wrapped_fast = wrap_reward(FastStockTradingEnv.from_config(market, config), "log_return")
    a, _ = wrapped_finrl.reset()
    b, _ = wrapped_fast.reset()
    assert np.array_equal(a, b) and a.dtype == b.dtype == np.float32
    done = False
    while not done:
        action = random_actions(rng, 2)
        o1, r1, done, _, i1 = wrapped_finrl.step(action)
        o2, r2, _, _, i2 = wrapped_fast.step(action)
        assert np.array_equal(o1, o2) and r1 == r2 and i1.keys() == i2.keys()
    assert np.array_equal(i1["episode_account_values"], i2["episode_account_values"])


# --------------------------------------------------------------------------- batched
def test_vec_env_columns_equal_single_envs() -> None:
    """Each column of the batched env is one single env (and so FinRL's env)."""
    n_envs, n_tickers = 5, 4
    frame = market_frame(n_tickers, seed=3)
    vec = fast_vec_env(frame, n_envs)
    finrl = DummyVecEnv([lambda: finrl_env(frame) for _ in range(n_envs)])
    singles = [fast_env(frame) for _ in range(n_envs)]
    rng = np.random.default_rng(9)
    obs = vec.reset()
    assert np.array_equal(obs, finrl.reset())
    for env in singles:
        env.reset()
    for step in range(3 * DAYS + 7):
        kinds = list(ACTIONS.values())
        actions = np.stack([kinds[(step + i) % len(kinds)](rng, n_tickers) for i in range(n_envs)])
        obs, rewards, dones, infos = vec.step(actions)
        f_obs, f_rewards, f_dones, f_infos = finrl.step(actions)
        assert np.array_equal(obs, f_obs) and obs.dtype == np.float32
        assert np.array_equal(rewards, f_rewards) and rewards.dtype == np.float32
        assert np.array_equal(dones, f_dones)
        for i, env in enumerate(singles):
            state, reward, terminated, _, _ = env.step(actions[i])
            assert np.float32(reward) == rewards[i] and terminated == dones[i]
            assert infos[i]["account_value"] == env.asset_memory[-1]
            assert infos[i]["TimeLimit.truncated"] is False
            if terminated:
                assert np.array_equal(
                    infos[i]["terminal_observation"],
                    np.asarray(f_infos[i]["terminal_observation"], dtype=np.float32),
                )
                assert np.array_equal(infos[i]["terminal_observation"], state.astype(np.float32))
                assert np.array_equal(infos[i]["episode_account_values"], env.asset_memory)
                assert infos[i]["no_op"] is True
                env.reset()
            else:
                assert np.array_equal(vec.states()[i], env.state)
                assert vec.asset_memory(i) == env.asset_memory
                assert vec.rewards_memory(i) == env.rewards_memory
                assert all(
                    np.array_equal(a, b)
                    for a, b in zip(vec.actions_memory(i), env.actions_memory, strict=True)
                )
            assert vec.get_attr("cost", i)[0] == env.cost
            assert vec.get_attr("trades", i)[0] == env.trades
            assert vec.get_attr("episode", i)[0] == env.episode
    assert vec.get_attr("asset_memory") == [env.asset_memory for env in singles]


def test_vec_env_terminal_reward_zero_is_the_wrapper_reward() -> None:
    frame = market_frame(2, days=12, seed=1)
    vec = fast_vec_env(frame, 2, terminal_reward="zero")
    wrapped = DummyVecEnv([lambda: wrap_reward(finrl_env(frame), "portfolio_value_change")] * 2)
    assert np.array_equal(vec.reset(), wrapped.reset())
    rng = np.random.default_rng(2)
    for _ in range(30):
        actions = np.stack([random_actions(rng, 2) for _ in range(2)])
        obs, rewards, dones, infos = vec.step(actions)
        w_obs, w_rewards, w_dones, w_infos = wrapped.step(actions)
        assert np.array_equal(obs, w_obs) and np.array_equal(dones, w_dones)
        assert np.array_equal(rewards, w_rewards)
        for a, b in zip(infos, w_infos, strict=True):
            assert a["account_value"] == b["account_value"]
            assert a.get("no_op") == b.get("no_op")


def test_vec_env_api() -> None:
    frame = market_frame(2, days=10, seed=4)
    vec = fast_vec_env(frame, 3)
    assert vec.num_envs == 3 and vec.observation_space.shape == (1 + 2 * 2 + 3 * 2,)
    assert vec.action_space.shape == (2,) and vec.observation_space.dtype == np.float32
    assert vec.seed(5) == [5, 6, 7]
    vec.reset()
    assert vec.get_attr("day") == [0, 0, 0] and vec.get_attr("hmax", [1]) == [100]
    assert vec.env_is_wrapped(DummyVecEnv) == [False] * 3
    assert vec.env_method("asset_memory", indices=[0, 2]) == [[500_000.0]] * 2
    with pytest.raises(AttributeError, match="cash"):
        vec.set_attr("cash", 0.0)
    vec.set_attr("reward_scaling", 1e-3)
    assert vec.get_attr("reward_scaling") == [1e-3] * 3
    with pytest.raises(ValueError, match=r"actions: shape \(2, 2\)"):
        vec.step(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="n_envs"):
        fast_vec_env(frame, 0)


# --------------------------------------------------------------------------- PPO
def ppo_parameters(env: Any, n_steps: int, total: int) -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=n_steps,
        batch_size=32,
        n_epochs=2,
        policy_kwargs={"net_arch": [32]},
        seed=0,
        device="cpu",
    )
    model.learn(total_timesteps=total)
    return model.policy.state_dict()


def assert_same_parameters(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ppo_on_fast_env_ends_with_finrl_parameters() -> None:
    frame = market_frame(2, days=40, seed=8)
    on_finrl = ppo_parameters(DummyVecEnv([lambda: finrl_env(frame)]), 64, 320)
    on_fast = ppo_parameters(DummyVecEnv([lambda: fast_env(frame)]), 64, 320)
    on_vec = ppo_parameters(fast_vec_env(frame, 1), 64, 320)
    assert_same_parameters(on_finrl, on_fast)
    assert_same_parameters(on_finrl, on_vec)


def test_ppo_on_batched_env_ends_with_finrl_parameters() -> None:
    frame = market_frame(4, days=30, seed=6)
    on_finrl = ppo_parameters(DummyVecEnv([lambda: finrl_env(frame)] * 4), 32, 384)
    on_vec = ppo_parameters(fast_vec_env(frame, 4), 32, 384)
    assert_same_parameters(on_finrl, on_vec)


# --------------------------------------------------------------------------- bad input
def test_market_arrays_errors_name_the_field() -> None:
    frame = market_frame(2, days=6)
    with pytest.raises(ValueError, match="no column 'ind_z'"):
        MarketArrays.from_frame(frame, ["ind_z"])
    with pytest.raises(ValueError, match="indicators"):
        MarketArrays.from_frame(frame, [])
    with pytest.raises(ValueError, match="day 2 has 1 rows for 2 tickers"):
        MarketArrays.from_frame(frame.iloc[np.arange(len(frame)) != 5], INDICATORS)
    shifted = frame.copy()
    shifted.index = shifted.index + 1
    with pytest.raises(ValueError, match="frame index"):
        MarketArrays.from_frame(shifted, INDICATORS)
    bad = frame.copy()
    bad.loc[3, "close"] = 0.0
    with pytest.raises(ValueError, match=r"close: must be finite and > 0 \(day 3"):
        MarketArrays.from_frame(bad, INDICATORS)
    market = MarketArrays.from_frame(frame.drop(columns="turbulence"), INDICATORS)
    assert market.turbulence is None
    with pytest.raises(ValueError, match="turbulence_threshold=2.0"):
        FastStockTradingEnv(market, turbulence_threshold=2.0)
    with pytest.raises(ValueError, match="buy_cost_pct: needs 2 values"):
        FastStockTradingEnv(market, buy_cost_pct=[0.1, 0.1, 0.1])
    one_day = MarketArrays.from_frame(frame.loc[[0]], INDICATORS)
    with pytest.raises(ValueError, match=r"at least 2 time steps \(bars\)"):
        FastVecEnv(one_day, 2)


@pytest.mark.parametrize("n_tickers", [1, 4])
def test_per_ticker_costs_and_initial_shares(n_tickers: int) -> None:
    """Different costs per ticker, shares held at the start (a single ticker: FinRL
    starts it with 0 shares but counts them in the first account value)."""
    frame = market_frame(n_tickers, days=30, seed=21)
    kw: dict[str, Any] = {
        "hmax": 60,
        "initial_amount": 300_000.0,
        "num_stock_shares": [7, 0, 3, 40][:n_tickers],
        "buy_cost_pct": [0.001, 0.004, 0.0, 0.002][:n_tickers],
        "sell_cost_pct": [0.003, 0.0, 0.001, 0.0025][:n_tickers],
        "reward_scaling": 1e-3,
        "turbulence_threshold": THRESHOLD,
    }
    market = MarketArrays.from_frame(frame, INDICATORS)
    fast = FastStockTradingEnv(market, **kw)
    vec = FastVecEnv(market, 3, **kw)

    def finrl() -> Any:
        return stock_trading_env_class()(
            df=frame,
            stock_dim=n_tickers,
            state_space=state_space(n_tickers, len(INDICATORS)),
            action_space=n_tickers,
            tech_indicator_list=INDICATORS,
            print_verbosity=10**9,
            **kw,
        )

    single, batch = finrl(), DummyVecEnv([finrl] * 3)
    rng = np.random.default_rng(n_tickers)
    assert np.array_equal(vec.reset(), batch.reset())
    for _ in range(2):
        single.reset()
        fast.reset()
        assert_same_env(single, fast)
        done = False
        while not done:
            action = mixed_actions(rng, n_tickers)
            s1, r1, done, _, _ = single.step(action)
            s2, r2, t2, _, _ = fast.step(action)
            assert np.array_equal(np.array(s1, dtype=np.float64), s2) and r1 == r2
            assert done == t2
            assert_same_env(single, fast)
            actions = np.stack([mixed_actions(rng, n_tickers) for _ in range(3)])
            o1, w1, d1, _ = vec.step(actions)
            o2, w2, d2, _ = batch.step(actions)
            assert np.array_equal(o1, o2) and np.array_equal(w1, w2) and np.array_equal(d1, d2)
