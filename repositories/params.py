"""Filter runs by their parameters: ``max_depth = 6`` inside ``config_json``.

A run's config is stored whole as a JSON object (``config_json``); filtering reads
it with ClickHouse's JSON functions instead of a column per parameter, so any
parameter of any library can be filtered on. A name may be a dotted path into
nested objects (``booster.max_depth``). Values compare by JSON type: ``6`` matches
the numbers 6 and 6.0, ``true`` a boolean, anything else a string.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import and_, func, literal
from sqlalchemy.sql import ColumnElement

from repositories.errors import InvalidInputError

_NUMBER_TYPES = ("Int64", "UInt64", "Double")
_NAME = re.compile(r"[^.\s]{1,200}(\.[^.\s]{1,200}){0,9}")


def parse_param(text: str) -> tuple[str, Any]:
    """``"max_depth=6"`` -> ``("max_depth", 6)``; the value is read as JSON when it
    is JSON (numbers, true/false, null, "quoted"), else taken as a string."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not _NAME.fullmatch(name):
        raise InvalidInputError(f"param: expected NAME=VALUE, e.g. max_depth=6 (got {text!r})")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, list | dict):
        value = raw
    return name, value


def param_filter(config: Any, name: str, value: Any) -> ColumnElement[bool]:
    """``config`` (a JSON-object column) has ``name`` equal to ``value``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(f"param: not a parameter name (got {name!r:.100})")
    path = [literal(part) for part in name.split(".")]
    kind = func.JSONType(config, *path)
    if isinstance(value, bool):
        return func.JSONExtractRaw(config, *path) == ("true" if value else "false")
    if isinstance(value, int | float):
        return and_(kind.in_(_NUMBER_TYPES), func.JSONExtractFloat(config, *path) == float(value))
    if value is None:
        return kind == "Null"
    if isinstance(value, str):
        return and_(kind == "String", func.JSONExtractString(config, *path) == value)
    raise InvalidInputError(
        f"param {name}: expected a number, bool, string or None (got {value!r:.100})"
    )
