"""What an MLflow mirror of our runs is named and how values are written: keys,
params, tags, statuses, and the small conversions the exporter shares."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from repositories.errors import InvalidInputError
from suho_models.enums import (
    DeploymentStatus,
    RunStatus,
    TrialState,
)

log = logging.getLogger(__name__)

PARAM_VALUE_MAX = 500
"""Longest param value sent (MLflow 3 takes 6,000; older servers and Databricks 500)."""
KEY_MAX = 250
METRICS_PER_BATCH = 1000
PARAMS_TAGS_PER_BATCH = 100

RUN_ID_TAG = "suho.run_id"
PARENT_TAG = "suho.parent_run_id"
TRIAL_TAG = "suho.trial_number"
CHECKPOINT_TAG = "suho.checkpoint_id"
CONFIG_HASH_TAG = "suho.config_sha256"
CONFIG_ARTIFACT = "suho/config.json"
CHECKPOINT_DIR = "checkpoints"

STATUS_TO_MLFLOW = {
    RunStatus.PENDING: "SCHEDULED",
    RunStatus.RUNNING: "RUNNING",
    RunStatus.COMPLETED: "FINISHED",
    RunStatus.FAILED: "FAILED",
    RunStatus.CANCELLED: "KILLED",
}
TRIAL_STATUS_TO_MLFLOW = {
    TrialState.COMPLETE: "FINISHED",
    TrialState.PRUNED: "KILLED",
    TrialState.FAILED: "FAILED",
}
ALIASES = {DeploymentStatus.PRODUCTION: "production", DeploymentStatus.STAGING: "staging"}


class MlflowUnavailableError(InvalidInputError):
    """The optional ``mlflow`` package is not installed."""


def import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise MlflowUnavailableError(
            "mlflow: not installed; pip install 'suho-training-tables[mlflow]'"
        ) from None
    return mlflow


# --------------------------------------------------------------------------- names and values
_KEY_BAD = re.compile(r"[^\w.\- :/]")


def mlflow_key(name: str) -> str:
    """``name`` as a valid MLflow param/metric/tag key (see the module docstring)."""
    key = _KEY_BAD.sub("_", str(name)) or "_"
    if posixpath.normpath(key) != key:  # MLflow refuses "a//b", "a/./b", "a/": no slashes
        key = key.replace("/", "_")
    if key.startswith((".", "/")):
        key = "_" + key
    if len(key) > KEY_MAX:
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        key = f"{key[: KEY_MAX - 9]}~{digest}"
    return key


def param_value(value: Any) -> str:
    """A leaf as text: strings as they are, everything else as JSON; cut to 500."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > PARAM_VALUE_MAX:
        text = text[: PARAM_VALUE_MAX - 3] + "..."
    return text


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings joined with ``.``; lists and other leaves as :func:`param_value`."""
    out: dict[str, str] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{key}."))
        else:
            out[mlflow_key(key)] = param_value(value)
    return out


def ms(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def as_float(value: Any) -> float | None:
    return None if value is None else float(value)
