"""Create model_predictions: what ``suho predict`` writes.

Revision ID: 0008_model_predictions
Revises: 0007_run_metrics
Create Date: 2026-12-07

Written out literally (frozen), as 0001 is.

ReplacingMergeTree ordered by (checkpoint_id, symbol, timestamp) with ``created_at``
as the version: a prediction re-run by the same checkpoint replaces the old one, so
re-running a batch is idempotent. Monthly partitions on ``timestamp`` (the writer
splits a batch by month, at most 100 per INSERT).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from clickhouse_sqlalchemy import engines
from clickhouse_sqlalchemy import types as ch

revision: str = "0008_model_predictions"
down_revision: str | None = "0007_run_metrics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_predictions",
        sa.Column(
            "checkpoint_id",
            ch.UUID(),
            nullable=False,
            comment="Checkpoint that made the prediction",
        ),
        sa.Column("run_id", ch.UUID(), nullable=False, comment="Run of that checkpoint"),
        sa.Column(
            "symbol",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="Symbol of the feature row",
        ),
        sa.Column(
            "timestamp",
            ch.DateTime64(3, "UTC"),
            nullable=False,
            comment="Time of the feature row",
        ),
        sa.Column(
            "prediction",
            ch.Float64(),
            nullable=False,
            comment="Class (0/1), value, or an agent's action for the symbol at that time",
        ),
        sa.Column(
            "probability",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="P(class 1) of a classifier; NULL otherwise",
        ),
        sa.Column(
            "created_at",
            ch.DateTime64(6, "UTC"),
            nullable=False,
            comment="When it was predicted: the row version",
        ),
        engines.ReplacingMergeTree(
            version="created_at",
            partition_by=sa.text("toYYYYMM(timestamp)"),
            order_by=("checkpoint_id", "symbol", "timestamp"),
        ),
        comment="Predictions and agent actions per (checkpoint, symbol, time)",
    )


def downgrade() -> None:
    op.drop_table("model_predictions")
