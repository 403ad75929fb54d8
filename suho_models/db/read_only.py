"""Queries on a connection that is read-only before their text arrives (``suho sql``).

The session and its two runners (the embedded client's, a server's transport); the
Database opens the connection (``Database.read_only_session``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

QueryResult: TypeAlias = tuple[list[str], list[tuple[Any, ...]]]
"""(column names, rows) of one query."""

QueryRunner: TypeAlias = Callable[[str], QueryResult]


class ReadOnlySession:
    """Runs SQL text as given (no parameter substitution, so ``%`` is just a
    character) on a connection that is read-only before the text arrives."""

    def __init__(self, run: QueryRunner, *, client_adds_format: bool = False) -> None:
        self._run = run
        self._client_adds_format = client_adds_format

    def query(self, sql: str) -> QueryResult:
        return self._run(sql)

    def explain_ast(self, sql: str) -> list[str]:
        """``EXPLAIN AST`` of one statement, one line per node (indented by depth)."""
        _, rows = self._run(f"EXPLAIN AST {sql}")
        lines = [line for (row,) in rows for line in str(row).split("\n")]
        if self._client_adds_format and lines and lines[-1] == " Identifier Native":
            # clickhouse-connect appends FORMAT Native to the text, which the parser
            # gives to the explained statement as its last child.
            lines.pop()
        return lines


def embedded_runner(client: Client) -> QueryRunner:
    def run(sql: str) -> QueryResult:
        result = client.query(sql)
        return list(result.column_names), [tuple(r) for r in result.result_rows]

    return run


def server_runner(transport: Any) -> QueryRunner:
    def run(sql: str) -> QueryResult:
        # params=None: clickhouse-driver substitutes nothing, so '%' stays literal.
        rows, types = transport.execute(sql, settings={"readonly": 1}, with_column_types=True)
        return [name for name, _ in types], [tuple(r) for r in rows]

    return run
