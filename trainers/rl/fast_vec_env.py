"""N copies of FinRL's ``StockTradingEnv`` dynamics stepped as arrays, behind SB3's
``VecEnv`` API: the dynamics of :mod:`trainers.rl.fast_env`, operation for operation,
one row per env (``tests/test_fast_env.py`` checks both against FinRL's real env)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from trainers.rl.fast_env import (
    EnvParams,
    FastStockTradingEnv,
    MarketArrays,
    config_kwargs,
    row_sum,
)
from trainers.rl.finrl_env import EnvConfig


class FastVecEnv(VecEnv):
    """N copies of :class:`FastStockTradingEnv` stepped as arrays, behind SB3's ``VecEnv``.

    Like ``DummyVecEnv`` over N single envs: float32 observations and rewards, an
    env that terminates is reset at once, its last observation in
    ``info["terminal_observation"]``. Every info also has ``TimeLimit.truncated``
    (False) and ``account_value``; a terminal one has ``no_op`` (FinRL's last step
    trades nothing) and ``episode_account_values``, the episode's asset memory taken
    before the reset wipes it.

    ``terminal_reward="finrl"`` repeats the previous step's reward on the terminal
    no-op, as FinRL does; ``"zero"`` gives 0 there, as the project's
    ``portfolio_value_change`` wrapper does (whose other rewards equal FinRL's).
    """

    def __init__(
        self,
        market: MarketArrays,
        n_envs: int = 1,
        *,
        hmax: int = 100,
        initial_amount: float = 1_000_000.0,
        num_stock_shares: Sequence[int] | None = None,
        buy_cost_pct: float | Sequence[float] = 0.001,
        sell_cost_pct: float | Sequence[float] = 0.001,
        reward_scaling: float = 1e-4,
        turbulence_threshold: float | None = None,
        terminal_reward: str = "finrl",
        sizing: str = "hmax",
        position_fraction: float = 1.0,
    ) -> None:
        if int(n_envs) != n_envs or n_envs < 1:
            raise ValueError(f"n_envs: must be a positive integer (got {n_envs!r})")
        if terminal_reward not in ("finrl", "zero"):
            raise ValueError(f"terminal_reward: 'finrl' or 'zero' (got {terminal_reward!r})")
        p = self._params = EnvParams(
            market,
            hmax,
            initial_amount,
            num_stock_shares,
            buy_cost_pct,
            sell_cost_pct,
            reward_scaling,
            turbulence_threshold,
            sizing,
            position_fraction,
        )
        n = int(n_envs)
        self.market = market
        self.stock_dim = p.stock_dim
        self.hmax = hmax
        self.initial_amount = initial_amount
        self.reward_scaling = reward_scaling
        self.turbulence_threshold = turbulence_threshold
        self.terminal_reward = terminal_reward
        self._tradeable = market.tradeable
        self._sell_cost = np.array(p.sell_cost_pct)
        self._buy_cost = np.array(p.buy_cost_pct)
        self._rows = np.arange(n)
        self._row_column = self._rows[:, None]
        self._ranks = np.arange(p.stock_dim)
        # Equal costs for every ticker need no reordering (the common case).
        self._uniform_costs = len(set(p.sell_cost_pct)) == len(set(p.buy_cost_pct)) == 1
        days, stocks = market.n_days, p.stock_dim
        self.day = np.zeros(n, dtype=np.int64)
        self.cash = np.zeros(n)
        self.holdings = np.zeros((n, stocks))
        self.turbulence = np.zeros(n)
        self.cost = np.zeros(n)
        self.trades = np.zeros(n, dtype=np.int64)
        self.reward = np.zeros(n)
        self.episode = np.zeros(n, dtype=np.int64)
        # Memories by day: asset[i, d] is env i's account value after day d's close.
        self._asset = np.zeros((n, days))
        self._changes = np.zeros((n, days - 1))
        self._executed = np.zeros((n, days - 1, stocks), dtype=np.int64)
        self._actions: np.ndarray | None = None
        action_space, observation_space = p.spaces()
        self.render_mode = None
        super().__init__(n, observation_space, action_space)
        self._start(self._rows)

    # ------------------------------------------------------------------ dynamics
    def _start(self, rows: np.ndarray) -> None:
        p = self._params
        self.day[rows] = 0
        self.cash[rows] = float(self.initial_amount)
        self.holdings[rows] = p.start_holdings
        self.turbulence[rows] = 0.0
        self.cost[rows] = 0.0
        self.trades[rows] = 0
        self._asset[rows, 0] = p.start_value

    def _observations(self) -> np.ndarray:
        """The state as DummyVecEnv buffers it: float32, one row per env."""
        s = self.stock_dim
        day = self.day
        obs = np.empty((self.num_envs, self.market.state_dim), dtype=np.float32)
        obs[:, 0] = self.cash
        obs[:, 1 : 1 + s] = self.market.close[day]
        obs[:, 1 + s : 1 + 2 * s] = self.holdings
        obs[:, 1 + 2 * s :] = self.market.tech[day]
        return obs

    def states(self) -> np.ndarray:
        """The state at full precision (float64), one row per env."""
        day = self.day
        return np.concatenate(
            [self.cash[:, None], self.market.close[day], self.holdings, self.market.tech[day]],
            axis=1,
        )

    def reset(self) -> np.ndarray:
        self._start(self._rows)
        self.episode += 1
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return self._observations()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        assert self._actions is not None, "step_async first"
        actions = np.asarray(self._actions)
        self._actions = None
        if actions.shape != (self.num_envs, self.stock_dim):
            raise ValueError(
                f"actions: shape {actions.shape}, expected {(self.num_envs, self.stock_dim)}"
            )
        market, rows, s = self.market, self._rows, self.stock_dim
        day, cash, holdings, cost, trades = (
            self.day,
            self.cash,
            self.holdings,
            self.cost,
            self.trades,
        )
        done = day >= market.n_days - 1
        live = ~done
        hmax = self.hmax
        prices = market.close[day]
        begin = cash + row_sum(prices * holdings)
        if self._params.sizing == "hmax":
            wanted = (actions * hmax).astype(int)
        else:
            fraction = self._params.position_fraction
            per_share = (fraction * begin / s)[:, None] / prices
            wanted = (actions.astype(np.float64) * per_share).astype(int)
        threshold = self.turbulence_threshold
        if threshold is not None:
            sell_all = live & (self.turbulence >= threshold)
            buy_ok = self.turbulence < threshold
            wanted[sell_all] = -hmax
        else:
            sell_all = np.zeros(self.num_envs, dtype=bool)
            buy_ok = np.ones(self.num_envs, dtype=bool)
        # Each row in its own trading order: column k holds the k-th ticker of argsort.
        order = np.argsort(wanted, axis=1)
        at = (self._row_column, order)
        w, p, h = wanted[at], prices[at], holdings[at]
        tradeable = self._tradeable[day][at]
        n_sell = np.count_nonzero(wanted < 0, axis=1)
        n_buy = np.count_nonzero(wanted > 0, axis=1)
        ranks = self._ranks
        executed = w.astype(np.float64)
        # Sells touch each ticker once, so shares and amounts are known up front; only
        # cash and cost accumulate, in order.
        selling = live[:, None] & (ranks < n_sell[:, None])
        if selling.any():
            cut = self._sell_cost[None, :] if self._uniform_costs else self._sell_cost[order]
            everything = sell_all[:, None]
            n = np.where(everything, h, np.minimum(np.abs(w), h))
            ok = selling & (h > 0) & np.where(everything, p > 0, tradeable)
            gross = p * n
            amount, fee = gross * (1 - cut), gross * cut
            for k in range(int(n_sell.max())):
                np.add(cash, amount[:, k], out=cash, where=ok[:, k])
                np.add(cost, fee[:, k], out=cost, where=ok[:, k])
            h = np.where(ok, h - n, h)
            trades += ok.sum(axis=1)
            executed = np.where(selling, np.where(ok, -n, 0.0), executed)
        # Buys: the cash left bounds each, so one rank at a time, from the largest action.
        buying = live[:, None] & (ranks >= s - n_buy[:, None])
        if buying.any():
            fee_pct = self._buy_cost[None, :] if self._uniform_costs else self._buy_cost[order]
            unit = p * (1 + fee_pct)
            ok = buying & buy_ok[:, None] & tradeable
            bought = np.zeros_like(p)
            for k in range(s - 1, s - 1 - int(n_buy.max()), -1):
                n = np.minimum(np.floor_divide(cash, unit[:, k]), w[:, k])
                gross = p[:, k] * n
                np.subtract(cash, gross * (1 + fee_pct[:, k]), out=cash, where=ok[:, k])
                np.add(cost, gross * fee_pct[:, k], out=cost, where=ok[:, k])
                bought[:, k] = n
            h = np.where(ok, h + bought, h)
            trades += ok.sum(axis=1)
            executed = np.where(buying, np.where(ok, bought, 0.0), executed)
        holdings[at] = h
        wanted[at] = executed
        executed = wanted

        live_rows = rows[live]
        self._executed[live_rows, day[live]] = executed[live]
        day[live] += 1
        if threshold is not None:
            assert market.turbulence is not None  # a threshold comes with the column
            self.turbulence[live] = market.turbulence[day[live]]
        end = cash + row_sum(market.close[day] * holdings)
        change = end - begin
        self._asset[live_rows, day[live]] = end[live]
        self._changes[live_rows, day[live] - 1] = change[live]
        self.reward[live] = change[live] * self.reward_scaling
        rewards = self.reward.astype(np.float32)
        if self.terminal_reward == "zero":
            rewards[done] = 0.0
        obs = self._observations()
        infos: list[dict[str, Any]] = [
            {"TimeLimit.truncated": False, "account_value": value} for value in end.tolist()
        ]
        if done.any():
            for r in rows[done].tolist():
                info = infos[r]
                info["no_op"] = True
                info["terminal_observation"] = obs[r].copy()
                info["episode_account_values"] = self._asset[r, : day[r] + 1].copy()
            self._start(rows[done])
            self.episode[done] += 1
            for r in rows[done].tolist():
                self.reset_infos[r] = {}
            obs[done] = self._observations()[done]
        return obs, rewards, done.copy(), infos

    # ------------------------------------------------------------------ per-env views
    def asset_memory(self, index: int) -> list[float]:
        values: list[float] = self._asset[index, : self.day[index] + 1].tolist()
        return values

    def rewards_memory(self, index: int) -> list[float]:
        values: list[float] = self._changes[index, : self.day[index]].tolist()
        return values

    def actions_memory(self, index: int) -> list[np.ndarray]:
        return list(self._executed[index, : self.day[index]].copy())

    def date_memory(self, index: int) -> list[Any]:
        return list(self.market.dates[: self.day[index] + 1])

    def close(self) -> None:
        pass

    _PER_ENV = frozenset(
        {"day", "cash", "holdings", "turbulence", "cost", "trades", "reward", "episode"}
    )
    _PER_ENV_MEMORY = frozenset({"asset_memory", "rewards_memory", "actions_memory", "date_memory"})

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """Per-env values of the per-env state and memories; shared attributes repeated."""
        indices = list(self._get_indices(indices))
        if attr_name in self._PER_ENV:
            values = getattr(self, attr_name)
            return [values[i].tolist() if values.ndim > 1 else values[i].item() for i in indices]
        if attr_name in self._PER_ENV_MEMORY:
            return [getattr(self, attr_name)(i) for i in indices]
        if attr_name == "state":
            states = self.states()
            return [states[i] for i in indices]
        return [getattr(self, attr_name) for _ in indices]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        if attr_name in self._PER_ENV or attr_name in self._PER_ENV_MEMORY:
            raise AttributeError(f"{attr_name}: per-env state of FastVecEnv is read-only")
        if list(self._get_indices(indices)) != list(range(self.num_envs)):
            raise AttributeError(f"{attr_name}: FastVecEnv's envs share it; set it for all")
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any
    ) -> list[Any]:
        """The per-env memories as methods (``env_method("asset_memory")``)."""
        if method_name not in self._PER_ENV_MEMORY:
            raise AttributeError(f"FastVecEnv has no per-env method {method_name!r}")
        method = getattr(self, method_name)
        return [method(i, *method_args, **method_kwargs) for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    @classmethod
    def from_config(
        cls,
        market: MarketArrays,
        config: EnvConfig,
        n_envs: int = 1,
        turbulence_threshold: float | None = None,
        terminal_reward: str = "finrl",
    ) -> FastVecEnv:
        """``n_envs`` copies of the env ``make_finrl_env`` would build from ``config``."""
        return cls(
            market,
            n_envs,
            **config_kwargs(config, market.stock_dim),
            turbulence_threshold=turbulence_threshold,
            terminal_reward=terminal_reward,
        )


__all__ = ["FastStockTradingEnv", "FastVecEnv", "MarketArrays"]
