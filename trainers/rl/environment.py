"""From a run's configuration to its environments: load ``ml_features`` (the same
table and column config as the supervised trainer), build FinRL's frame, split
train / trade, and wrap FinRL's env with the configured reward."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from repositories.features import FeatureTable
from suho_models.db import Database
from suho_models.enums import RewardFunctionType
from trainers.data.source import is_file_source, load_features, source_bars
from trainers.data.spec import FeatureSpec
from trainers.data.synth import OHLCV_COLUMNS
from trainers.rl.config import RLConfig
from trainers.rl.fast_env import FastStockTradingEnv, MarketArrays
from trainers.rl.fast_vec_env import FastVecEnv
from trainers.rl.finrl_env import (
    ENV_MODULE,
    EnvConfig,
    MarketData,
    make_finrl_env,
    split_periods,
    to_finrl_frame,
)
from trainers.rl.observation import ObservationScaling, ScaledObservation, VecScaledObservation
from trainers.rl.rewards import AccountValueReward, VecLogReturn, wrap_reward

FINRL_ENV_CLASS = f"{ENV_MODULE}.StockTradingEnv"

log = logging.getLogger(__name__)


def _source_schema(config: RLConfig, db: Database | None) -> Any:
    source = config.source
    if is_file_source(source):
        path = Path(source)
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            return {f.name: str(f.type) for f in schema}
        return pd.read_csv(path, nrows=100)
    if db is None:
        raise ValueError("source: a table source needs a database")
    spec = config.features
    return FeatureTable(db, source, spec.time_column, spec.symbol_column or "symbol").schema()


def resolve_indicators(config: RLConfig, db: Database | None) -> list[str]:
    """The indicator columns: ``config.indicators``, or all features ``config.features``
    selects from the source's schema."""
    if config.indicators is not None:
        return list(config.indicators)
    return config.features.resolve(_source_schema(config, db)).features


def load_market(
    config: RLConfig,
    db: Database | None,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    trade_start: dt.datetime | None = None,
) -> MarketData:
    """Read the features and split them into FinRL's train and trade frames.

    ``start``/``end``/``trade_start`` override the config's (a resumed run passes the
    periods it recorded, so new rows in the table do not move its split).
    """
    indicators = resolve_indicators(config, db)
    spec = config.features
    load_spec = FeatureSpec(
        time_column=spec.time_column,
        symbol_column=spec.symbol_column,
        target_columns=[],
        feature_columns=list(dict.fromkeys([*OHLCV_COLUMNS, *indicators])),
    )
    frame, roles = load_features(
        config.source,
        load_spec,
        db,
        start or config.start,
        end or config.end,
        config.symbols,
    )
    per_year = source_bars(
        config.source, config.features, db, frame, roles, config.periods_per_year
    )
    data = to_finrl_frame(frame, indicators, roles.time, roles.symbol)
    check_dropped_rows(frame, data, [*OHLCV_COLUMNS, *indicators], roles.time, config)
    if data.empty:
        raise ValueError(
            f"no usable rows in {config.source!r} for symbols={config.symbols}, "
            f"start={start or config.start}, end={end or config.end}"
        )
    train, trade = split_periods(data, trade_start or config.trade_start, config.trade_ratio)
    tickers = sorted(data["tic"].unique().tolist())
    market = MarketData(train=train, trade=trade, tickers=tickers, indicators=indicators)
    market.extra["annualisation"] = per_year
    return market


def check_dropped_rows(
    frame: pd.DataFrame, data: pd.DataFrame, columns: list[str], time: str, config: RLConfig
) -> None:
    """FinRL needs every value of every ticker on every day, so rows with NaN values
    (infinite ones are refused earlier, by FeatureSpec) and days missing a ticker are
    left out. Say so, with the columns,
    counts and what is kept; refuse when more than ``max_dropped_days`` of the days go."""
    days, kept_days = frame[time].nunique(), data["date"].nunique()
    if kept_days == days and len(data) == len(frame):
        return
    values = frame[columns].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    counts = {c: int(n) for c, n in zip(columns, bad.sum(axis=0), strict=True) if n}
    shown = ", ".join(f"{c} ({n})" for c, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    why = f"NaN values in {shown}" if counts else "no NaN values, but time steps missing a ticker"
    message = (
        f"{config.source!r}: {why}; kept {len(data)} of {len(frame)} rows and {kept_days} of "
        f"{days} time steps (bars; one is left out when any ticker lacks a finite row for it)"
    )
    if days and (days - kept_days) / days > config.max_dropped_days:
        raise ValueError(
            f"{message}: more than max_dropped_days={config.max_dropped_days:.0%} of the time "
            "steps would be left out; choose other indicators, a later start, or fill the gaps"
        )
    log.warning("%s", message)


def env_config(config: RLConfig) -> EnvConfig:
    return EnvConfig(
        hmax=config.hmax,
        initial_amount=config.initial_amount,
        buy_cost_pct=config.buy_cost_pct,
        sell_cost_pct=config.sell_cost_pct,
        reward_scaling=config.reward_scaling,
        sizing=config.sizing,
        position_fraction=config.position_fraction,
    )


def market_arrays(data: pd.DataFrame, market: MarketData) -> MarketArrays:
    """The fast env's arrays of one of ``market``'s frames, built once per frame."""
    cache: list[tuple[pd.DataFrame, MarketArrays]] = market.extra.setdefault("arrays", [])
    for frame, arrays in cache:
        if frame is data:
            return arrays
    arrays = MarketArrays.from_frame(data, market.indicators)
    cache.append((data, arrays))
    return arrays


def observation_scaling(market: MarketData, config: RLConfig) -> ObservationScaling | None:
    """The run's observation statistics (None: FinRL's raw state). Fitted on the whole
    training period the first time; a stored run's come from its ``env_config_json``
    (:func:`use_stored_scaling`)."""
    if config.observation == "finrl":
        return None
    scaling = market.extra.get("observation_scaling")
    if scaling is None:
        tech = market_arrays(market.train, market).tech
        scaling = ObservationScaling.fit(tech, market.stock_dim, config.initial_amount)
        market.extra["observation_scaling"] = scaling
    return scaling


def stored_scaling(stored: str | dict[str, Any] | None) -> ObservationScaling | None:
    """The statistics a run stored in its ``env_config_json`` (None: raw observation)."""
    data = json.loads(stored) if isinstance(stored, str) else stored
    scaling = (data or {}).get("observation_scaling")
    return None if scaling is None else ObservationScaling.from_json(scaling)


def use_stored_scaling(market: MarketData, stored: str | dict[str, Any] | None) -> None:
    """Make ``market``'s envs use the statistics a run stored in its ``env_config_json``
    (resume, report, deploy)."""
    scaling = stored_scaling(stored)
    if scaling is not None:
        market.extra["observation_scaling"] = scaling


def _single_env(data: pd.DataFrame, market: MarketData, config: RLConfig) -> gym.Env:
    cfg = env_config(config)
    if config.env == "fast":
        env: gym.Env = FastStockTradingEnv.from_config(market_arrays(data, market), cfg)
    else:
        env = make_finrl_env(data, market.indicators, cfg)
    scaling = observation_scaling(market, config)
    if scaling is not None:
        env = ScaledObservation(env, scaling)
    return env


def make_env(data: pd.DataFrame, market: MarketData, config: RLConfig) -> AccountValueReward:
    """One env over ``data`` (one of ``market``'s frames): the configured env, sizing,
    observation and reward (evaluation runs on it: it keeps ``date_memory``)."""
    return wrap_reward(_single_env(data, market, config), config.reward, **config.reward_params)


def make_vec_env(data: pd.DataFrame, market: MarketData, config: RLConfig) -> Any:
    """``config.n_envs`` envs as an SB3 VecEnv: the fast env batched as arrays for the
    rewards it computes itself (portfolio_value_change, log_return), otherwise a
    ``DummyVecEnv`` of single envs."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

    n = config.n_envs
    vectorized = (RewardFunctionType.PORTFOLIO_VALUE_CHANGE, RewardFunctionType.LOG_RETURN)
    if config.env == "fast" and config.reward in vectorized:
        fast = FastVecEnv.from_config(
            market_arrays(data, market), env_config(config), n, terminal_reward="zero"
        )
        venv: VecEnv = fast
        scaling = observation_scaling(market, config)
        if scaling is not None:
            venv = VecScaledObservation(fast, scaling)
        if config.reward is RewardFunctionType.LOG_RETURN:
            venv = VecLogReturn(venv, **config.reward_params)
        return venv
    return DummyVecEnv([lambda: make_env(data, market, config) for _ in range(n)])


def env_config_json(market: MarketData, config: RLConfig) -> dict[str, Any]:
    """What ``agent_training_runs.env_config_json`` records: FinRL's arguments and ours
    (the env, its batch width, sizing, observation statistics and reward)."""
    env = env_config(config)
    scaling = observation_scaling(market, config)
    return {
        "env": "fast" if config.env == "fast" else FINRL_ENV_CLASS,
        "dynamics": FINRL_ENV_CLASS,
        "n_envs": config.n_envs,
        "stock_dim": market.stock_dim,
        "state_space": market.state_dim,
        "observation_space": market.state_dim if scaling is None else scaling.dim,
        "action_space": market.action_dim,
        "tech_indicator_list": market.indicators,
        "sizing": env.sizing,
        "position_fraction": env.position_fraction,
        "hmax": env.hmax,
        "initial_amount": env.initial_amount,
        "num_stock_shares": [0] * market.stock_dim,
        "buy_cost_pct": env.buy_cost_pct,
        "sell_cost_pct": env.sell_cost_pct,
        "observation": config.observation,
        "observation_scaling": None if scaling is None else scaling.to_json(),
        "reward": config.reward.value,
        "reward_params": config.reward_params,
        "periods_per_year": config.periods_per_year,
        "train_days": market.train_days,
        "trade_days": market.trade_days,
        "source": config.source,
    }


__all__ = [
    "check_dropped_rows",
    "env_config",
    "env_config_json",
    "load_market",
    "make_env",
    "make_vec_env",
    "market_arrays",
    "observation_scaling",
    "resolve_indicators",
    "stored_scaling",
    "use_stored_scaling",
]
