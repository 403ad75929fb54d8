"""Ad-hoc read-only SQL (``suho sql``): one statement, reads only.

The statement is checked before it is sent (one statement, starting with a
read keyword), and sent with ClickHouse's ``readonly = 1`` where the statement
accepts SETTINGS, so a write slipped inside a read is refused by the server too.
"""

from __future__ import annotations

import re

from repositories.errors import InvalidInputError
from suho_models.db import Database

READ_KEYWORDS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|`[^`]*`|\"[^\"]*\"")


def check_read_only(query: str) -> str:
    """The statement without a trailing semicolon, or InvalidInputError."""
    text = _COMMENTS.sub(" ", query).strip().rstrip(";").strip()
    bare = _STRINGS.sub("''", text)
    if ";" in bare:
        raise InvalidInputError("query: only one statement is allowed")
    first = bare.split(None, 1)[0].upper() if bare else ""
    if first not in READ_KEYWORDS:
        raise InvalidInputError(
            f"query: read-only, must start with {', '.join(READ_KEYWORDS)} "
            f"(got {first or 'nothing'!r})"
        )
    return text


def run_read_only(db: Database, query: str) -> tuple[list[str], list[tuple]]:
    text = check_read_only(query)
    first = text.split(None, 1)[0].upper()
    if first in ("SELECT", "WITH") and not re.search(r"\bSETTINGS\b", text, re.IGNORECASE):
        text += " SETTINGS readonly = 1"
    with db.engine.connect() as conn:
        result = conn.exec_driver_sql(text)
        return list(result.keys()), [tuple(r) for r in result.all()]
