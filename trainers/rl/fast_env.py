"""FinRL's ``StockTradingEnv`` dynamics on numpy arrays, one env or N at once.

FinRL's env indexes a pandas frame on every step (``df.loc[day, :]``) and keeps its
state in a Python list; most of its time goes there. Here the frame is read once into
:class:`MarketArrays` and every step works on arrays. The dynamics are FinRL 0.3.7's
(``finrl/meta/env_stock_trading/env_stocktrading.py``) operation for operation, in the
same order, so that the floating-point results are bit-identical (the golden tests in
``tests/test_fast_env.py`` check it against FinRL's real env):

* actions times ``hmax`` in the action's dtype, then truncated to int;
* with a turbulence threshold, turbulence ``>=`` threshold replaces the actions by
  ``-hmax`` and sells every holding of a ticker priced above 0; buys need turbulence
  ``<`` threshold (so a NaN turbulence neither sells all nor buys). The turbulence is
  0 on the first step of an episode and then the day's value of the first row;
* sells in ``np.argsort`` order of the actions, then buys in its reverse, one at a
  time (cash is updated between them, which bounds buys by the cash left);
  ``cash // (price * (1 + cost))`` bounds a buy, ``(price * n) * (1 -/+ cost)`` is the
  cash moved, ``(price * n) * cost`` the cost;
* a ticker whose first indicator equals exactly 1.0 is neither bought nor sold (FinRL
  reads that slot as a "disabled" flag: ``state[...] != True``), except by the
  turbulence sell-all;
* ``trades`` counts every attempted buy (even of 0 shares) and every sell of a held
  ticker; the recorded actions are the shares actually moved;
* the account value is ``cash + sum(price * holdings)`` summed left to right; the
  reward is its change times ``reward_scaling``;
* the step on the last day is a no-op that returns the previous step's reward with
  ``terminated=True``; a single-ticker env starts with 0 shares whatever
  ``num_stock_shares`` says (its asset memory still counts them).

What is not reproduced: FinRL's printing and plots, ``state_memory`` (which FinRL never
clears, so it grows across episodes), ``previous_state``/``initial=False`` (continuing
from another env's state), and the unused ``np_random``.

:class:`FastStockTradingEnv` is a gymnasium env (state as float64, FinRL's values at
full precision; the project's reward wrappers work on it unchanged, since they read
``asset_memory``). :class:`FastVecEnv` steps N copies as arrays behind SB3's ``VecEnv``
API, with DummyVecEnv's auto-reset and infos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from trainers.rl.finrl_env import EnvConfig


@dataclass(frozen=True, eq=False)
class MarketArrays:
    """The market FinRL's env reads from its frame, as arrays indexed by day.

    ``tech`` has FinRL's state layout: every ticker's first indicator, then every
    ticker's second, and so on. Rows within a day keep the frame's order (FinRL's
    ``df.loc[day]`` does).
    """

    tickers: tuple[str, ...]
    indicators: tuple[str, ...]
    dates: tuple[Any, ...]
    close: np.ndarray  # (days, tickers) float64
    tech: np.ndarray  # (days, indicators * tickers) float64
    turbulence: np.ndarray | None  # (days,) float64: the first row's value of each day

    @property
    def n_days(self) -> int:
        return self.close.shape[0]

    @property
    def stock_dim(self) -> int:
        return self.close.shape[1]

    @property
    def state_dim(self) -> int:
        return 1 + 2 * self.stock_dim + self.tech.shape[1]

    @property
    def tradeable(self) -> np.ndarray:
        """(days, tickers): False where FinRL reads the first indicator as "disabled"."""
        return self.tech[:, : self.stock_dim] != 1.0

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        indicators: Sequence[str],
        risk_indicator_col: str | None = "turbulence",
    ) -> MarketArrays:
        """The arrays of the frame FinRL's env gets: indexed by day number 0..D-1, every
        day with a row per ticker, columns ``date``, ``tic``, ``close`` and
        ``indicators`` (and ``risk_indicator_col`` if present)."""
        indicators = tuple(indicators)
        if not indicators:
            raise ValueError("indicators: FinRL's env needs at least one (got none)")
        for column in ("date", "tic", "close", *indicators):
            if column not in df.columns:
                raise ValueError(f"frame has no column {column!r}")
        labels = np.asarray(df.index)
        if len(labels) == 0:
            raise ValueError("frame: no rows")
        days, counts = np.unique(labels, return_counts=True)
        n_days = len(days)
        if not np.issubdtype(days.dtype, np.integer) or not np.array_equal(days, np.arange(n_days)):
            raise ValueError(
                f"frame index: must number the days 0..{n_days - 1} (got {days[:5].tolist()}...)"
            )
        stock_dim = int(df["tic"].nunique())
        if not (counts == stock_dim).all():
            bad = int(days[np.argmax(counts != stock_dim)])
            raise ValueError(
                f"frame: day {bad} has {int(counts[bad])} rows for {stock_dim} tickers "
                "(FinRL needs a full panel)"
            )
        order = np.argsort(labels, kind="stable")  # each day's rows in frame order

        def panel(column: str) -> np.ndarray:
            return df[column].to_numpy(dtype=np.float64)[order].reshape(n_days, stock_dim)

        close = panel("close")
        if not (np.isfinite(close).all() and (close > 0).all()):
            day = int(np.argmax(~(np.isfinite(close) & (close > 0)).all(axis=1)))
            raise ValueError(f"close: must be finite and > 0 (day {day}: {close[day].tolist()})")
        tics = df["tic"].to_numpy()[order].reshape(n_days, stock_dim)
        if not (tics == tics[0]).all():
            raise ValueError("tic: every day must list the tickers in the same order")
        tech = np.concatenate([panel(c) for c in indicators], axis=1)
        turbulence = None
        if risk_indicator_col is not None and risk_indicator_col in df.columns:
            turbulence = panel(risk_indicator_col)[:, 0].copy()
        first_rows = df["date"].iloc[order[::stock_dim]]
        return cls(
            tickers=tuple(str(t) for t in tics[0]),
            indicators=indicators,
            dates=tuple(first_rows.tolist()),
            close=np.ascontiguousarray(close),
            tech=np.ascontiguousarray(tech),
            turbulence=turbulence,
        )


def _per_ticker(value: float | Sequence[float], stock_dim: int, name: str) -> list[float]:
    values = [float(value)] * stock_dim if np.isscalar(value) else [float(v) for v in value]
    if len(values) != stock_dim:
        raise ValueError(f"{name}: needs {stock_dim} values, one per ticker (got {len(values)})")
    return values


class _Params:
    """FinRL's constructor arguments, checked once, shared by both envs."""

    def __init__(
        self,
        market: MarketArrays,
        hmax: int,
        initial_amount: float,
        num_stock_shares: Sequence[int] | None,
        buy_cost_pct: float | Sequence[float],
        sell_cost_pct: float | Sequence[float],
        reward_scaling: float,
        turbulence_threshold: float | None,
        sizing: str = "hmax",
        position_fraction: float = 1.0,
    ) -> None:
        stock_dim = market.stock_dim
        if sizing not in SIZINGS:
            raise ValueError(f"sizing: one of {SIZINGS} (got {sizing!r})")
        if not 0 < position_fraction <= 1:
            raise ValueError(f"position_fraction: must be within (0, 1] (got {position_fraction})")
        if market.n_days < 2:
            raise ValueError(
                f"market: an episode needs at least 2 time steps (bars) (got {market.n_days})"
            )
        if turbulence_threshold is not None and market.turbulence is None:
            raise ValueError(
                f"turbulence_threshold={turbulence_threshold}: the market has no turbulence column"
            )
        shares = [0] * stock_dim if num_stock_shares is None else list(num_stock_shares)
        if len(shares) != stock_dim:
            raise ValueError(f"num_stock_shares: needs {stock_dim} values (got {len(shares)})")
        self.market = market
        self.stock_dim = stock_dim
        self.hmax = hmax
        self.initial_amount = initial_amount
        self.num_stock_shares = shares
        self.buy_cost_pct = _per_ticker(buy_cost_pct, stock_dim, "buy_cost_pct")
        self.sell_cost_pct = _per_ticker(sell_cost_pct, stock_dim, "sell_cost_pct")
        self.reward_scaling = reward_scaling
        self.turbulence_threshold = turbulence_threshold
        self.sizing = sizing
        self.position_fraction = float(position_fraction)
        # FinRL: a single ticker starts with [0] shares, several with num_stock_shares.
        self.start_holdings = [0.0] * stock_dim if stock_dim == 1 else [float(s) for s in shares]
        # FinRL: initial_amount + np.sum(np.array(num_stock_shares) * np.array(prices)).
        self.start_value = float(
            initial_amount + np.sum(np.array(shares) * np.array(market.close[0].tolist()))
        )

    def spaces(self) -> tuple[spaces.Box, spaces.Box]:
        action = spaces.Box(low=-1, high=1, shape=(self.stock_dim,))
        observation = spaces.Box(low=-np.inf, high=np.inf, shape=(self.market.state_dim,))
        return action, observation


SIZINGS = ("hmax", "notional")
"""``hmax``: FinRL's literal ``action * hmax`` shares, the same for every ticker;
``notional``: ``action * position_fraction * V / (n_tickers * price)`` shares, so a
full action trades the same cash amount, a ``1 / n_tickers`` share of the account
value ``V`` before the step, in every ticker whatever its price."""


def _config_kwargs(config: EnvConfig, stock_dim: int) -> dict[str, Any]:
    return {
        "sizing": config.sizing,
        "position_fraction": config.position_fraction,
        "hmax": config.hmax,
        "initial_amount": config.initial_amount,
        "num_stock_shares": [0] * stock_dim,
        "buy_cost_pct": config.buy_cost_pct,
        "sell_cost_pct": config.sell_cost_pct,
        "reward_scaling": config.reward_scaling,
    }


class FastStockTradingEnv(gym.Env):
    """FinRL's ``StockTradingEnv`` on :class:`MarketArrays` (same arguments, spaces,
    state, reward, terminal rule and memories; ``state`` is a float64 array)."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        market: MarketArrays,
        *,
        hmax: int = 100,
        initial_amount: float = 1_000_000.0,
        num_stock_shares: Sequence[int] | None = None,
        buy_cost_pct: float | Sequence[float] = 0.001,
        sell_cost_pct: float | Sequence[float] = 0.001,
        reward_scaling: float = 1e-4,
        turbulence_threshold: float | None = None,
        sizing: str = "hmax",
        position_fraction: float = 1.0,
    ) -> None:
        p = self._params = _Params(
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
        self.market = market
        self.stock_dim = p.stock_dim
        self.hmax = hmax
        self.initial_amount = initial_amount
        self.num_stock_shares = p.num_stock_shares
        self.reward_scaling = reward_scaling
        self.turbulence_threshold = turbulence_threshold
        self.action_space, self.observation_space = p.spaces()
        # Python lists: scalar arithmetic on Python floats is FinRL's, and fastest here.
        self._close = market.close.tolist()
        self._tech = market.tech.tolist()
        self._tradeable = market.tradeable.tolist()
        self._turbulence = None if market.turbulence is None else market.turbulence.tolist()
        self._last_day = market.n_days - 1
        self.reward = 0.0
        self.episode = 0
        self._start()

    def _start(self) -> None:
        self.day = 0
        self.cash = float(self.initial_amount)
        self.holdings = list(self._params.start_holdings)
        self.turbulence = 0.0
        self.cost = 0.0
        self.trades = 0
        self.terminal = False
        self.asset_memory: list[float] = [self._params.start_value]
        self.rewards_memory: list[float] = []
        self.actions_memory: list[np.ndarray] = []
        self.date_memory: list[Any] = [self.market.dates[0]]
        self.state = self._state()

    def _state(self) -> np.ndarray:
        day = self.day
        return np.array([self.cash, *self._close[day], *self.holdings, *self._tech[day]])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        # FinRL's reset ignores the seed: nothing in the dynamics is random.
        self._start()
        self.episode += 1
        return self.state, {}

    def step(self, actions: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        day = self.day
        self.terminal = day >= self._last_day
        if self.terminal:
            return self.state, self.reward, True, False, {}
        p = self._params
        hmax = self.hmax
        prices = self._close[day]
        holdings = self.holdings
        cash, cost, trades = self.cash, self.cost, self.trades
        begin = cash + _account(prices, holdings)
        if p.sizing == "hmax":
            actions = (np.asarray(actions) * hmax).astype(int)
        else:
            per_share = p.position_fraction * begin / self.stock_dim / np.asarray(prices)
            actions = (np.asarray(actions, dtype=np.float64) * per_share).astype(int)
        threshold = self.turbulence_threshold
        sell_all = threshold is not None and self.turbulence >= threshold
        buy_ok = threshold is None or self.turbulence < threshold
        if sell_all:
            actions = np.array([-hmax] * self.stock_dim)
        tradeable = self._tradeable[day]

        order = np.argsort(actions).tolist()
        wanted = actions.tolist()
        executed = list(wanted)
        n_sell = int(np.count_nonzero(actions < 0))
        n_buy = int(np.count_nonzero(actions > 0))
        sell_cost_pct = p.sell_cost_pct
        for i in order[:n_sell]:
            price, held = prices[i], holdings[i]
            if sell_all:
                ok = price > 0 and held > 0
                n = held
            else:
                ok = tradeable[i] and held > 0
                n = min(abs(wanted[i]), held)
            if ok:
                cash += price * n * (1 - sell_cost_pct[i])
                holdings[i] = held - n
                cost += price * n * sell_cost_pct[i]
                trades += 1
                executed[i] = -int(n)
            else:
                executed[i] = 0
        buy_cost_pct = p.buy_cost_pct
        for i in order[::-1][:n_buy]:
            if buy_ok and tradeable[i]:
                price = prices[i]
                available = cash // (price * (1 + buy_cost_pct[i]))
                n = min(available, wanted[i])
                cash -= price * n * (1 + buy_cost_pct[i])
                holdings[i] += n
                cost += price * n * buy_cost_pct[i]
                trades += 1
                executed[i] = int(n)
            else:
                executed[i] = 0
        self.actions_memory.append(np.array(executed, dtype=actions.dtype))
        self.cash, self.cost, self.trades = cash, cost, trades

        self.day = day = day + 1
        if threshold is not None:
            self.turbulence = self._turbulence[day]
        self.state = self._state()
        end = cash + _account(self._close[day], holdings)
        self.asset_memory.append(end)
        self.date_memory.append(self.market.dates[day])
        change = end - begin
        self.rewards_memory.append(change)
        self.reward = change * self.reward_scaling
        return self.state, self.reward, False, False, {}

    def render(self) -> np.ndarray:
        return self.state

    def save_asset_memory(self) -> pd.DataFrame:
        return pd.DataFrame({"date": self.date_memory, "account_value": self.asset_memory})

    @classmethod
    def from_config(
        cls, market: MarketArrays, config: EnvConfig, turbulence_threshold: float | None = None
    ) -> FastStockTradingEnv:
        """The env ``make_finrl_env`` would build from ``config``, on ``market``."""
        return cls(
            market,
            **_config_kwargs(config, market.stock_dim),
            turbulence_threshold=turbulence_threshold,
        )


def _account(prices: list[float], holdings: list[float]) -> float:
    """FinRL's ``sum(np.array(prices) * np.array(holdings))``: left to right from 0."""
    total = 0.0
    for price, held in zip(prices, holdings, strict=True):
        total += price * held
    return total


def _row_sum(x: np.ndarray) -> np.ndarray:
    """Per row, the same left-to-right sum as :func:`_account`."""
    total = x[:, 0].copy()
    for k in range(1, x.shape[1]):
        total += x[:, k]
    return total


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
        p = self._params = _Params(
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
        begin = cash + _row_sum(prices * holdings)
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
            self.turbulence[live] = market.turbulence[day[live]]
        end = cash + _row_sum(market.close[day] * holdings)
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
        return self._asset[index, : self.day[index] + 1].tolist()

    def rewards_memory(self, index: int) -> list[float]:
        return self._changes[index, : self.day[index]].tolist()

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
            **_config_kwargs(config, market.stock_dim),
            turbulence_threshold=turbulence_threshold,
            terminal_reward=terminal_reward,
        )


__all__ = ["FastStockTradingEnv", "FastVecEnv", "MarketArrays"]
