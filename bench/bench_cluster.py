"""Ingest into a 2-node cluster next to one local server, and the seed queries'
latency through the Distributed tables, in one run.

Set-up: ``LocalCluster`` (2 shards x 1 replica, chDB nodes as ``suho db serve``
runs them, sharded mode with per-node DDL) and one ``LocalServer``, all on this
machine. Ingest is ``Database.insert_arrow`` of ``training_metrics`` batches (the
batch writer's insert), each with its ``insert_deduplication_token``; into the
cluster through the Distributed table with ``distributed_foreground_insert=1``
(synchronous, the default of cluster mode). Every row is checked with ``count()``.
The seed queries run verbatim (``COMPARE_MODEL_PERFORMANCE``, ``BEST_RL_AGENTS``)
and as the repositories' FINAL variants, over ``--runs`` runs of each kind.

Usage: ``python bench/bench_cluster.py [--rows N] [--batch B] [--runs R]``.
Results go to ``bench/results/cluster.json`` and ``cluster.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from repositories.queries import (  # noqa: E402
    BEST_RL_AGENTS,
    BEST_RL_AGENTS_FINAL,
    COMPARE_MODEL_PERFORMANCE,
    COMPARE_MODEL_PERFORMANCE_FINAL,
)
from suho_models.db import Database, migrations  # noqa: E402
from suho_models.db.local_cluster import LocalCluster  # noqa: E402
from suho_models.db.server import LocalServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CLUSTER_ENV = {
    "SUHO_CLICKHOUSE_CLUSTER": "suho",
    "SUHO_CLICKHOUSE_TOPOLOGY": "sharded",
    "SUHO_CLICKHOUSE_DDL": "per_node",
}


def _metrics_batch(run_ids: list[uuid.UUID], start: int, rows: int) -> pa.Table:
    rng = np.random.default_rng(start)
    per_run = rows // len(run_ids)
    ids = np.repeat(np.array([r.bytes for r in run_ids], dtype="S16"), per_run)
    iterations = np.tile(np.arange(start, start + per_run, dtype=np.uint32), len(run_ids))
    now = dt.datetime.now(dt.UTC)
    return pa.table({
        "run_id": pa.array(ids.tolist(), pa.binary(16)),
        "iteration_number": pa.array(iterations),
        "train_loss": pa.array(rng.random(len(iterations))),
        "val_loss": pa.array(rng.random(len(iterations))),
        "iteration_duration_ms": pa.array(rng.random(len(iterations))),
        "recorded_at": pa.array([now] * len(iterations), pa.timestamp("ms", "UTC")),
    })  # fmt: skip


def _ingest(db: Database, rows: int, batch: int) -> dict[str, Any]:
    run_ids = [uuid.uuid4() for _ in range(64)]  # runs spread over the shards
    token = uuid.uuid4().hex
    batches = [_metrics_batch(run_ids, 1 + i * (batch // 64), batch) for i in range(rows // batch)]
    started = time.perf_counter()
    for n, table in enumerate(batches):
        db.insert_arrow("training_metrics", table, dedup_token=f"{token}-{n}")
    seconds = time.perf_counter() - started
    landed = db.scalar("SELECT count() FROM training_metrics")
    expected = sum(t.num_rows for t in batches)
    assert landed == expected, (landed, expected)
    return {"rows": expected, "seconds": seconds, "rows_per_s": expected / seconds}


def _seed_runs(db: Database, runs: int) -> None:
    """``runs`` completed supervised and RL runs, three versions each (as the
    lifecycle writes them: pending, running, completed)."""
    now = dt.datetime.now(dt.UTC)
    for table, kind, metrics in (
        ("training_runs", "model_type", ("final_test_accuracy", "final_f1_score")),
        ("agent_training_runs", "agent_type", ("final_sharpe_ratio", "final_total_return")),
    ):
        ids = [uuid.uuid4().bytes for _ in range(runs)]
        for version, status in enumerate(("pending", "running", "completed")):
            rng = np.random.default_rng(version)
            data = {
                "run_id": pa.array(ids, pa.binary(16)),
                "run_name": pa.array([f"run-{i}" for i in range(runs)]),
                kind: pa.array([("xgboost", "ppo")[table != "training_runs"]] * runs),
                "status": pa.array([status] * runs),
                "created_at": pa.array([now] * runs, pa.timestamp("ms", "UTC")),
                "updated_at": pa.array(
                    [now + dt.timedelta(microseconds=version)] * runs, pa.timestamp("us", "UTC")
                ),
            }
            for m in metrics:
                data[m] = pa.array(rng.random(runs) if status == "completed" else [None] * runs,
                                   pa.float64())  # fmt: skip
            db.insert_arrow(table, pa.table(data))


def _scalar(url: str, sql: str) -> Any:
    db = Database(url)
    try:
        return db.scalar(sql)
    finally:
        db.close()


def _latency(db: Database, sql: str, params: dict[str, Any] | None, n: int) -> dict[str, float]:
    db.execute_mappings(sql, params)  # warm
    times = []
    for _ in range(n):
        started = time.perf_counter()
        rows = db.execute_mappings(sql, params)
        times.append((time.perf_counter() - started) * 1000)
    assert len(rows) == 10
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p95_ms": times[max(0, int(len(times) * 0.95) - 1)],
    }


def _queries(db: Database, n: int) -> dict[str, dict[str, float]]:
    return {
        "compare_model_performance (verbatim)": _latency(db, COMPARE_MODEL_PERFORMANCE, None, n),
        "compare_model_performance (FINAL)": _latency(
            db, COMPARE_MODEL_PERFORMANCE_FINAL, {"limit": 10}, n
        ),
        "best_rl_agents (verbatim)": _latency(db, BEST_RL_AGENTS, None, n),
        "best_rl_agents (FINAL)": _latency(db, BEST_RL_AGENTS_FINAL, {"limit": 10}, n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster")
    args = parser.parse_args()

    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "rows": args.rows,
        "batch": args.batch,
        "runs": args.runs,
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        server = LocalServer(Path(tmp) / "single").start()
        cluster = LocalCluster(Path(tmp) / "cluster").start()
        try:
            single_url = server.native_url("bench")
            migrations.upgrade(single_url)
            for key, value in CLUSTER_ENV.items():
                os.environ[key] = value
            cluster_url = cluster.url("bench")
            migrations.upgrade(cluster_url)
            cdb = Database(cluster_url)
            for key in CLUSTER_ENV:
                del os.environ[key]
            sdb = Database(single_url)
            # Alternate the two targets so that machine noise hits both alike.
            ingest: dict[str, list[dict[str, Any]]] = {"single": [], "cluster": []}
            for _ in range(2):
                ingest["single"].append(_ingest(sdb, args.rows // 2, args.batch))
                ingest["cluster"].append(_ingest(cdb, args.rows // 2, args.batch))
                sdb.execute("TRUNCATE TABLE training_metrics")
                for node in cluster.nodes:
                    _scalar(node.native_url("bench"), "TRUNCATE TABLE training_metrics_local")
            result["ingest"] = {
                name: {
                    "rows_per_s": sum(r["rows"] for r in runs) / sum(r["seconds"] for r in runs),
                    "attempts": runs,
                }
                for name, runs in ingest.items()
            }
            _seed_runs(sdb, args.runs)
            _seed_runs(cdb, args.runs)
            result["runs_per_shard"] = [
                _scalar(n.native_url("bench"), "SELECT count() FROM training_runs_local")
                for n in cluster.nodes
            ]
            result["queries_ms"] = {
                "single": _queries(sdb, args.repeats),
                "cluster": _queries(cdb, args.repeats),
            }
            sdb.close()
            cdb.close()
        finally:
            cluster.stop()
            server.stop()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))


def _markdown(r: dict[str, Any]) -> str:
    single, cluster = r["ingest"]["single"], r["ingest"]["cluster"]
    lines = [
        "# Cluster benchmark: 2-node cluster next to one local server",
        "",
        f"{r['date']}, {r['machine']}. Both targets on this one machine, in one run: a",
        "`LocalServer`, and a `LocalCluster` of 2 shards x 1 replica (sharded mode, per-node",
        "DDL, Distributed tables with `distributed_foreground_insert=1`).",
        "",
        f"## Ingest: `Database.insert_arrow` of `training_metrics`, {r['batch']:,}-row batches",
        "",
        "Each batch carries an `insert_deduplication_token`; every row counted after.",
        "The two targets alternate (2 rounds of half the rows each).",
        "",
        "| target | rows | rows/s |",
        "|---|---:|---:|",
        f"| one local server | {r['rows']:,} | {single['rows_per_s']:,.0f} |",
        f"| 2-node cluster, through Distributed | {r['rows']:,} | {cluster['rows_per_s']:,.0f} |",
        "",
        f"## Seed queries, {r['runs']:,} runs of each kind (3 versions each), "
        f"{r['repeats']} repeats",
        "",
        f"Runs per shard in the cluster: {r['runs_per_shard']} (rows, before merges).",
        "",
        "| query | one server median / p95 ms | cluster (Distributed) median / p95 ms |",
        "|---|---:|---:|",
    ]
    for name, s in r["queries_ms"]["single"].items():
        c = r["queries_ms"]["cluster"][name]
        lines.append(
            f"| {name} | {s['median_ms']:.1f} / {s['p95_ms']:.1f} "
            f"| {c['median_ms']:.1f} / {c['p95_ms']:.1f} |"
        )
    lines += [
        "",
        "On one machine the cluster's two nodes share its cores with each other and with",
        "the client, so these figures show the cost of the Distributed layer (fan-out,",
        "per-shard FINAL, merge of partial results), not a cluster's scale-out.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
