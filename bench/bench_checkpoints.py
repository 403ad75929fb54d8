"""Checkpoint save and load+verify throughput: inline (base64 in the row) vs the local
object store, in one run, on the embedded engine and on the local server.

What is measured, per path, for one checkpoint of ``--mb`` MB of random bytes
(incompressible):

* **save**: ``save_checkpoint`` from bytes in memory until the row is stored;
* **load + verify**: ``load_checkpoint`` until the bytes are back in Python and
  their SHA-256 has been checked against the row.

Paths, in rotating order within each repeat: ``inline`` (ClickHouse does the base64:
raw bytes in, ``base64Encode`` in the INSERT, ``base64Decode`` in the SELECT, raw bytes
out, streamed over HTTP from a server; the column LZ4-compressed), ``object store``
(``<data_dir>/objects`` on the local disk) and, for reference, ``inline, ZSTD(3) +
buffered HTTP (before)``: the same inline path with the column as it was before
revision 0006 (ZSTD(3)) and, on the server, the read through ``raw_query``, which makes
the server buffer the whole answer before sending it; on the embedded engine, ``inline,
staged in /dev/shm (before)``: the save as it was before the engine read the bytes from
a pipe, through a file written to /dev/shm first; and ``floor``: no database at
all, Python writing as many bytes as the inline row holds (base64 is 4/3 of the
checkpoint) to a new file beside the data, and hashing the checkpoint, then reading
it back. On this machine a write into pages the kernel has not used lately costs far
more than a copy (the VM's free memory goes back to its host), so that floor, not the
engine, bounds every save; the inline path's ratio to it is what the code controls.

Each timed operation starts once the background merges of earlier inserts are done
and after a short wait for the machine to be quiet (``--quiet-wait``); the share of
the CPUs other processes used when it started is recorded.

Usage: ``python bench/bench_checkpoints.py [--mb 50] [--repeat 3]``. Results go to
``bench/results/checkpoints.json`` and ``checkpoints.md``. MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import abba_order, add_quiet_arguments, wait_for_quiet  # noqa: E402

from repositories.checkpoints import ModelCheckpointRepository  # noqa: E402
from repositories.object_store import LocalObjectStore  # noqa: E402
from repositories.runs import TrainingRunRepository  # noqa: E402
from suho_models.db import Database, migrations  # noqa: E402
from suho_models.db.server import LocalServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGET_MB_S = 200
STAGED = "inline, staged in /dev/shm (before)"
FLOOR = "floor: Python writes 4/3 of the bytes to a new file + SHA-256 (no ClickHouse)"


def _set_codec(db: Database, codec: str) -> None:
    db.execute(
        f"ALTER TABLE model_checkpoints MODIFY COLUMN model_binary String CODEC({codec}) "
        "COMMENT 'Base64 model bytes when stored inline'"
    )


def _before_load(repo: ModelCheckpointRepository, checkpoint_id: Any) -> bytes:
    """The load before this change: on a server with an HTTP port, ``raw_query``
    (the server buffers the whole answer, ``wait_end_of_query``) instead of a stream."""
    db = repo.db
    c = repo.table.c
    (row,) = repo._select(
        c.checkpoint_id == checkpoint_id, columns=[c.run_id, c.checkpoint_id, c.sha256], limit=1
    )
    if db.http_port is None:
        data = bytes(repo.load_checkpoint(checkpoint_id))
    else:
        from suho_models.db.chdb_dbapi import render

        sql = render(
            "SELECT tryBase64Decode(model_binary) FROM model_checkpoints FINAL "
            "PREWHERE run_id = %(run_id)s AND checkpoint_id = %(checkpoint_id)s LIMIT 1 "
            "FORMAT RawBLOB",
            {"run_id": row["run_id"], "checkpoint_id": row["checkpoint_id"]},
        )
        data = bytes(db._http_client().raw_query(sql, settings={"enable_http_compression": 0}))
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


@contextmanager
def _staged_in_shm(blob: bytes) -> Iterator[str]:
    """The embedded save's staging before the pipe: a whole file in /dev/shm."""
    with tempfile.NamedTemporaryFile(prefix="suho-blob-", dir="/dev/shm", delete=False) as fh:
        fh.write(blob)
    try:
        yield fh.name
    finally:
        os.unlink(fh.name)


def _save_staged(save: Callable[[], Any]) -> Any:
    import suho_models.db.database as database

    piped = database._piped
    database._piped = _staged_in_shm  # type: ignore[assignment]
    try:
        return save()
    finally:
        database._piped = piped


class _Path(NamedTuple):
    save: Callable[[], Any]
    load: Callable[[Any], bytes]
    codec: str  # of model_binary while this path saves


def _measure(
    db: Database, data: bytes, args: argparse.Namespace, objects: Path
) -> list[dict[str, Any]]:
    run_id = (
        TrainingRunRepository(db)
        .create({"run_name": "bench", "model_type": "xgboost", "target_variable": "y"})
        .run_id
    )
    inline = ModelCheckpointRepository(db, LocalObjectStore(objects), inline_max_bytes=2**31)
    local = ModelCheckpointRepository(db, LocalObjectStore(objects), inline_max_bytes=0)

    def save_inline() -> Any:
        return inline.save_checkpoint(run_id, data, "raw").checkpoint_id

    floor_dir = objects.parent / f"{objects.name}-floor"
    floor_dir.mkdir(parents=True, exist_ok=True)
    as_base64 = data + data[: len(data) // 3]  # what the inline row stores: 4/3 the bytes

    def save_floor() -> Any:
        path = floor_dir / f"{time.perf_counter_ns()}.bin"
        hashlib.sha256(data).hexdigest()
        with open(path, "wb") as fh:
            fh.write(as_base64)
        return path

    def load_floor(path: Any) -> bytes:
        back = path.read_bytes()[: len(data)]
        hashlib.sha256(back).hexdigest()
        return back

    paths = {
        "inline": _Path(save_inline, inline.load_checkpoint, "LZ4"),
        "object store (local)": _Path(
            lambda: local.save_checkpoint(run_id, data, "raw").checkpoint_id,
            local.load_checkpoint,
            "LZ4",
        ),
        "inline, ZSTD(3) + buffered HTTP (before)": _Path(
            save_inline, lambda cid: _before_load(inline, cid), "ZSTD(3)"
        ),
        FLOOR: _Path(save_floor, load_floor, "LZ4"),
    }
    if db.is_embedded:
        paths[STAGED] = _Path(lambda: _save_staged(save_inline), inline.load_checkpoint, "LZ4")
    timings: dict[str, dict[str, list[Any]]] = {
        name: {"save_s": [], "load_s": [], "others_share": []} for name in paths
    }
    for k in range(args.repeat):
        for name in abba_order(list(paths), k):
            path, row = paths[name], timings[name]
            _set_codec(db, path.codec)
            for op in ("save", "load"):
                _quiet(db)
                quiet = wait_for_quiet(args.max_others, args.quiet_wait)
                row["others_share"].append(round(quiet["others_share"], 2))
                start = time.perf_counter()
                if op == "save":
                    checkpoint_id = path.save()
                else:
                    back = path.load(checkpoint_id)
                row[f"{op}_s"].append(time.perf_counter() - start)
            assert back == data, name
            _set_codec(db, "LZ4")
    return [{"path": name, **row} for name, row in timings.items()]


def _rate(seconds: list[float], size: int) -> dict[str, float]:
    return {
        "best_mb_s": size / min(seconds) / 1e6,
        "median_mb_s": size / statistics.median(seconds) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    add_quiet_arguments(parser, threshold=0.10, patience_s=2.0)
    args = parser.parse_args()
    size = args.mb * 1_000_000
    data = os.urandom(size)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
        os.environ["SUHO_DATA_DIR"] = str(Path(tmp) / "data")
        url = f"clickhouse+chdb:///{tmp}/chdb/bench"
        migrations.upgrade(url)
        with Database(url) as db:
            for row in _measure(db, data, args, Path(tmp) / "objects-embedded"):
                results.append({"backend": "embedded", **row})
        server = LocalServer(Path(tmp) / "server")
        server.start()
        try:
            url = server.native_url("bench")
            migrations.upgrade(url)
            with Database(url) as db:
                for row in _measure(db, data, args, Path(tmp) / "objects-server"):
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
        f"of random bytes, best and median of {repeat}, each after background merges settled "
        "and a short wait for quiet. "
        "MB = 10^6 bytes.",
        "",
        "| backend | path | save MB/s (best / median) | load + verify MB/s (best / median) "
        "| others' CPU share at start (median) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['path']} | {r['save']['best_mb_s']:.0f} / "
            f"{r['save']['median_mb_s']:.0f} | {r['load']['best_mb_s']:.0f} / "
            f"{r['load']['median_mb_s']:.0f} | {statistics.median(r['others_share']):.0%} |"
        )
    lines += ["", "## Ratios (median)", ""]
    for backend in ("embedded", "server"):
        by = {r["path"]: r for r in results if r["backend"] == backend}
        new, store, old = (
            by["inline"],
            by["object store (local)"],
            by["inline, ZSTD(3) + buffered HTTP (before)"],
        )
        floor = by[FLOOR]
        for op in ("save", "load"):
            lines.append(
                f"- {backend} {op}: inline / object store = "
                f"{new[op]['median_mb_s'] / store[op]['median_mb_s']:.2f}; "
                f"inline / floor = {new[op]['median_mb_s'] / floor[op]['median_mb_s']:.2f}; "
                f"inline now / before = {new[op]['median_mb_s'] / old[op]['median_mb_s']:.1f}x; "
                f"target >= {TARGET_MB_S} MB/s: "
                f"{'met' if new[op]['median_mb_s'] >= TARGET_MB_S else 'NOT met'} (median)"
            )
        if STAGED in by:
            lines.append(
                f"- {backend} save: inline through the pipe / staged in /dev/shm = "
                f"{new['save']['median_mb_s'] / by[STAGED]['save']['median_mb_s']:.2f}"
            )
    (RESULTS / "checkpoints.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
