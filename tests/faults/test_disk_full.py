"""Disk full, for real: a small tmpfs in a private mount namespace, filled to the last
byte. For the spool, the store and the object store, either every row logged before
the last seal is stored exactly once, or the caller is told how many were not."""

from __future__ import annotations

from pathlib import Path

from tests.faults.namespace import in_small_tmpfs

_SPOOL_FULL = """
import json, logging, sys, uuid
from pathlib import Path
from repositories.batch_writer import RowsNotStoredError, training_metrics_writer
from repositories.spool import SpoolDir
from suho_models.db import Database
from suho_models.db.server import free_port

logging.disable(logging.CRITICAL)
disk = Path(sys.argv[1])
spool = disk / "spool"
spool.mkdir()
fill(disk)
down = Database(f"clickhouse+native://127.0.0.1:{free_port()}/nowhere")
options = dict(max_rows=1_000, max_seconds=3600, retry_initial=0.05, retry_max=0.1)
run, out = uuid.uuid4(), {}

# 1. Neither the database nor the full disk takes the rows: close() says how many.
w = training_metrics_writer(down, spool_dir=spool, **options)
for i in range(5_000):
    w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
try:
    w.close(timeout=0.5)
    out["raised"] = None
except RowsNotStoredError as exc:
    out["raised"], out["message"] = exc.rows, str(exc)
# A failed append left no half record behind: the spool holds whole records only.
out["files_after_enospc"] = [(p.name, p.stat().st_size) for p in spool.iterdir()]

# 2. Room comes back during the outage: the held rows go to the spool, none lost.
w = training_metrics_writer(down, spool_dir=spool, **options)
for i in range(3_000):
    w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
out["held"] = w.memory_rows
free(disk)
out["closed"] = w.close(timeout=0.5)
left = SpoolDir(spool)
out["spooled"] = [
    n for f, _ in left.leftovers() for g in left.read(f) or ()
    for n in g.table.column("iteration_number").to_pylist()
]
print(json.dumps(out))
"""


def test_a_full_spool_disk_raises_with_the_count_and_keeps_whole_records(
    tmp_path: Path,
) -> None:
    out = in_small_tmpfs(_SPOOL_FULL, tmp_path / "disk")
    assert out["raised"] == 5_000, out
    assert "5,000 row(s)" in out["message"] and "No space left" in out["message"]
    assert all(size == 0 for _, size in out["files_after_enospc"]), out
    assert out["held"] == 3_000  # nothing on disk while it was full
    assert out["closed"] is False  # spooled, not inserted: no exception
    assert out["spooled"] == list(range(3_000))


_STORE_FULL = """
import json, logging, sys, uuid
from pathlib import Path
from repositories.batch_writer import training_metrics_writer
from suho_models.db import Database, migrations

logging.disable(logging.CRITICAL)
disk, spool = Path(sys.argv[1]), Path(sys.argv[2])
url = f"clickhouse+chdb:///{disk}/store/suho_analytics"
migrations.upgrade(url)
db = Database(url)
run, out = uuid.uuid4(), {}
fill(disk)
w = training_metrics_writer(
    db, spool_dir=spool, max_rows=500, max_seconds=3600, retry_initial=0.05, retry_max=0.1
)
for i in range(2_000):
    w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
out["flushed_full"] = w.flush()
out["error"] = repr(w.last_error)
out["spooled"], out["memory"] = w.spooled_rows, w.memory_rows
free(disk)
out["closed"] = w.close(timeout=10)
q = "SELECT count(), uniqExact(iteration_number) FROM training_metrics {} WHERE run_id = %(r)s"
out["raw"] = list(db.execute(q.format(""), {"r": str(run)})[0])
out["final"] = db.scalar(q.format("FINAL").replace(", uniqExact(iteration_number)", ""),
                         {"r": str(run)})
out["left"] = [p.name for p in spool.iterdir()]
print(json.dumps(out))
"""


def test_a_full_store_disk_spools_and_stores_each_row_once_when_room_returns(
    tmp_path: Path,
) -> None:
    out = in_small_tmpfs(_STORE_FULL, tmp_path / "disk", str(tmp_path / "spool"), size="64m")
    assert out["flushed_full"] is False and "NOT_ENOUGH_SPACE" in out["error"], out
    assert (out["spooled"], out["memory"]) == (2_000, 0)  # write-ahead, off the full disk
    assert out["closed"] is True
    assert out["raw"] == [2_000, 2_000] and out["final"] == 2_000
    assert out["left"] == []


_OBJECTS_FULL = """
import json, logging, os, sys
from pathlib import Path
from repositories.checkpoints import ModelCheckpointRepository
from repositories.object_store import LocalObjectStore, ObjectStoreError
from repositories.runs import TrainingRunRepository
from suho_models.db import Database, migrations

logging.disable(logging.CRITICAL)
disk, store_dir = Path(sys.argv[1]), sys.argv[2]
url = f"clickhouse+chdb:///{store_dir}/suho_analytics"
migrations.upgrade(url)
db = Database(url)
run = TrainingRunRepository(db).create(
    {"run_name": "full", "model_type": "xgboost", "target_variable": "t"}
)
fill(disk)
repo = ModelCheckpointRepository(db, store=LocalObjectStore(disk / "objects"), inline_max_bytes=0)
out = {}
try:
    repo.save_checkpoint(run.run_id, os.urandom(300_000), "raw")
    out["error"] = None
except ObjectStoreError as exc:
    out["error"] = str(exc)
out["rows"] = len(repo.list(run.run_id))
out["files"] = [str(p) for p in (disk / "objects").rglob("*") if p.is_file()]
print(json.dumps(out))
"""


def test_a_checkpoint_on_a_full_object_store_fails_loudly_and_stores_nothing(
    tmp_path: Path,
) -> None:
    out = in_small_tmpfs(_OBJECTS_FULL, tmp_path / "disk", str(tmp_path / "store"))
    assert out["error"] and "No space left" in out["error"], out
    assert out["rows"] == 0  # no checkpoint row points at a missing or partial object
    assert out["files"] == []  # and no partial object or temporary file is left
