"""Trainer configs from a YAML or TOML file, with values from code or the CLI on top."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def read_config_file(path: str | Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The file's settings with ``overrides`` laid over them.

    A section given on both sides (``tuning``) is merged key by key, so ``--tune N``
    changes the number of trials and keeps the file's other tuning settings.
    """
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        raise ValueError(f"config file: expected .toml, .yaml or .yml (got {path.name!r})")
    merged = dict(data)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


__all__ = ["read_config_file"]
