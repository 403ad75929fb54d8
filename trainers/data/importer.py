"""``suho data import``: the user's OHLCV bars in, the full feature table out.

Files (CSV, Parquet) or a read-only ClickHouse query are read and checked
(:mod:`trainers.data.ohlcv`); nothing is written when a check fails. The features
and the targets are those of ``suho data synth`` (:mod:`trainers.data.indicators`),
so every trainer option works the same on both.

Importing is incremental and idempotent: per symbol, only bars newer than the
newest one stored are added, computed over up to :data:`HISTORY_BARS` stored bars
before them so the indicators start warm. The same file twice adds nothing. Each
symbol's last bar has no next bar, hence no target: it is kept out until the next
import brings the bar after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from repositories.adhoc import run_read_only
from repositories.features import FeatureTable
from suho_models.db import Database
from trainers.data.calendar import Calendar, infer_calendar, periods_per_year
from trainers.data.indicators import (
    FEATURE_COLUMNS,
    OHLCV_COLUMNS,
    WARMUP_PERIODS,
    features_wide,
    targets_wide,
)
from trainers.data.ohlcv import (
    BarSize,
    OhlcvError,
    normalize_ohlcv,
    one_bar_size,
    read_ohlcv_file,
    validate_ohlcv,
)
from trainers.progress import Progress

__all__ = ["HISTORY_BARS", "ImportResult", "feature_rows", "import_ohlcv", "read_sources"]

CHUNK_BARS = 250_000
"""Bars computed and written at once (about 250 MB of rows): bounds an import's memory."""

HISTORY_BARS = 2000
"""Stored bars read back before an append: the longest EMA (100 bars) forgets its
start within about 2,000 bars to below 1e-15, and every rolling window is shorter."""


@dataclass
class ImportResult:
    """What an import did, per symbol, and what it found."""

    table: str
    bar_size: BarSize
    calendar: Calendar
    periods_per_year: float
    written: dict[str, int] = field(default_factory=dict)
    already_stored: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rows_written(self) -> int:
        return sum(self.written.values())


def read_sources(
    paths: Sequence[str | Path] = (),
    *,
    symbol: str | None = None,
    query: str | None = None,
    db: Database | None = None,
    timezone: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """All sources as one normalized OHLCV frame (source order kept), and notes."""
    frames: list[pd.DataFrame] = []
    notes: list[str] = []
    for path in paths:
        frame, found = read_ohlcv_file(path, symbol, timezone)
        frames.append(frame)
        notes += found
    if query is not None:
        if db is None:
            raise OhlcvError("--query: needs a database")
        columns, rows = run_read_only(db, query)
        raw = pd.DataFrame.from_records(rows, columns=columns)
        frame, found = normalize_ohlcv(raw, symbol, timezone, source="query")
        # A query's rows come in no particular order without ORDER BY: sort them
        # (duplicates are still refused).
        frame = frame.sort_values(["symbol", "time"], kind="stable").reset_index(drop=True)
        frames.append(frame)
        notes += found
    if not frames:
        raise OhlcvError("nothing to import: give one or more files, or --query")
    combined = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return combined, notes


def feature_rows(ohlcv: pd.DataFrame, warm: dict[str, int] | None = None) -> pd.DataFrame:
    """The table's rows for time-sorted bars of any symbols: OHLCV, features, targets,
    minus each symbol's first ``warm[symbol]`` bars (default :data:`WARMUP_PERIODS`:
    features still incomplete) and its last bar (no target)."""
    parts = []
    for name, bars in ohlcv.groupby("symbol", sort=True):
        skip = (warm or {}).get(str(name), WARMUP_PERIODS)
        parts.append(_symbol_rows(bars, skip)[0])
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _symbol_rows(
    bars: pd.DataFrame, skip: int, obv_offset: float = 0.0
) -> tuple[pd.DataFrame, np.ndarray]:
    """(rows, OBV of every bar) for one symbol's time-sorted bars, through the same
    :func:`features_wide` and :func:`targets_wide` as ``suho data synth``.

    The columns are laid out in one preallocated block (no per-column copies: this is
    what bounds an import's memory). Infinite feature values (the log of a zero volume)
    become NaN, which the trainers accept; OBV, a running sum, starts at ``obv_offset``.
    """
    times = pd.DatetimeIndex(bars["time"])
    arrays = [bars[c].to_numpy(dtype=np.float64)[:, None] for c in OHLCV_COLUMNS]
    features = features_wide(times, *arrays)
    direction, target_return = targets_wide(arrays[3])
    features["obv"] = features["obv"] + obv_offset
    obv = features["obv"][:, 0].copy()
    keep = slice(skip, len(bars) - 1)
    n = max(len(bars) - 1 - skip, 0)
    floats = [*OHLCV_COLUMNS, *FEATURE_COLUMNS]
    block = np.empty((len(floats), n))
    for j, array in enumerate([*arrays, *features.values()]):
        block[j] = array[keep, 0]
    feature_block = block[len(OHLCV_COLUMNS) :]
    feature_block[~np.isfinite(feature_block)] = np.nan
    frame = pd.DataFrame(block.T, columns=floats, copy=False)
    frame.insert(0, "time", times[keep])
    frame.insert(1, "symbol", pd.Series(bars["symbol"].iloc[0], index=frame.index, dtype=object))
    frame["target_direction"] = direction[keep, 0]
    frame["target_return"] = target_return[keep, 0]
    return frame, obv


def import_ohlcv(
    db: Database,
    paths: Sequence[str | Path] = (),
    *,
    symbol: str | None = None,
    query: str | None = None,
    table: str = "ml_features",
    timezone: str | None = None,
    calendar: Calendar | None = None,
    progress: bool = False,
) -> ImportResult:
    """Read, check, compute and append; see the module docstring."""
    ohlcv, notes = read_sources(paths, symbol=symbol, query=query, db=db, timezone=timezone)
    checks = validate_ohlcv(ohlcv)
    checks.raise_if_fatal()
    bar = one_bar_size(checks.bar_sizes)
    target = FeatureTable(db, table)
    recorded = target.metadata()
    if recorded.get("bar_size") not in (None, bar.label):
        raise OhlcvError(
            f"table {table!r} holds {recorded['bar_size']} bars; this source has {bar.label} "
            "bars: import it into another --table"
        )
    market = calendar or infer_calendar(ohlcv["time"], bar)
    result = ImportResult(table, bar, market, periods_per_year(bar, market))
    result.warnings, result.notes = checks.warnings, notes
    last = target.last_times()
    symbols = sorted(ohlcv["symbol"].unique().tolist())
    with Progress(progress).task(f"importing into {table}", len(ohlcv)) as advance:
        for name in symbols:
            bars = ohlcv[ohlcv["symbol"] == name]
            stored_until = last.get(name)
            new = bars if stored_until is None else bars[bars["time"] > stored_until]
            result.already_stored[name] = len(bars) - len(new)
            advance(len(bars) - len(new))
            result.written[name] = _import_symbol(target, name, new, stored_until, advance)
        if (result.rows_written or not recorded) and target.exists():
            target.set_metadata(
                {
                    **recorded,
                    "bar_size": bar.label,
                    "bar_seconds": bar.seconds,
                    "calendar": market,
                    "periods_per_year": result.periods_per_year,
                    "source": "suho data import",
                }
            )
    return result


def _import_symbol(
    target: FeatureTable,
    symbol: str,
    new: pd.DataFrame,
    stored_until: pd.Timestamp | None,
    advance: Callable[[int], object],
) -> int:
    """Write one symbol's new bars in chunks of :data:`CHUNK_BARS`, each computed over
    the :data:`HISTORY_BARS` bars before it (stored ones for the first chunk of an
    append), so memory stays bounded whatever the length. Returns the rows written."""
    if len(new) < 2:  # one new bar has no next bar: no target yet
        advance(len(new))
        return 0
    columns = ["time", "symbol", *OHLCV_COLUMNS]
    if stored_until is None:
        history, obv_offset = new.iloc[:0][columns], 0.0
    else:
        stored = target.tail(symbol, [*columns, "obv"], HISTORY_BARS)
        obv_offset = float(stored["obv"].iloc[0]) if len(stored) else 0.0
        obv_offset = obv_offset if np.isfinite(obv_offset) else 0.0
        history = stored[columns]
    written = 0
    for start in range(0, len(new) - 1, CHUNK_BARS):
        piece = new.iloc[start : start + CHUNK_BARS + 1][columns]  # +1: the last row's target
        combined = pd.concat([history, piece], ignore_index=True) if len(history) else piece
        skip = len(history) if len(history) else WARMUP_PERIODS
        rows, obv = _symbol_rows(combined, skip, obv_offset)
        if len(rows):
            target.write(rows)
        written += len(rows)
        kept = len(combined) - 1  # the last bar is the next chunk's first
        first = max(kept - HISTORY_BARS, 0)
        history, obv_offset = combined.iloc[first:kept], float(obv[first])
        advance(min(CHUNK_BARS, len(new) - start))
    return written
