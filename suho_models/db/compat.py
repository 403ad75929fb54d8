"""Fixes for clickhouse-sqlalchemy 0.3.2 on SQLAlchemy 2.0 / Alembic >= 1.15 / ClickHouse 26.

Each fix is a small mixin or class our dialects and Alembic environment use, with
a test in ``tests/test_compat.py`` that fails without it:

1. ``FinalPreservingCompiler``: the ORM rebuilds ``select(Model)`` into a plain
   ``Select`` before compiling, dropping ``.final()`` (and SAMPLE, LIMIT BY,
   ARRAY JOIN) silently. Reading a ReplacingMergeTree without FINAL returns stale
   duplicates, so this one matters.
2. ORM inserts: the native driver forces ``executemany`` on every INSERT and
   ClickHouse returns no generated keys, so an ORM flush only works when every
   key is set before the INSERT. Our models give each UUID key a client-side
   ``default=uuid.uuid4`` (see ``suho_models``), so a flush without preset keys
   works; ``tests/test_compat.py`` shows the flush failing without a default.
3. ``NamedPkConstraintMixin``: ``get_pk_constraint`` returns no ``name`` key,
   which Alembic >= 1.18 reads unconditionally (KeyError in autogenerate).
4. ``ClickHouseAlembicImpl``: ``clickhouse_sqlalchemy.alembic`` imports names that
   Alembic >= 1.15 removed, so we register our own implementation for the
   ``clickhouse`` dialect.
5. Its version table is ``ReplacingMergeTree ORDER BY tuple()``, which ClickHouse
   >= 25.12 rejects. Ours is a plain ``MergeTree ORDER BY tuple()`` whose single row
   Alembic updates through synchronous ``ALTER TABLE ... UPDATE``.
6. ``patch_engine_constraints``: table engines are ``Constraint`` subclasses that
   skip ``Constraint.__init__``; Alembic's ``op.create_table`` reads their
   ``_type_bound`` and fails, so migrations could not declare engines.
7. ``UnquotedTimezoneReflectionMixin``: reflection keeps the quotes around a
   DateTime64 timezone (``'UTC'`` becomes ``"'UTC'"``), so every timestamp column
   looked changed to Alembic autogenerate.
8. The ClickHouse ``Select`` leaves FINAL etc. out of its cache key; we mark it
   uncacheable explicitly (correct, and silences SQLAlchemy's warning on every use).

One addition rather than a fix: clickhouse-sqlalchemy cannot write PREWHERE.
``final_prewhere`` builds ``FROM t FINAL PREWHERE <key filter>``: FINAL merges
every candidate granule before a WHERE runs, while PREWHERE filters first. That
is only correct for sorting-key columns (all versions of a row share them), and
ClickHouse does not move such filters by itself under FINAL
(``optimize_move_to_prewhere_if_final`` is off by default). ``literal_sql`` compiles
a statement to one SQL string for what takes text (Arrow reads). Repositories use
both through ``repositories.query``, never by hand.
"""

from __future__ import annotations

from typing import Any, cast

from clickhouse_sqlalchemy import engines
from clickhouse_sqlalchemy.drivers.compilers.sqlcompiler import ClickHouseSQLCompiler
from clickhouse_sqlalchemy.engines.base import Engine as _TableEngine
from clickhouse_sqlalchemy.sql.selectable import Select as _ClickHouseSelect
from sqlalchemy import Column, MetaData, String, Table, func
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import CompileError
from sqlalchemy.sql import ColumnElement, dml

_CLICKHOUSE_SELECT_EXTRAS = (
    "_final_clause",
    "_sample_clause",
    "_limit_by_clause",
    "_array_join",
    "_prewhere_criteria",
)


def final_prewhere(stmt: _ClickHouseSelect, *criteria: ColumnElement[bool]) -> _ClickHouseSelect:
    """``stmt`` with FINAL, and ``criteria`` applied before FINAL's merge (PREWHERE).

    Give only conditions on the table's sorting-key columns: a condition on any
    other column, applied before the merge, can pick an outdated row version.
    """
    stmt = stmt.final()
    if criteria:
        stmt = stmt._generate()
        stmt._prewhere_criteria = (*(getattr(stmt, "_prewhere_criteria", None) or ()), *criteria)
    return stmt


def literal_sql(stmt: Any, dialect: Any) -> str:
    """``stmt`` compiled for ``dialect`` as one SQL string, its values rendered as
    literals the way the embedded driver renders every parameter (SQLAlchemy's own
    ``literal_binds`` would write UUIDs as bare hex and datetimes with an offset).

    For what takes SQL text rather than a statement (Arrow reads, benches)."""
    from suho_models.db.chdb_dbapi import render_literal

    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    # Always substitute, even without values: that also turns ``%%`` back into ``%``.
    return str(compiled) % {k: render_literal(v) for k, v in compiled.params.items()}


class FinalPreservingCompiler(ClickHouseSQLCompiler):  # type: ignore[misc]  # untyped base
    """Carry FINAL/SAMPLE/LIMIT BY/ARRAY JOIN from an ORM select to what is compiled,
    and write ``final_prewhere``'s PREWHERE."""

    def _compose_select_body(
        self, text: str, select: Any, compile_state: Any, *args: Any, **kwargs: Any
    ) -> str:
        original = getattr(compile_state, "select_statement", None)
        if original is not None and original is not select:
            for attr in _CLICKHOUSE_SELECT_EXTRAS:
                value = getattr(original, attr, None)
                if value is not None and getattr(select, attr, None) is None:
                    setattr(select, attr, value)
        if getattr(select, "_prewhere_criteria", None) and not getattr(
            select, "_final_clause", None
        ):
            raise CompileError("PREWHERE criteria without FINAL would be dropped")
        if self.stack:  # keep the kwargs SQLAlchemy compiles WHERE with, for PREWHERE
            self.stack[-1]["prewhere_kw"] = kwargs.get("kwargs", args[-1] if args else {})
        return cast(str, super()._compose_select_body(text, select, compile_state, *args, **kwargs))

    def final_clause(self) -> str:
        # Called right after FROM for the select on top of the stack (subqueries in
        # FROM have been compiled and popped by then).
        text = cast(str, super().final_clause())
        entry = self.stack[-1] if self.stack else {}
        criteria = getattr(entry.get("selectable"), "_prewhere_criteria", None)
        if criteria:
            text += " \nPREWHERE " + self._generate_delimited_and_list(
                criteria, **entry.get("prewhere_kw", {})
            )
        return text


class NamedPkConstraintMixin:
    """``get_pk_constraint`` with the ``name`` key SQLAlchemy's contract promises."""

    def get_pk_constraint(
        self, connection: Any, table_name: str, schema: Any = None, **kw: Any
    ) -> dict[str, Any]:
        # A mixin: the dialect it is mixed into has get_pk_constraint.
        result = super().get_pk_constraint(connection, table_name, schema=schema, **kw)  # type: ignore[misc]
        return {"constrained_columns": [], "name": None, **(result or {})}


class UnquotedTimezoneReflectionMixin:
    """Reflect ``DateTime64(3, 'UTC')`` with timezone ``UTC``, not ``'UTC'``."""

    @staticmethod
    def _parse_detetime64_params(spec: str) -> list[str]:
        from clickhouse_sqlalchemy.drivers.base import ClickHouseDialect

        params: list[str] = ClickHouseDialect._parse_detetime64_params(spec)
        if len(params) > 1:
            params[1] = params[1].strip("'\"")
        return params

    @staticmethod
    def _parse_detetime_params(spec: str) -> list[str]:
        from clickhouse_sqlalchemy.drivers.base import ClickHouseDialect

        return [p.strip("'\"") for p in ClickHouseDialect._parse_detetime_params(spec)]


def _register_alembic_impl() -> type | None:
    """Register the Alembic implementation lazily: Alembic is optional at import."""
    try:
        from alembic.ddl.impl import DefaultImpl
    except ImportError:  # pragma: no cover - alembic is a dependency
        return None

    class ClickHouseAlembicImpl(DefaultImpl):
        """Alembic on ClickHouse: no transactional DDL, a valid version table."""

        __dialect__ = "clickhouse"
        transactional_ddl = False

        def version_table_impl(
            self,
            *,
            version_table: str,
            version_table_schema: str | None,
            version_table_pk: bool,
            **kw: Any,
        ) -> Table:
            return Table(
                version_table,
                MetaData(),
                Column("version_num", String(), nullable=False),
                engines.MergeTree(order_by=func.tuple()),
                schema=version_table_schema,
            )

        def _exec(self, construct: Any, *args: Any, **kw: Any) -> CursorResult[Any] | None:
            # Alembic moves the version row with UPDATE / DELETE; on ClickHouse those
            # are mutations, asynchronous on a server unless told otherwise.
            if isinstance(construct, dml.Update | dml.Delete) and not self.as_sql:
                compiled = construct.compile(
                    dialect=self.dialect, compile_kwargs={"literal_binds": True}
                )
                conn = self.connection
                assert conn is not None  # not as_sql: Alembic has a connection (its own check)
                return conn.exec_driver_sql(f"{compiled} SETTINGS mutations_sync = 2")
            return super()._exec(construct, *args, **kw)

        def compare_type(self, inspector_column: Column[Any], metadata_column: Column[Any]) -> bool:
            return _type_sql(inspector_column, self.dialect) != _type_sql(
                metadata_column, self.dialect
            )

        def compare_server_default(self, *args: Any, **kw: Any) -> bool:
            return False

    return ClickHouseAlembicImpl


def _type_sql(column: Column[Any], dialect: Any) -> str:
    type_ = column.type
    if isinstance(type_, type):  # reflection returns some types as classes
        type_ = type_()
    return cast(str, dialect.type_compiler.process(type_)).replace(" ", "")


def patch_engine_constraints() -> None:
    _TableEngine._type_bound = False
    _ClickHouseSelect.inherit_cache = False


patch_engine_constraints()
ClickHouseAlembicImpl = _register_alembic_impl()
