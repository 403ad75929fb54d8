"""Tuning trials record the worker that ran them.

Revision ID: 0003_trial_worker
Revises: 0002_kind_signature_heartbeat
Create Date: 2026-12-01

``hyperparameters_log.worker_host`` / ``worker_pid`` and the same in
``rl_hyperparameters``: many worker processes, on many machines, share one
study, and a trial's row says which one ran it. Columns rather than keys in the
``hyperparameters`` JSON: that JSON is what a run trains with (the RL trainer
reads a trial's back as its ``tuned_params``), and a column can be grouped by
(which host was slow, which worker died). Rows from before are ``''`` / ``0``.

Every statement is idempotent (``IF NOT EXISTS`` / ``IF EXISTS``).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_trial_worker"
down_revision: str | None = "0002_kind_signature_heartbeat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("hyperparameters_log", "rl_hyperparameters")


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS worker_host LowCardinality(String) "
            "COMMENT 'Host of the tuning worker that ran the trial'"
        )
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS worker_pid UInt32 "
            "COMMENT 'Process id of that worker'"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS worker_pid")
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS worker_host")
