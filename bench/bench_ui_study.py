"""The study page of a 10,000-trial study: page, study API, importance (first and cached).

Data: one supervised run whose ``hyperparameters_log`` gets ``--trials`` trials in one
``INSERT ... SELECT ... FROM numbers()`` (four tuned parameters, one fixed, a few
pruned trials), on embedded chDB. Measured through the app (FastAPI's TestClient:
routing, the trial read, the study view, Jinja or JSON; no socket), ``--reps`` times
after a warm-up. Importance is Optuna's fANOVA on the rebuilt study: its first call
computes it, later calls for the same trial count are the cache's.

Target (issue 27): the study page within 200 ms at p95, importance included (cached).

Usage: ``python bench/bench_ui_study.py [--trials N] [--reps R] [--evaluator E]``;
results in ``bench/results/ui_study_<trials>_<evaluator>.json`` and ``.md`` (with the
load average: the machine is shared, so compare figures of one run only). fANOVA's
first call grows fast with the trial count (minutes at 10,000 trials on a loaded
machine): measure it at 1,000, and the 10,000-trial page with ``--evaluator ped-anova``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from repositories.kinds import RunKind  # noqa: E402
from repositories.tracking import RunTrackingService  # noqa: E402
from suho_models.db import Database, migrations  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def generate(db: Database, trials: int) -> str:
    tracking = RunTrackingService(db, RunKind.SUPERVISED)
    run = tracking.create({"run_name": "study", "model_type": "xgboost", "target_variable": "t"})
    params = (
        'concat(\'{"nthread": 1, "learning_rate": \','
        " toString(pow(10, -3 + 3 * rand(1) / 4294967295.)),"
        " ', \"max_depth\": ', toString(1 + number % 8),"
        " ', \"booster\": \"', arrayElement(['gbtree', 'dart', 'gblinear'], 1 + number % 3),"
        " '\", \"subsample\": ', toString(0.5 + (number % 97) / 194.), '}')"
    )
    db.execute(
        "INSERT INTO hyperparameters_log (trial_id, run_id, study_name, trial_number, "
        "hyperparameters, objective_value, scores, tuning_method, state, duration_seconds, "
        "recorded_at, worker_host, worker_pid) "
        f"SELECT generateUUIDv4(), toUUID('{run.run_id}'), 'bench', number, {params}, "
        "if(number % 50 = 7, NULL, 0.3 + rand(2) / 4294967295. / (1 + number / 1000)), [], "
        "'optuna', if(number % 50 = 7, 'pruned', 'complete'), 0.5, now64(3), '', 0 "
        f"FROM numbers({trials})"
    )
    return str(run.run_id)


def timed(call: Any, reps: int) -> list[float]:
    call()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        response = call()
        out.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200, response.text[:300]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--evaluator", default="fanova", help="importance evaluator")
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from suho.ui.app import create_app

    with tempfile.TemporaryDirectory() as folder:
        url = f"clickhouse+chdb:///{folder}/bench_study"
        migrations.upgrade(url)
        db = Database(url)
        run_id = generate(db, args.trials)
        client = TestClient(create_app(db))
        t = time.perf_counter()
        importance = f"/api/runs/{run_id}/study/importance?evaluator={args.evaluator}"
        first = client.get(importance)
        first_ms = (time.perf_counter() - t) * 1000
        assert first.status_code == 200, first.text[:300]
        cases = {
            "study page (HTML, every trial embedded)": f"/runs/{run_id}/study",
            "study API (JSON)": f"/api/runs/{run_id}/study",
            f"importance API ({args.evaluator}, cached)": importance,
            "run page (trial history)": f"/runs/{run_id}",
        }
        results: dict[str, Any] = {
            "trials": args.trials,
            "evaluator": args.evaluator,
            "reps": args.reps,
            "load_average": os.getloadavg(),
            "importance_first_ms": round(first_ms, 1),
            "importances": first.json()["importances"],
            "cases": {},
        }
        for name, path in cases.items():
            ms = sorted(timed(lambda path=path: client.get(path), args.reps))
            p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
            results["cases"][name] = {
                "median_ms": round(statistics.median(ms), 1),
                "p95_ms": round(p95, 1),
            }
        db.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"ui_study_{args.trials}_{args.evaluator}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"# Study page, {args.trials:,} trials (embedded chDB, TestClient)",
        "",
        f"Load average at the end: {', '.join(f'{x:.2f}' for x in results['load_average'])} "
        "(a shared machine: figures of one run only).",
        f"Importance ({args.evaluator}, seed 0) first call: "
        f"{results['importance_first_ms']:,.0f} ms; "
        "later calls hit the cache.",
        "",
        "| request | median ms | p95 ms |",
        "|---|---:|---:|",
    ]
    for name, r in results["cases"].items():
        lines.append(f"| {name} | {r['median_ms']} | {r['p95_ms']} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
