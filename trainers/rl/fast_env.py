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
``asset_memory``). :class:`~trainers.rl.fast_vec_env.FastVecEnv` steps N copies as
arrays behind SB3's ``VecEnv`` API, with DummyVecEnv's auto-reset and infos.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

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
        return int(self.close.shape[0])

    @property
    def stock_dim(self) -> int:
        return int(self.close.shape[1])

    @property
    def state_dim(self) -> int:
        return 1 + 2 * self.stock_dim + int(self.tech.shape[1])

    @property
    def tradeable(self) -> np.ndarray:
        """(days, tickers): False where FinRL reads the first indicator as "disabled"."""
        tradeable: np.ndarray = self.tech[:, : self.stock_dim] != 1.0
        return tradeable

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
            values: np.ndarray = df[column].to_numpy(dtype=np.float64)
            return values[order].reshape(n_days, stock_dim)

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
    if np.isscalar(value):
        values = [float(cast(float, value))] * stock_dim
    else:
        values = [float(v) for v in cast(Sequence[float], value)]
    if len(values) != stock_dim:
        raise ValueError(f"{name}: needs {stock_dim} values, one per ticker (got {len(values)})")
    return values


class EnvParams:
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


def config_kwargs(config: EnvConfig, stock_dim: int) -> dict[str, Any]:
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
            assert self._turbulence is not None  # a threshold comes with the column
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
            **config_kwargs(config, market.stock_dim),
            turbulence_threshold=turbulence_threshold,
        )


def _account(prices: list[float], holdings: list[float]) -> float:
    """FinRL's ``sum(np.array(prices) * np.array(holdings))``: left to right from 0."""
    total = 0.0
    for price, held in zip(prices, holdings, strict=True):
        total += price * held
    return total


def row_sum(x: np.ndarray) -> np.ndarray:
    """Per row, the same left-to-right sum as :func:`_account`."""
    total = x[:, 0].copy()
    for k in range(1, x.shape[1]):
        total += x[:, k]
    return total
