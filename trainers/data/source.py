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
