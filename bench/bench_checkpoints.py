"""Checkpoint save and load+verify throughput: inline (base64 in the row) vs the local
object store, in one run, on the embedded engine and on the local server.

What is measured, per path, for one checkpoint of ``--mb`` MB of random bytes
(incompressible: the worst case for the ZSTD-compressed column):

* **save**: ``save_checkpoint`` from bytes in memory until the row is stored;
* **load + verify**: ``load_checkpoint`` until the bytes are back in Python and
  their SHA-256 has been checked against the row.

Paths: ``inline`` (ClickHouse does the base64: raw bytes in, ``base64Encode`` in
the INSERT, ``base64Decode`` in the SELECT, raw bytes out), ``object store``
(``<data_dir>/objects`` on the local disk) and, for reference, ``inline, Python
base64`` (the path before this change: Python encodes, the driver sends the text
through SQLAlchemy's INSERT, reads it back as text, Python decodes).

Each timed operation starts once the background merges of earlier inserts are done.

Usage: ``python bench/bench_checkpoints.py [--mb 50] [--repeat 3]``. Results go to
``bench/results/checkpoints.json`` and ``checkpoints.md``. MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from repositories.checkpoints import ModelCheckpointRepository  # noqa: E402
from repositories.object_store import LocalObjectStore  # noqa: E402
from repositories.runs import TrainingRunRepository  # noqa: E402
from suho_models.db import Database, migrations  # noqa: E402
from suho_models.db.server import LocalServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGET_MB_S = 200


def _python_base64_save(repo: ModelCheckpointRepository, run_id: Any, data: bytes) -> Any:
    """The path before: Python base64, the text through SQLAlchemy's INSERT."""
    import uuid

    from repositories.base import utcnow

    now = utcnow()
    checkpoint_id = uuid.uuid4()
    repo._insert_rows(
        [
            {
                "checkpoint_id": checkpoint_id,
                "run_id": run_id,
                "model_name": "bench",
                "model_type": "xgboost",
                "iteration": 0,
                "checkpoint_kind": "intermediate",
                "model_format": "raw",
                "size_bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "storage": "inline",
                "storage_uri": "",
                "model_binary": base64.b64encode(data).decode("ascii"),
                "metrics_json": "{}",
                "deployment_status": "not_deployed",
                "created_at": now,
                "updated_at": now,
                "signature": "",
            }
        ]
    )
    return checkpoint_id


def _python_base64_load(repo: ModelCheckpointRepository, checkpoint_id: Any) -> bytes:
    c = repo.table.c
    (row,) = repo._select(
        c.checkpoint_id == checkpoint_id, columns=[c.sha256, c.model_binary], limit=1
    )
    data = base64.b64decode(row["model_binary"], validate=True)
    assert hashlib.sha256(data).hexdigest() == row["sha256"]
    return data


def _quiet(db: Database, limit_s: float = 60.0) -> None:
    """Wait for the background merges our inserts started: each 50 MB part merged
    while we time the next operation would be measured with it."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and db.scalar(
        "SELECT count() FROM system.merges WHERE database = currentDatabase()"
    ):
        time.sleep(0.2)


def _timed(db: Database, fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        _quiet(db)
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def _measure(db: Database, data: bytes, repeat: int, objects: Path) -> list[dict[str, Any]]:
    run_id = (
        TrainingRunRepository(db)
        .create({"run_name": "bench", "model_type": "xgboost", "target_variable": "y"})
        .run_id
    )
    inline = ModelCheckpointRepository(db, LocalObjectStore(objects), inline_max_bytes=2**31)
    local = ModelCheckpointRepository(db, LocalObjectStore(objects), inline_max_bytes=0)
    rows = []
    paths: dict[str, tuple[Callable[[], Any], Callable[[Any], bytes]]] = {
        "inline": (
            lambda: inline.save_checkpoint(run_id, data, "raw").checkpoint_id,
            inline.load_checkpoint,
        ),
        "object store (local)": (
            lambda: local.save_checkpoint(run_id, data, "raw").checkpoint_id,
            local.load_checkpoint,
        ),
        "inline, Python base64 (before)": (
            lambda: _python_base64_save(inline, run_id, data),
            lambda cid: _python_base64_load(inline, cid),
        ),
    }
    for name, (save, load) in paths.items():
        save_times, checkpoint_id = _timed(db, save, repeat)
        load_times, back = _timed(db, lambda load=load, cid=checkpoint_id: load(cid), repeat)
        assert back == data, name
        rows.append({"path": name, "save_s": save_times, "load_s": load_times})
    return rows


def _rate(seconds: list[float], size: int) -> dict[str, float]:
    return {
        "best_mb_s": size / min(seconds) / 1e6,
        "median_mb_s": size / statistics.median(seconds) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * 1_000_000
    data = os.urandom(size)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
        os.environ["SUHO_DATA_DIR"] = str(Path(tmp) / "data")
        url = f"clickhouse+chdb:///{tmp}/chdb/bench"
        migrations.upgrade(url)
        with Database(url) as db:
            for row in _measure(db, data, args.repeat, Path(tmp) / "objects-embedded"):
                results.append({"backend": "embedded", **row})
        server = LocalServer(Path(tmp) / "server")
        server.start()
        try:
            url = server.native_url("bench")
            migrations.upgrade(url)
            with Database(url) as db:
                for row in _measure(db, data, args.repeat, Path(tmp) / "objects-server"):
                    results.append({"backend": "server", **row})
        finally:
            server.stop()
    for row in results:
        row["save"] = _rate(row["save_s"], size)
        row["load"] = _rate(row["load_s"], size)
    _write(results, size, args.repeat)


def _write(results: list[dict[str, Any]], size: int, repeat: int) -> None:
    import chdb

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    meta = {
        "when": when,
        "cpus": os.cpu_count(),
        "load_average_1min_at_end": round(load, 2),
        "python": platform.python_version(),
        "chdb": chdb.__version__,
        "bytes": size,
        "repeat": repeat,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "checkpoints.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2) + "\n"
    )
    lines = [
        "# Checkpoint throughput: inline vs local object store",
        "",
        f"Run {when} on {meta['cpus']} CPUs (1-min load average {load:.1f} at the end), "
        f"Python {meta['python']}, chdb {meta['chdb']}; one checkpoint of {size / 1e6:.0f} MB "
        f"of random bytes, best and median of {repeat}, each after background merges settled. "
        "MB = 10^6 bytes.",
        "",
        "| backend | path | save MB/s (best / median) | load + verify MB/s (best / median) |",
        "|---|---|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['path']} | {r['save']['best_mb_s']:.0f} / "
            f"{r['save']['median_mb_s']:.0f} | {r['load']['best_mb_s']:.0f} / "
            f"{r['load']['median_mb_s']:.0f} |"
        )
    lines += ["", "## Ratios (median)", ""]
    for backend in ("embedded", "server"):
        by = {r["path"]: r for r in results if r["backend"] == backend}
        new, store, old = (
            by["inline"],
            by["object store (local)"],
            by["inline, Python base64 (before)"],
        )
        for op in ("save", "load"):
            lines.append(
                f"- {backend} {op}: inline / object store = "
                f"{new[op]['median_mb_s'] / store[op]['median_mb_s']:.2f}; "
                f"inline now / before = {new[op]['median_mb_s'] / old[op]['median_mb_s']:.1f}x; "
                f"target >= {TARGET_MB_S} MB/s: "
                f"{'met' if new[op]['median_mb_s'] >= TARGET_MB_S else 'NOT met'} (median)"
            )
    (RESULTS / "checkpoints.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
