"""A run's config as plain JSON: every value kept, and filterable afterwards.

The config is stored whole in the run's ``config_json`` and filtered with
``repositories.params`` (``suho runs list --param max_depth=6``), so each value
must be JSON with its type intact: numpy scalars become numbers, tuples lists,
and anything else (a class, a path) its ``str``, never dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from repositories.errors import InvalidInputError

TAGS_KEY = "_tags"
"""Where a run's tags live inside its config_json (filter as ``_tags.team=ml``)."""


def plain_config(config: Mapping[str, Any] | None, what: str = "config") -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise InvalidInputError(f"{what}: expected a dict (got {config!r:.100})")
    return {_key(k, what): _plain(v) for k, v in config.items()}


def _key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key or "." in key:
        raise InvalidInputError(
            f"{what}: keys must be non-empty strings without '.' (got {key!r:.100})"
        )
    return key


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "size", None) == 1:  # numpy scalars
        try:
            return _plain(item())
        except (TypeError, ValueError):
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        try:
            return _plain(tolist())
        except (TypeError, ValueError):
            pass
    return str(value)
