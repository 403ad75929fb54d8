"""Deduplication window on the series tables.

Revision ID: 0004_dedup_window
Revises: 0003_trial_worker
Create Date: 2026-12-01

The batch writer sends every batch with an ``insert_deduplication_token`` and
retries it whole under the same token, so that an INSERT whose acknowledgement was
lost (or a spool file replayed twice) is not stored twice. A non-replicated
MergeTree honours tokens only within ``non_replicated_deduplication_window`` recent
blocks, 0 by default: ``training_metrics`` and ``reward_history`` get 1000.
Cluster mode already creates its local tables with a window (and Replicated tables
deduplicate through Keeper whatever this says).

Frozen: the value is written out, not read from suho_models.base. ``MODIFY
SETTING`` / ``RESET SETTING`` are idempotent, so a half-applied run can be re-run.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_dedup_window"
down_revision: str | None = "0003_trial_worker"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("training_metrics", "reward_history")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} MODIFY SETTING non_replicated_deduplication_window = 1000")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET SETTING non_replicated_deduplication_window")
