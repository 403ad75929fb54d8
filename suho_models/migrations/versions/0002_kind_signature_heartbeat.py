"""Agent checkpoint kind column, checkpoint signatures, run heartbeats.

Revision ID: 0002_kind_signature_heartbeat
Revises: 0001_training_tables
Create Date: 2026-12-01

- ``agent_checkpoints.checkpoint_kind``: the kind was kept inside ``metrics_json``
  under ``checkpoint_kind``; it gets the column ``model_checkpoints`` already had,
  backfilled from the JSON (``intermediate`` where the JSON has none).
- ``model_checkpoints.signature`` / ``agent_checkpoints.signature``: HMAC-SHA256 of
  a checkpoint's bytes, made with a key that never enters the database; formats
  that can run code on load (pickle, joblib, SB3's zip) load only when it matches.
- ``training_runs.heartbeat_at`` / ``agent_training_runs.heartbeat_at``: refreshed
  while a run trains, so a run left ``running`` by a killed process shows as stale.

Every statement is idempotent (``IF NOT EXISTS`` / ``IF EXISTS``), so a revision
half applied on a node can be re-run.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_kind_signature_heartbeat"
down_revision: str | None = "0001_training_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE_COMMENT = "HMAC-SHA256 of the raw bytes with the checkpoint key, empty if unsigned"
HEARTBEAT_COMMENT = "Last sign of life of the training process; stale while running: it died"


def upgrade() -> None:
    op.execute(
        "ALTER TABLE agent_checkpoints ADD COLUMN IF NOT EXISTS checkpoint_kind "
        "LowCardinality(String) COMMENT 'intermediate, best or final'"
    )
    op.execute(
        "ALTER TABLE agent_checkpoints UPDATE checkpoint_kind = "
        "if(JSONHas(metrics_json, 'checkpoint_kind'), "
        "JSONExtractString(metrics_json, 'checkpoint_kind'), 'intermediate') "
        "WHERE checkpoint_kind = '' SETTINGS mutations_sync = 2"
    )
    for table in ("model_checkpoints", "agent_checkpoints"):
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS signature String "
            f"COMMENT '{SIGNATURE_COMMENT}'"
        )
    for table in ("training_runs", "agent_training_runs"):
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS heartbeat_at "
            f"Nullable(DateTime64(3, 'UTC')) COMMENT '{HEARTBEAT_COMMENT}'"
        )


def downgrade() -> None:
    for table in ("training_runs", "agent_training_runs"):
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS heartbeat_at")
    for table in ("model_checkpoints", "agent_checkpoints"):
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS signature")
    # Put the kind back where revision 0001's code reads it before dropping the column.
    op.execute(
        "ALTER TABLE agent_checkpoints UPDATE metrics_json = "
        "if(metrics_json IN ('', '{}'), "
        "concat('{\"checkpoint_kind\": \"', checkpoint_kind, '\"}'), "
        "concat('{\"checkpoint_kind\": \"', checkpoint_kind, '\", ', substring(metrics_json, 2))) "
        "WHERE NOT JSONHas(metrics_json, 'checkpoint_kind') SETTINGS mutations_sync = 2"
    )
    op.execute("ALTER TABLE agent_checkpoints DROP COLUMN IF EXISTS checkpoint_kind")
