"""Predictions of deployed models and agents (``suho predict``): not one of the seed's
eight training tables, their output."""

from __future__ import annotations

from clickhouse_sqlalchemy import engines
from sqlalchemy import text

from suho_models.base import (
    UUID,
    Base,
    Float64,
    Label,
    NullableFloat,
    Timestamp,
    Version,
    column,
)


class ModelPrediction(Base):
    """One prediction per (checkpoint, symbol, time). A re-run of the same checkpoint
    over the same rows writes the same keys, so FINAL reads each once (a newer
    ``created_at`` wins); monthly partitions like the feature table's."""

    __tablename__ = "model_predictions"
    __table_args__ = (
        engines.ReplacingMergeTree(
            version="created_at",
            partition_by=text("toYYYYMM(timestamp)"),
            order_by=("checkpoint_id", "symbol", "timestamp"),
        ),
        {"comment": "Predictions and agent actions per (checkpoint, symbol, time)"},
    )

    checkpoint_id = column(UUID, "Checkpoint that made the prediction", primary_key=True)
    run_id = column(UUID, "Run of that checkpoint")
    symbol = column(Label, "Symbol of the feature row", primary_key=True)
    timestamp = column(Timestamp, "Time of the feature row", primary_key=True)
    prediction = column(
        Float64, "Class (0/1), value, or an agent's action for the symbol at that time"
    )
    probability = column(NullableFloat, "P(class 1) of a classifier; NULL otherwise")
    created_at = column(Version, "When it was predicted: the row version")
