"""Throughput of BatchWriter for ``training_metrics``, next to MLflow's log_batch.

What is measured, end to end (first row logged until ``close()`` returned with
every row inserted, checked with ``count() ... FINAL``):

* the embedded engine (chDB in this process) and the local server
  (``LocalServer``: the same engine in a subprocess, clickhouse-driver over TCP);
* per-row ``log()`` (one call per iteration, 7 values) and ``log_columns()``
  (numpy chunks of ``--chunk`` rows);
* MLflow: ``MlflowClient().log_batch`` into a SQLite tracking store, 1,000
  metrics per call (MLflow's per-call limit). One MLflow metric is one row of
  its ``metrics`` table; one of our rows holds six metrics plus the iteration
  time, so the per-row ratio understates our advantage by about 6x (both
  ratios are reported).

Each measurement first waits for a quiet machine (``--max-others``, ``--quiet-wait``).
The per-metric-value ratio is the per-row one times 6.

Usage: ``python bench/bench_writer.py [--rows N] [--mlflow-rows M] [--quick]
[--results-dir DIR]``. Results go to ``bench/results/writer.json`` and ``writer.md``
(``--quick``: seconds, writes nothing unless ``--results-dir`` is given).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from harness import (
    Results,
    add_quiet_arguments,
    add_results_arguments,
    num,
    table,
    wait_for_quiet,
)

from repositories.batch_writer import training_metrics_writer
from suho_models.db import Database, migrations
from suho_models.db.server import LocalServer

TARGET_EMBEDDED_ROWS_S = 1_000_000
TARGET_MLFLOW_RATIO = 100


def _values(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_loss": rng.random(n),
        "val_loss": rng.random(n),
        "train_accuracy": rng.random(n),
        "val_accuracy": rng.random(n),
        "learning_rate": np.full(n, 0.05),
        "gradient_norm": rng.random(n),
        "iteration_duration_ms": rng.random(n) * 10,
    }


def _count(db: Database, run: uuid.UUID) -> int:
    return db.scalar(
        "SELECT count() FROM training_metrics FINAL WHERE run_id = %(r)s", {"r": str(run)}
    )


def bench_log(db: Database, n: int, spool: Path) -> dict[str, Any]:
    """One log() call per row, as a trainer's per-iteration callback does."""
    run = uuid.uuid4()
    v = {k: a.tolist() for k, a in _values(n).items()}  # Python floats, made before timing
    tl, vl, ta, va = v["train_loss"], v["val_loss"], v["train_accuracy"], v["val_accuracy"]
    lr, gn, ms = v["learning_rate"], v["gradient_norm"], v["iteration_duration_ms"]
    gc.collect()
    start = time.perf_counter()
    w = training_metrics_writer(db, spool_dir=spool)
    log = w.log
    for i in range(n):
        log(
            run_id=run,
            iteration_number=i,
            train_loss=tl[i],
            val_loss=vl[i],
            train_accuracy=ta[i],
            val_accuracy=va[i],
            learning_rate=lr[i],
            gradient_norm=gn[i],
            iteration_duration_ms=ms[i],
        )
    logged = time.perf_counter()
    assert w.close(timeout=60), w.last_error
    elapsed = time.perf_counter() - start
    assert _count(db, run) == n
    return {
        "rows": n,
        "seconds": elapsed,
        "rows_per_s": n / elapsed,
        "inserts": w.flush_count,
        "seconds_in_log_calls": logged - start,
    }


def bench_log_columns(db: Database, n: int, chunk: int, spool: Path) -> dict[str, Any]:
    """log_columns() with numpy chunks, as a vectorised trainer or a replay would."""
    run = uuid.uuid4()
    values = _values(n)
    iterations = np.arange(n, dtype=np.uint32)
    gc.collect()
    start = time.perf_counter()
    w = training_metrics_writer(db, spool_dir=spool)
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        w.log_columns(
            {
                "run_id": run,
                "iteration_number": iterations[lo:hi],
                **{k: a[lo:hi] for k, a in values.items()},
            }
        )
    assert w.close(timeout=60), w.last_error
    elapsed = time.perf_counter() - start
    assert _count(db, run) == n
    return {
        "rows": n,
        "chunk": chunk,
        "seconds": elapsed,
        "rows_per_s": n / elapsed,
        "inserts": w.flush_count,
    }


def bench_log_call_cost(db: Database, n: int, spool: Path) -> dict[str, Any]:
    """Python cost of one log() call when no flush happens (buffering only)."""
    run = uuid.uuid4()
    w = training_metrics_writer(
        db, spool_dir=spool, max_rows=n + 1, max_buffered_rows=n + 1, max_seconds=3600
    )
    log = w.log

    def noop(**row: Any) -> None:
        pass

    def timed(fn: Callable[..., None]) -> float:
        gc.collect()
        t = time.perf_counter()
        for i in range(n):
            fn(run_id=run, iteration_number=i, train_loss=0.5, iteration_duration_ms=1.0)
        return (time.perf_counter() - t) / n * 1e6

    call_us = timed(log)
    noop_us = timed(noop)
    assert w.close(timeout=60), w.last_error
    return {
        "rows": n,
        "log_call_us": call_us,
        "empty_call_us": noop_us,
        "beyond_call_us": call_us - noop_us,
    }


def run_backend(label: str, url: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    migrations.upgrade(url)
    db = Database(url)
    try:
        out: dict[str, Any] = {"url": url.split("://")[0]}
        print(f"[{label}] log() x {args.rows:,} ...", flush=True)
        out["log"] = bench_log(db, args.rows, work / f"spool-{label}-log")
        print(f"[{label}]   {out['log']['rows_per_s']:,.0f} rows/s", flush=True)
        print(f"[{label}] log_columns() x {args.rows:,} in {args.chunk:,}-row chunks ...")
        out["log_columns"] = bench_log_columns(
            db, args.rows, args.chunk, work / f"spool-{label}-cols"
        )
        print(f"[{label}]   {out['log_columns']['rows_per_s']:,.0f} rows/s", flush=True)
        if label == "embedded":
            out["log_call"] = bench_log_call_cost(db, args.call_rows, work / "spool-call")
            print(
                f"[{label}] log() call: {out['log_call']['beyond_call_us']:.2f} us beyond an "
                f"empty call of the same signature ({out['log_call']['empty_call_us']:.2f} us)"
            )
        return out
    finally:
        db.close()


def bench_mlflow(rows: int, work: Path, budget_s: float) -> dict[str, Any]:
    try:
        import mlflow
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        return {"skipped": f"mlflow is not installed ({exc})"}
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    store = work / "mlflow"
    store.mkdir()
    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    run = client.create_run(client.create_experiment("bench"))
    run_id = run.info.run_id
    ts = int(time.time() * 1000)
    values = np.random.default_rng(0).random(rows).tolist()
    per_call = 1_000
    done = 0
    print(f"[mlflow] log_batch x {rows:,} metrics, {per_call:,} per call ...", flush=True)
    start = time.perf_counter()
    while done < rows and time.perf_counter() - start < budget_s:
        batch = [
            Metric("train_loss", values[i], ts, i) for i in range(done, min(done + per_call, rows))
        ]
        client.log_batch(run_id, metrics=batch)
        done += len(batch)
    elapsed = time.perf_counter() - start
    client.set_terminated(run_id)
    stored = len(client.get_metric_history(run_id, "train_loss"))
    assert stored == done, (stored, done)
    print(f"[mlflow]   {done / elapsed:,.0f} metrics/s", flush=True)
    return {
        "version": mlflow.__version__,
        "rows": done,
        "seconds": elapsed,
        "rows_per_s": done / elapsed,
        "metrics_per_call": per_call,
        "calls": -(-done // per_call),
        "store": "sqlite",
    }


def _markdown(r: Results) -> list[str]:
    lines = r.header("BatchWriter throughput (`training_metrics`)")
    ml = r.data.get("mlflow", {})
    rows = []
    for backend in ("embedded", "server"):
        data = r.data.get(backend)
        if not data:
            continue
        if "error" in data:
            rows.append([backend, "failed", data["error"], "–", "–", "–", "–", "–"])
            continue
        for method in ("log", "log_columns"):
            m = data[method]
            name = "log()" if method == "log" else f"log_columns({m['chunk']:,}-row chunks)"
            rows.append(
                [
                    backend,
                    name,
                    f"{m['rows']:,}",
                    f"{m['seconds']:.2f}",
                    f"{m['rows_per_s']:,.0f}",
                    m["inserts"],
                    num(m.get("ratio_vs_mlflow_per_row"), ",.0f"),
                    num(m.get("ratio_vs_mlflow_per_value"), ",.0f"),
                ]
            )
    if "rows_per_s" in ml:
        rows.append(
            [
                f"MLflow {ml['version']} ({ml['store']})",
                f"log_batch, {ml['metrics_per_call']:,}/call",
                f"{ml['rows']:,}",
                f"{ml['seconds']:.2f}",
                f"{ml['rows_per_s']:,.0f}",
                ml["calls"],
                "1",
                "1",
            ]
        )
    elif ml:
        rows.append(["MLflow", "skipped", ml["skipped"], "–", "–", "–", "–", "–"])
    header = ["backend", "method", "rows", "seconds", "rows/s", "inserts"]
    header += ["x MLflow per row", "x MLflow per metric value"]
    lines += table(header, rows, numeric_from=2)
    call = r.data.get("embedded", {}).get("log_call")
    if call:
        lines += [
            "",
            *table(
                ["calls", "log() µs", "empty call, same keywords µs", "log() beyond it µs"],
                [
                    [
                        f"{call['rows']:,}",
                        f"{call['log_call_us']:.2f}",
                        f"{call['empty_call_us']:.2f}",
                        f"{call['beyond_call_us']:.2f}",
                    ]
                ],
                numeric_from=0,
            ),
        ]
    targets = [
        [
            method,
            f"{TARGET_EMBEDDED_ROWS_S:,}",
            f"{TARGET_MLFLOW_RATIO}x",
            f"{m['rows_per_s']:,.0f}",
        ]
        + [num(m.get("ratio_vs_mlflow_per_row"), ",.0f")]
        for method in ("log", "log_columns")
        if (m := r.data.get("embedded", {}).get(method))
    ]
    lines += [
        "",
        "Targets (embedded):",
        "",
        *table(["method", "target rows/s", "target x MLflow", "rows/s", "x MLflow"], targets),
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per measurement")
    parser.add_argument("--chunk", type=int, default=10_000, help="rows per log_columns call")
    parser.add_argument("--call-rows", type=int, default=200_000, help="log() calls, no flush")
    parser.add_argument("--mlflow-rows", type=int, default=100_000, help="MLflow metrics")
    parser.add_argument("--mlflow-budget", type=float, default=60.0, help="MLflow seconds cap")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--skip-mlflow", action="store_true")
    add_quiet_arguments(parser, threshold=0.10, patience_s=45.0)
    add_results_arguments(parser, "writer", "20,000 rows, 5,000 MLflow metrics: seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.chunk, args.call_rows = 20_000, 2_000, 20_000
        args.mlflow_rows, args.quiet_wait = 5_000, 5.0

    work = Path(tempfile.mkdtemp(prefix="bench-writer-"))
    os.environ["SUHO_DATA_DIR"] = str(work / "suho")
    results = Results(args)
    quiet = results["quiet"] = {}
    try:
        # The embedded default: chDB in this process, a path like the default one.
        embedded_url = f"clickhouse+chdb:///{work}/suho/clickhouse/suho_analytics"
        quiet["embedded"] = wait_for_quiet(args.max_others, args.quiet_wait)
        results["embedded"] = run_backend("embedded", embedded_url, args, work)
        if not args.skip_server:
            try:
                with LocalServer(work / "server") as server:
                    quiet["server"] = wait_for_quiet(args.max_others, args.quiet_wait)
                    results["server"] = run_backend(
                        "server", server.native_url("suho_analytics"), args, work
                    )
            except Exception as exc:  # report, keep the other numbers
                results["server"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                print(f"[server] failed: {exc}", flush=True)
        if not args.skip_mlflow:
            quiet["mlflow"] = wait_for_quiet(args.max_others, args.quiet_wait)
            results["mlflow"] = bench_mlflow(args.mlflow_rows, work, args.mlflow_budget)
        ml_rate = results.data.get("mlflow", {}).get("rows_per_s")
        if ml_rate:
            for backend in ("embedded", "server"):
                for method in ("log", "log_columns"):
                    m = results.data.get(backend, {}).get(method)
                    if m:
                        m["ratio_vs_mlflow_per_row"] = m["rows_per_s"] / ml_rate
                        m["ratio_vs_mlflow_per_value"] = m["rows_per_s"] * 6 / ml_rate
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results.write(_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
