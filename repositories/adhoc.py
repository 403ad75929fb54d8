"""Ad-hoc read-only SQL (``suho sql``): one statement, reads only, inside the store.

Read-only is enforced by the engine, not by reading the text: everything runs in a
:meth:`Database.read_only_session`, where ``readonly = 1`` is set before the query
and no ``SETTINGS`` of the query can lift it. ClickHouse's own parser then decides
what the text is: ``formatQuery`` refuses more than one statement (comments, ``#``
and ``$$`` quoting included) and gives the one statement's canonical text;
``EXPLAIN AST`` of that text shows its kind, ``INTO OUTFILE`` and every function
and table function in it. The canonical text is what runs, so what was checked is
what executes.

``readonly = 1`` alone is not enough: it lets ``INTO OUTFILE`` write in the embedded
engine, ``DESCRIBE``/``EXPLAIN`` of ``file(...)``, the ``file()`` function and chDB's
``python()`` table function through, so those are refused here.
"""

from __future__ import annotations

import re

from repositories.errors import InvalidInputError
from suho_models.db import Database
from suho_models.db.chdb_dbapi import quote_string
from suho_models.db.read_only import QueryResult, ReadOnlySession

READ_STATEMENTS = ("Select", "Show", "Describe", "Explain", "Exists")
"""AST node kinds (prefixes) of statements that only read."""

SAFE_TABLE_FUNCTIONS = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generate_series",
        "generateseries",
        "generaterandom",
        "values",
        "view",
        "merge",
        "loop",
        "primes",
    }
)
"""Table functions (lower case) that only generate rows or read this server's tables;
every other one may reach files, URLs, other servers, programs or process memory."""

SCALAR_NAMES_OF_TABLE_FUNCTIONS = frozenset({"format"})
"""Table function names that are also harmless ordinary functions (``format('{}', x)``)."""

UNSAFE_FUNCTIONS = frozenset({"file", "catboostevaluate"})
"""Ordinary functions (lower case) that read files of the machine the engine runs on."""

_STATEMENTS_WITH_OUTPUT = frozenset(
    {"SelectWithUnionQuery", "SelectIntersectExceptQuery", "DescribeQuery", "Explain", "ShowTables"}
)
"""Statements whose only Identifier child is a FORMAT clause (EXISTS and SHOW CREATE
name their table with one)."""

_NO_OUTPUT = (
    "INTO OUTFILE and FORMAT are not allowed (suho sql writes no files; it prints a table, "
    "or JSON with --json)"
)

_NODE = re.compile(r"^( *)(\S+)(?: (\S+))?")


def _engine_message(exc: BaseException) -> str:
    """ClickHouse's own message of an engine error, on one line."""
    text = getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    for line in lines:
        if "DB::Exception" in line:
            return line[line.index("DB::Exception") :]
    return lines[0] if lines else type(exc).__name__


def _ask(session: ReadOnlySession, sql: str, what: str) -> QueryResult:
    try:
        return session.query(sql)
    except Exception as exc:  # noqa: BLE001 - every engine refusal becomes one clear error
        raise InvalidInputError(f"query: {what}: {_engine_message(exc)}") from None


def _refusals(ast_lines: list[str], table_functions: frozenset[str]) -> list[str]:
    """What the statement does that ``suho sql`` does not allow (empty: nothing)."""
    problems: list[str] = []
    nodes = []
    for line in ast_lines:
        match = _NODE.match(line)
        if match:
            nodes.append((len(match.group(1)), match.group(2), match.group(3) or ""))
    if not nodes:
        return ["the parser returned no statement"]
    statements = [nodes[0][1]]
    if nodes[0][1] == "Explain" and len(nodes) > 1 and nodes[1][0] == 1:
        statements.append(nodes[1][1])  # the explained statement
    for kind in statements:
        if not kind.startswith(READ_STATEMENTS):
            problems.append(f"only SELECT, WITH, SHOW, DESCRIBE, EXPLAIN or EXISTS (got {kind})")
    # Every line is looked at, wherever it sits: a newline inside an alias can add
    # lines to the dump, but cannot hide a real node.
    takes_format = nodes[0][1] in _STATEMENTS_WITH_OUTPUT
    for i, (depth, kind, name) in enumerate(nodes):
        if depth == 1 and (kind == "Literal" or (kind == "Identifier" and takes_format)):
            problems.append(_NO_OUTPUT)
        if kind == "TableIdentifier" and re.search(r"[/\\]|://", name):
            problems.append(f"{name!r} is a path or URL, not a table")
        if kind != "Function":
            continue
        lowered = name.lower()
        in_from = i > 0 and nodes[i - 1][1] == "TableExpression" and nodes[i - 1][0] == depth - 1
        if in_from and lowered not in SAFE_TABLE_FUNCTIONS:
            problems.append(_function_refusal(name, "table function"))
        elif lowered in UNSAFE_FUNCTIONS or (
            lowered in table_functions
            and lowered not in SAFE_TABLE_FUNCTIONS
            and lowered not in SCALAR_NAMES_OF_TABLE_FUNCTIONS
        ):
            problems.append(_function_refusal(name, "function"))
    return list(dict.fromkeys(problems))


def _function_refusal(name: str, kind: str) -> str:
    return (
        f"{kind} {name}() is not allowed: it can reach files, URLs, other servers or "
        f"programs (allowed table functions: {', '.join(sorted(SAFE_TABLE_FUNCTIONS))})"
    )


def run_read_only(db: Database, query: str) -> QueryResult:
    """(column names, rows) of one reading statement; InvalidInputError naming what
    is refused otherwise. Nothing is written, read from outside or run."""
    if not query.strip():
        raise InvalidInputError("query: empty (give one SELECT, SHOW, DESCRIBE or EXPLAIN)")
    with db.read_only_session() as session:
        _, rows = _ask(
            session,
            f"SELECT formatQuery({quote_string(query)})",
            "must be one statement, ClickHouse's parser says",
        )
        canonical = rows[0][0]
        try:
            lines = session.explain_ast(canonical)
        except Exception as exc:  # noqa: BLE001 - every engine refusal becomes one clear error
            raise InvalidInputError(
                f"query: refused by the read-only session: {_engine_message(exc)}"
            ) from None
        _, names = _ask(session, "SELECT lower(name) FROM system.table_functions", "catalog")
        problems = _refusals(lines, frozenset(n for (n,) in names))
        if problems:
            raise InvalidInputError("query refused (suho sql is read-only): " + "; ".join(problems))
        columns, rows = _ask(session, canonical, "refused by the read-only session")
        if not columns and lines[0].startswith("Select"):
            # The embedded engine sends no header with zero rows: ask for the columns.
            described = _ask(session, f"DESCRIBE TABLE ({canonical})", "describe")[1]
            columns = [row[0] for row in described]
        return columns, rows
