"""Seed-reproducible synthetic ``ml_features`` data, so trainers run without a database.

The generator simulates per-symbol OHLCV bars (GBM with stochastic volatility, a two-state
calm/turbulent regime, fat-tailed shocks and an intraday activity cycle) and derives 110
technical features from them. Features at time ``t`` only use bars up to ``t``; the targets
are the only columns that look one bar ahead. Each symbol draws from its own seed stream
(derived from ``seed`` and the symbol name), so adding or reordering symbols never changes
another symbol's series.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from trainers.data.indicators import (
    FEATURE_COLUMNS,
    OHLCV_COLUMNS,
    TARGET_COLUMNS,
    WARMUP_PERIODS,
    compute_features,
    feature_columns,
    features_wide,
    targets_wide,
)

__all__ = [
    "DEFAULT_SYMBOLS",
    "FEATURE_COLUMNS",
    "OHLCV_COLUMNS",
    "TARGET_COLUMNS",
    "WARMUP_PERIODS",
    "compute_features",
    "feature_columns",
    "generate_ml_features",
    "simulate_ohlcv",
]


DEFAULT_SYMBOLS: tuple[str, ...] = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")

# --------------------------------------------------------------------------- simulation

# (start price, annualised volatility, annualised drift, typical tick volume per bar)
_KNOWN_SYMBOLS: dict[str, tuple[float, float, float, float]] = {
    "EURUSD": (1.08, 0.07, 0.00, 4000.0),
    "GBPUSD": (1.27, 0.08, 0.00, 3500.0),
    "USDJPY": (150.0, 0.09, 0.01, 3800.0),
    "XAUUSD": (2000.0, 0.15, 0.05, 2500.0),
    "BTCUSD": (60000.0, 0.60, 0.10, 1500.0),
}
_YEAR = pd.Timedelta(days=365.25)


def _symbol_rng(seed: int, symbol: str) -> np.random.Generator:
    """A stream per (seed, symbol): symbols stay independent of each other and of order."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(symbol.encode())]))


def _symbol_params(symbol: str, rng: np.random.Generator) -> tuple[float, float, float, float]:
    if symbol in _KNOWN_SYMBOLS:
        return _KNOWN_SYMBOLS[symbol]
    price = float(10 ** rng.uniform(0.0, 3.0))
    return price, float(rng.uniform(0.08, 0.35)), float(rng.uniform(-0.05, 0.08)), 2000.0


def _regimes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Calm (0) / turbulent (1) Markov regime path via geometric run lengths."""
    mean_len = (400.0, 80.0)
    state = int(rng.random() < 0.2)
    out = np.empty(n, dtype=np.int8)
    pos = 0
    while pos < n:
        run = int(rng.geometric(1.0 / mean_len[state]))
        out[pos : pos + run] = state
        pos += run
        state = 1 - state
    return out


def _ar1(shocks: np.ndarray, phi: float, x0: float) -> np.ndarray:
    """x_t = phi * x_{t-1} + e_t (a plain loop, fast enough at these sizes; no scipy needed)."""
    out = np.empty(len(shocks))
    x = x0
    for i, e in enumerate(shocks.tolist()):
        x = phi * x + e
        out[i] = x
    return out


def _activity_cycle(times: pd.DatetimeIndex) -> np.ndarray:
    """Intraday activity peaking at the London/New York overlap, mean 1 over the grid."""
    hour = times.hour.to_numpy() + times.minute.to_numpy() / 60.0
    cycle = 0.6 + 0.9 * np.exp(-0.5 * ((hour - 14.0) / 3.5) ** 2)
    activity: np.ndarray = cycle / cycle.mean()
    return activity


def _simulate_symbol(
    symbol: str, seed: int, n: int, period_years: float, cycle: np.ndarray
) -> np.ndarray:
    """One symbol's bars as an (n, 5) array of open, high, low, close, volume."""
    rng = _symbol_rng(seed, symbol)
    price0, ann_vol, ann_drift, base_volume = _symbol_params(symbol, rng)
    sigma_base = ann_vol * np.sqrt(period_years)

    phi, eta = 0.985, 0.08  # persistent log-volatility: volatility clustering
    stationary_sd = eta / np.sqrt(1.0 - phi**2)
    log_vol = _ar1(rng.normal(0.0, eta, n), phi, float(rng.normal(0.0, stationary_sd)))
    log_vol -= 0.5 * stationary_sd**2  # keep E[exp(log_vol)] close to 1
    regime = _regimes(rng, n)
    regime_mult = np.where(regime == 1, 1.9, 0.85)
    regime_drift = np.where(regime == 1, -0.5 * ann_vol, ann_drift) * period_years

    sigma = sigma_base * np.exp(log_vol) * regime_mult * cycle
    shocks = rng.standard_t(5, n) / np.sqrt(5.0 / 3.0)  # unit-variance, fat-tailed
    gaps = 0.05 * sigma * rng.standard_normal(n)
    log_ret = regime_drift - 0.5 * sigma**2 + sigma * shocks

    log_close = np.log(price0) + np.cumsum(gaps + log_ret)
    prev_close = np.concatenate(([np.log(price0)], log_close[:-1]))
    open_ = np.exp(prev_close + gaps)
    close = np.exp(log_close)
    wick = 0.6 * sigma
    high = np.maximum(open_, close) * np.exp(wick * np.abs(rng.standard_normal(n)))
    low = np.minimum(open_, close) * np.exp(-wick * np.abs(rng.standard_normal(n)))
    activity = cycle**1.2 * (1.0 + 0.8 * np.abs(shocks)) * np.exp(0.35 * rng.standard_normal(n))
    volume = np.maximum(np.round(base_volume * activity), 1.0)
    return np.column_stack([open_, high, low, close, volume])


def _time_grid(start: datetime | None, periods: int, freq: str) -> pd.DatetimeIndex:
    if start is None:
        end = pd.Timestamp.now(tz="UTC").floor("D")
        return pd.date_range(end=end, periods=periods + 1, freq=freq)[:-1]
    ts = pd.Timestamp(start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return pd.date_range(start=ts, periods=periods, freq=freq)


def _check_args(symbols: Sequence[str], periods: int, min_periods: int) -> list[str]:
    if isinstance(symbols, str):
        raise TypeError(f"symbols must be a sequence of names, not the string {symbols!r}")
    names = list(symbols)
    if not names or any(not isinstance(s, str) or not s for s in names):
        raise ValueError(f"symbols must be non-empty strings; got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"symbols must be unique; got {names!r}")
    if periods < min_periods:
        raise ValueError(
            f"periods={periods} is too short: need at least {min_periods} "
            f"(features need {WARMUP_PERIODS} warm-up bars, targets need one bar ahead)"
        )
    return sorted(names)


def _simulate_wide(
    symbols: list[str], periods: int, start: datetime | None, freq: str, seed: int
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Times and a (periods, n_symbols, 5) OHLCV array, symbols in the given order."""
    times = _time_grid(start, periods, freq)
    if len(times) != periods:
        raise ValueError(f"freq={freq!r} produced {len(times)} timestamps for periods={periods}")
    step = (times[1] - times[0]) if periods > 1 else pd.Timedelta(freq)
    period_years = step / _YEAR
    cycle = _activity_cycle(times)
    bars = np.stack([_simulate_symbol(s, seed, periods, period_years, cycle) for s in symbols], 1)
    return times, bars


def simulate_ohlcv(
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    periods: int = 2000,
    start: datetime | None = None,
    freq: str = "1h",
    seed: int = 42,
) -> pd.DataFrame:
    """Raw bars behind `generate_ml_features` (same arguments, all periods, no features).

    Useful to recompute features independently, e.g. to test that they never look ahead.
    """
    names = _check_args(symbols, periods, 1)
    times, bars = _simulate_wide(names, periods, start, freq, seed)
    return _to_long(times, names, {c: bars[:, :, i] for i, c in enumerate(OHLCV_COLUMNS)})


def _to_long(
    times: pd.DatetimeIndex,
    symbols: list[str],
    wide: dict[str, np.ndarray],
    keep: np.ndarray | None = None,
) -> pd.DataFrame:
    """(T, S) arrays to a long frame sorted by (time, symbol), optionally row-masked.

    Float columns are written into one preallocated block so pandas does not copy 100+
    columns again when it consolidates them (this halves the time at 200k rows).
    """
    n_t, n_s = len(times), len(symbols)
    flat = None if keep is None else keep.reshape(-1)
    if flat is not None and flat.all():
        flat = None
    take: slice | np.ndarray = slice(None) if flat is None else flat
    if flat is not None:
        rows = np.flatnonzero(flat)
        if rows[-1] - rows[0] + 1 == len(rows):  # one contiguous run: slice, don't gather
            take = slice(int(rows[0]), int(rows[-1]) + 1)

    floats = [k for k, a in wide.items() if a.dtype == np.float64]
    others = [k for k in wide if k not in floats]
    first = wide[floats[0]].reshape(-1)[take]
    block = np.empty((len(floats), len(first)))
    for j, name in enumerate(floats):
        block[j] = wide[name].reshape(-1)[take]
    frame = pd.DataFrame(block.T, columns=floats, copy=False)
    frame.insert(0, "time", times.repeat(n_s)[take])
    frame.insert(1, "symbol", np.tile(np.asarray(symbols, dtype=object), n_t)[take])
    for name in others:
        frame.insert(list(wide).index(name) + 2, name, wide[name].reshape(-1)[take])
    return frame


# --------------------------------------------------------------------------- table


def generate_ml_features(
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    periods: int = 2000,
    start: datetime | None = None,
    freq: str = "1h",
    seed: int = 42,
) -> pd.DataFrame:
    """A synthetic ``ml_features`` table: time, symbol, OHLCV, 110 features, 2 targets.

    ``start`` defaults to today 00:00 UTC minus ``periods`` bars (so the data is recent); a
    naive ``start`` is taken as UTC. Warm-up rows and each symbol's last bar (no next-bar
    target) are dropped, so there are ``len(symbols) * (periods - WARMUP_PERIODS - 1)`` rows,
    sorted by (time, symbol). Same arguments, same frame.
    """
    names = _check_args(symbols, periods, WARMUP_PERIODS + 2)
    times, bars = _simulate_wide(names, periods, start, freq, seed)
    ohlcv = {col: bars[:, :, i] for i, col in enumerate(OHLCV_COLUMNS)}
    feats = features_wide(times, *ohlcv.values())
    target_direction, target_return = targets_wide(ohlcv["close"])
    keep = np.isfinite(target_return)
    for arr in feats.values():
        keep &= np.isfinite(arr)

    wide = {**ohlcv, **feats, "target_direction": target_direction, "target_return": target_return}
    return _to_long(times, names, wide, keep)
