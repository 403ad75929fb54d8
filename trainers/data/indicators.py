"""The feature set and the targets, computed from OHLCV bars: one code path for every source.

``suho data synth`` (simulated bars) and ``suho data import`` (the user's bars) both
call :func:`features_wide` / :func:`compute_features` and :func:`targets_wide` /
:func:`compute_targets`, so a model trained on one sees the same columns, computed
the same way, on the other. Features at time ``t`` only use bars up to ``t``; the
targets are the only columns that look one bar ahead.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "FEATURE_COLUMNS",
    "OHLCV_COLUMNS",
    "TARGET_COLUMNS",
    "WARMUP_PERIODS",
    "compute_features",
    "compute_targets",
    "feature_columns",
    "features_wide",
    "targets_wide",
]

OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
TARGET_COLUMNS: tuple[str, ...] = ("target_direction", "target_return")

# Windows, in bars. Changing one changes FEATURE_COLUMNS and possibly WARMUP_PERIODS.
_RET_WINDOWS = (1, 3, 6, 12, 24, 48)
_RET_LAGS = (1, 2, 3)
_MA_WINDOWS = (5, 10, 20, 50, 100)
_SMA_CROSSES = ((5, 20), (10, 50), (20, 100))
_EMA_CROSSES = ((5, 20), (20, 100))
_RSI_WINDOWS = (6, 14, 28)
_BB_WINDOWS = (20, 50)
_ATR_WINDOWS = (7, 14, 28)
_STOCH_WINDOWS = (14, 28)
_WILLR_WINDOWS = (14, 28)
_CCI_WINDOWS = (14, 20)
_ROC_WINDOWS = (5, 10, 20)
_MOM_WINDOWS = (5, 10, 20)
_VOL_WINDOWS = (6, 12, 24, 48, 96)
_ZSCORE_WINDOWS = (20, 50, 100)
_VWAP_WINDOWS = (24, 96)


def _feature_names() -> tuple[str, ...]:
    """Feature names in output order; `_features_wide` is checked against this."""
    names: list[str] = []
    names += [f"ret_{w}" for w in _RET_WINDOWS]
    names += [f"log_ret_{w}" for w in _RET_WINDOWS]
    names += [f"ret_1_lag_{k}" for k in _RET_LAGS]
    names += [f"sma_{w}" for w in _MA_WINDOWS]
    names += [f"ema_{w}" for w in _MA_WINDOWS]
    names += [f"close_sma_{w}_ratio" for w in _MA_WINDOWS]
    names += [f"close_ema_{w}_ratio" for w in _MA_WINDOWS]
    names += [f"sma_{a}_sma_{b}_ratio" for a, b in _SMA_CROSSES]
    names += [f"ema_{a}_ema_{b}_ratio" for a, b in _EMA_CROSSES]
    names += [f"rsi_{w}" for w in _RSI_WINDOWS]
    names += ["macd", "macd_signal", "macd_hist", "macd_norm", "macd_signal_norm", "macd_hist_norm"]
    for w in _BB_WINDOWS:
        names += [f"bb_upper_{w}", f"bb_lower_{w}", f"bb_width_{w}", f"bb_pctb_{w}"]
    names += ["true_range_pct"]
    names += [f"atr_{w}" for w in _ATR_WINDOWS]
    names += [f"natr_{w}" for w in _ATR_WINDOWS]
    for w in _STOCH_WINDOWS:
        names += [f"stoch_k_{w}", f"stoch_d_{w}"]
    names += [f"williams_r_{w}" for w in _WILLR_WINDOWS]
    names += [f"cci_{w}" for w in _CCI_WINDOWS]
    names += [f"roc_{w}" for w in _ROC_WINDOWS]
    names += [f"mom_{w}" for w in _MOM_WINDOWS]
    names += [f"volatility_{w}" for w in _VOL_WINDOWS]
    names += ["parkinson_vol_24", "garman_klass_vol_24"]
    names += [f"zscore_{w}" for w in _ZSCORE_WINDOWS]
    names += ["ret_zscore_24", "ret_skew_48", "ret_kurt_48"]
    names += ["hl_range_pct", "body_pct", "upper_shadow_pct", "lower_shadow_pct"]
    names += ["dist_high_48", "dist_low_48"]
    names += ["log_volume", "volume_ratio_10", "volume_ratio_50", "volume_zscore_20"]
    names += ["obv", "obv_osc_20"]
    names += [f"vwap_dist_{w}" for w in _VWAP_WINDOWS]
    names += ["mfi_14"]
    names += ["hour_sin", "hour_cos", "dow_sin", "dow_cos"]
    return tuple(names)


FEATURE_COLUMNS: tuple[str, ...] = _feature_names()
"""The 110 feature columns of the synthetic ``ml_features`` table, in column order."""

WARMUP_PERIODS: int = max(_MA_WINDOWS + _ZSCORE_WINDOWS + _VOL_WINDOWS) - 1
"""Leading bars per symbol whose features are incomplete (NaN) and are dropped."""


def feature_columns() -> list[str]:
    """The generator's feature column names (a fresh list, safe to mutate)."""
    return list(FEATURE_COLUMNS)


def _wilder(x: pd.DataFrame, n: int) -> pd.DataFrame:
    return x.ewm(alpha=1.0 / n, adjust=False, min_periods=n).mean()


def _ema(x: pd.DataFrame, n: int) -> pd.DataFrame:
    return x.ewm(span=n, adjust=False, min_periods=n).mean()


def _rolling_mad(x: np.ndarray, n: int) -> np.ndarray:
    """Rolling mean absolute deviation along axis 0 (pandas has no fast built-in)."""
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        win = sliding_window_view(x, n, axis=0)  # (T - n + 1, S, n)
        out[n - 1 :] = np.abs(win - win.mean(axis=-1, keepdims=True)).mean(axis=-1)
    return out


def features_wide(
    times: pd.DatetimeIndex,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
) -> dict[str, np.ndarray]:
    """All features from (T, S) arrays, one column per symbol; rows are time-ascending.

    Every operation is causal (shift by +k, trailing rolling windows, forward EWMs, cumsum),
    so row t depends on rows <= t only.
    """
    o, h, lo, c, v = (pd.DataFrame(a, copy=False) for a in (open_, high, low, close, volume))
    f: dict[str, pd.DataFrame | np.ndarray] = {}
    log_c: pd.DataFrame = np.log(c)
    lr = log_c.diff()

    for w in _RET_WINDOWS:
        f[f"ret_{w}"] = c / c.shift(w) - 1.0
    for w in _RET_WINDOWS:
        f[f"log_ret_{w}"] = log_c - log_c.shift(w)
    for k in _RET_LAGS:
        f[f"ret_1_lag_{k}"] = cast(pd.DataFrame, f["ret_1"]).shift(k)

    sma = {w: c.rolling(w).mean() for w in set(_MA_WINDOWS + _BB_WINDOWS + _ZSCORE_WINDOWS)}
    ema = {w: _ema(c, w) for w in _MA_WINDOWS}
    for w in _MA_WINDOWS:
        f[f"sma_{w}"] = sma[w]
    for w in _MA_WINDOWS:
        f[f"ema_{w}"] = ema[w]
    for w in _MA_WINDOWS:
        f[f"close_sma_{w}_ratio"] = c / sma[w]
    for w in _MA_WINDOWS:
        f[f"close_ema_{w}_ratio"] = c / ema[w]
    for a, b in _SMA_CROSSES:
        f[f"sma_{a}_sma_{b}_ratio"] = sma[a] / sma[b]
    for a, b in _EMA_CROSSES:
        f[f"ema_{a}_ema_{b}_ratio"] = ema[a] / ema[b]

    delta = c.diff()
    gain, loss = delta.clip(lower=0.0), -delta.clip(upper=0.0)
    for w in _RSI_WINDOWS:
        avg_gain, avg_loss = _wilder(gain, w), _wilder(loss, w)
        total = avg_gain + avg_loss
        f[f"rsi_{w}"] = (100.0 * avg_gain / total).where(total > 0, 50.0).where(total.notna())

    macd = _ema(c, 12) - _ema(c, 26)
    signal = _ema(macd, 9)
    f["macd"], f["macd_signal"], f["macd_hist"] = macd, signal, macd - signal
    f["macd_norm"], f["macd_signal_norm"] = macd / c, signal / c
    f["macd_hist_norm"] = (macd - signal) / c

    for w in _BB_WINDOWS:
        sd = c.rolling(w).std(ddof=0)
        upper, lower = sma[w] + 2.0 * sd, sma[w] - 2.0 * sd
        f[f"bb_upper_{w}"], f[f"bb_lower_{w}"] = upper, lower
        f[f"bb_width_{w}"] = (upper - lower) / sma[w]
        f[f"bb_pctb_{w}"] = (c - lower) / (upper - lower)

    prev_c = c.shift(1)
    tr = np.maximum(h - lo, np.maximum((h - prev_c).abs(), (lo - prev_c).abs()))
    f["true_range_pct"] = tr / c
    atr = {w: _wilder(tr, w) for w in _ATR_WINDOWS}
    for w in _ATR_WINDOWS:
        f[f"atr_{w}"] = atr[w]
    for w in _ATR_WINDOWS:
        f[f"natr_{w}"] = atr[w] / c

    hh = {w: h.rolling(w).max() for w in set(_STOCH_WINDOWS + _WILLR_WINDOWS + (48,))}
    ll = {w: lo.rolling(w).min() for w in set(_STOCH_WINDOWS + _WILLR_WINDOWS + (48,))}
    for w in _STOCH_WINDOWS:
        k = 100.0 * (c - ll[w]) / (hh[w] - ll[w])
        f[f"stoch_k_{w}"], f[f"stoch_d_{w}"] = k, k.rolling(3).mean()
    for w in _WILLR_WINDOWS:
        f[f"williams_r_{w}"] = -100.0 * (hh[w] - c) / (hh[w] - ll[w])

    tp = (h + lo + c) / 3.0
    for w in _CCI_WINDOWS:
        mad = _rolling_mad(tp.to_numpy(), w)
        f[f"cci_{w}"] = (tp - tp.rolling(w).mean()) / (0.015 * mad)
    for w in _ROC_WINDOWS:
        f[f"roc_{w}"] = 100.0 * (c / c.shift(w) - 1.0)
    for w in _MOM_WINDOWS:
        f[f"mom_{w}"] = c - c.shift(w)

    for w in _VOL_WINDOWS:
        f[f"volatility_{w}"] = lr.rolling(w).std()
    hl2 = np.log(h / lo) ** 2
    co2 = np.log(c / o) ** 2
    f["parkinson_vol_24"] = np.sqrt(hl2.rolling(24).mean() / (4.0 * np.log(2.0)))
    gk = 0.5 * hl2 - (2.0 * np.log(2.0) - 1.0) * co2
    f["garman_klass_vol_24"] = np.sqrt(gk.rolling(24).mean())
    for w in _ZSCORE_WINDOWS:
        f[f"zscore_{w}"] = (c - sma[w]) / c.rolling(w).std()
    f["ret_zscore_24"] = (lr - lr.rolling(24).mean()) / lr.rolling(24).std()
    f["ret_skew_48"] = lr.rolling(48).skew()
    f["ret_kurt_48"] = lr.rolling(48).kurt()

    body_hi, body_lo = np.maximum(o, c), np.minimum(o, c)
    f["hl_range_pct"] = (h - lo) / c
    f["body_pct"] = c / o - 1.0
    f["upper_shadow_pct"] = (h - body_hi) / c
    f["lower_shadow_pct"] = (body_lo - lo) / c
    f["dist_high_48"] = c / hh[48] - 1.0
    f["dist_low_48"] = c / ll[48] - 1.0

    f["log_volume"] = np.log(v)
    f["volume_ratio_10"] = v / v.rolling(10).mean()
    v_mean20 = v.rolling(20).mean()
    f["volume_ratio_50"] = v / v.rolling(50).mean()
    f["volume_zscore_20"] = (v - v_mean20) / v.rolling(20).std()
    obv = (np.sign(delta).fillna(0.0) * v).cumsum()
    f["obv"] = obv
    f["obv_osc_20"] = (obv - _ema(obv, 20)) / v_mean20
    for w in _VWAP_WINDOWS:
        vwap = (tp * v).rolling(w).sum() / v.rolling(w).sum()
        f[f"vwap_dist_{w}"] = c / vwap - 1.0
    tp_diff = tp.diff()
    flow = tp * v
    pos = flow.where(tp_diff > 0, 0.0).where(tp_diff.notna()).rolling(14).sum()
    neg = flow.where(tp_diff < 0, 0.0).where(tp_diff.notna()).rolling(14).sum()
    f["mfi_14"] = (100.0 * pos / (pos + neg)).where(pos + neg > 0, 50.0).where(pos.notna())

    hour = (times.hour.to_numpy() + times.minute.to_numpy() / 60.0)[:, None]
    dow = times.day_of_week.to_numpy()[:, None]
    shape = c.shape
    f["hour_sin"] = np.broadcast_to(np.sin(2 * np.pi * hour / 24.0), shape)
    f["hour_cos"] = np.broadcast_to(np.cos(2 * np.pi * hour / 24.0), shape)
    f["dow_sin"] = np.broadcast_to(np.sin(2 * np.pi * dow / 7.0), shape)
    f["dow_cos"] = np.broadcast_to(np.cos(2 * np.pi * dow / 7.0), shape)

    if tuple(f) != FEATURE_COLUMNS:  # guards the name list against drift
        raise RuntimeError("feature computation and FEATURE_COLUMNS are out of sync")
    return {k: np.asarray(val, dtype=np.float64) for k, val in f.items()}


def compute_features(
    ohlcv: pd.DataFrame, time_column: str = "time", symbol_column: str = "symbol"
) -> pd.DataFrame:
    """The 110 features for a long OHLCV frame, aligned to its index (warm-up rows are NaN).

    Each symbol's bars are processed in time order; ragged panels (symbols with different
    timestamps) are handled per symbol.
    """
    needed = [time_column, symbol_column, *OHLCV_COLUMNS]
    missing = [col for col in needed if col not in ohlcv.columns]
    if missing:
        raise ValueError(f"compute_features: missing column(s) {missing}")
    if ohlcv.duplicated([time_column, symbol_column]).any():
        raise ValueError(f"compute_features: duplicate ({time_column}, {symbol_column}) rows")
    positions = pd.RangeIndex(len(ohlcv))
    keys = pd.DataFrame(
        {"s": ohlcv[symbol_column].to_numpy(), "t": ohlcv[time_column].to_numpy()},
        index=positions,
    )
    order = keys.sort_values(["s", "t"], kind="mergesort").index.to_numpy()
    frame = ohlcv.iloc[order]
    sym = frame[symbol_column].to_numpy()
    values = frame[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64)
    out = np.empty((len(frame), len(FEATURE_COLUMNS)))
    bounds = np.flatnonzero(sym[1:] != sym[:-1]) + 1
    starts, ends = np.r_[0, bounds], np.r_[bounds, len(frame)]
    times_all = pd.DatetimeIndex(frame[time_column])
    lengths = ends - starts
    rectangular = len(set(lengths.tolist())) == 1 and all(
        times_all[s:e].equals(times_all[: lengths[0]]) for s, e in zip(starts, ends, strict=True)
    )
    groups = [(0, len(starts))] if rectangular else [(i, i + 1) for i in range(len(starts))]
    for g0, g1 in groups:
        n_t = lengths[g0]
        block = np.stack([values[starts[g] : ends[g]] for g in range(g0, g1)], axis=1)
        feats = features_wide(times_all[starts[g0] : ends[g0]], *(block[:, :, i] for i in range(5)))
        stacked = np.stack(list(feats.values()), axis=-1)  # (T, S, F)
        for j, g in enumerate(range(g0, g1)):
            out[starts[g] : ends[g]] = stacked[:n_t, j]
    result = np.empty_like(out)
    result[order] = out
    return pd.DataFrame(result, index=ohlcv.index, columns=list(FEATURE_COLUMNS))


def targets_wide(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(target_direction, target_return) from (T, S) closes: the next bar's move.

    The last bar has no next bar: its return is NaN (and its direction 0); callers
    drop it.
    """
    next_close = np.full_like(close, np.nan, dtype=np.float64)
    next_close[:-1] = close[1:]
    target_return = next_close / close - 1.0
    target_direction = (next_close > close).astype(np.uint8)
    return target_direction, target_return


def compute_targets(
    ohlcv: pd.DataFrame, time_column: str = "time", symbol_column: str = "symbol"
) -> pd.DataFrame:
    """:func:`targets_wide` for a long frame, per symbol in time order, aligned to its index."""
    order = ohlcv.sort_values([symbol_column, time_column], kind="mergesort").index
    frame = ohlcv.loc[order]
    close = frame["close"].to_numpy(dtype=np.float64)
    same_symbol = np.zeros(len(frame), dtype=bool)
    symbols = frame[symbol_column].to_numpy()
    same_symbol[:-1] = symbols[1:] == symbols[:-1]
    next_close = np.full(len(frame), np.nan)
    next_close[:-1] = close[1:]
    next_close[~same_symbol] = np.nan
    target_return = next_close / close - 1.0
    out = pd.DataFrame(
        {
            "target_direction": (next_close > close).astype(np.uint8),
            "target_return": target_return,
        },
        index=order,
    )
    return out.loc[ohlcv.index]
