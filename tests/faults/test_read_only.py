"""A read-only filesystem (a tmpfs remounted read-only in a private mount namespace):
the store refuses to open with a clear error, and a spool there is reported with the
count of rows it could not keep."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.namespace import in_small_tmpfs

_MAKE_STORE = """
import sys
from suho_models.db import migrations
migrations.upgrade(f"clickhouse+chdb:///{sys.argv[1]}/store/suho_analytics")
(__import__("pathlib").Path(sys.argv[1]) / "spool").mkdir()
"""

_USE_READ_ONLY = """
import json, logging, sys, uuid
from pathlib import Path
from repositories.batch_writer import RowsNotStoredError, training_metrics_writer
from suho_models.db import Database
from suho_models.db.server import free_port

logging.disable(logging.CRITICAL)
disk, out = Path(sys.argv[1]), {}
try:
    Database(f"clickhouse+chdb:///{disk}/store/suho_analytics").scalar("SELECT 1")
    out["store"] = None
except Exception as exc:
    out["store"] = f"{type(exc).__name__}: {exc}"
down = Database(f"clickhouse+native://127.0.0.1:{free_port()}/nowhere")
w = training_metrics_writer(down, spool_dir=disk / "spool", max_seconds=3600)
run = uuid.uuid4()
for i in range(700):
    w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
try:
    w.close(timeout=0.5)
    out["spool"] = None
except RowsNotStoredError as exc:
    out["spool"], out["rows"] = str(exc), exc.rows
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_read_only_store_and_spool_say_so(tmp_path: Path) -> None:
    out = in_small_tmpfs(_USE_READ_ONLY, tmp_path / "disk", size="64m", read_only_after=_MAKE_STORE)
    assert out["store"] is not None and "read-only" in out["store"], out
    assert str(tmp_path / "disk" / "store") in out["store"]
    assert "BAD_ARGUMENTS" not in out["store"]
    assert out["rows"] == 700
    assert "700 row(s)" in out["spool"] and "Read-only file system" in out["spool"]
