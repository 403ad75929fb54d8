"""Columns with one value on every row of a bulk INSERT (the run or checkpoint that
wrote them, the write's version time).

Shipping such a column as n copies costs what the real columns cost: building n
Python or Arrow values, serializing, parsing them again. On the embedded engine the
copies never exist: the varying columns go through a FIFO as one Arrow stream, read
by ``file(fifo, 'ArrowStream', structure)`` with the table's own column types (so
each value is converted as an ``INSERT … FORMAT Arrow`` would), and each constant is
one literal in the ``SELECT``, cast to its column's type. Elsewhere (a server over
HTTP or the native protocol) they are materialized as Arrow columns and take the
ordinary path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

from suho_models.db.chdb_dbapi import quote_string, render_literal
from suho_models.db.pipes import piped


def check(data: pa.Table, constants: Mapping[str, pa.Scalar], types: Mapping[str, str]) -> None:
    """Raises naming a constant that is also a data column, or not a column of the table."""
    for name in constants:
        if name in data.column_names:
            raise ValueError(f"constant column {name!r} is also a column of the data")
        if name not in types:
            raise ValueError(f"constant column {name!r}: the table has no such column")


def materialize(data: pa.Table, constants: Mapping[str, pa.Scalar]) -> pa.Table:
    """``data`` plus every constant repeated on each row (for the paths without SQL)."""
    for name, value in constants.items():
        data = data.append_column(name, pa.repeat(value, data.num_rows))
    return data


def stream_bytes(data: pa.Table) -> pa.Buffer:
    """``data`` as one Arrow IPC stream (buffers copied, no per-value work)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return sink.getvalue()


def insert_sql(
    table: str,
    columns: list[str],
    constants: Mapping[str, pa.Scalar],
    types: Mapping[str, str],
    path: str,
    settings: Mapping[str, str] | None = None,
) -> str:
    """``INSERT INTO table (...) SELECT columns, literals FROM file(path, ArrowStream)``."""
    names = [*columns, *constants]
    structure = ", ".join(f"`{c}` {types[c]}" for c in columns)
    selected = [f"`{c}`" for c in columns]
    selected += [
        f"CAST({render_literal(value.as_py())} AS {types[name]}) AS `{name}`"
        for name, value in constants.items()
    ]
    clause = ", ".join(f"{k} = {quote_string(v)}" for k, v in (settings or {}).items())
    return (
        f"INSERT INTO `{table}` ({', '.join(f'`{n}`' for n in names)}) "
        + (f"SETTINGS {clause} " if clause else "")
        + f"SELECT {', '.join(selected)} "
        f"FROM file({quote_string(path)}, 'ArrowStream', {quote_string(structure)})"
    )


def insert_piped(
    execute: Callable[[str], Any],
    table: str,
    data: pa.Table,
    constants: Mapping[str, pa.Scalar],
    types: Mapping[str, str],
    settings: Mapping[str, str] | None = None,
) -> None:
    """One INSERT on the embedded engine: ``data`` through a FIFO, constants as literals."""
    with piped(memoryview(stream_bytes(data))) as path:
        execute(insert_sql(table, data.column_names, constants, types, path, settings))


__all__ = ["check", "insert_piped", "insert_sql", "materialize", "stream_bytes"]
