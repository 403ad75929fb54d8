"""Supervised model checkpoints (``model_checkpoints``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from repositories.checkpoints.deploy import CheckpointRepository
from repositories.checkpoints.records import (
    ModelCheckpointInfo,
    ModelCheckpointRow,
    ModelSave,
    valid,
)
from repositories.errors import InvalidInputError
from repositories.records import MAX_NAME_LENGTH
from repositories.runs import TrainingRunRepository
from suho_models import ModelCheckpoint as ModelCheckpointModel
from suho_models.enums import CheckpointKind, ModelFormat


class ModelCheckpointRepository(CheckpointRepository[ModelCheckpointInfo]):
    """Supervised model checkpoints (``model_checkpoints``)."""

    model = ModelCheckpointModel
    record = ModelCheckpointInfo
    run_repository = TrainingRunRepository
    row_record = ModelCheckpointRow
    binary_column = "model_binary"
    format_column = "model_format"
    name_column = "model_name"
    step_columns = ("iteration",)

    def save_checkpoint(
        self,
        run_id: uuid.UUID | str,
        obj_or_bytes: Any,
        format: ModelFormat | str,
        metrics: Mapping[str, Any] | None = None,
        *,
        iteration: int = 0,
        kind: CheckpointKind | str = CheckpointKind.INTERMEDIATE,
        model_name: str | None = None,
    ) -> ModelCheckpointInfo:
        """Save a model of a training run.

        ``obj_or_bytes``: bytes are stored as they are (library-native formats:
        ``booster.save_raw("ubj")``, LightGBM's model string, ...); an object is
        serialized here for ``pickle`` and ``joblib`` only (those are signed).
        ``model_name`` (what deployment is keyed on) defaults to the run's name;
        ``model_type`` is the run's. Metrics named like a metric column also fill
        that column.
        """
        request = valid(
            ModelSave, "checkpoint", format=format, kind=kind, metrics=metrics, iteration=iteration
        )
        run = self.runs.get(run_id)
        name = run.run_name if model_name is None else model_name
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
            raise InvalidInputError(
                f"model_name: expected 1 to {MAX_NAME_LENGTH} characters (got {name!r:.80})"
            )
        return self._save(
            run.run_id,
            obj_or_bytes,
            request,
            columns={"model_name": name, "model_type": str(run.model_type)},
        )
