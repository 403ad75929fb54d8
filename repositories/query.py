"""The one read path: every SELECT of a repository is built here.

The ClickHouse rule it applies, written once:

- a table whose engine merges row versions (ReplacingMergeTree and kin) is read
  with FINAL, so a reader sees one current row per key; a plain MergeTree rejects
  FINAL and is read as it is;
- under FINAL, a filter that reads only sorting-key columns runs before the merge
  (PREWHERE): every version of a row shares those columns, so the result is the
  same and far fewer granules are merged. Any other filter runs after the merge
  (WHERE); before it, it could pick an outdated version. ClickHouse does not move
  such filters by itself under FINAL (``optimize_move_to_prewhere_if_final`` is
  off by default).

A :class:`Source` says what the rule needs to know of a table (its columns,
FINAL or not, the sorting-key columns); it comes from a model
(:meth:`Source.of_model`) or, for tables our migrations do not own, from
``system.tables`` (:meth:`Source.of_existing`). A :class:`Query` is an immutable
statement on a source that can run itself (rows, scalar, Arrow) or show its SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from clickhouse_sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.elements import ColumnClause, quoted_name
from sqlalchemy.sql.visitors import iterate

from suho_models.base import engine_merges_versions, sorting_key_columns, sorting_key_names
from suho_models.db import Database
from suho_models.db.compat import final_prewhere, literal_sql


@dataclass(frozen=True)
class Source:
    """A table as the read rule sees it."""

    table: Any
    """A model's ``Table``, or a ``TableClause`` naming the columns of an existing table."""
    final: bool
    key: frozenset[str]
    """Plain column names of the sorting key (expressions such as ``toDate(t)`` left out)."""

    @classmethod
    def of_model(cls, model_or_table: Any) -> Source:
        table = getattr(model_or_table, "__table__", model_or_table)
        engine = type(getattr(table, "engine", None)).__name__
        return cls(table, engine_merges_versions(engine), sorting_key_columns(table))

    @classmethod
    def of_existing(
        cls, name: str, columns: Iterable[str], *, engine: str, sorting_key: str
    ) -> Source:
        """A table known by ``system.tables`` (``engine``, ``sorting_key``) and
        ``system.columns``, not by a model."""
        table = sa.table(
            quoted_name(name, True), *(sa.column(quoted_name(c, True)) for c in columns)
        )
        return cls(table, engine_merges_versions(engine), sorting_key_names(sorting_key))

    def reads_only_key(self, clause: ColumnElement[bool]) -> bool:
        """Whether ``clause`` reads columns of this table, and only sorting-key ones."""
        columns = [e for e in iterate(clause) if isinstance(e, ColumnClause) and not e.is_literal]
        return bool(columns) and all(c.table is self.table and c.name in self.key for c in columns)


@dataclass(frozen=True)
class Query:
    """One SELECT on one :class:`Source`; each method returns a new query."""

    db: Database
    source: Source
    selected: tuple[Any, ...] = ()
    """Columns or expressions; empty: every column of the table."""
    filters: tuple[ColumnElement[bool], ...] = ()
    ordering: tuple[Any, ...] = ()
    row_limit: int | None = None
    row_offset: int | None = None

    def columns(self, *columns: Any) -> Query:
        return replace(self, selected=tuple(columns))

    def where(self, *clauses: ColumnElement[bool]) -> Query:
        return replace(self, filters=(*self.filters, *clauses))

    def order_by(self, *clauses: Any) -> Query:
        return replace(self, ordering=(*self.ordering, *clauses))

    def limit(self, n: int | None) -> Query:
        return replace(self, row_limit=n)

    def offset(self, n: int | None) -> Query:
        return replace(self, row_offset=n)

    # ------------------------------------------------------------------ statement
    @property
    def statement(self) -> Any:
        """The SQLAlchemy statement: FINAL, PREWHERE and WHERE as the rule says."""
        source = self.source
        stmt = select(*(self.selected or source.table.columns)).select_from(source.table)
        if source.final:
            early = [c for c in self.filters if source.reads_only_key(c)]
            late = [c for c in self.filters if not source.reads_only_key(c)]
            stmt = final_prewhere(stmt, *early)
        else:
            late = list(self.filters)
        if late:
            stmt = stmt.where(*late)
        if self.ordering:
            stmt = stmt.order_by(*self.ordering)
        if self.row_limit is not None:
            stmt = stmt.limit(self.row_limit)
        if self.row_offset:
            stmt = stmt.offset(self.row_offset)
        return stmt

    def count_statement(self) -> Any:
        """``count()`` of the rows the filters select (ordering and paging ignored)."""
        return replace(
            self, selected=(sa.func.count(),), ordering=(), row_limit=None, row_offset=None
        ).statement

    def sql(self) -> str:
        """The statement as one SQL string, values rendered as literals: for what
        takes text (``Database.query_arrow``, benches). Text with a literal ``%``
        is not a template for ``Database.execute``, which formats ``%(name)s``."""
        return literal_sql(self.statement, self.db.engine.dialect)

    # ------------------------------------------------------------------ execution
    def rows(self) -> list[RowMapping]:
        with self.db.engine.connect() as conn:
            return list(conn.execute(self.statement).mappings())

    def scalar(self) -> Any:
        with self.db.engine.connect() as conn:
            return conn.execute(self.statement).scalar()

    def count(self) -> int:
        with self.db.engine.connect() as conn:
            return int(conn.execute(self.count_statement()).scalar() or 0)

    def arrow(self) -> pa.Table:
        """The rows as Arrow columns (no Python object per value)."""
        return self.db.query_arrow(self.sql())
