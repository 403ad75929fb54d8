"""MLflow export throughput, next to our own ingest rate, in one run.

What is measured:

* **our ingest**: ``BatchWriter.log_columns`` of ``--iterations`` rows of
  ``training_metrics`` (7 metric values each) into embedded ClickHouse, first call
  until ``close()`` returned with every row inserted; reported in rows/s and in
  metric values/s (one of our rows holds 7 of MLflow's points);
* **export into MLflow**: ``MlflowExporter.export`` of that run (read through the
  repositories, sent with ``log_batch`` in calls of 1,000 points), into a plain
  ``sqlite:///`` URI and into a real ``mlflow server`` (SQLite backend, loopback
  HTTP), in metric points/s. The experiment exists before timing (MLflow creates
  its SQLite schema on first use, which is not export work). A second export of
  the same run (nothing new to send) is timed too: the cost of an idempotent
  refresh, what the live mirror pays per pass.

Usage: ``python bench/bench_mlflow.py [--iterations N] [--quick] [--results-dir DIR]``.
Results: ``bench/results/mlflow.json`` and ``mlflow.md``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from harness import Results, add_quiet_arguments, add_results_arguments, num, table, wait_for_quiet

from repositories.batch_writer import training_metrics_writer
from repositories.tracking import RunKind, RunTrackingService
from suho.integrations.mlflow import MlflowExporter
from suho_models.db import Database, migrations

VALUES_PER_ROW = 7


def _columns(n: int, run_id: uuid.UUID) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "run_id": run_id,
        "iteration_number": np.arange(1, n + 1, dtype=np.uint32),
        "train_loss": rng.random(n),
        "val_loss": rng.random(n),
        "train_accuracy": rng.random(n),
        "val_accuracy": rng.random(n),
        "learning_rate": np.full(n, 0.05),
        "gradient_norm": rng.random(n),
        "iteration_duration_ms": rng.random(n) * 10,
    }


def _new_run(tracking: RunTrackingService) -> uuid.UUID:
    run = tracking.create(
        {
            "run_name": f"bench-{uuid.uuid4().hex[:6]}",
            "model_type": "xgboost",
            "target_variable": "t",
        }
    )
    tracking.start(run.run_id)
    return run.run_id


def bench_ingest(db: Database, tracking: RunTrackingService, n: int) -> tuple[uuid.UUID, dict]:
    run_id = _new_run(tracking)
    columns = _columns(n, run_id)
    start = time.perf_counter()
    writer = training_metrics_writer(db)
    for lo in range(0, n, 10_000):
        writer.log_columns(
            {
                k: (v[lo : lo + 10_000] if isinstance(v, np.ndarray) else v)
                for k, v in columns.items()
            }
        )
    assert writer.close(), "rows left unflushed"
    seconds = time.perf_counter() - start
    assert tracking.series_count(run_id) == n
    return run_id, {
        "rows": n,
        "seconds": seconds,
        "rows_per_s": n / seconds,
        "values_per_s": n * VALUES_PER_ROW / seconds,
    }


def bench_export(
    db: Database, uri: str, run_id: uuid.UUID, artifacts: Path | None
) -> dict[str, Any]:
    exporter = MlflowExporter(db, uri, artifact_location=artifacts and str(artifacts))
    exporter.experiment_id(RunKind.SUPERVISED)  # MLflow's schema and the experiment
    start = time.perf_counter()
    first = exporter.export(run_id, RunKind.SUPERVISED)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    again = exporter.export(run_id, RunKind.SUPERVISED)
    refresh = time.perf_counter() - start
    assert again.metric_points == 0
    return {
        "points": first.metric_points,
        "seconds": seconds,
        "points_per_s": first.metric_points / seconds,
        "log_batch_calls": -(-first.metric_points // 1000),
        "refresh_seconds": refresh,
    }


def start_server(root: Path) -> tuple[str, subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.Popen(
        [
            mlflow, "server", "--backend-store-uri", f"sqlite:///{root}/server.db",
            "--artifacts-destination", str(root / "server-artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return f"http://127.0.0.1:{port}", proc


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server at {url} not healthy after {timeout} s")


def _markdown(results: Results) -> list[str]:
    d = results.data
    ours = d["ingest"]
    rows = [
        [
            "our ingest: BatchWriter.log_columns -> embedded ClickHouse",
            num(ours["values_per_s"], ",.0f"),
            f"{num(ours['rows_per_s'], ',.0f')} rows/s",
            "1",
        ]
    ]
    for name, label in (
        ("sqlite", "export -> sqlite:/// URI"),
        ("server", "export -> mlflow server"),
    ):
        m = d[name]
        rows.append(
            [
                label,
                num(m["points_per_s"], ",.0f"),
                f"{m['points']:,} points in {m['seconds']:.1f} s; "
                f"refresh {m['refresh_seconds']:.2f} s",
                f"{ours['values_per_s'] / m['points_per_s']:,.0f}x slower",
            ]
        )
    return [
        *results.header("MLflow export throughput vs our ingest"),
        "Metric values (MLflow points) per second; our figure is the median of "
        f'{len(d["ingest_runs"])} runs. "refresh": a second export with nothing new '
        "(what each live-mirror pass costs when idle).",
        "",
        *table(["what", "points/s", "detail", "vs our ingest"], rows),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=10_000, help="rows of the run")
    add_quiet_arguments(parser, patience_s=15.0)
    add_results_arguments(parser, "mlflow", "1,000 iterations, nothing written")
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations = 1_000
    import mlflow

    results = Results(args, mlflow=mlflow.__version__)
    quiet = results["quiet"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["SUHO_DATA_DIR"] = str(root / "suho")
        url, proc = start_server(root)  # comes up while we ingest
        try:
            db_url = f"clickhouse+chdb:///{root}/chdb/bench"
            migrations.upgrade(db_url)
            with Database(db_url) as db:
                tracking = RunTrackingService(db, RunKind.SUPERVISED)
                runs = []
                for _ in range(3):
                    quiet.setdefault("ingest", wait_for_quiet(args.max_others, args.quiet_wait))
                    runs.append(bench_ingest(db, tracking, args.iterations))
                results["ingest_runs"] = [r for _, r in runs]
                best = statistics.median(r["values_per_s"] for _, r in runs)
                run_id, ingest = next((rid, r) for rid, r in runs if r["values_per_s"] == best)
                results["ingest"] = ingest
                tracking.complete(run_id, {"final_test_accuracy": 0.5})

                quiet["sqlite"] = wait_for_quiet(args.max_others, args.quiet_wait)
                results["sqlite"] = bench_export(
                    db, f"sqlite:///{root}/plain.db", run_id, root / "plain-artifacts"
                )
                wait_healthy(url, proc)
                quiet["server"] = wait_for_quiet(args.max_others, args.quiet_wait)
                results["server"] = bench_export(db, url, run_id, None)
        finally:
            proc.terminate()
            proc.wait(30)
    results.write(_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
