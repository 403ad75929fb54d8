"""The user's OHLCV bars, read and checked: any common spelling in, one shape out.

Out comes a long frame ``time`` (UTC), ``symbol``, ``open``, ``high``, ``low``,
``close``, ``volume``, with every problem found counted and shown by example
(:class:`Validation`). A fatal problem (duplicate or unsorted times, missing values,
prices <= 0, ``high < low``) refuses the whole source, so nothing half-checked is
ever written; gaps (weekends, holidays) are only reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trainers.data.indicators import OHLCV_COLUMNS

__all__ = [
    "BAR_SIZES",
    "BarSize",
    "OhlcvError",
    "Validation",
    "infer_bar_size",
    "bar_sizes_of",
    "normalize_ohlcv",
    "one_bar_size",
    "read_ohlcv_file",
    "validate_ohlcv",
]

_EXAMPLES = 3


class OhlcvError(ValueError):
    """The source cannot be imported; the message names the column and the values."""


def _key(name: object) -> str:
    return re.sub(r"[\s_\-./:()]+", "", str(name).strip().lower())


_SPELLINGS: dict[str, tuple[str, ...]] = {
    "time": (
        "time", "date", "datetime", "timestamp", "ts", "dt", "opentime", "gmttime",
        "localtime", "datetimeutc", "timeutc", "dateutc", "index", "unnamed0", "",
    ),
    "symbol": ("symbol", "ticker", "tic", "instrument", "asset", "pair", "code"),
    "open": ("open", "o", "openprice", "opening"),
    "high": ("high", "h", "highprice", "max"),
    "low": ("low", "l", "lowprice", "min"),
    "close": ("close", "c", "closeprice", "last", "closing"),
    "adj_close": ("adjclose", "adjustedclose", "adjcloseprice", "adjustedcloseprice"),
    "volume": ("volume", "vol", "v", "tickvolume", "tickvol", "realvolume", "quantity"),
}  # fmt: skip


def _rename_map(columns: Iterable[object]) -> dict[object, str]:
    """Source column -> canonical name; the first spelling found wins for each."""
    found: dict[str, tuple[int, object]] = {}
    for column in columns:
        for canonical, spellings in _SPELLINGS.items():
            if _key(column) in spellings:
                rank = spellings.index(_key(column))
                if canonical not in found or rank < found[canonical][0]:
                    found[canonical] = (rank, column)
    return {source: canonical for canonical, (_, source) in found.items()}


def _parse_times(values: pd.Series, timezone: str | None) -> pd.Series:
    """UTC times from strings, datetimes or epoch numbers; naive times are in ``timezone``
    (UTC when None)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        magnitude = float(np.nanmax(np.abs(values.to_numpy(dtype=np.float64)), initial=0.0))
        unit = "s" if magnitude < 1e11 else "ms" if magnitude < 1e14 else "us"
        unit = "ns" if magnitude >= 1e17 else unit
        return pd.to_datetime(values, unit=unit, utc=True, errors="coerce")
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        text = values.astype("string")
        try:
            parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
        except (ValueError, TypeError):  # mixed offsets: each to UTC
            parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
        if parsed.isna().sum() > text.isna().sum():
            parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        return parsed.dt.tz_convert("UTC")
    local = parsed.dt.tz_localize(timezone or "UTC", ambiguous="NaT", nonexistent="NaT")
    return local.dt.tz_convert("UTC")


def normalize_ohlcv(
    frame: pd.DataFrame,
    symbol: str | None = None,
    timezone: str | None = None,
    source: str = "source",
) -> tuple[pd.DataFrame, list[str]]:
    """(``time, symbol, open, high, low, close, volume`` frame in source order, notes).

    ``Adj Close`` adjusts open, high and low by the same ratio and becomes the close
    (as Yahoo's own adjustment does), so a split is not a crash. No volume column:
    volume is 0 and the volume features are empty (NaN).
    """
    if isinstance(frame.index, pd.DatetimeIndex) or frame.index.name is not None:
        frame = frame.reset_index()  # times in the index (a Parquet file of a pandas frame)
    else:
        frame = frame.reset_index(drop=True)
    original = ", ".join(map(str, frame.columns))
    frame = frame.rename(columns=_rename_map(frame.columns))
    notes: list[str] = []
    missing = [
        c
        for c in ("time", "close")
        if c not in frame and not (c == "close" and "adj_close" in frame)
    ]
    if missing:
        raise OhlcvError(
            f"{source}: no {missing[0]!r} column (has {original}; "
            f"accepted spellings: {', '.join(s for s in _SPELLINGS[missing[0]] if s)})"
        )
    if "close" not in frame:
        frame["close"] = frame["adj_close"]
    for column in ("open", "high", "low"):
        if column not in frame:
            raise OhlcvError(f"{source}: no {column!r} column (has {original})")
    prices = {c: pd.to_numeric(frame[c], errors="coerce") for c in ("open", "high", "low", "close")}
    if "adj_close" in frame:
        adjusted = pd.to_numeric(frame["adj_close"], errors="coerce")
        ratio = adjusted / prices["close"]
        for column in ("open", "high", "low"):
            prices[column] = prices[column] * ratio
        prices["close"] = adjusted
        notes.append(f"{source}: prices adjusted by 'Adj Close'")
    if "volume" in frame:
        volume = pd.to_numeric(frame["volume"], errors="coerce")
    else:
        volume = pd.Series(0.0, index=frame.index)
        notes.append(f"{source}: no volume column: volume is 0, the volume features are empty")
    if "symbol" in frame:
        symbols = frame["symbol"].astype("string")
        if symbol is not None:
            keep = (symbols == symbol).fillna(False).to_numpy()
            if not keep.any():
                raise OhlcvError(
                    f"{source}: symbol {symbol!r} not in its symbol column "
                    f"(has {', '.join(sorted(symbols.dropna().unique())[:10])})"
                )
            frame, symbols, volume = frame[keep], symbols[keep], volume[keep]
            prices = {c: p[keep] for c, p in prices.items()}
    else:
        name = symbol or Path(source).stem.upper()
        symbols = pd.Series(name, index=frame.index, dtype="string")
    out = pd.DataFrame(
        {
            "time": _parse_times(frame["time"], timezone),
            "symbol": symbols.astype(object),
            **{c: prices[c].astype(np.float64) for c in ("open", "high", "low", "close")},
            "volume": volume.astype(np.float64),
        }
    ).reset_index(drop=True)
    return out[["time", "symbol", *OHLCV_COLUMNS]], notes


def read_ohlcv_file(
    path: str | Path, symbol: str | None = None, timezone: str | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """A CSV or Parquet file through :func:`normalize_ohlcv`."""
    file = Path(path)
    if not file.is_file():
        raise OhlcvError(f"{path}: no such file")
    suffix = "".join(file.suffixes[-2:]).lower()
    if suffix.endswith(".parquet") or suffix.endswith(".pq"):
        frame = pd.read_parquet(file)
    elif suffix.endswith((".csv", ".csv.gz", ".txt", ".tsv")):
        frame = (
            pd.read_csv(file, sep=None, engine="python")
            if suffix.endswith((".txt", ".tsv"))
            else pd.read_csv(file)
        )
    else:
        raise OhlcvError(f"{path}: unknown format {file.suffix!r} (CSV or Parquet)")
    return normalize_ohlcv(frame, symbol, timezone, source=str(file.name))


# --------------------------------------------------------------------------- bar size


@dataclass(frozen=True)
class BarSize:
    """A bar length: its label (``1min`` ... ``1mo``) and nominal seconds."""

    label: str
    seconds: int


BAR_SIZES: tuple[BarSize, ...] = tuple(
    BarSize(label, seconds)
    for label, seconds in (
        ("1min", 60), ("2min", 120), ("3min", 180), ("5min", 300), ("10min", 600),
        ("15min", 900), ("30min", 1800), ("1h", 3600), ("2h", 7200), ("4h", 14400),
        ("6h", 21600), ("8h", 28800), ("12h", 43200), ("1d", 86400), ("1w", 604800),
        ("1mo", 2629746),
    )
)  # fmt: skip


def infer_bar_size(times: pd.Series) -> BarSize | None:
    """The most common step between consecutive bars, snapped to a known size (a month
    is 28 to 31 days); None for fewer than two bars or a step outside 1 min .. 1 month."""
    steps = times.sort_values().diff().dropna().dt.total_seconds().to_numpy()
    steps = steps[steps > 0]
    if len(steps) == 0:
        return None
    values, counts = np.unique(steps, return_counts=True)
    step = float(values[np.argmax(counts)])
    if 28 * 86400 <= step <= 31 * 86400:
        return BAR_SIZES[-1]
    for size in BAR_SIZES:
        if abs(step - size.seconds) <= 0.01 * size.seconds:
            return size
    return None


def one_bar_size(bar_sizes: dict[str, BarSize | None]) -> BarSize:
    """The bar size all symbols share; mixed sizes are refused, naming the symbols."""
    known = {s: b for s, b in bar_sizes.items() if b is not None}
    if not known:
        raise OhlcvError(
            f"bar size not recognised for {', '.join(sorted(bar_sizes))}: "
            "need at least two bars 1 minute to 1 month apart"
        )
    sizes = sorted({b for b in known.values()}, key=lambda b: b.seconds)
    if len(sizes) > 1:
        by_size = "; ".join(
            f"{size.label}: {', '.join(sorted(s for s, b in known.items() if b == size))}"
            for size in sizes
        )
        raise OhlcvError(
            f"mixed bar sizes in one source ({by_size}): import or train each bar size "
            "from its own table"
        )
    return sizes[0]


def bar_sizes_of(frame: pd.DataFrame, time: str, symbol: str | None) -> dict[str, BarSize | None]:
    """Each symbol's bar size (one entry, ``""``, without a symbol column)."""
    if symbol is None:
        return {"": infer_bar_size(frame[time])}
    return {str(name): infer_bar_size(times) for name, times in frame.groupby(symbol)[time]}


# --------------------------------------------------------------------------- checks


@dataclass
class Validation:
    """What the checks found: fatal problems refuse the source, warnings are reported."""

    fatal: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bar_sizes: dict[str, BarSize | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.fatal

    def raise_if_fatal(self) -> None:
        if self.fatal:
            raise OhlcvError("nothing imported:\n  " + "\n  ".join(self.fatal))


def _examples(frame: pd.DataFrame, mask: np.ndarray, columns: list[str]) -> str:
    rows = frame.loc[mask, columns].head(_EXAMPLES)
    shown = "; ".join(
        ", ".join(f"{c}={_show(row[c])}" for c in columns) for _, row in rows.iterrows()
    )
    return f"e.g. {shown}"


def _show(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        return str(value.isoformat())
    return repr(value) if isinstance(value, str) else str(value)


def _weekend_only(before: pd.Series, after: pd.Series, size: BarSize) -> np.ndarray:
    """Gaps that miss only Saturday/Sunday bars (a market's weekly close, not a hole)."""
    if size.seconds >= 86400:
        start = before.dt.tz_convert(None).to_numpy().astype("datetime64[D]") + 1
        end = after.dt.tz_convert(None).to_numpy().astype("datetime64[D]")
        return np.asarray(np.busday_count(start, end) == 0) & (size.seconds == 86400)
    span = (after.to_numpy() - before.to_numpy()) / np.timedelta64(1, "s")
    days = [
        pd.date_range(b.normalize(), a.normalize(), freq="D").day_of_week
        for b, a in zip(before, after, strict=True)
    ]
    return np.array(
        [s <= 3 * 86400 and bool((d >= 5).any()) for s, d in zip(span, days, strict=True)],
        dtype=bool,
    )


def validate_ohlcv(frame: pd.DataFrame) -> Validation:
    """Check a normalized frame in its source order; see :class:`Validation`."""
    out = Validation()
    key = ["symbol", "time"]
    checks: list[tuple[str, np.ndarray, list[str]]] = []
    checks.append(("unparseable or missing time", frame["time"].isna().to_numpy(), ["symbol"]))
    for column in OHLCV_COLUMNS:
        checks.append((f"missing {column} (NaN)", frame[column].isna().to_numpy(), [*key, column]))
    for column in ("open", "high", "low", "close"):
        checks.append((f"{column} <= 0", (frame[column] <= 0).to_numpy(), [*key, column]))
    checks.append(("negative volume", (frame["volume"] < 0).to_numpy(), [*key, "volume"]))
    checks.append(("high < low", (frame["high"] < frame["low"]).to_numpy(), [*key, "high", "low"]))
    dup = frame.duplicated(key, keep="first").to_numpy() & frame["time"].notna().to_numpy()
    checks.append(("duplicate (symbol, time)", dup, key))
    same = frame["symbol"].eq(frame["symbol"].shift()).to_numpy()
    back = (frame["time"] < frame["time"].shift()).to_numpy() & same
    checks.append(("time not increasing (unsorted)", back, key))
    for what, mask, columns in checks:
        n = int(mask.sum())
        if n:
            out.fatal.append(f"{what}: {n} row(s), {_examples(frame, mask, columns)}")
    if out.fatal:
        return out
    for symbol, times in frame.groupby("symbol", sort=True)["time"]:
        size = infer_bar_size(times)
        out.bar_sizes[str(symbol)] = size
        if size is None:
            out.warnings.append(f"{symbol}: bar size not recognised (1 min to 1 month)")
            continue
        steps = times.diff().dt.total_seconds().to_numpy()[1:]
        gaps = steps > 1.5 * size.seconds if size.label != "1mo" else steps > 32 * 86400
        if gaps.any():
            after = times.iloc[1:][gaps].reset_index(drop=True)
            before = times.iloc[:-1][gaps].reset_index(drop=True)
            weekend = _weekend_only(before, after, size)
            shown = ", ".join(
                f"{b.isoformat()} -> {a.isoformat()}"
                for b, a in list(zip(before[~weekend], after[~weekend], strict=True))[:_EXAMPLES]
            )
            out.warnings.append(
                f"{symbol}: {int(gaps.sum())} gap(s), {int(weekend.sum())} of them weekends"
                + (f"; others e.g. {shown}" if shown else "")
            )
    return out
