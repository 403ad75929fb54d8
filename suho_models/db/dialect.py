"""Our SQLAlchemy dialects: the embedded chDB one, and the native one with our fixes.

``clickhouse+chdb:////abs/data/dir/suho_analytics`` runs the real ClickHouse engine
in this process; the last path segment is the database, the rest the data
directory. ``clickhouse+native://...`` is clickhouse-sqlalchemy's native driver
with the fixes from :mod:`suho_models.db.compat`.
"""

from __future__ import annotations

import os
from typing import Any, cast

from clickhouse_sqlalchemy.drivers.base import ClickHouseDialect, ClickHouseExecutionContextBase
from clickhouse_sqlalchemy.drivers.native.base import (
    ClickHouseDialect_native,
    ClickHouseExecutionContext,
    ClickHouseNativeSQLCompiler,
)
from sqlalchemy.dialects import registry
from sqlalchemy.engine import URL
from sqlalchemy.sql.elements import TextClause

from suho_models.db import chdb_dbapi, native_dbapi
from suho_models.db.compat import (
    FinalPreservingCompiler,
    NamedPkConstraintMixin,
    UnquotedTimezoneReflectionMixin,
)


def split_chdb_url(url: URL) -> tuple[str, str]:
    """(data directory, database) of a ``clickhouse+chdb`` URL."""
    target = url.database or ""
    if not target:
        raise ValueError(
            "clickhouse+chdb URL needs a path: clickhouse+chdb:////abs/dir/suho_analytics"
        )
    path, _, database = target.rstrip("/").rpartition("/")
    return os.path.abspath(path or "."), database


class _DatabaseAwareReflection:
    """Reflection helpers of the base dialect read ``url.database`` as the database
    name; for chDB that is a path, so pass the real database explicitly.

    A mixin: its ``super()`` calls reach ClickHouseDialect, which mypy cannot see from
    here ("undefined in superclass", hence their ``misc`` ignores)."""

    def _db(self, connection: Any, schema: str | None) -> str:
        return schema or cast(str, connection.exec_driver_sql("SELECT currentDatabase()").scalar())

    def get_table_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        names = super().get_table_names(connection, self._db(connection, schema), **kw)  # type: ignore[misc]  # mixin
        return cast(list[str], names)

    def get_view_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        names = super().get_view_names(connection, self._db(connection, schema), **kw)  # type: ignore[misc]  # mixin
        return cast(list[str], names)

    def get_engine(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> Any:
        db = self._db(connection, schema)
        return super().get_engine(connection, table_name, db, **kw)  # type: ignore[misc]  # mixin

    def get_table_comment(
        self, connection: Any, table_name: str, schema: str | None = None, **kw: Any
    ) -> Any:
        db = self._db(connection, schema)
        return super().get_table_comment(connection, table_name, db, **kw)  # type: ignore[misc]  # mixin


class ChdbCompiler(FinalPreservingCompiler):
    pass


class ChdbExecutionContext(ClickHouseExecutionContextBase):  # type: ignore[misc]  # untyped base
    pass


class ChdbDialect(
    _DatabaseAwareReflection,
    UnquotedTimezoneReflectionMixin,
    NamedPkConstraintMixin,
    ClickHouseDialect,  # type: ignore[misc]  # untyped base
):
    """The embedded default: real ClickHouse in process, typed results."""

    driver = "chdb"
    statement_compiler = ChdbCompiler
    execution_ctx_cls = ChdbExecutionContext
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return chdb_dbapi

    def create_connect_args(self, url: URL) -> tuple[list[str], dict[str, str]]:
        path, database = split_chdb_url(url)
        return [], {"path": path, "database": database}

    def _execute(self, connection: Any, sql: Any, scalar: bool = False, **kwargs: Any) -> Any:
        if isinstance(sql, str):
            sql = TextClause(sql)
        f = connection.scalar if scalar else connection.execute
        return f(sql, kwargs)


HTTP_PORT_PARAM = "http_port"
"""URL query parameter of ``clickhouse+native`` URLs: the server's HTTP port, over
which :meth:`Database.query_arrow` reads Arrow (the native protocol has no Arrow)."""


class NativeCompiler(FinalPreservingCompiler, ClickHouseNativeSQLCompiler):  # type: ignore[misc]  # untyped base
    pass


class NativeExecutionContext(ClickHouseExecutionContext):  # type: ignore[misc]  # untyped base
    pass


class NativeDialect(
    UnquotedTimezoneReflectionMixin,
    NamedPkConstraintMixin,
    ClickHouseDialect_native,  # type: ignore[misc]  # untyped base
):
    """clickhouse-sqlalchemy's native (TCP) dialect with our fixes."""

    statement_compiler = NativeCompiler
    execution_ctx_cls = NativeExecutionContext
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return native_dbapi  # errors carry ClickHouse's message

    def create_connect_args(self, url: Any) -> Any:
        # ``http_port`` is ours (Database's Arrow reads); clickhouse-driver would send
        # it to the server as an unknown setting.
        return super().create_connect_args(url.difference_update_query([HTTP_PORT_PARAM]))


def register() -> None:
    """Make ``clickhouse+chdb`` and our fixed ``clickhouse+native`` resolvable."""
    registry.register("clickhouse.chdb", __name__, "ChdbDialect")
    registry.register("clickhouse.native", __name__, "NativeDialect")
    registry.register("clickhouse", __name__, "NativeDialect")


register()
