"""Trainer configs from a YAML or TOML file, with values from code or the CLI on top,
and the one place that turns a config error into one line a person can act on:
the field, the value given and what is allowed; for a file, the file and the line."""

from __future__ import annotations

import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says where and why."""


_CONFIG_MODELS: dict[str, type[BaseModel]] = {}


def config_model(model: type[M]) -> type[M]:
    """Class decorator: a trainer config whose ValidationErrors
    :func:`describe_config_error` can name the known fields of. The config modules
    register here, so this module needs no import of them (they import it)."""
    _CONFIG_MODELS[model.__name__] = model
    return model


def read_config_file(path: str | Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The file's settings with ``overrides`` laid over them.

    A section given on both sides (``tuning``) is merged key by key, so ``--tune N``
    changes the number of trials and keeps the file's other tuning settings.
    """
    path = Path(path)
    data = _parse(path, _read(path))
    merged = dict(data)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def validate_config_file(model: type[M], path: str | Path, overrides: Mapping[str, Any]) -> M:
    """``model`` from the file plus ``overrides``; ConfigError naming the file, the
    line and the field when the file (or an override) is not a valid ``model``."""
    path = Path(path)
    data = read_config_file(path, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        text = _read(path)
        parts = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            if _given_in(overrides, loc):  # an option, not the file, set it
                parts.append(f"{_describe_one(error, model)} (given as an option)")
            else:
                line = _line_of(path, text, loc)
                parts.append(f"{path}:{line}: " if line else f"{path}: ")
                parts[-1] += _describe_one(error, model)
        raise ConfigError(f"invalid {model.__name__}: " + "; ".join(parts)) from None


def describe_config_error(exc: BaseException) -> str | None:
    """One clear line for a pydantic ValidationError or a YAML/TOML parse error
    (None for anything else): the CLI's error printer and :func:`validate_config_file`
    share it."""
    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, ValidationError):
        model = _config_model(exc.title)
        parts = [_describe_one(error, model) for error in exc.errors()]
        return f"invalid {exc.title}: " + "; ".join(parts)
    if _is_yaml_error(exc) or isinstance(exc, tomllib.TOMLDecodeError):
        return _describe_parse_error(exc, None)
    return None


# --------------------------------------------------------------------------- reading
def _read(path: Path) -> str:
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config file: expected .toml, .yaml or .yml (got {path.name!r})")
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file: cannot read {path}: {exc}") from None


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        if _is_yaml_error(exc) or isinstance(exc, tomllib.TOMLDecodeError):
            raise ConfigError(_describe_parse_error(exc, path)) from None
        raise
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path}: expected a mapping of settings (key: value), got a {type(data).__name__}"
        )
    return dict(data)


def _is_yaml_error(exc: BaseException) -> bool:
    try:
        import yaml
    except ImportError:  # pragma: no cover - yaml is a dependency
        return False
    return isinstance(exc, yaml.YAMLError)


def _describe_parse_error(exc: BaseException, path: Path | None) -> str:
    name = str(path) if path is not None else "config file"
    if isinstance(exc, tomllib.TOMLDecodeError):
        # tomllib says "... (at line 3, column 7)"; put the place first, like YAML's.
        text = str(exc)
        match = re.search(r"\(at line (\d+), column (\d+)\)", text)
        if match:
            reason = text[: match.start()].strip()
            return f"{name}:{match.group(1)}:{match.group(2)}: malformed TOML: {reason}"
        return f"{name}: malformed TOML: {text}"
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    reason = f"{problem} ({context})" if context else str(problem)
    if mark is not None:
        return f"{name}:{mark.line + 1}:{mark.column + 1}: malformed YAML: {reason}"
    return f"{name}: malformed YAML: {reason}"


# --------------------------------------------------------------------------- validation
def _describe_one(error: Mapping[str, Any], model: type[BaseModel] | None) -> str:
    loc = tuple(error["loc"])
    field = ".".join(str(p) for p in loc) or "(config)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        known = _known_fields(model, loc[:-1])
        allowed = f" (known: {', '.join(known)})" if known else ""
        return f"unknown setting {field!r}{allowed}"
    if not loc:  # a whole-model check: its message names the fields
        return message
    value = error.get("input")
    return f"{field} = {value!r:.200}: {message}"


def _config_model(title: str) -> type[BaseModel] | None:
    """The trainer config class a ValidationError is about (for its field names)."""
    return _CONFIG_MODELS.get(title)


def _known_fields(model: type[BaseModel] | None, path: tuple[Any, ...]) -> list[str]:
    for name in path:
        if model is None or name not in model.model_fields:
            return []
        model = _model_in(model.model_fields[str(name)].annotation)
    return sorted(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(filter(None, map(_model_in, typing.get_args(annotation))), None)
    return None


def _given_in(overrides: Mapping[str, Any], loc: tuple[Any, ...]) -> bool:
    value: Any = overrides
    for part in loc:
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
        if not isinstance(value, Mapping):
            return True
    return False


def _line_of(path: Path, text: str, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the setting at ``loc`` in the file (None: not found there)."""
    if not loc:
        return None
    if path.suffix == ".toml":
        head = re.escape(str(loc[0]))
        nested = len(loc) > 1 and re.search(rf"(?m)^\s*\[{head}\]\s*$", text)
        start = nested.end() if nested else 0
        key = re.escape(str(loc[1] if nested else loc[0]))
        found = re.compile(rf"(?m)^\s*{key}\s*=").search(text, start)
        return text.count("\n", 0, found.start()) + 1 if found else None
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if kv[0].value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


__all__ = [
    "ConfigError",
    "config_model",
    "describe_config_error",
    "read_config_file",
    "validate_config_file",
]
