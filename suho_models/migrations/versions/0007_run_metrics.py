"""run_metrics: metrics of any name, one row per (run_id, key, step).

Revision ID: 0007_run_metrics
Revises: 0006_inline_blob_codec
Create Date: 2026-12-07

The seed's series tables have one column per known metric, so a client logging
``val_auc`` or a custom final value had nowhere to put it. This long-format table
holds any key, for runs of both kinds; names that match a seed column still go to
``training_metrics`` / ``reward_history`` as well (the client does that), so the
seed's tables and queries stay whole.

Frozen, like 0001: engine, ORDER BY, PARTITION BY, TTL and the deduplication window
(the batch writer's retry tokens, set as 0004 sets it) are written out literally, so later
changes to suho_models/base.py cannot alter what this revision creates. The cluster
switch renders it like every other CREATE (Replicated and/or _local + Distributed).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from clickhouse_sqlalchemy import engines
from clickhouse_sqlalchemy import types as ch

revision: str = "0007_run_metrics"
down_revision: str | None = "0006_inline_blob_codec"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_metrics",
        sa.Column(
            "run_id",
            ch.UUID(),
            nullable=False,
            comment="Run the value belongs to (supervised or RL)",
        ),
        sa.Column(
            "key",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="Metric name as logged, e.g. val_auc",
        ),
        sa.Column(
            "step", ch.UInt64(), nullable=False, comment="Step the value was logged at, from 0"
        ),
        sa.Column(
            "value", ch.Float64(), nullable=False, comment="The value (NaN and infinities kept)"
        ),
        sa.Column(
            "recorded_at",
            ch.DateTime64(3, "UTC"),
            nullable=False,
            comment="When it was logged: drives TTL and row version",
        ),
        engines.ReplacingMergeTree(
            version="recorded_at",
            partition_by=sa.text("toYYYYMM(recorded_at)"),
            order_by=("run_id", "key", "step"),
            ttl=sa.text("recorded_at + toIntervalMonth(6)"),
        ),
        comment="Metrics of any name per run and step (long format), rows expire by TTL",
    )
    # As 0004 does for the other series tables (a separate statement, so the cluster
    # switch renders it as it renders theirs).
    op.execute("ALTER TABLE run_metrics MODIFY SETTING non_replicated_deduplication_window = 1000")


def downgrade() -> None:
    op.drop_table("run_metrics")
