"""Split a bulk INSERT by partition, so any length of data goes in.

ClickHouse refuses one INSERT block that touches more than
``max_partitions_per_insert_block`` (100) partitions with ``TOO_MANY_PARTS``: ten
years of monthly-partitioned rows cannot go in one INSERT. Raising the setting only
moves the limit (and every partition is a part to merge), so a write is cut into
INSERTs of at most :data:`MAX_PARTITIONS_PER_INSERT` partitions each instead.

Only the ``toYYYYMM(<column>)`` partition key is understood (the one every table of
ours and the feature table use); any other key leaves the write whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_PARTITIONS_PER_INSERT = 100
"""ClickHouse's default ``max_partitions_per_insert_block``."""

_MONTHLY = re.compile(r"^toYYYYMM\(\s*`?([A-Za-z_][A-Za-z0-9_]*)`?\s*\)$")
_TIMEZONE = re.compile(r"DateTime(?:64)?\((?:\d+\s*,\s*)?'([^']+)'\)")


def monthly_column(partition_key: str) -> str | None:
    """The column of a ``toYYYYMM(column)`` partition key, else None."""
    match = _MONTHLY.match(partition_key.strip())
    return match.group(1) if match else None


def column_timezone(clickhouse_type: str, default: str = "UTC") -> str:
    """The time zone a DateTime column's months are counted in."""
    match = _TIMEZONE.search(clickhouse_type)
    return match.group(1) if match else default


def month_numbers(column: pa.ChunkedArray | pa.Array, timezone: str = "UTC") -> np.ndarray:
    """Months since year 0 of each timestamp, as ``toYYYYMM`` sees them in ``timezone``
    (nulls become -1: they form one group of their own)."""
    if pa.types.is_timestamp(column.type):
        unit = column.type.unit
        if timezone == "UTC" and column.type.tz in (None, "UTC", "+00:00"):
            return _utc_months(column.cast(pa.timestamp(unit)))
        column = column.cast(pa.timestamp(unit, tz=timezone))
    elif pa.types.is_date(column.type):
        pass
    else:
        raise TypeError(f"partition column: expected timestamps, got {column.type}")
    months = pc.add(pc.multiply(pc.year(column), 12), pc.subtract(pc.month(column), 1))
    filled = pc.fill_null(months, -1)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.int64)


def _utc_months(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """:func:`month_numbers` of UTC instants by NumPy's calendar-free month count
    (Arrow's ``year``/``month`` look every value up in a time zone: 20x slower)."""
    values: np.ndarray = column.to_numpy(zero_copy_only=False)  # datetime64, NaT for nulls
    months: np.ndarray = values.astype("datetime64[M]").astype(np.int64) + 1970 * 12
    months[np.isnat(values)] = -1
    return months


def split_by_partition(
    data: pa.Table,
    column: str,
    timezone: str = "UTC",
    limit: int = MAX_PARTITIONS_PER_INSERT,
) -> list[pa.Table]:
    """``data`` as tables of at most ``limit`` monthly partitions each, the months in
    ascending order (so a retried write cuts the same chunks again); ``[data]`` when it
    already fits."""
    if data.num_rows == 0 or column not in data.column_names:
        return [data]
    kind = data.schema.field(column).type
    if not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        return [data]  # the engine converts it (or refuses it) with its own message
    months = month_numbers(data.column(column), timezone)
    distinct = np.unique(months)
    if len(distinct) <= limit:
        return [data]
    group = np.searchsorted(distinct, months) // limit
    if np.all(group[1:] >= group[:-1]):  # time-ordered input: slice, don't gather
        bounds = np.flatnonzero(np.diff(group)) + 1
        starts = np.r_[0, bounds]
        ends = np.r_[bounds, len(group)]
        return [data.slice(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)]
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group)
    chunks, start = [], 0
    for count in counts.tolist():
        if count:
            chunks.append(data.take(pa.array(order[start : start + count])))
        start += count
    return chunks


Execute = Callable[[str, dict[str, Any]], list[Any]]


def monthly_partitioning(
    execute: Execute, table: str, cache: dict[str, tuple[str, str]]
) -> tuple[str, str] | None:
    """(column, time zone) of ``table``'s ``toYYYYMM(column)`` partition key, else None.

    A Distributed table has no key of its own: its ``<table>_local`` has. Found keys
    are cached; a table without one is not (it may be created or re-created later).
    """
    from suho_models.db.cluster.settings import LOCAL_SUFFIX  # the package imports database

    if table in cache:
        return cache[table]
    for name in (table, f"{table}{LOCAL_SUFFIX}"):
        rows = execute(
            "SELECT partition_key FROM system.tables "
            "WHERE database = currentDatabase() AND name = %(t)s",
            {"t": name},
        )
        if not rows:
            return None
        column = monthly_column(rows[0][0] or "")
        if column is not None:
            types = execute(
                "SELECT type FROM system.columns WHERE database = currentDatabase() "
                "AND table = %(t)s AND name = %(c)s",
                {"t": name, "c": column},
            )
            cache[table] = (column, column_timezone(types[0][0] if types else ""))
            return cache[table]
    return None
