"""Record when checkpoint signing began, so legacy signing can tell old rows from new.

Revision ID: 0009_signing_epoch
Revises: 0008_model_predictions
Create Date: 2026-12-07

Since ``0002_kind_signature_heartbeat`` every pickle/joblib/SB3-zip checkpoint is
signed when it is saved, so an unsigned one written after that was not written by
suho. ``suho checkpoints sign`` (signing the rows from before signatures) therefore
signs only rows, of runs, created before this moment. When 0002 was applied was not
recorded, so this revision records when it was applied, and the signing rule
(``repositories.legacy_signing.signing_epoch``) takes the earlier of that and the
creation time of the oldest signed checkpoint (a row an attacker adds can only move
it earlier, which refuses more).

``checkpoint_signing_epoch`` (one row: ``signing_from``, ``recorded_at``,
``revision``) is not a model table (nothing writes it; autogenerate leaves it alone,
see ``suho_models.db.migrations.UNMODELLED_TABLES``) and is written once, by
``CREATE TABLE ... AS SELECT`` of constants: a re-run (``IF NOT EXISTS``) keeps the
first time, and in cluster mode each node records its own, reading no other table
(with per-node DDL the other nodes may not have their tables yet).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_signing_epoch"
down_revision: str | None = "0008_model_predictions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "checkpoint_signing_epoch"
SIGNING_REVISION = "0002_kind_signature_heartbeat"


def upgrade() -> None:
    op.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        "signing_from DateTime64(3, 'UTC') COMMENT 'Rows created before this may be legacy', "
        "recorded_at DateTime64(3, 'UTC') COMMENT 'When this revision recorded it', "
        "revision String COMMENT 'The revision that began signing') "
        "ENGINE = MergeTree ORDER BY tuple() "
        "COMMENT 'When checkpoint signing began: only older unsigned rows may be signed' "
        "AS SELECT now64(3, 'UTC') AS signing_from, "
        f"now64(3, 'UTC') AS recorded_at, '{SIGNING_REVISION}' AS revision"
    )


def downgrade() -> None:
    op.execute(f"DROP TABLE IF EXISTS {TABLE}")
