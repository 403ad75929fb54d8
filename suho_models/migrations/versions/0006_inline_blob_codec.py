"""Inline checkpoint bytes compressed with LZ4 instead of ZSTD(3).

Revision ID: 0006_inline_blob_codec
Revises: 0005_reward_env_index
Create Date: 2026-12-01

``model_checkpoints.model_binary`` and ``agent_checkpoints.agent_binary`` hold base64
text of up to ``checkpoint_inline_max_bytes``; ZSTD(3) made saving and loading them
the slow part of an inline checkpoint (bench/results/checkpoints.md), LZ4 costs
more disk (checkpoints.breakdown.md lists both).

``MODIFY COLUMN ... CODEC`` changes only the metadata: parts written before it keep
ZSTD(3) until a merge rewrites them (``OPTIMIZE TABLE ... FINAL`` forces that), and
both kinds of part read back the same. Re-running it is harmless.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_inline_blob_codec"
down_revision: str | None = "0005_reward_env_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {
    "model_checkpoints": ("model_binary", "Base64 model bytes when stored inline"),
    "agent_checkpoints": ("agent_binary", "Base64 agent bytes when stored inline"),
}


def _set_codec(codec: str) -> None:
    for table, (column, comment) in COLUMNS.items():
        op.execute(
            f"ALTER TABLE {table} MODIFY COLUMN {column} String CODEC({codec}) COMMENT '{comment}'"
        )


def upgrade() -> None:
    _set_codec("LZ4")


def downgrade() -> None:
    _set_codec("ZSTD(3)")
