"""The input feature table (``ml_features`` by default): create, write, read columnar.

The table belongs to the upstream feature pipeline, not to our migrations; we
create it only for synthetic data (``suho data synth``). Reads fetch just the
columns and the date range a trainer needs, as Arrow, never row by row.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import replace

import pandas as pd
import pyarrow as pa

from repositories.errors import InvalidInputError
from repositories.query import Query, Source
from suho_models.db import Database

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise InvalidInputError(f"{what}: not a plain identifier (got {name!r})")
    return name


def _clickhouse_type(dtype: object) -> str:
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return "DateTime64(3, 'UTC')"
    if pd.api.types.is_bool_dtype(dtype):
        return "UInt8"
    if pd.api.types.is_integer_dtype(dtype):
        return "UInt8" if str(dtype) == "uint8" else "Int64"
    if pd.api.types.is_float_dtype(dtype):
        return "Float64"
    return "LowCardinality(String)"


def _utc(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


class FeatureTable:
    """A feature table in the same ClickHouse as the training tables."""

    def __init__(
        self,
        db: Database,
        table: str = "ml_features",
        time_column: str = "time",
        symbol_column: str = "symbol",
    ) -> None:
        self.db = db
        self.table = _identifier(table, "table")
        self.time_column = _identifier(time_column, "time_column")
        self.symbol_column = _identifier(symbol_column, "symbol_column")

    def exists(self) -> bool:
        return bool(self.db.scalar(f"EXISTS TABLE `{self.table}`"))

    def count(self) -> int:
        """Rows as :meth:`read` sees them (one per key where the engine merges versions)."""
        return Query(self.db, self._source()).count() if self.exists() else 0

    def drop(self) -> None:
        self.db.execute(f"DROP TABLE IF EXISTS `{self.table}`")

    def schema(self) -> dict[str, str]:
        """Column name -> ClickHouse type, in table order."""
        rows = self.db.execute(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
            "AND table = %(t)s ORDER BY position",
            {"t": self.table},
        )
        if not rows:
            raise InvalidInputError(f"feature table {self.table!r} does not exist")
        return {name: type_ for name, type_ in rows}

    def create(self, frame: pd.DataFrame) -> None:
        """Create the table for ``frame``'s columns: monthly partitions, ordered by
        (symbol, time) so one symbol's date range is a contiguous read."""
        columns = ",\n    ".join(
            f"`{_identifier(name, 'column')}` {_clickhouse_type(dtype)}"
            for name, dtype in frame.dtypes.items()
        )
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS `{self.table}` (\n    {columns}\n) "
            f"ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(`{self.time_column}`) "
            f"ORDER BY (`{self.symbol_column}`, `{self.time_column}`) "
            f"COMMENT 'Model input: features and targets per (symbol, time)'"
        )

    def write(self, frame: pd.DataFrame) -> int:
        """Insert a frame (creating the table if needed); returns the row count.

        Any length goes in (the database splits the INSERT by partition). A table this
        call created is dropped again if the write fails, so a failure leaves nothing
        behind; a write into an existing table that fails part-way leaves the chunks
        already written (re-writing the same rows replaces them: the engine keeps one
        row per (symbol, time)).
        """
        created = not self.exists()
        if created:
            self.create(frame)
        try:
            data = pa.Table.from_pandas(frame, preserve_index=False)
            self.db.insert_arrow(self.table, data)
        except BaseException:
            if created:
                self.drop()
            raise
        return len(frame)

    def read(
        self,
        columns: Sequence[str],
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        symbols: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Only ``columns`` within [start, end], one row per (symbol, time)."""
        frame = self.query(columns, start, end, symbols).arrow().to_pandas()
        if self.time_column in frame:
            frame[self.time_column] = pd.to_datetime(frame[self.time_column], utc=True)
        return frame

    def last_times(self) -> dict[str, pd.Timestamp]:
        """The newest time stored per symbol (empty when the table does not exist)."""
        if not self.exists():
            return {}
        rows = self.db.execute(
            f"SELECT toString(`{self.symbol_column}`), max(`{self.time_column}`) "
            f"FROM `{self.table}` GROUP BY `{self.symbol_column}`"
        )
        return {str(symbol): _utc(time) for symbol, time in rows}

    def tail(self, symbol: str, columns: Sequence[str], rows: int) -> pd.DataFrame:
        """A symbol's last ``rows`` rows (``columns`` only), oldest first."""
        query = self.query(columns, symbols=[symbol])
        c = query.source.table.c
        newest_first = replace(query, ordering=(c[self.time_column].desc(),)).limit(rows)
        frame = newest_first.arrow().to_pandas()
        if self.time_column in frame:
            frame[self.time_column] = pd.to_datetime(frame[self.time_column], utc=True)
        return frame.iloc[::-1].reset_index(drop=True)

    def metadata(self) -> dict[str, object]:
        """What a writer recorded with the table (:meth:`set_metadata`): the table's
        comment, read as JSON ({} when it holds none)."""
        if not self.exists():
            return {}
        comment = self.db.scalar(
            "SELECT comment FROM system.tables WHERE database = currentDatabase() AND name = %(t)s",
            {"t": self.table},
        )
        try:
            value = json.loads(comment or "")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def set_metadata(self, values: dict[str, object]) -> None:
        """Record ``values`` (JSON) with the table, in its comment: no extra table, and
        it goes wherever the table goes."""
        from suho_models.db.chdb_dbapi import quote_string

        text = json.dumps(values, sort_keys=True, default=str)
        self.db.execute(f"ALTER TABLE `{self.table}` MODIFY COMMENT {quote_string(text)}")

    def read_sql(
        self,
        columns: Sequence[str],
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        symbols: Sequence[str] | None = None,
    ) -> tuple[str, dict[str, object]]:
        """The statement :meth:`read` sends, and its parameters (none: the values are
        rendered into the SQL)."""
        return self.query(columns, start, end, symbols).sql(), {}

    def query(
        self,
        columns: Sequence[str],
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        symbols: Sequence[str] | None = None,
    ) -> Query:
        """The read as a :class:`~repositories.query.Query`, shaped by the table's
        engine and sorting key as ``system.tables`` reports them (FINAL only where
        the engine merges row versions; key filters before the merge)."""
        wanted = [_identifier(c, "column") for c in columns]
        source = self._source()
        c = source.table.c
        unknown = [n for n in (*wanted, self.time_column, self.symbol_column) if n not in c]
        if unknown:
            raise InvalidInputError(
                f"feature table {self.table!r}: no column {unknown[0]!r} "
                f"(has {', '.join(c.keys())})"
            )
        time, symbol = c[self.time_column], c[self.symbol_column]
        where = []
        if start is not None:
            where.append(time >= start)
        if end is not None:
            where.append(time <= end)
        if symbols:
            where.append(symbol.in_(list(symbols)))
        return Query(self.db, source, tuple(c[name] for name in wanted), tuple(where)).order_by(
            time, symbol
        )

    def _source(self) -> Source:
        """The table as ``system.tables`` / ``system.columns`` describe it."""
        rows = self.db.execute(
            "SELECT engine, sorting_key FROM system.tables "
            "WHERE database = currentDatabase() AND name = %(t)s",
            {"t": self.table},
        )
        if not rows:
            raise InvalidInputError(f"feature table {self.table!r} does not exist")
        engine, sorting_key = rows[0]
        return Source.of_existing(self.table, self.schema(), engine=engine, sorting_key=sorting_key)
