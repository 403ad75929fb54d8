"""What every booster shares: the interface the trainer uses, the per-iteration
metrics it reports, and how many threads a library may use."""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from repositories.errors import InvalidInputError
from repositories.serialization import (
    OBJECT_FORMATS,
    CorruptCheckpointError,
    dumps_object,
    loads_object,
    require_trusted,
)
from suho_models.enums import ModelFormat, ModelType, TaskType

OnIteration = Callable[[int, dict[str, float | None]], None]
"""Called once per boosting iteration, numbered from 1."""
OnSnapshot = Callable[[int, bytes], None]
"""Receives (iteration, model bytes in the native format) for a recovery checkpoint."""


def free_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's count: a
    library with more threads than free cores can run many times slower."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        return max(1, os.cpu_count() or 1)


class Clock:
    """Wall time between consecutive iterations, in milliseconds."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def lap_ms(self) -> float:
        now = time.perf_counter()
        elapsed, self.last = (now - self.last) * 1000.0, now
        return elapsed


def iteration_metrics(
    train_loss: float | None,
    val_loss: float | None,
    train_error: float | None,
    val_error: float | None,
    learning_rate: float | None,
    duration_ms: float,
) -> dict[str, float | None]:
    return {
        "train_loss": train_loss,
        "val_loss": val_loss,
        "train_accuracy": None if train_error is None else 1.0 - train_error,
        "val_accuracy": None if val_error is None else 1.0 - val_error,
        "learning_rate": learning_rate,
        "gradient_norm": None,
        "iteration_duration_ms": duration_ms,
    }


class Booster(ABC):
    """What the trainer needs from a gradient-boosting library."""

    model_type: ModelType
    native_format: ModelFormat
    formats: tuple[ModelFormat, ...]
    thread_param: str
    """The library's name of its thread-count parameter."""

    @abstractmethod
    def default_params(self, task: TaskType, seed: int) -> dict[str, Any]: ...

    @abstractmethod
    def search_space(self, task: TaskType) -> dict[str, dict[str, Any]]:
        """Optuna search space per parameter, as data (overridable from the config)."""

    @abstractmethod
    def fit(
        self,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        *,
        task: TaskType,
        params: dict[str, Any],
        rounds: int,
        early_stopping: int | None,
        on_iteration: OnIteration | None = None,
        pruning: Any | None = None,
        init_model: Any | None = None,
        snapshot_every: int | None = None,
        on_snapshot: OnSnapshot | None = None,
    ) -> Any:
        """Train ``rounds`` more iterations (after ``init_model``'s, if given).

        Every ``snapshot_every`` iterations (counted over the whole model, so a
        resumed run keeps the cadence), ``on_snapshot(iteration, native_bytes)``
        receives the model so far, for recovery checkpoints.
        """

    @abstractmethod
    def predict(self, model: Any, X: np.ndarray, task: TaskType) -> np.ndarray:
        """Probability of class 1 (classification) or the predicted value."""

    @abstractmethod
    def n_iterations(self, model: Any) -> int: ...

    @abstractmethod
    def feature_importance(self, model: Any, names: list[str]) -> dict[str, float]: ...

    @abstractmethod
    def _native_bytes(self, model: Any, fmt: ModelFormat) -> bytes: ...

    @abstractmethod
    def _from_native(self, data: bytes, fmt: ModelFormat, task: TaskType) -> Any: ...

    def pruning_callback(self, trial: Any, task: TaskType) -> Any:
        return None

    def to_bytes(self, model: Any, fmt: ModelFormat | None = None) -> bytes:
        fmt = fmt or self.native_format
        if fmt not in self.formats:
            raise ValueError(f"model_format: {self.model_type} cannot save as {fmt.value!r}")
        if fmt in OBJECT_FORMATS:
            return dumps_object(model, fmt)
        return self._native_bytes(model, fmt)

    def from_bytes(self, data: bytes, fmt: ModelFormat, task: TaskType) -> Any:
        """A model from checkpoint bytes. pickle and joblib run code, so they load only
        from what the checkpoint store's ``load_checkpoint`` returned for a signed
        row; for every format, bytes whose row format is not ``fmt`` are refused."""
        fmt = ModelFormat(fmt)
        if fmt not in self.formats:  # e.g. raw bytes: no model library may parse them
            allowed = ", ".join(f.value for f in self.formats)
            raise InvalidInputError(
                f"checkpoint format: {fmt.value!r} is not a {self.model_type.value} model "
                f"(expected one of {allowed})"
            )
        if fmt in OBJECT_FORMATS:
            return loads_object(data, fmt)
        trusted = require_trusted(data, fmt)
        try:
            return self._from_native(trusted, fmt, task)
        except Exception as exc:  # each library raises its own error for bad bytes
            first = str(exc).strip().splitlines()
            raise CorruptCheckpointError(
                f"checkpoint bytes do not load as {fmt.value}: {type(exc).__name__}: "
                f"{first[0] if first else ''}"
            ) from exc
