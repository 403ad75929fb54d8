"""A small generic repository over one ClickHouse table.

ClickHouse specifics the subclasses rely on, kept here:
- mutable rows are re-inserted with a newer version column; reads go through
  :mod:`repositories.query` (FINAL, and key filters before its merge), so callers
  always see one current row per key;
- writes are plain INSERTs (there are no transactions), batched where possible;
  a row is exactly the table's columns (:func:`row_of`), no field dropped or
  column left to ClickHouse's implicit zero.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.sql import ColumnElement

from repositories.errors import SchemaMismatchError
from repositories.query import Query, Source
from suho_models.base import Base
from suho_models.db import Database

R = TypeVar("R", bound=BaseModel)

VERSION_STEP = dt.timedelta(microseconds=1)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def next_version(previous: dt.datetime | None) -> dt.datetime:
    """A version strictly newer than ``previous``, so FINAL picks the new row even
    when two updates land within the same clock tick."""
    now = utcnow()
    if previous is not None and now <= previous:
        return previous + VERSION_STEP
    return now


def row_of(record: BaseModel, table: Any) -> dict[str, Any]:
    """The INSERT row of ``record``: every column of ``table``, nothing else.

    A record field without a column would be lost, so it is an error. So is a
    column the record does not supply, unless the model declares a default for it:
    ClickHouse would fill it with its type's zero ('' / 0 / NULL), silently.
    """
    values = record.model_dump()
    missing = {
        c.name
        for c in table.columns
        if c.name not in values and c.default is None and c.server_default is None
    }
    check_fields(type(record), table, values, missing)
    return values


def check_fields(
    record: type[BaseModel], table: Any, fields: Iterable[str], missing: Iterable[str] = ()
) -> None:
    """SchemaMismatchError naming each of ``fields`` that ``table`` has no column
    for, and each column in ``missing``."""
    problems = []
    if extra := sorted(set(fields) - set(table.c.keys())):
        problems.append(f"fields without a column: {', '.join(extra)}")
    if missing := sorted(missing):
        problems.append(f"columns not supplied: {', '.join(missing)}")
    if problems:
        raise SchemaMismatchError(f"{record.__name__} -> {table.name}: " + "; ".join(problems))


class Repository(Generic[R]):
    """Typed access to one table: ``get_one_or_none``, ``list_and_count`` and the
    :meth:`read` every query of a subclass starts from."""

    model: ClassVar[type[Base]]
    record: type[R]
    """The record class of a row: set on each concrete repository's class (a ClassVar
    cannot name the type variable)."""

    def __init__(self, db: Database) -> None:
        db.verify_schema()
        self.db = db
        self.source = Source.of_model(self.model)

    @property
    def table(self) -> Any:
        return self.model.__table__

    # ------------------------------------------------------------------ writes
    def _insert_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        with self.db.engine.connect() as conn:
            conn.execute(insert(self.table), list(rows))

    def _to_row(self, record: BaseModel) -> dict[str, Any]:
        return row_of(record, self.table)

    # ------------------------------------------------------------------ reads
    def read(self, *where: ColumnElement[bool], columns: Sequence[Any] = ()) -> Query:
        """A query on this table (all columns unless ``columns``); see
        :mod:`repositories.query`. Its ``sql()`` is the statement a method sends."""
        return Query(self.db, self.source, tuple(columns), tuple(where))

    def record_columns(self, record: type[BaseModel]) -> list[Any]:
        """The table's columns for ``record``'s fields, in table order; a field with no
        column is a :class:`SchemaMismatchError`, not a silently shorter SELECT."""
        check_fields(record, self.table, record.model_fields)
        return [c for c in self.table.columns if c.name in record.model_fields]

    def _select(
        self,
        *where: ColumnElement[bool],
        order_by: Sequence[Any] = (),
        limit: int | None = None,
        offset: int | None = None,
        columns: Sequence[Any] | None = None,
    ) -> list[Any]:
        query = self.read(*where, columns=columns or ()).order_by(*order_by)
        return query.limit(limit).offset(offset).rows()

    def _count(self, *where: ColumnElement[bool]) -> int:
        return self.read(*where).count()

    def _to_record(self, row: Mapping[str, Any] | RowMapping) -> R:
        return self.record.model_validate(dict(row))

    def _list(
        self,
        *where: ColumnElement[bool],
        order_by: Sequence[Any] = (),
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[R]:
        """Matching records; one query (no count)."""
        rows = self._select(*where, order_by=order_by, limit=limit, offset=offset)
        return [self._to_record(r) for r in rows]

    def get_one_query(self, *where: ColumnElement[bool]) -> Query:
        """What :meth:`get_one_or_none` sends (two rows at most: one more is an error)."""
        return self.read(*where).limit(2)

    def get_one_or_none(self, *where: ColumnElement[bool]) -> R | None:
        rows = self.get_one_query(*where).rows()
        if len(rows) > 1:
            raise LookupError(f"{self.table.name}: more than one row matches")
        return self._to_record(rows[0]) if rows else None

    def list_and_count(
        self,
        *where: ColumnElement[bool],
        order_by: Sequence[Any] = (),
        limit: int | None = None,
        offset: int | None = None,
    ) -> tuple[list[R], int]:
        """A page of matching records and the number of all matching rows (two
        queries: use :meth:`_list` when the count is not needed)."""
        return self._list(*where, order_by=order_by, limit=limit, offset=offset), self._count(
            *where
        )
