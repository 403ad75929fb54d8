"""Load the trainers' input: the feature table in ClickHouse, or a Parquet/CSV file.

Only the columns a spec resolves to, and only the requested date range and
symbols, are read (columnar, through Arrow).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from repositories.features import FeatureTable
from suho_models.db import Database
from trainers.data.calendar import Annualisation, annualisation
from trainers.data.ohlcv import OhlcvError, bar_sizes_of
from trainers.data.spec import FeatureSpec, ResolvedColumns


def is_file_source(source: str) -> bool:
    return source.endswith((".parquet", ".csv"))


def load_features(
    source: str,
    spec: FeatureSpec,
    db: Database | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    symbols: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, ResolvedColumns]:
    """The frame (sorted by time, symbol) and the roles its columns play."""
    if is_file_source(source):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"source: no such file {source!r}")
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        time = spec.time_column
        if time in frame:
            frame[time] = pd.to_datetime(frame[time], utc=True)
        resolved = spec.resolve(frame)
        if start is not None:
            frame = frame[frame[time] >= pd.Timestamp(start)]
        if end is not None:
            frame = frame[frame[time] <= pd.Timestamp(end)]
        if symbols and resolved.symbol:
            frame = frame[frame[resolved.symbol].isin(list(symbols))]
        frame = (
            frame[resolved.columns]
            .sort_values([c for c in (time, resolved.symbol) if c])
            .reset_index(drop=True)
        )
    else:
        if db is None:
            raise ValueError("source: a table source needs a database")
        table = FeatureTable(db, source, spec.time_column, spec.symbol_column or "symbol")
        resolved = spec.resolve(table.schema())
        frame = table.read(resolved.columns, start=start, end=end, symbols=symbols)
    spec.validate_frame(frame)
    return frame, resolved


def source_bars(
    source: str,
    spec: FeatureSpec,
    db: Database | None,
    frame: pd.DataFrame,
    roles: ResolvedColumns,
    given: float | None = None,
) -> Annualisation:
    """The source's bar size, calendar and bars per year: ``given``
    (``--periods-per-year``), what ``suho data import`` recorded with the table, or the
    bars themselves. A source mixing bar sizes is refused, naming the symbols."""
    recorded: dict[str, object] = {}
    if db is not None and not is_file_source(source):
        table = FeatureTable(db, source, spec.time_column, spec.symbol_column or "symbol")
        recorded = table.metadata()
    try:
        return annualisation(frame, roles.time, roles.symbol, recorded, given)
    except OhlcvError as exc:
        raise ValueError(f"source {source!r}: {exc}") from None


def known_bars(
    source: str,
    spec: FeatureSpec,
    db: Database | None,
    frame: pd.DataFrame,
    roles: ResolvedColumns,
) -> Annualisation | None:
    """:func:`source_bars` for data that need not be bars (a supervised source): None
    when the times are not datetimes or no bar size is recognised; mixed bar sizes are
    still refused (their test rows would hold the longer bars' symbols only)."""
    if not pd.api.types.is_datetime64_any_dtype(frame[roles.time]):
        return None
    sizes = bar_sizes_of(frame, roles.time, roles.symbol)
    if all(size is None for size in sizes.values()):
        return None
    return source_bars(source, spec, db, frame, roles)
