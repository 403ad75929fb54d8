"""A small PEP 249 driver over the in-process chDB engine.

Why not ``chdb.dbapi``: its rows are lossy (Array/Map/JSON come back as Python
repr strings, DateTime64 loses its timezone) and it has no pyformat binding.
clickhouse-connect's chDB client decodes ClickHouse's Native format into proper
Python values (UUID, aware datetime, Decimal, list, dict), so we execute through
it, and render parameters into SQL literals ourselves (clickhouse-connect's own
binding drops microseconds from plain datetimes and mangles Map literals).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import math
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    # Only for annotations: new_client imports clickhouse_connect when connecting.
    from clickhouse_connect.driver.client import Client

apilevel = "2.0"
threadsafety = 2
paramstyle = "pyformat"

T = TypeVar("T")


class Error(Exception):
    pass


class Warning(Exception):  # noqa: A001 - PEP 249 name
    pass


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


# --------------------------------------------------------------------------- literals

_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    "\b": "\\b",
    "\f": "\\f",
    "\r": "\\r",
    "\n": "\\n",
    "\t": "\\t",
    "\0": "\\0",
}
_ESCAPE_RE = re.compile("[\\\\'\b\f\r\n\t\0]")


def quote_string(value: str) -> str:
    return "'" + _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], value) + "'"


def render_literal(value: Any) -> str:
    """Render a Python value as a ClickHouse SQL literal, losslessly.

    Aware datetimes are converted to UTC (our columns are UTC); microseconds are
    kept; NaN and infinities stay NaN and infinities.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return render_literal(value.value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, decimal.Decimal):
        return quote_string(str(value))
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, uuid.UUID):
        return quote_string(str(value))
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return quote_string(value.strftime("%Y-%m-%d %H:%M:%S.%f"))
    if isinstance(value, dt.date):
        return quote_string(value.isoformat())
    if isinstance(value, bytes | bytearray | memoryview):
        return "unhex('" + bytes(value).hex() + "')"
    if isinstance(value, Mapping):
        items = ", ".join(f"{render_literal(k)}, {render_literal(v)}" for k, v in value.items())
        return f"map({items})"
    if isinstance(value, tuple):
        return "tuple(" + ", ".join(render_literal(v) for v in value) + ")"
    if isinstance(value, Sequence | set | frozenset):
        return "[" + ", ".join(render_literal(v) for v in value) + "]"
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return render_literal(value.tolist())
    raise ProgrammingError(f"cannot render parameter of type {type(value).__name__}: {value!r}")


def render(operation: str, parameters: Mapping[str, Any] | Sequence[Any] | None) -> str:
    if not parameters:
        return operation
    if isinstance(parameters, Mapping):
        return operation % {k: render_literal(v) for k, v in parameters.items()}
    return operation % tuple(render_literal(v) for v in parameters)


# --------------------------------------------------------------------------- connection

_ROW_RETURNING = re.compile(
    r"^\s*(?:\(\s*)*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN)\b", re.IGNORECASE
)
_SELECT = re.compile(r"^\s*(?:\(\s*)*(SELECT|WITH)\b", re.IGNORECASE)
_VALUES_TAIL = re.compile(r"\bVALUES\s*(\(.*\))\s*$", re.IGNORECASE | re.DOTALL)

_clients_lock = threading.Lock()


def new_client(path: str, database: str | None) -> Client:
    """A client of the process's one embedded engine at ``path``."""
    import clickhouse_connect

    try:
        # The engine is per process; clients on one path share it and may run in parallel.
        with _clients_lock:
            if path not in _opened:
                _refuse_if_held(path)  # before the engine prints its own error to stderr
            client = clickhouse_connect.get_client(
                interface="chdb", path=path, database=database, tz_mode="aware"
            )
            _opened.add(path)
    except OperationalError:
        raise
    except Exception as exc:  # surface lock and path errors as DBAPI errors
        raise OperationalError(_open_error(path, exc)) from None
    from suho_models.db.server.holders import record_holder

    record_holder(Path(path))  # names this process in another one's "in use" error
    return client


_opened: set[str] = set()  # paths this process's engine has open


def _refuse_if_held(path: str) -> None:
    """Another process holds ``<path>/status`` (clickhouse-local flocks it): say so."""
    import fcntl

    status = Path(path, "status")
    if not status.exists():
        return
    with open(status, "rb") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OperationalError(_open_error(path, RuntimeError("Cannot lock file"))) from None
        fcntl.flock(fh, fcntl.LOCK_UN)


def _open_error(path: str, exc: Exception) -> str:
    """One line for a store that cannot be opened in process: why, and what to do."""
    text = " ".join(str(exc).split())
    if "lock" in text.lower() or "EmbeddedServer" in text or "BAD_ARGUMENTS" in text:
        from suho_models.db.server.holders import holder

        who = holder(Path(path))
        if who or Path(path, "status").exists():
            return (
                f"the store at {path} is in use by {who or 'another process'}: a "
                "clickhouse+chdb:// URL opens it in one process only. Stop that process, or "
                "unset SUHO_DATABASE_URL so that every process shares the store through its "
                "background server"
            )
        return (
            f"cannot open the store at {path} in process: this process already has another "
            f"chDB store open (one per process) ({text[:200]})"
        )
    return f"cannot open embedded ClickHouse at {path!r}: {text[:300]}"


def connect(path: str, database: str | None = None, **_: Any) -> Connection:
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):  # the engine's own error only says BAD_ARGUMENTS
        raise OperationalError(
            f"cannot open embedded ClickHouse at {path!r}: the folder is read-only "
            "(the engine writes its status and parts there); use a writable folder"
        )
    return Connection(path, database)


class Connection:
    def __init__(self, path: str, database: str | None) -> None:
        self.path = path
        self.database = database
        # The database may not exist yet (the migration creates it), so connect
        # to the engine first and switch lazily.
        self.client = new_client(path, None)
        if database:
            self.client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            self.client.database = database
        self._closed = False
        self._blob_handle: Any = None
        self._blob_lock = threading.Lock()

    def read_buffer(self, sql: str, into: Callable[[memoryview], T]) -> T:
        """``into`` applied to the raw output of ``sql`` while it is still the
        engine's buffer, so a large value (a checkpoint) is copied once, by ``into``,
        instead of once into ``bytes`` and again into what the caller builds.

        Through chDB's own connection (clickhouse-connect copies every result into
        ``bytes``); a handle on the same path shares this process's engine.
        """
        import chdb

        with self._blob_lock:
            if self._blob_handle is None:
                connect = cast("Callable[[str], Any]", chdb.connect)  # untyped in chdb
                handle = connect(self.path)
                if self.database:
                    handle.query(f"USE `{self.database}`")
                self._blob_handle = handle
            try:
                result = self._blob_handle.query(sql, "RawBLOB")
            except Exception as exc:
                raise _wrap(exc) from exc
            view = result.get_memview().view()
            try:
                return into(view)
            finally:
                view.release()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.client.close()
            with self._blob_lock:
                if self._blob_handle is not None:
                    self._blob_handle.close()
                    self._blob_handle = None

    def commit(self) -> None:  # ClickHouse has no transactions
        pass

    def rollback(self) -> None:
        pass

    def cursor(self) -> Cursor:
        return Cursor(self)


def _wrap(exc: Exception) -> Error:
    if isinstance(exc, Error):
        return exc
    return DatabaseError(str(exc))


class Cursor:
    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self._rows: list[Sequence[Any]] = []
        self._pos = 0

    def close(self) -> None:
        self._rows = []

    def execute(
        self,
        operation: str,
        parameters: Mapping[str, Any] | Sequence[Any] | None = None,
        context: Any = None,
    ) -> None:
        sql = render(operation, parameters)
        self._run(sql)

    def executemany(
        self,
        operation: str,
        seq_of_parameters: Iterable[Mapping[str, Any]] | None,
        context: Any = None,
    ) -> None:
        params = list(seq_of_parameters or [])
        match = _VALUES_TAIL.search(operation)
        if match and params:
            # One INSERT with many VALUES tuples instead of one round trip per row.
            head, template = operation[: match.start(1)], match.group(1)
            rows = ", ".join(render(template, p) for p in params)
            self._run(head + rows)
            self.rowcount = len(params)
            return
        for p in params:
            self.execute(operation, p)

    def _run(self, sql: str) -> None:
        client = self.connection.client
        self._rows, self._pos, self.description = [], 0, None
        try:
            if _ROW_RETURNING.match(sql):
                result = client.query(sql)
                self._rows = list(result.result_rows)
                columns = list(
                    zip(result.column_names, (t.name for t in result.column_types), strict=True)
                )
                if not columns:
                    columns = self._describe(sql)
                self.description = [
                    (name, type_name, None, None, None, None, True) for name, type_name in columns
                ]
                self.rowcount = len(self._rows)
            else:
                client.command(sql)
                self.rowcount = -1
        except Exception as exc:
            raise _wrap(exc) from exc

    def _describe(self, sql: str) -> list[tuple[str, str]]:
        """Column names of an empty result: the Native format sends no block for
        zero rows, but SQLAlchemy still needs the description to map columns."""
        if not _SELECT.match(sql):
            return []
        result = self.connection.client.query(f"DESCRIBE TABLE ({sql.strip().rstrip(';')})")
        return [(row[0], row[1]) for row in result.result_rows]

    def fetchone(self) -> Sequence[Any] | None:
        if self._pos >= len(self._rows):
            return None
        row = self._rows[self._pos]
        self._pos += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[Sequence[Any]]:
        size = size or self.arraysize
        rows = self._rows[self._pos : self._pos + size]
        self._pos += len(rows)
        return rows

    def fetchall(self) -> list[Sequence[Any]]:
        rows = self._rows[self._pos :]
        self._pos = len(self._rows)
        return rows

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass
