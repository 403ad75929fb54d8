"""JSON out of the UI: NaN and infinity become null (JSON has neither), fast."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from enum import Enum
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they go out as null (a gap on a chart)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, uuid.UUID | Enum):
        return str(value.value if isinstance(value, Enum) else value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return jsonable_encoder(value)


def json_text(content: Any, **kwargs: Any) -> str:
    """Straight to ``json.dumps`` (a curve is thousands of floats: walking them with
    ``jsonable_encoder`` cost ten times the query); only content holding NaN or
    infinity takes the slower path that writes them as null."""
    try:
        return json.dumps(content, allow_nan=False, separators=(",", ":"), default=_json_default)
    except ValueError:
        cleaned = _finite(json.loads(json.dumps(content, default=_json_default)))
        return json.dumps(cleaned, allow_nan=False, separators=(",", ":"))


class FiniteJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json_text(content).encode()


__all__ = ["FiniteJSONResponse", "json_text"]
