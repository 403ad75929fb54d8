"""reward_history.env_index: which of a run's parallel environments a step came from.

Revision ID: 0005_reward_env_index
Revises: 0002_kind_signature_heartbeat
Create Date: 2026-12-01

With N environments stepped side by side every env-step is a row. The column goes
into the sorting key (the ReplacingMergeTree's dedup key), appended last: ClickHouse's
``MODIFY ORDER BY`` may only append a column added in the same ALTER. The key is then
(run_id, episode_number, timestep_number, env_index). Episodes are numbered per run
(each env's episode has its own number) and the trainer gives the N env-steps of one
batch the distinct global step numbers T-N+1..T, so (run_id, episode_number,
timestep_number) alone is already unique; env_index in the key makes a collision of
parallel envs impossible even for a writer that numbers steps per batch. Existing rows
get 0, the UInt16 default (they came from one env; a column added to the key may not
have a DEFAULT expression).

Idempotent: ``ADD COLUMN IF NOT EXISTS``; the ORDER BY change is skipped when the key
already ends with env_index (a half-applied revision re-runs cleanly).
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0005_reward_env_index"
down_revision: str | None = "0002_kind_signature_heartbeat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENT = "Index of the parallel environment the step came from, from 0"


def _sorting_key() -> str:
    bind = op.get_bind()
    row = bind.execute(
        text(
            "SELECT sorting_key FROM system.tables "
            "WHERE database = currentDatabase() AND name = 'reward_history'"
        )
    ).fetchone()
    return "" if row is None else str(row[0])


def upgrade() -> None:
    if _sorting_key().replace(" ", "").endswith(",env_index"):
        return
    op.execute(
        "ALTER TABLE reward_history "
        f"ADD COLUMN IF NOT EXISTS env_index UInt16 COMMENT '{COMMENT}' "
        "AFTER timestep_number, "
        "MODIFY ORDER BY (run_id, episode_number, timestep_number, env_index)"
    )


def downgrade() -> None:
    raise NotImplementedError(
        "0005_reward_env_index: a sorting-key column cannot be dropped in place; "
        "restore from a backup taken before the upgrade"
    )
