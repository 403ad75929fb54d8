"""Order the two runs tables by creation time, so FINAL stays cheap at a million runs.

Revision ID: 0010_runs_by_creation
Revises: 0009_signing_epoch
Create Date: 2026-12-08

Written out literally (frozen), as 0001 is.

``training_runs`` and ``agent_training_runs`` were ``ORDER BY run_id``: random UUIDs,
so every part, however small, spans the whole key range, and FINAL merges every
version of every run to rank the first ten (``bench/results/scale.md``). Ordered by
``(created_at, run_id)``, a run's versions still share the key (``created_at`` is set
once, when the run is created, and every later version copies it), and parts written
at different times cover different key ranges: FINAL reads the ranges that no other
part touches without merging them, so its cost follows the runs still changing, not
every run ever stored.

- ``index_granularity = 1024`` and small compressed blocks: a read by key (one run
  by id through the index below, a few runs by id) decompresses one granule per
  column per run, so a smaller granule makes it cheaper. These tables are small, so
  compression hardly changes. (Chosen while a keyed second read was on the page's
  path; against 8,192 on today's FINAL page it was not measured again.)
- ``run_id_bloom``: a bloom-filter skip index on ``run_id``, for lookups by id now that
  the id is no longer first in the key (skip indexes apply under FINAL).

Each table is rebuilt: a new table beside it, every row version copied, then
``EXCHANGE TABLES`` (atomic) and the old one dropped. Cluster mode renders the same
statements on each node's local table (``suho_models.db.cluster.ddl``). A run that
stopped half way is re-run from the start: the leftover table is dropped first, and
after the exchange the copy goes from the new table to the new table's layout again.
Stop writers while it runs: rows written to the old table after its copy are lost.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_runs_by_creation"
down_revision: str | None = "0009_signing_epoch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = {
    "training_runs": "Supervised ML experiment tracking: one current row per run_id",
    "agent_training_runs": "RL agent experiment tracking: one current row per run_id",
}
SUFFIX = "__0010"
LAYOUT = (
    "ORDER BY (created_at, run_id) "
    "SETTINGS index_granularity = 1024, min_compress_block_size = 4096, "
    "max_compress_block_size = 65536"
)
BLOOM = "ADD INDEX IF NOT EXISTS run_id_bloom run_id TYPE bloom_filter GRANULARITY 1"
NO_BLOOM = "DROP INDEX IF EXISTS run_id_bloom"


def _rebuild(table: str, layout: str, comment: str, index: str) -> None:
    shadow = table + SUFFIX
    op.execute(f"DROP TABLE IF EXISTS {shadow}")
    op.execute(
        f"CREATE TABLE IF NOT EXISTS {shadow} AS {table} "
        f"ENGINE = ReplacingMergeTree(updated_at) {layout} COMMENT '{comment}'"
    )
    op.execute(f"ALTER TABLE {shadow} {index}")  # CREATE ... AS copies the old one's
    op.execute(f"INSERT INTO {shadow} SELECT * FROM {table} SETTINGS optimize_on_insert = 0")
    op.execute(f"EXCHANGE TABLES {table} AND {shadow}")
    op.execute(f"DROP TABLE IF EXISTS {shadow}")


def upgrade() -> None:
    for table, comment in TABLES.items():
        _rebuild(table, LAYOUT, comment, BLOOM)


def downgrade() -> None:
    for table, comment in TABLES.items():
        _rebuild(table, "ORDER BY run_id", comment, NO_BLOOM)
