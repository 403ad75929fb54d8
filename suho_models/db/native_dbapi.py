"""clickhouse-sqlalchemy's native DB-API, with errors that say what ClickHouse said.

Its cursor raises ``DatabaseException``, whose first line is only ``Orig exception:
Code: 47.``, the message on the next line and the server's stack trace after it;
one-line error reports (the CLI's) lost the message. Here driver errors become
PEP 249 errors whose text is one line, ``Code: 47. DB::Exception: ...
(UNKNOWN_IDENTIFIER)``, which SQLAlchemy wraps like the embedded driver's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


def connect(*args: Any, **kwargs: Any) -> Connection:
    return Connection(*args, **kwargs)
