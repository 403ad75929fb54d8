"""The first rows of a FINAL read, without FINAL over the whole table.

Why: a runs table holds several versions of every run (pending, running, heartbeats,
the end), and FINAL merges all of them before it can rank the first ten, so its cost
grows with every run ever stored (``bench/results/scale.md``). A page needs the top of
the ranking only, so :func:`first_current_rows`:

1. ranks *candidates* without FINAL: rows matching the filters, in the query's order,
   ``k`` of them (ClickHouse reads the wide columns of those ``k`` rows only: lazy
   materialization);
2. asks FINAL, narrowly and keyed by those candidates' ids only, which version of each
   is current;
3. keeps the candidates that are their key's current version.

Why that is exactly the FINAL answer: a current row that matches the filters is a
stored row that matches them, so it is ranked among the candidates unless it ranks
after the ``k``-th one. The kept candidates are therefore every current matching row
up to the ``k``-th candidate, in FINAL's order. When at least ``offset + limit`` are
kept, or fewer than ``k`` candidates exist (every matching row was ranked), the page is
the FINAL page. Otherwise ``k`` grows fourfold; past ``max_candidates`` the plain FINAL
read answers (a deep page, or a filter that mostly matches outdated versions).

The order must be total and end with the key (``..., run_id``), as FINAL's pages are:
ties broken by the key give one answer both ways. Versions are unique per key (the
repositories write each change with a newer one; a retried insert repeats the same
row), so a key's current version names one row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from repositories.query import Query
from suho_models.base import version_column

FIRST_CANDIDATES = 64
"""At least this many candidates, whatever the page size: a few outdated versions
among the first rows then cost no second round."""
GROWTH = 4
MAX_CANDIDATES = 20_000
"""Past this many candidates a plain FINAL read is cheaper than ranking more."""


def first_current_rows(
    query: Query,
    *,
    key: str,
    limit: int,
    offset: int = 0,
    max_candidates: int | None = None,
) -> list[Mapping[Any, Any]]:
    """Rows ``offset`` to ``offset + limit`` of ``query`` (a FINAL read, filtered and
    ordered, unpaged) as FINAL returns them. ``key``: the table's row key (one column);
    it and the version column are read even when the query does not select them."""
    table = query.source.table
    version = version_column(table)
    if not query.source.final or version is None:
        return list(query.limit(limit).offset(offset).rows())
    if not query.ordering or _name(query.ordering[-1]) != key:
        raise ValueError(f"first_current_rows: the order must end with {key!r} (total)")
    selected = list(query.selected or table.columns)
    names = [_name(c) for c in selected]
    sorting = sorted(query.source.key)
    extra = [table.c[n] for n in (key, version, *sorting) if n not in names]
    extra = list({c.name: c for c in extra}.values())
    # Versions of one run that rank alike (the same sort value: created_at, the name,
    # a metric not yet set) are one candidate, the newest: a run's current version is
    # its newest, so it is the one kept when it ranks there. Without this a sort on a
    # column every version shares would spend the candidates on heartbeats.
    ranking = [_expression(o) for o in query.ordering[:-1]]
    wanted = offset + limit
    k = max(FIRST_CANDIDATES, 2 * wanted)
    while k <= (MAX_CANDIDATES if max_candidates is None else max_candidates):
        candidates = (
            replace(query, source=replace(query.source, final=False))
            .columns(*selected, *extra)
            .order_by(table.c[version].desc())
            .first_per(table.c[key], *ranking)
            .limit(k)
            .offset(None)
            .rows()
        )
        current = _current_versions(query, key, version, candidates)
        kept: list[Mapping[Any, Any]] = []
        seen: set[Any] = set()
        for row in candidates:
            if row[key] not in seen and current.get(row[key]) == row[version]:
                seen.add(row[key])
                kept.append(row)
        if len(kept) >= wanted or len(candidates) < k:
            return [_only(r, names) for r in kept[offset:wanted]] if extra else kept[offset:wanted]
        k *= GROWTH
    return list(query.limit(limit).offset(offset).rows())


def _current_versions(
    query: Query, key: str, version: str, candidates: Sequence[Mapping[Any, Any]]
) -> dict[Any, Any]:
    """The current version of each candidate's key, by FINAL. Filtering on every
    sorting-key column (all of them run before the merge) confines the read to the
    granules that hold those rows."""
    if not candidates:
        return {}
    c = query.source.table.c
    where = [
        c[n].in_([_exact(v) for v in sorted({r[n] for r in candidates})])
        for n in sorted(query.source.key)
    ]
    reader = Query(query.db, query.source, (c[key], c[version]), tuple(where))
    return {r[key]: r[version] for r in reader.rows()}


def _exact(value: Any) -> Any:
    """A value as an exact literal: a time as ``toDateTime64(text, 6, 'UTC')``, since a
    bound datetime parameter reaches the server driver at whole seconds, and an
    equality on a ``DateTime64(3)`` key would then match nothing."""
    if isinstance(value, dt.datetime):
        utc = value.astimezone(dt.UTC) if value.tzinfo else value
        return sa.func.toDateTime64(utc.strftime("%Y-%m-%d %H:%M:%S.%f"), 6, "UTC")
    return value


def _expression(ordering: Any) -> Any:
    """The expression of an ORDER BY item (``x.desc()`` -> ``x``)."""
    return getattr(ordering, "element", ordering)


def _name(column: Any) -> str:
    element = getattr(column, "element", column)  # unwrap .desc() / .asc()
    element = getattr(element, "element", element)
    return str(getattr(element, "name", ""))


def _only(row: Mapping[Any, Any], names: list[str]) -> Mapping[Any, Any]:
    return {n: row[n] for n in names}
