"""The shared default store (issue 24) against today's in-process embedded store, in one run.

Arms: ``embedded`` (``clickhouse+chdb://``, the engine in this process: the old
default) and ``shared`` (``clickhouse+local://``, the new default: a background
server on loopback that this process starts). Both in this one process (the
shared arm opens no chDB here), runs alternating (ABBA), so drift cancels in the
paired ratios. Measured:

* per-row ingest (``BatchWriter.log``) and columnar ingest (``log_columns``,
  10,000-row chunks), first row until ``close()`` returned;
* the seed's two queries (``repositories.queries``) over a populated store;
* cold start of one command, ``suho runs list --json`` in a fresh process: embedded
  (today), shared with its server not running (server start included), shared with
  it running;
* a logged point to the store and to the run page: a writer with its default
  ``max_seconds`` logs a point every 0.3 s; a second process's reader (the UI's
  query) polls every 50 ms; the page polls every 1 s, so the page sees it at most
  1 s after the store does (the figure adds a uniform 0..1 s, median +0.5 s).

``python bench/bench_shared_store.py [--rows N] [--repeats K]``; results in
``bench/results/shared_store.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from harness import RESULTS_DIR, ROOT, abba_order, summary

from repositories.batch_writer import training_metrics_writer
from repositories.queries import SEED_QUERIES
from suho_models.db import Database, migrations
from suho_models.db.server.shared import stop_server


def ingest_rows(db: Database, n: int, spool: Path) -> float:
    run = uuid.uuid4()
    w = training_metrics_writer(db, spool_dir=spool, max_seconds=3600)
    t = time.perf_counter()
    for i in range(n):
        w.log(run_id=run, iteration_number=i, train_loss=i / 7, iteration_duration_ms=1.0)
    assert w.close()
    return n / (time.perf_counter() - t)


def ingest_columns(db: Database, n: int, spool: Path, chunk: int = 10_000) -> float:
    run = uuid.uuid4()
    w = training_metrics_writer(db, spool_dir=spool, max_seconds=3600)
    losses = np.random.default_rng(0).random(chunk)
    t = time.perf_counter()
    for k in range(0, n, chunk):
        w.log_columns(
            {
                "run_id": [run] * chunk,
                "iteration_number": np.arange(k, k + chunk),
                "train_loss": losses,
                "iteration_duration_ms": np.ones(chunk),
            }
        )
    assert w.close()
    return n / (time.perf_counter() - t)


def seed_queries(db: Database, k: int = 5) -> dict[str, float]:
    out = {}
    for name, sql in SEED_QUERIES.items():
        times = []
        for _ in range(k):
            t = time.perf_counter()
            db.execute_mappings(sql)
            times.append(time.perf_counter() - t)
        out[name] = statistics.median(times) * 1e3
    return out


def cold_command(env: dict[str, str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "suho", "runs", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return time.perf_counter() - t


_READER = """
import sys, time, uuid
from suho_models.db import Database
db = Database()
run = sys.argv[1]
last = -1
print("ready", flush=True)
while True:
    top = db.scalar("SELECT max(iteration_number) FROM training_metrics WHERE run_id = %(r)s "
                    "HAVING count() > 0", {"r": run})
    if top is not None and int(top) > last:
        last = int(top)
        print(last, time.time(), flush=True)
        if last >= int(sys.argv[2]) - 1:
            break
    time.sleep(0.05)
"""


def live_latency(db: Database, env: dict[str, str], points: int = 20) -> list[float]:
    """Seconds from ``log()`` of a point until another process's query sees it."""
    run = uuid.uuid4()
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(run), str(points)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
    logged: dict[int, float] = {}
    seen: dict[int, float] = {}

    def read() -> None:
        assert reader.stdout is not None
        for line in reader.stdout:
            k, at = line.split()
            seen[int(k)] = float(at)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    w = training_metrics_writer(db)  # default max_seconds, as trainers use it
    for k in range(points):
        logged[k] = time.time()
        w.log(run_id=run, iteration_number=k, train_loss=1.0, iteration_duration_ms=1.0)
        time.sleep(0.3)
    reader.wait(60)
    thread.join(5)
    w.close()
    # A point is visible once a later or equal max is seen.
    out = []
    for k, at in logged.items():
        later = [t for j, t in seen.items() if j >= k]
        if later:
            out.append(min(later) - at)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--cold", type=int, default=3)
    parser.add_argument("--render", action="store_true", help="re-render the .md from the .json")
    args = parser.parse_args()
    if args.render:
        render(json.loads((RESULTS_DIR / "shared_store.json").read_text()))
        return 0

    work = Path(tempfile.mkdtemp(prefix="bench-shared-"))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SUHO_")}
    base_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
    )
    shared_data = work / "shared"
    os.environ["SUHO_DATA_DIR"] = str(shared_data)
    os.environ["SUHO_SERVER_IDLE_SECONDS"] = "30"
    urls = {
        "embedded": f"clickhouse+chdb:///{work}/embedded/clickhouse/suho_analytics",
        "shared": f"clickhouse+local:///{shared_data}/clickhouse/suho_analytics",
    }
    load_before = os.getloadavg()
    dbs = {}
    for arm, url in urls.items():
        migrations.upgrade(url)
        dbs[arm] = Database(url)
        from tests.ui_data import populate  # runs, metrics, agents for the seed queries

        populate(dbs[arm], runs=12, iterations=200)

    ingest: dict[str, dict[str, list[float]]] = {a: {"rows": [], "columns": []} for a in urls}
    queries: dict[str, list[dict[str, float]]] = {a: [] for a in urls}
    for k in range(args.repeats):
        for arm in abba_order(list(urls), k):
            spool = work / f"spool-{arm}"
            ingest[arm]["rows"].append(ingest_rows(dbs[arm], args.rows, spool))
            ingest[arm]["columns"].append(ingest_columns(dbs[arm], args.rows * 5, spool))
            queries[arm].append(seed_queries(dbs[arm]))
        print(f"repeat {k + 1}/{args.repeats} done", flush=True)

    shared_env = {**base_env, "SUHO_DATA_DIR": str(shared_data)}
    latency = live_latency(dbs["shared"], shared_env)
    dbs["embedded"].close()
    dbs["shared"].close()

    embedded_env = {**base_env, "SUHO_DATABASE_URL": urls["embedded"]}
    cold: dict[str, list[float]] = {"embedded": [], "shared_server_down": [], "shared_warm": []}
    for _ in range(args.cold):
        cold["embedded"].append(cold_command(embedded_env))
        stop_server(shared_data / "clickhouse")
        cold["shared_server_down"].append(cold_command(shared_env))
        cold["shared_warm"].append(cold_command(shared_env))
    stop_server(shared_data / "clickhouse")

    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "rows": args.rows,
        "columnar_rows": args.rows * 5,
        "ingest_rows_per_s": {a: ingest[a]["rows"] for a in urls},
        "ingest_columns_rows_per_s": {a: ingest[a]["columns"] for a in urls},
        "seed_queries_ms": queries,
        "cold_start_s": cold,
        "point_to_store_s": summary(latency, "s"),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "shared_store.json").write_text(json.dumps(results, indent=2))
    render(results)
    return 0


def paired(values: dict[str, list[float]]) -> float:
    """Median over the repeats of shared / embedded (each pair ran back to back)."""
    pairs = zip(values["shared"], values["embedded"], strict=True)
    return statistics.median(s / e for s, e in pairs)


def render(results: dict[str, Any]) -> None:
    med = statistics.median
    load_before, load_after = results["loadavg_before"], results["loadavg_after"]
    ingest = {
        "rows": results["ingest_rows_per_s"],
        "columns": results["ingest_columns_rows_per_s"],
    }
    queries, cold = results["seed_queries_ms"], results["cold_start_s"]
    lines = [
        "# The shared default store vs today's in-process store",
        "",
        f"Run {results['when']} on {results['cpus']} CPUs; load average before "
        f"{load_before[0]:.1f}, after {load_after[0]:.1f} (a shared, noisy machine: read "
        f"the paired ratios). {results['rows']:,} rows per log() run, "
        f"{results['columnar_rows']:,} per log_columns() run, "
        f"{len(ingest['rows']['shared'])} runs per arm, alternating; medians.",
        "",
        "| measure | embedded (today) | shared (new default) | shared / embedded |",
        "|---|---:|---:|---:|",
    ]
    for label, key in (("per-row log(), rows/s", "rows"), ("log_columns(), rows/s", "columns")):
        e, s = med(ingest[key]["embedded"]), med(ingest[key]["shared"])
        lines.append(f"| {label} | {e:,.0f} | {s:,.0f} | {paired(ingest[key]):.2f} |")
    for name in SEED_QUERIES:
        times = {arm: [q[name] for q in queries[arm]] for arm in ("embedded", "shared")}
        e, s = med(times["embedded"]), med(times["shared"])
        lines.append(f"| seed query {name}, ms | {e:.1f} | {s:.1f} | {paired(times):.2f} |")
    ce, cd, cw = (med(cold[k]) for k in ("embedded", "shared_server_down", "shared_warm"))
    lines.append(
        f"| `suho runs list` cold, s (shared: server down) | {ce:.2f} | {cd:.2f} | {cd / ce:.2f} |"
    )
    lines.append(
        f"| `suho runs list` cold, s (shared: server running) | {ce:.2f} | {cw:.2f} | "
        f"{cw / ce:.2f} |"
    )
    p = results["point_to_store_s"]
    lines += [
        "",
        f"A logged point reached another process's query after {p['median_s']:.2f} s median, "
        f"{p['p95_s']:.2f} s p95 (n={p['n']}, writer default max_seconds); the run page "
        "polls every 1 s, so on the page: +0.5 s median, +1 s at most.",
        "",
    ]
    (RESULTS_DIR / "shared_store.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
