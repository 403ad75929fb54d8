"""clickhouse-sqlalchemy's native DB-API, with errors that say what ClickHouse said.

Its cursor raises ``DatabaseException``, whose first line is only ``Orig exception:
Code: 47.``, the message on the next line and the server's stack trace after it;
one-line error reports (the CLI's) lost the message. Here driver errors become
PEP 249 errors whose text is one line, ``Code: 47. DB::Exception: ...
(UNKNOWN_IDENTIFIER)``, which SQLAlchemy wraps like the embedded driver's.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from clickhouse_driver import errors as driver_errors
from clickhouse_sqlalchemy.drivers.native import connector
from clickhouse_sqlalchemy.exceptions import DatabaseException

# clickhouse-driver logs each failed connect with its traceback at WARNING; with no
# logging configured Python prints that to stderr, beside the error we raise (one line).
# A handler of its own keeps it out of stderr; an app that configures logging still sees it.
logging.getLogger("clickhouse_driver").addHandler(logging.NullHandler())

apilevel = connector.apilevel
threadsafety = connector.threadsafety
paramstyle = connector.paramstyle

_CODE_NAMES = {
    value: name
    for name, value in vars(driver_errors.ErrorCodes).items()
    if name.isupper() and isinstance(value, int)
}
_NETWORK_ERRORS = (
    driver_errors.NetworkError,
    driver_errors.SocketTimeoutError,
    driver_errors.UnexpectedPacketFromServerError,
)


class Error(connector.Error):  # type: ignore[misc]  # clickhouse_sqlalchemy is untyped
    """Base of the errors below (PEP 249); ``code`` is ClickHouse's error code."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class OperationalError(DatabaseError):
    """The server cannot be reached, or the connection broke."""


def describe(exc: driver_errors.Error) -> str:
    """One line: code, ClickHouse's message without the stack trace, the code's name."""
    if not isinstance(exc, driver_errors.ServerException):
        return " ".join(str(exc).split())
    message = (exc.message or "").split("Stack trace:", 1)[0]
    text = " ".join(f"Code: {exc.code}. {message}".split())
    if exc.code in _CODE_NAMES:
        text += f" ({_CODE_NAMES[exc.code]})"
    if exc.nested:
        text += f" Nested: {describe(exc.nested)}"
    return text


def one_line(exc: BaseException) -> str:
    """A driver's own message on one line (without SQLAlchemy's wrapper, SQL and link)."""
    inner = getattr(exc, "orig", None) or exc
    return " ".join(str(inner).split("[SQL:", 1)[0].split()) or type(inner).__name__


def translate(exc: driver_errors.Error) -> Error:
    cls = OperationalError if isinstance(exc, _NETWORK_ERRORS) else DatabaseError
    return cls(describe(exc), getattr(exc, "code", None))


@contextmanager
def translated_errors() -> Iterator[None]:
    """For calls straight to clickhouse-driver (columnar inserts and reads)."""
    try:
        yield
    except driver_errors.Error as exc:
        raise translate(exc) from exc


class Cursor(connector.Cursor):  # type: ignore[misc]  # clickhouse_sqlalchemy is untyped
    def execute(self, operation: Any, parameters: Any = None, context: Any = None) -> None:
        try:
            super().execute(operation, parameters, context)
        except DatabaseException as exc:
            raise translate(exc.orig) from exc.orig

    def executemany(self, operation: Any, seq_of_parameters: Any, context: Any = None) -> None:
        try:
            super().executemany(operation, seq_of_parameters, context)
        except DatabaseException as exc:
            raise translate(exc.orig) from exc.orig


class Connection(connector.Connection):  # type: ignore[misc]  # clickhouse_sqlalchemy is untyped
    def cursor(self) -> Cursor:
        return Cursor(self)


_TICK_UNITS = {0: "s", 3: "ms", 6: "us", 9: "ns"}


def native_column(column: pa.ChunkedArray, datetime64_scale: int | None = None) -> Any:
    """An Arrow column as clickhouse-driver wants it, avoiding per-row Python work
    where we can: ``to_pylist`` builds one UUID / aware datetime object per row."""
    type_ = column.type
    storage = type_.storage_type if isinstance(type_, pa.BaseExtensionType) else type_
    if pa.types.is_fixed_size_binary(storage) and storage.byte_width == 16:
        # UUIDs: usually few distinct values (one run id per batch).
        chunk = column.combine_chunks()
        if isinstance(chunk, pa.ExtensionArray):
            chunk = chunk.storage
        encoded = chunk.dictionary_encode()
        uuids = [None if b is None else uuid.UUID(bytes=b) for b in encoded.dictionary.to_pylist()]
        return [None if i is None else uuids[i] for i in encoded.indices.to_pylist()]
    if column.null_count:
        return column.to_pylist()
    if pa.types.is_timestamp(type_) and datetime64_scale in _TICK_UNITS:
        ticks = column.cast(pa.timestamp(_TICK_UNITS[datetime64_scale], tz=type_.tz))
        return ticks.cast(pa.int64()).to_numpy().tolist()
    if pa.types.is_integer(type_) or pa.types.is_floating(type_):
        return column.to_numpy().tolist()
    return column.to_pylist()


def connect(*args: Any, **kwargs: Any) -> Connection:
    return Connection(*args, **kwargs)
