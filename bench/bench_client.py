"""The client's ``run.log`` next to MLflow, trackio and W&B: the same loop, the same values.

Every arm logs a dict of 5 values per call with an explicit step, in one process,
and is timed twice: the loop alone (what a training loop pays per call) and the
loop plus the call that makes the values durable (``run.finish()``,
``mlflow.end_run()``, ``trackio.finish()``, ``wandb.finish()``). suho's values are
then counted back from the database. Arms, in one run, in turn:

* ``suho``: ``suho.init`` + ``run.log`` (embedded engine, buffered, sealed in a
  background thread);
* ``suho per-row logger``: ``TrainingMetricRepository.logger(run_id).log(i, **row)``
  of the README, one call per row of 5 values (rows/s and values/s);
* ``mlflow``: the fluent ``mlflow.log_metrics(values, step=i)``, SQLite store;
* ``trackio``: ``trackio.log`` (local SQLite store, its own background sender);
* ``wandb``: ``wandb.log`` with ``WANDB_MODE=offline``.

The anchors are slower by orders of magnitude, so they log fewer calls
(``--anchor-calls``); rates are per value, so the counts compare. An anchor that
cannot be imported or run offline is reported as such, not left out silently.

Memory: ``--memory-values`` values logged by ``run.log``, the process's RSS sampled
every tenth of them (flat: the buffer is bounded).

Usage: ``python bench/bench_client.py [--calls N] [--anchor-calls M]
[--memory-values V]``; results go to bench/results/client.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
KEYS = ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate")
TARGET_VALUES_S = 1_000_000


def values_at(i: int) -> dict[str, float]:
    x = 1.0 / (i + 1)
    return {
        "loss": x,
        "val_loss": x * 1.1,
        "accuracy": 1 - x,
        "val_accuracy": 0.9 - x,
        "learning_rate": 0.01,
    }


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed(
    calls: int,
    start: Callable[[], Any],
    log: Callable[[Any, int, dict[str, float]], None],
    end: Callable[[Any], None],
) -> dict[str, Any]:
    """Loop-only and loop+end rates for ``calls`` calls of 5 values."""
    rows = [values_at(i) for i in range(calls)]
    handle = start()
    t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
    for i in range(calls):
        log(handle, i, rows[i])
    t1, c1 = time.perf_counter(), time.thread_time()
    end(handle)
    t2, p2 = time.perf_counter(), time.process_time()
    values = calls * len(KEYS)
    return {
        "calls": calls,
        "values": values,
        "loop_s": t1 - t0,
        "total_s": t2 - t0,
        "loop_values_s": values / (t1 - t0),
        "total_values_s": values / (t2 - t0),
        # CPU time: what this process spent, whatever else the machine runs (an
        # anchor's work in another process, W&B's service, is not in it).
        "loop_thread_cpu_values_s": values / max(c1 - c0, 1e-9),
        "total_process_cpu_values_s": values / max(p2 - p0, 1e-9),
    }


# --------------------------------------------------------------------------- arms
def arm_suho(calls: int, db: Any) -> dict[str, Any]:
    import suho
    from repositories.tracking import RunTrackingService

    runs: list[Any] = []

    def start() -> Any:
        run = suho.init(name="bench", db=db)
        runs.append(run)
        return run.log

    result = timed(calls, start, lambda log, i, v: log(v, i), lambda _: runs[0].finish())
    keys = RunTrackingService(db, "supervised").metric_keys(runs[0].run_id)
    result["stored_values"] = sum(k.count for k in keys)
    return result


def arm_suho_rows(calls: int, db: Any) -> dict[str, Any]:
    from repositories.series import TrainingMetricRepository
    from repositories.tracking import RunTrackingService

    service = RunTrackingService(db, "supervised")
    run = service.create(
        {"run_name": "bench-rows", "model_type": "xgboost", "target_variable": "y"}
    )
    repo = TrainingMetricRepository(db)
    loggers: list[Any] = []

    def start() -> Any:
        logger = repo.logger(run.run_id)
        loggers.append(logger)
        return logger.log

    def log(log_row: Any, i: int, v: dict[str, float]) -> None:
        log_row(
            i,
            train_loss=v["loss"],
            val_loss=v["val_loss"],
            train_accuracy=v["accuracy"],
            val_accuracy=v["val_accuracy"],
            learning_rate=v["learning_rate"],
        )

    result = timed(calls, start, log, lambda _: loggers[0].close())
    result["rows_s_loop"] = calls / result["loop_s"]
    result["rows_s_total"] = calls / result["total_s"]
    result["stored_rows"] = repo.count(run.run_id)
    return result


def arm_mlflow(calls: int, tmp: Path) -> dict[str, Any]:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    mlflow.set_experiment("bench")
    return timed(
        calls,
        lambda: mlflow.start_run(),
        lambda _, i, v: mlflow.log_metrics(v, step=i),
        lambda _: mlflow.end_run(),
    ) | {"version": mlflow.__version__}


def arm_trackio(calls: int, tmp: Path) -> dict[str, Any]:
    os.environ["TRACKIO_DIR"] = str(tmp / "trackio")
    import trackio

    return timed(
        calls,
        lambda: trackio.init(project="bench", name="bench"),
        lambda _, i, v: trackio.log(v, step=i),
        lambda _: trackio.finish(),
    ) | {"version": getattr(trackio, "__version__", "?")}


def arm_wandb(calls: int, tmp: Path) -> dict[str, Any]:
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    import wandb

    return timed(
        calls,
        lambda: wandb.init(project="bench", dir=str(tmp), mode="offline"),
        lambda run, i, v: run.log(v, step=i),
        lambda run: run.finish(),
    ) | {"version": wandb.__version__}


def memory(values: int, db: Any) -> dict[str, Any]:
    import suho

    run = suho.init(name="bench-memory", db=db)
    row = values_at(0)
    calls = values // len(KEYS)
    samples = []
    tenth = max(calls // 10, 1)
    t0 = time.perf_counter()
    for i in range(calls):
        run.log(row, i)
        if i % tenth == 0:
            samples.append((i * len(KEYS), round(rss_mb(), 1)))
    run.finish()
    return {"values": calls * len(KEYS), "rss_mb": samples, "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400_000)
    parser.add_argument("--anchor-calls", type=int, default=5_000)
    parser.add_argument("--memory-values", type=int, default=20_000_000)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()

    from suho_models.db import Database, migrations

    tmp = Path(tempfile.mkdtemp(prefix="bench-client-"))
    os.environ["SUHO_DATA_DIR"] = str(tmp / "suho")
    url = f"clickhouse+chdb:///{tmp}/chdb/bench"
    migrations.upgrade(url)
    db = Database(url)
    load_before = os.getloadavg()
    results: dict[str, Any] = {"arms": {}, "errors": {}}
    arms: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("suho", lambda: arm_suho(args.calls, db)),
        ("suho per-row logger", lambda: arm_suho_rows(args.calls, db)),
        ("mlflow", lambda: arm_mlflow(args.anchor_calls, tmp)),
        ("trackio", lambda: arm_trackio(args.anchor_calls, tmp)),
        ("wandb", lambda: arm_wandb(args.anchor_calls, tmp)),
    ]
    for name, arm in arms:
        print(f"{name} ...", file=sys.stderr, flush=True)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                results["arms"][name] = arm()
        except Exception as exc:  # noqa: BLE001 - reported in the results
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
    if args.memory_values:
        print("memory ...", file=sys.stderr, flush=True)
        results["memory"] = memory(args.memory_values, db)
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    results["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "client.json").write_text(json.dumps(results, indent=2, default=str))
    (args.results_dir / "client.md").write_text(markdown(results, args))
    print(markdown(results, args))


def markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    load = results["load_average"]
    lines = [
        "# Client logging: `run.log` next to MLflow, trackio and W&B",
        "",
        "Generated by `bench/bench_client.py` (see its docstring for what is timed).",
        f"Load average (1, 5, 15 min) before: {tuple(round(x, 1) for x in load['before'])}, "
        f"after: {tuple(round(x, 1) for x in load['after'])}, "
        f"on {results['machine']['cpus']} CPUs: "
        "a shared, busy machine; compare the arms as ratios from this one run.",
        "",
        "Wall-clock rates, and CPU-time rates (values per CPU second of the logging thread"
        " during the loop, and of the whole process for loop + finish), which a busy machine"
        " distorts less. W&B's offline writer runs in a service process: its process CPU"
        " rate leaves that out.",
        "",
        "| arm | calls | values | loop: values/s | loop + finish: values/s |"
        " loop, thread CPU: values/s | loop + finish, process CPU: values/s |"
        " x MLflow (loop + finish, wall) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    mlflow = results["arms"].get("mlflow", {}).get("total_values_s")
    for name, r in results["arms"].items():
        ratio = f"{r['total_values_s'] / mlflow:,.0f}x" if mlflow else "-"
        lines.append(
            f"| {name} | {r['calls']:,} | {r['values']:,} | {r['loop_values_s']:,.0f} | "
            f"{r['total_values_s']:,.0f} | {r['loop_thread_cpu_values_s']:,.0f} | "
            f"{r['total_process_cpu_values_s']:,.0f} | {ratio} |"
        )
    rows = results["arms"].get("suho per-row logger")
    if rows:
        lines += [
            "",
            f"Per-row logger: {rows['rows_s_loop']:,.0f} rows/s (loop), "
            f"{rows['rows_s_total']:,.0f} rows/s to close; {rows['stored_rows']:,} rows stored.",
        ]
    suho_arm = results["arms"].get("suho")
    if suho_arm:
        lines += [
            f"`run.log`: {suho_arm['stored_values']:,} values stored of "
            f"{suho_arm['values']:,} logged (target: {TARGET_VALUES_S:,} values/s)."
        ]
    for name, error in results["errors"].items():
        lines += ["", f"**{name} not measured:** {error}"]
    mem = results.get("memory")
    if mem:
        lines += [
            "",
            f"Memory while logging {mem['values']:,} values with `run.log` "
            f"({mem['seconds']:.0f} s): RSS in MiB after N values:",
            "",
            "| values | RSS MiB |",
            "|---:|---:|",
            *[f"| {n:,} | {r} |" for n, r in mem["rss_mb"]],
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
