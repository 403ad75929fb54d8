"""The one database handle a process opens: engine, sessions, columnar I/O, schema check.

Repositories take a :class:`Database`; they never build engines themselves, so a
process opens the store once (a chDB directory can only be opened by one process,
and only one data path per process).
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from suho_models.db import constant_columns, partitions
from suho_models.db import dialect as _dialect  # noqa: F401  (registers the dialects)
from suho_models.db.dialect import HTTP_PORT_PARAM
from suho_models.db.native_dbapi import Connection as NativeConnection
from suho_models.db.native_dbapi import (
    DatabaseError,
    OperationalError,
    native_column,
    one_line,
    translated_errors,
)
from suho_models.db.pipes import piped
from suho_models.db.read_only import (
    QueryResult,
    ReadOnlySession,
    embedded_runner,
    server_runner,
)
from suho_models.settings import get_settings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from suho_models.db import chdb_dbapi
    from suho_models.db.server.shared import SharedStore

T = TypeVar("T")

_BLOB_READ_BYTES = 4 << 20
"""How a blob read over HTTP grows its buffer when the expected size is unknown or
exceeded."""


class SchemaOutOfDateError(RuntimeError):
    """The database is behind (or ahead of) the code's migrations."""


class DatabaseUnavailableError(RuntimeError):
    """The store cannot be reached or opened."""


class Database:
    """An engine plus the ClickHouse-specific fast paths the repositories need."""

    open_hooks: ClassVar[list[Callable[[Database], None]]] = []
    """Called with each new handle. Cluster mode registers its run-time routing here
    (synchronous Distributed inserts, per-node deletes), so this module imports no
    cluster code; importing ``suho_models.db`` registers it."""

    def __init__(self, url: str | URL | None = None, *, echo: bool = False) -> None:
        given = make_url(url or get_settings().resolved_database_url())
        self.shared: SharedStore | None = None
        """The default store's background server, for a ``clickhouse+local`` URL."""
        if given.get_driver_name() == "local":
            from suho_models.db.server.shared import open_shared_store

            with _store_errors():
                self.shared, given = open_shared_store(given, get_settings().server_idle_seconds)
        self.url = _with_local_server_password(given)
        self.http_port = _http_port(self.url)
        self.arrow_over_http = self.http_port is not None
        """Arrow INSERTs go to the HTTP port (the server parses them); the cluster hook
        turns it off, its synchronous Distributed inserts being set per native connection."""
        self.engine: Engine = sa.create_engine(self.url, echo=echo, pool_pre_ping=False)
        if self.shared is not None:  # every use first checks that the server lives
            sa.event.listen(self.engine, "checkout", lambda *_: self.revive())
        self.sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._schema_checked = False
        self._lock = threading.Lock()
        self._http: Client | None = None
        for hook in self.open_hooks:
            hook(self)

    # ------------------------------------------------------------------ basics
    @property
    def driver(self) -> str:
        return self.url.get_driver_name()

    @property
    def is_embedded(self) -> bool:
        return self.driver == "chdb"

    @property
    def is_shared(self) -> bool:
        """The default store, served to every process by a background server."""
        return self.shared is not None

    def revive(self) -> bool:
        """Shared store: start its server again if it is gone (True once it answers;
        ``DatabaseUnavailableError`` if it cannot). Other stores: True."""
        if self.shared is not None:
            with _store_errors():
                self.shared.check(self.url.port, self.http_port)
        return True

    @cached_property
    def store_key(self) -> str:
        """A file-name-safe name of the target store and database, known without
        connecting (used to keep one store's spooled rows apart from another's)."""
        import hashlib

        if self.is_embedded or self.shared is not None:
            from suho_models.db.dialect import split_chdb_url

            path, database = split_chdb_url(self.url) if self.is_embedded else ("", "")
            if self.shared is not None:  # the same spool as that folder's embedded store
                path, database = str(self.shared.path), self.url.database or ""
            where = "embedded-" + hashlib.sha256(path.encode()).hexdigest()[:10]
        else:
            database = self.url.database or "default"
            where = f"{self.url.host or 'localhost'}-{self.url.port or 9000}"
        return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{where}-{database}")

    @cached_property
    def database_name(self) -> str:
        return cast(str, self.scalar("SELECT currentDatabase()"))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[sa.Row[Any]]:
        """Run SQL with ``%(name)s`` parameters; returns all rows (none for DDL)."""
        with self.engine.connect() as conn:
            result = conn.exec_driver_sql(sql, params or {})
            return list(result.all()) if result.returns_rows else []

    def execute_mappings(
        self, sql: str, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Like :meth:`execute`, rows as dicts keyed by column name."""
        with self.engine.connect() as conn:
            result = conn.exec_driver_sql(sql.rstrip().rstrip(";"), params or {})
            return [dict(r) for r in result.mappings()] if result.returns_rows else []

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(sql, params or {}).scalar()

    def close(self) -> None:
        self.engine.dispose()
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.shared is not None:
            self.shared.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_database_if_missing(self) -> None:
        """A fresh server has no ``suho_analytics`` yet; create it before migrating.

        (The embedded driver creates its database when it connects.)
        """
        if self.is_embedded:
            return
        name = self.url.database or "default"
        bootstrap = sa.create_engine(self.url.set(database="default"))
        try:
            with bootstrap.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{name}`")
        finally:
            bootstrap.dispose()

    # ------------------------------------------------------------------ columnar I/O
    def insert_arrow(
        self,
        table: str,
        data: pa.Table,
        *,
        constants: Mapping[str, pa.Scalar] | None = None,
        settings: Mapping[str, str] | None = None,
        dedup_token: str | None = None,
    ) -> None:
        """Bulk insert a whole Arrow table: one columnar INSERT per at most 100 monthly
        partitions (``partitions.split_by_partition``), so any length of data goes in.

        ``constants`` (column -> value on every row): on the embedded engine each is
        one literal in the INSERT, not n copies (:mod:`~suho_models.db.constant_columns`).
        ``settings``: ClickHouse query settings for every INSERT of the write.
        ``dedup_token`` (``insert_deduplication_token``): the same token for a retried
        batch makes ClickHouse drop what an earlier, failed-looking attempt wrote.
        """
        if data.num_rows == 0:
            return
        constants = dict(constants or {})
        if constants:
            constant_columns.check(data, constants, self.column_types(table))
        chunks = [data]
        cache: dict[str, tuple[str, str]] = self.__dict__.setdefault("_part_cache", {})
        partitioning = partitions.monthly_partitioning(self.execute, table, cache)
        if partitioning is not None:
            chunks = partitions.split_by_partition(data, *partitioning)
        for n, chunk in enumerate(chunks):
            token = dedup_token if dedup_token is None or len(chunks) == 1 else f"{dedup_token}:{n}"
            if constants and self.is_embedded and token is None and not self.arrow_over_http:
                types = self.column_types(table)
                constant_columns.insert_piped(
                    self.execute, table, chunk, constants, types, settings or {}
                )
            else:
                chunk = constant_columns.materialize(chunk, constants)
                self._insert_arrow_block(table, chunk, token, settings or {})

    def _insert_arrow_block(
        self, table: str, data: pa.Table, dedup_token: str | None, given: Mapping[str, str]
    ) -> None:
        settings = dict(given)
        if dedup_token:
            settings["insert_deduplication_token"] = dedup_token
        if self.arrow_over_http:  # the server parses Arrow: no per-value Python work
            self.revive()
            self._http_client().insert_arrow(table, data, settings=settings)
            return
        with self.engine.connect() as conn:
            if self.is_embedded:
                _embedded(conn).client.insert_arrow(
                    f"{self.database_name}.{table}", data, settings=settings
                )
            else:
                columns = ", ".join(f"`{n}`" for n in data.column_names)
                scales = self._datetime64_scales(table)
                with translated_errors():
                    _native(conn).transport.execute(
                        f"INSERT INTO `{table}` ({columns}) VALUES",
                        [
                            native_column(data.column(i), scales.get(name))
                            for i, name in enumerate(data.column_names)
                        ],
                        columnar=True,
                        settings=settings or None,
                    )

    def insert_row_with_blob(
        self,
        table: str,
        row: Mapping[str, Any],
        blob_column: str,
        blob: bytes,
        encode: str = "",
    ) -> None:
        """Insert one row whose ``blob_column`` is ``encode(blob)``, computed by ClickHouse.

        The bytes travel raw (through a pipe the embedded engine reads as RawBLOB, a
        Native block on a server), so no Python encoding and no SQL text of their
        size: checkpoints keep base64 in the row without paying for it. The INSERT
        fails unless exactly ``len(blob)`` bytes arrived, so a cut-short transfer
        stores nothing.
        """
        from suho_models.db.chdb_dbapi import quote_string, render_literal

        if encode and not re.fullmatch(r"[A-Za-z0-9]+", encode):
            raise ValueError(f"encode: expected a ClickHouse function name (got {encode!r})")

        columns = ", ".join(f"`{name}`" for name in [*row, blob_column])
        literals = [render_literal(value) for value in row.values()]
        literals.append(f"{encode}(raw_blob)" if encode else "raw_blob")
        complete = (
            f"throwIf(length(raw_blob) != {len(blob)}, "
            f"{quote_string(f'{table}.{blob_column}: the bytes arrived short')}) = 0"
        )
        head = f"INSERT INTO `{table}` ({columns}) SELECT {', '.join(literals)}"
        if self.is_embedded:
            with piped(blob) as path:
                source = f"file({quote_string(path)}, 'RawBLOB')"
                self.execute(f"{head} FROM {source} WHERE {complete}")
        else:  # a Native block: faster than an HTTP body here (bench_checkpoints)
            sql = f"{head} FROM input('raw_blob String') WHERE {complete} FORMAT Native"
            with self.engine.connect() as conn, translated_errors():
                _native(conn).transport.execute(sql, [[blob]], columnar=True)

    def read_blob(
        self,
        sql: str,
        params: dict[str, Any] | None,
        into: Callable[[memoryview | bytes], T],
        *,
        size_hint: int | None = None,
    ) -> T:
        """``into`` applied to the one String value ``sql`` selects (b"" when no row).

        ``into`` must copy what it is given (``bytes``, a bytes subclass): it sees
        the engine's or the socket's buffer, so a checkpoint is copied once on its
        way to the caller's object. ``size_hint`` (the expected byte count) lets a
        streamed read land in one buffer of that size.
        """
        from suho_models.db.chdb_dbapi import render

        rendered = render(sql, params)
        if self.http_port is not None:
            self.revive()
            return into(self._http_blob(f"{rendered} FORMAT RawBLOB", size_hint))
        with self.engine.connect() as conn:
            if self.is_embedded:
                return _embedded(conn).read_buffer(f"{rendered} FORMAT RawBLOB", into)
            with translated_errors():
                rows = _native(conn).transport.execute(
                    rendered, settings={"strings_as_bytes": True}
                )
            return into(rows[0][0] if rows else b"")

    def _http_blob(self, sql: str, size_hint: int | None) -> memoryview:
        """The answer to ``sql`` over the server's HTTP port, read straight from the
        socket into one buffer.

        http.client rather than clickhouse-connect: ``raw_query`` asks for
        ``wait_end_of_query`` (the server buffers the whole answer before its first
        byte leaves) and ``raw_stream`` is urllib3's, whose ``readinto`` reads into a
        temporary first (bench/results/checkpoints.md). No HTTP compression: model
        bytes hardly compress. A stream cut short arrives short; callers check the
        bytes' SHA-256.
        """
        import http.client
        import urllib.parse

        target = self._http_target
        connection_class = (
            http.client.HTTPSConnection if target["secure"] else http.client.HTTPConnection
        )
        connection = connection_class(target["host"], target["port"], timeout=300)
        query = urllib.parse.urlencode(
            {"database": target["database"], "enable_http_compression": 0}
        )
        headers = {"X-ClickHouse-User": target["username"], "X-ClickHouse-Key": target["password"]}
        try:
            connection.request("POST", f"/?{query}", body=sql.encode(), headers=headers)
            response = connection.getresponse()
            if response.status != 200:
                message = response.read().decode(errors="replace").split("Stack trace:", 1)[0]
                code = response.getheader("X-ClickHouse-Exception-Code")
                raise DatabaseError(" ".join(message.split()), int(code) if code else None)
            return _read_all(response, size_hint)
        except OSError as exc:
            raise OperationalError(f"reading a blob over HTTP: {exc}") from exc
        finally:
            connection.close()

    def column_types(self, table: str) -> dict[str, str]:
        """Column name -> ClickHouse type of one of our tables (cached per handle)."""
        cache: dict[str, dict[str, str]] = self.__dict__.setdefault("_type_cache", {})
        if table not in cache:
            rows = self.execute(
                "SELECT name, type FROM system.columns "
                "WHERE database = currentDatabase() AND table = %(t)s",
                {"t": table},
            )
            cache[table] = {str(name): str(type_) for name, type_ in rows}
        return dict(cache[table])

    def _datetime64_scales(self, table: str) -> dict[str, int]:
        """DateTime64 scale per column, so timestamps can travel as integer ticks."""
        return {
            name: int(m.group(1))
            for name, type_ in self.column_types(table).items()
            if (m := re.search(r"DateTime64\((\d+)", type_))
        }

    def query_arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        """Read a query as an Arrow table (columnar, no per-row Python objects)."""
        from suho_models.db.chdb_dbapi import render

        rendered = render(sql, params)
        if self.http_port is not None:
            self.revive()
            return self._http_client().query_arrow(rendered)
        with self.engine.connect() as conn:
            if self.is_embedded:
                return _embedded(conn).client.query_arrow(rendered)
            # No HTTP port given: decode through Python objects, much slower for long
            # results (bench/results/queries.md).
            with translated_errors():
                rows, types = _native(conn).transport.execute(
                    rendered, with_column_types=True, columnar=True
                )
            names = [name for name, _ in types]
            return pa.table(
                {n: list(col) for n, col in zip(names, rows, strict=True)}
                if rows
                else {n: [] for n in names}
            )

    def _http_client(self) -> Client:
        """clickhouse-connect on the server's HTTP port: ClickHouse writes the Arrow."""
        with self._lock:
            if self._http is None:
                import clickhouse_connect

                self._http = clickhouse_connect.get_client(
                    **self._http_target,
                    autogenerate_session_id=False,  # one client, calls from any thread
                )
            return self._http

    @cached_property
    def _http_target(self) -> dict[str, Any]:
        """Where the server's HTTP port is and who we are there, from the URL."""
        return {
            "host": self.url.host or "localhost",
            "port": self.http_port,
            "username": self.url.username or "default",
            "password": self.url.password or "",
            "database": self.url.database or "default",
            "secure": str(self.url.query.get("secure", "")).lower() in ("1", "true", "yes"),
        }

    # ------------------------------------------------------------------ read-only
    @contextmanager
    def read_only_session(self) -> Iterator[ReadOnlySession]:
        """Queries under ``readonly = 1``, set before the first of them runs.

        The engine then refuses writes, DDL and any change of a setting, a query's
        own ``SETTINGS readonly = 0`` included. Embedded: a separate connection on
        which ``SET readonly = 1`` ran first (it does not reach the pool's
        connections). Server: every query carries ``readonly = 1`` as a
        client-sent query setting, which the query text cannot lift.
        """
        if self.is_embedded:
            from suho_models.db.chdb_dbapi import new_client
            from suho_models.db.dialect import split_chdb_url

            path, database = split_chdb_url(self.url)
            client = new_client(path, None)
            try:
                client.command("SET readonly = 1")
                if database:
                    client.database = database
                session = ReadOnlySession(embedded_runner(client), client_adds_format=True)
                if session.query("SELECT getSetting('readonly')")[1] != [(1,)]:
                    raise RuntimeError("read-only session: readonly = 1 did not take effect")
                yield session
            finally:
                client.close()
        else:
            with self.engine.connect() as conn:
                transport = _native(conn).transport
                yield ReadOnlySession(server_runner(transport))

    def read_only_query(self, sql: str) -> QueryResult:
        """(column names, rows) of one query in a fresh :meth:`read_only_session`."""
        with self.read_only_session() as session:
            return session.query(sql)

    # ------------------------------------------------------------------ schema
    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            exists = conn.exec_driver_sql("EXISTS TABLE alembic_version").scalar()
            if not exists:
                return None
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    def verify_schema(self) -> None:
        """Fail fast, with the fix, when the database is not at the code's head."""
        if self._schema_checked:
            return
        from suho_models.db.revisions import head_revision

        try:
            current = self.current_revision()
        except DatabaseUnavailableError:
            raise
        except Exception as exc:
            raise DatabaseUnavailableError(
                f"cannot reach the database at {self.safe_url}: {one_line(exc)}"
                + ("" if self.is_embedded else "; check that the server runs and the URL")
            ) from exc
        head = head_revision()
        if current != head:
            raise SchemaOutOfDateError(
                f"database schema is at revision {current or 'none (empty database)'}, "
                f"code expects {head}; run `suho db upgrade`"
            )
        self._schema_checked = True

    @property
    def safe_url(self) -> str:
        return self.url.render_as_string(hide_password=True)


def _read_all(stream: io.RawIOBase | io.BufferedIOBase, size_hint: int | None) -> memoryview:
    """Everything ``stream`` has, in one buffer: of ``size_hint`` bytes when that is
    what arrives (read straight into it), else grown as needed."""
    buffer = bytearray(size_hint or _BLOB_READ_BYTES)
    filled = 0
    while True:
        if filled == len(buffer):  # full: more only if the stream has more
            more = stream.read(_BLOB_READ_BYTES)
            if not more:
                break
            buffer += more
            buffer.extend(bytes(_BLOB_READ_BYTES))
            filled += len(more)
            continue
        with memoryview(buffer) as view:
            n = stream.readinto(view[filled:])
        if not n:
            break
        filled += n
    return memoryview(buffer)[:filled]


def _embedded(conn: sa.Connection) -> chdb_dbapi.Connection:
    """The embedded driver's own connection, which SQLAlchemy types as any DB-API one."""
    return cast("chdb_dbapi.Connection", conn.connection.dbapi_connection)


def _native(conn: sa.Connection) -> NativeConnection:
    """The native driver's own connection (its ``transport`` is clickhouse-driver's client)."""
    return cast(NativeConnection, conn.connection.dbapi_connection)


@contextmanager
def _store_errors() -> Iterator[None]:
    from suho_models.db.server.shared import StoreUnavailableError

    try:
        yield
    except (StoreUnavailableError, OSError) as exc:
        raise DatabaseUnavailableError(str(exc)) from None


def _with_local_server_password(url: URL) -> URL:
    """A loopback server URL without a password gets ``SUHO_SERVER_PASSWORD``, else the
    password of the server we started there (its 0600 file, see ``db.server.auth``)."""
    if url.get_driver_name() == "chdb" or url.password is not None:
        return url
    if url.username not in (None, "default"):
        return url
    from suho_models.db.server import is_loopback, local_server_password, password_file

    host = url.host or "localhost"
    if not is_loopback(host):
        return url
    settings = get_settings()
    if settings.server_password is not None:
        password: str | None = settings.server_password.get_secret_value()
    else:
        file = settings.server_password_file or password_file(settings.embedded_path)
        password = local_server_password(host, url.port or 9000, file)
    return url if password is None else url.set(username="default", password=password)


def _http_port(url: URL) -> int | None:
    """The ``http_port`` URL parameter, checked (a server URL may name its HTTP port)."""
    raw = url.query.get(HTTP_PORT_PARAM)
    if raw is None:
        return None
    if url.get_driver_name() == "chdb":
        raise ValueError(f"{HTTP_PORT_PARAM}: only server URLs take it (got {raw!r} on {url})")
    try:
        port = int(raw) if isinstance(raw, str) else -1
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise ValueError(f"{HTTP_PORT_PARAM}: expected a port number 1-65535 (got {raw!r})")
    return port
