"""reward_history.env_index: which of a run's parallel environments a step came from.

Revision ID: 0005_reward_env_index
Revises: 0004_dedup_window
Create Date: 2026-12-01

With N environments stepped side by side every env-step is a row. The trainer gives
the N env-steps of one batch the distinct global step numbers T-N+1..T and each env's
episode its own number within the run, so the sorting key (run_id, episode_number,
timestep_number) already keeps rows of parallel environments apart: none replaces
another. env_index is therefore a plain column, not a key column: appending it to the
key would make the revision irreversible in place (ClickHouse cannot drop a sorting-key
column; a downgrade would have to rebuild the table, which per-node cluster DDL cannot
do) and would separate nothing more. Existing rows get 0 (they came from one env).

Idempotent: ``IF NOT EXISTS`` / ``IF EXISTS``.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_reward_env_index"
down_revision: str | None = "0004_dedup_window"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENT = "Index of the parallel environment the step came from, from 0"


def upgrade() -> None:
    op.execute(
        "ALTER TABLE reward_history "
        f"ADD COLUMN IF NOT EXISTS env_index UInt16 COMMENT '{COMMENT}' AFTER timestep_number"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE reward_history DROP COLUMN IF EXISTS env_index")
