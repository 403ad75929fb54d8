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

from collections.abc import Sequence
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
    compute_features,
    compute_targets,
)
from trainers.data.ohlcv import (
    BarSize,
    OhlcvError,
    normalize_ohlcv,
    read_ohlcv_file,
    validate_ohlcv,
)
from trainers.progress import Progress

__all__ = ["HISTORY_BARS", "ImportResult", "feature_rows", "import_ohlcv", "read_sources"]

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
    """The table's rows for time-sorted bars: OHLCV, features, targets, minus each
    symbol's first ``warm[symbol]`` bars (default :data:`WARMUP_PERIODS`: features
    still incomplete) and its last bar (no target). Infinite feature values (log of a
    zero volume) become NaN, which the trainers accept."""
    features = compute_features(ohlcv)
    targets = compute_targets(ohlcv)
    values = features.to_numpy(dtype=np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    frame = pd.concat(
        [
            ohlcv[["time", "symbol", *OHLCV_COLUMNS]].reset_index(drop=True),
            pd.DataFrame(values, columns=list(FEATURE_COLUMNS)),
            targets.reset_index(drop=True),
        ],
        axis=1,
    )
    position = frame.groupby("symbol", sort=False).cumcount().to_numpy()
    skip = frame["symbol"].map(warm or {}).fillna(WARMUP_PERIODS).to_numpy()
    keep = (position >= skip) & np.isfinite(frame["target_return"].to_numpy())
    return frame.loc[keep].reset_index(drop=True)


def _one_bar_size(bar_sizes: dict[str, BarSize | None]) -> BarSize:
    known = {s: b for s, b in bar_sizes.items() if b is not None}
    if not known:
        raise OhlcvError(
            f"bar size not recognised for {', '.join(sorted(bar_sizes))}: "
            "need at least two bars 1 minute to 1 month apart"
        )
    labels = {b.label for b in known.values()}
    if len(labels) > 1:
        by_size = "; ".join(
            f"{label}: {', '.join(sorted(s for s, b in known.items() if b.label == label))}"
            for label in sorted(
                labels, key=lambda lb: next(b.seconds for b in known.values() if b.label == lb)
            )
        )
        raise OhlcvError(
            f"mixed bar sizes in one source ({by_size}): import each bar size into its own --table"
        )
    return next(iter(known.values()))


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
    bar = _one_bar_size(checks.bar_sizes)
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
    history_columns = ["time", "symbol", *OHLCV_COLUMNS, "obv"]
    symbols = sorted(ohlcv["symbol"].unique().tolist())
    with Progress(progress).task(f"importing into {table}", 2 * len(ohlcv)) as advance:
        parts: list[pd.DataFrame] = []
        for name in symbols:
            bars = ohlcv[ohlcv["symbol"] == name]
            stored_until = last.get(name)
            new = bars if stored_until is None else bars[bars["time"] > stored_until]
            result.already_stored[name] = len(bars) - len(new)
            if len(new) < 2:  # one new bar has no next bar: no target yet
                result.written[name] = 0
                advance(len(bars))
                continue
            if stored_until is None:
                rows = feature_rows(new)
            else:
                rows = _append_rows(target, name, new, history_columns)
            parts.append(rows)
            result.written[name] = len(rows)
            advance(len(bars))
        for rows in parts:
            target.write(rows)
            advance(len(rows))
        if (parts or not recorded) and target.exists():
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


def _append_rows(
    target: FeatureTable, symbol: str, new: pd.DataFrame, columns: list[str]
) -> pd.DataFrame:
    """New bars' rows computed over the stored bars before them; OBV (a running sum)
    continues from its stored value."""
    history = target.tail(symbol, columns, HISTORY_BARS)
    stored_obv = float(history["obv"].iloc[0]) if len(history) else 0.0
    history = history[["time", "symbol", *OHLCV_COLUMNS]]
    combined = pd.concat([history, new], ignore_index=True)
    rows = feature_rows(combined, warm={symbol: len(history)})
    if np.isfinite(stored_obv):
        rows["obv"] = rows["obv"] + stored_obv
    return rows
