"""FinRL's stock-trading environment, fed from ``ml_features``.

How FinRL is imported, and why. FinRL 0.3.7 declares no dependencies, and its
``finrl/__init__.py`` imports ``finrl.train``/``test``/``trade``, which pull in
alpaca-trade-api, wrds, yfinance, exchange_calendars and stockstats. Installing
those (option a) pins pandas 2.2.3, urllib3<2 and websockets 10.4 and compiles
msgpack, while this project runs pandas 3. So (option b) we import FinRL's real
environment module, ``finrl.meta.env_stock_trading.env_stocktrading``, without
executing ``finrl/__init__``: a stub package module named ``finrl`` whose
``__path__`` is the installed package directory goes into ``sys.modules``, and
the submodule is imported normally through it (``finrl.meta`` and
``finrl.meta.env_stock_trading`` have empty ``__init__`` files). The env itself
needs only numpy, pandas, gymnasium, matplotlib and stable-baselines3. Nothing
is ever downloaded: FinRL's data processors (YahooDownloader & co.) are never
imported. Side effects, same as importing the env the usual way: the env module
calls ``matplotlib.use("Agg")``; and in this process ``import finrl`` then gives
the stub (no ``finrl.train``), unless the real package was imported before.

The environment works unchanged with pandas 3 / numpy 2 (checked by the tests),
so there is no compatibility shim.

The data. FinRL wants a long frame sorted by (date, tic), indexed by a day
number, with ``close`` and every indicator for every ticker on every day. We
build it from the feature table: ``time`` -> ``date``, ``symbol`` -> ``tic``,
OHLCV, and the configured indicator columns. Days where a ticker is missing, or
any used value is NaN, are dropped (FinRL needs a full panel). The train and the
held-out trade period are split by day.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from trainers.data.synth import OHLCV_COLUMNS

ENV_MODULE = "finrl.meta.env_stock_trading.env_stocktrading"
_import_lock = threading.Lock()


def finrl_available() -> bool:
    """Whether FinRL is installed (found without importing it: its ``__init__`` fails
    without the data-source libraries we do not install)."""
    return "finrl" in sys.modules or importlib.util.find_spec("finrl") is not None


def stock_trading_env_class() -> type:
    """FinRL's ``StockTradingEnv`` class, imported without ``finrl/__init__``."""
    module = sys.modules.get(ENV_MODULE)
    if module is None:
        with _import_lock:
            module = sys.modules.get(ENV_MODULE) or _import_env_module()
    env_class: type = module.StockTradingEnv
    return env_class


def _import_env_module() -> types.ModuleType:
    if "finrl" not in sys.modules:
        spec = importlib.util.find_spec("finrl")  # finds, does not execute, the package
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(
                "FinRL is not installed: pip install --no-deps finrl==0.3.7 "
                "(plus stable-baselines3, gymnasium and matplotlib)"
            )
        stub = types.ModuleType("finrl", "FinRL namespace stub: finrl/__init__ was not run.")
        stub.__path__ = list(spec.submodule_search_locations)
        stub.__file__ = spec.origin
        stub.__suho_stub__ = True  # type: ignore[attr-defined]
        sys.modules["finrl"] = stub
    return importlib.import_module(ENV_MODULE)


def state_space(stock_dim: int, n_indicators: int) -> int:
    """FinRL's observation size: cash, then price and holding per ticker, then indicators."""
    return 1 + 2 * stock_dim + n_indicators * stock_dim


def to_finrl_frame(
    frame: pd.DataFrame,
    indicators: list[str],
    time_column: str = "time",
    symbol_column: str | None = "symbol",
) -> pd.DataFrame:
    """The feature frame in FinRL's long format (date, tic, OHLCV, indicators), full panel."""
    data = pd.DataFrame(
        {
            "date": frame[time_column].to_numpy(),
            "tic": frame[symbol_column].astype(str).to_numpy() if symbol_column else "ASSET",
        }
    )
    for column in (*OHLCV_COLUMNS, *indicators):
        if column not in frame:
            raise ValueError(f"feature frame has no column {column!r}")
        data[column] = frame[column].to_numpy(dtype=np.float64)
    value_columns = [*OHLCV_COLUMNS, *indicators]
    data = data[np.isfinite(data[value_columns].to_numpy()).all(axis=1)]
    n_tickers = data["tic"].nunique()
    complete = data.groupby("date")["tic"].transform("nunique") == n_tickers
    data = data[complete].sort_values(["date", "tic"], ignore_index=True)
    data.index = pd.factorize(data["date"])[0]
    return data


def reindex_days(data: pd.DataFrame) -> pd.DataFrame:
    """A day slice re-indexed from 0, as FinRL's ``df.loc[day]`` expects."""
    out = data.copy()
    out.index = pd.factorize(out["date"])[0]
    return out


@dataclass(frozen=True)
class MarketData:
    """The train and trade frames of one run, in FinRL's format."""

    train: pd.DataFrame
    trade: pd.DataFrame
    tickers: list[str]
    indicators: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stock_dim(self) -> int:
        return len(self.tickers)

    @property
    def state_dim(self) -> int:
        return state_space(self.stock_dim, len(self.indicators))

    @property
    def action_dim(self) -> int:
        return self.stock_dim

    @property
    def train_days(self) -> int:
        return int(self.train.index.nunique())

    @property
    def trade_days(self) -> int:
        return int(self.trade.index.nunique())

    def period_fields(self) -> dict[str, Any]:
        """The run columns train_start/_end and trade_start/_end."""
        return {
            "train_start": _py(self.train["date"].iloc[0]),
            "train_end": _py(self.train["date"].iloc[-1]),
            "trade_start": _py(self.trade["date"].iloc[0]),
            "trade_end": _py(self.trade["date"].iloc[-1]),
        }


def _py(value: Any) -> Any:
    return pd.Timestamp(value).to_pydatetime()


def split_periods(
    data: pd.DataFrame, trade_start: Any | None = None, trade_ratio: float = 0.2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, trade) by day: days before ``trade_start`` (or the first ``1 - trade_ratio``
    of the days) train; the rest is the held-out trade period. Each needs two days."""
    days = pd.Index(data["date"].unique())
    if trade_start is not None:
        cut = int(days.searchsorted(pd.Timestamp(trade_start)))
    else:
        if not 0 < trade_ratio < 1:
            raise ValueError(f"trade_ratio: must be within (0, 1) (got {trade_ratio})")
        cut = len(days) - max(2, round(len(days) * trade_ratio))
    if cut < 2 or len(days) - cut < 2:
        raise ValueError(
            f"{len(days)} usable time steps (bars) split into {cut} train and "
            f"{len(days) - cut} trade steps: each period needs at least 2 (the env steps from "
            "one bar to the next)"
        )
    is_train = data["date"].isin(days[:cut])
    return reindex_days(data[is_train]), reindex_days(data[~is_train])


@dataclass(frozen=True)
class EnvConfig:
    """FinRL ``StockTradingEnv`` arguments that do not come from the data."""

    hmax: int = 100
    initial_amount: float = 1_000_000.0
    buy_cost_pct: float = 0.001
    sell_cost_pct: float = 0.001
    reward_scaling: float = 1e-4
    sizing: str = "hmax"
    """``hmax`` (FinRL's literal shares) or ``notional`` (see ``fast_env.SIZINGS``)."""
    position_fraction: float = 1.0


class NotionalSizing(gym.ActionWrapper):
    """Notional sizing on FinRL's env: each action is rescaled by ``position_fraction *
    V / (n_tickers * price) / hmax`` before FinRL multiplies it by ``hmax`` (the fast env
    computes the same shares directly; the two can differ by one share where the
    rescaled product rounds across an integer)."""

    def __init__(self, env: gym.Env, position_fraction: float) -> None:
        super().__init__(env)
        self.position_fraction = float(position_fraction)

    def action(self, action: Any) -> np.ndarray:
        inner = self.env.unwrapped
        n = inner.stock_dim  # type: ignore[attr-defined]
        state = inner.state  # type: ignore[attr-defined]
        prices = np.asarray(state[1 : 1 + n], dtype=np.float64)
        holdings = np.asarray(state[1 + n : 1 + 2 * n], dtype=np.float64)
        value = float(state[0]) + float(np.sum(prices * holdings))
        per_share = self.position_fraction * value / n / prices
        return np.asarray(action, dtype=np.float64) * per_share / inner.hmax  # type: ignore[attr-defined, no-any-return]


def make_finrl_env(data: pd.DataFrame, indicators: list[str], config: EnvConfig) -> Any:
    """FinRL's real ``StockTradingEnv`` over ``data`` (printing switched off), sized as
    ``config.sizing`` says."""
    env = _make_finrl_env(data, indicators, config)
    if config.sizing == "notional":
        return NotionalSizing(env, config.position_fraction)
    if config.sizing != "hmax":
        raise ValueError(f"sizing: 'hmax' or 'notional' (got {config.sizing!r})")
    return env


def _make_finrl_env(data: pd.DataFrame, indicators: list[str], config: EnvConfig) -> Any:
    env_class = stock_trading_env_class()
    stock_dim = int(data["tic"].nunique())
    if data.index.nunique() < 2:
        raise ValueError("an episode needs at least 2 time steps (bars)")
    return env_class(
        df=data,
        stock_dim=stock_dim,
        hmax=config.hmax,
        initial_amount=config.initial_amount,
        num_stock_shares=[0] * stock_dim,
        buy_cost_pct=[config.buy_cost_pct] * stock_dim,
        sell_cost_pct=[config.sell_cost_pct] * stock_dim,
        reward_scaling=config.reward_scaling,
        state_space=state_space(stock_dim, len(indicators)),
        action_space=stock_dim,
        tech_indicator_list=list(indicators),
        print_verbosity=10**9,  # FinRL prints every N episodes otherwise
    )


def buy_and_hold(data: pd.DataFrame, initial_amount: float, buy_cost_pct: float) -> pd.Series:
    """Account value of buying equal cash amounts of every ticker on the first day
    (whole shares, buy cost paid) and holding; indexed by date."""
    closes = data.pivot(index="date", columns="tic", values="close").sort_index()
    first = closes.iloc[0].to_numpy()
    budget = initial_amount / closes.shape[1]
    shares = np.floor(budget / (first * (1.0 + buy_cost_pct)))
    cash = initial_amount - float(np.sum(shares * first * (1.0 + buy_cost_pct)))
    values = cash + closes.to_numpy() @ shares
    return pd.Series(values, index=closes.index, name="buy_and_hold")


__all__ = [
    "ENV_MODULE",
    "EnvConfig",
    "MarketData",
    "NotionalSizing",
    "buy_and_hold",
    "finrl_available",
    "make_finrl_env",
    "reindex_days",
    "split_periods",
    "state_space",
    "stock_trading_env_class",
    "to_finrl_frame",
]
