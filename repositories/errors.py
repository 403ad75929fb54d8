"""Errors the repositories raise: each names what was wrong and the bad value."""

from __future__ import annotations

import uuid
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError


class RepositoryError(Exception):
    """Base of every error a repository raises on purpose."""


class InvalidInputError(RepositoryError, ValueError):
    """A value failed validation; nothing was written."""


class NotFoundError(RepositoryError, LookupError):
    """No row with that identifier."""


class InvalidTransitionError(RepositoryError):
    """A status change the run lifecycle does not allow."""


class SchemaMismatchError(RepositoryError):
    """A record and its table disagree (a field without a column, or a column a
    write leaves out): a code defect, never bad user input; nothing was written."""


M = TypeVar("M", bound=BaseModel)
E = TypeVar("E", bound=Enum)


def enum_value(enum: type[E], value: Any, field: str) -> E:
    """``enum(value)``, or an error naming the field, the value and every valid value
    (``'bogus' is not a valid RunStatus`` says none of them)."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in enum)
        raise InvalidInputError(f"{field}: expected one of {allowed} (got {value!r:.80})") from None


def validate(model: type[M], data: Any) -> M:
    """Validate ``data`` as ``model``; errors name each field and the value given."""
    if isinstance(data, model):
        data = data.model_dump()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_error(exc, model.__name__)) from None


def describe_validation_error(exc: ValidationError, what: str) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "(record)"
        value = error.get("input")
        parts.append(f"{field}: {error['msg']} (got {value!r:.200})")
    return f"invalid {what}: " + "; ".join(parts)


def as_uuid(value: uuid.UUID | str, field: str) -> uuid.UUID:
    """``value`` as a UUID; InvalidInputError naming ``field`` when it is not one."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInputError(f"{field}: not a UUID (got {value!r})") from None
