"""The runs pages and the seed's queries as the runs grow: 100k, 300k and 1M runs of
each kind (three status versions per run), fast path against the FINAL read it
replaces, on the same data, in one run.

Arms, each on its own freshly generated embedded store:

* ``fast``: today's code: revision 0010's layout (runs ordered by creation) and the
  fast path of ``repositories.current_rows``;
* ``final``: the same store and calls with the fast path swapped for the plain FINAL
  read (what the calls sent before), so the two differ in the read only;
* ``before``: the layout before 0010 (``ORDER BY run_id``, migrated to 0009 only) with
  the plain FINAL read: what a user had (the page and its count are the statements
  ``RunBrowser.page`` sent, run side by side on two connections as it did).

Runs are written as real runs are (``bench_queries``' generator, ``chunked``: in
creation order, their versions together); ``--bulk`` adds the 1M-run store written
the old way (each version of every run in one INSERT: three parts that span all runs,
FINAL's worst case). Every fast answer is checked against the FINAL one.

Usage: ``python bench/bench_scale.py [--sizes 100000,300000,1000000] [--reps R]
[--bulk] [--quick]``; results in ``bench/results/scale.json`` and ``scale.md``.
The temporary stores are removed at the end, also when a phase fails.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_queries as generator  # noqa: E402
from harness import (  # noqa: E402
    Results,
    add_quiet_arguments,
    add_results_arguments,
    num,
    summary,
    table,
    wait_for_quiet,
)

import repositories.ui_queries as ui_queries  # noqa: E402
from repositories.queries import (  # noqa: E402
    BEST_RL_AGENTS_FINAL,
    COMPARE_MODEL_PERFORMANCE_FINAL,
    SEED_QUERIES,  # noqa: E402
)
from repositories.runs import AgentRunRepository, TrainingRunRepository  # noqa: E402
from repositories.ui_queries import RunBrowser  # noqa: E402
from suho_models.db import Database, migrations  # noqa: E402

TARGET_MS = 100.0
BEFORE_REVISION = "0009_signing_epoch"


def generate(url: str, runs: int, write_order: str, revision: str = "head") -> dict[str, Any]:
    migrations.upgrade(url, revision)
    db = Database(url)
    try:
        start = int(time.time()) - generator.SPAN_DAYS * 86_400
        t = time.perf_counter()
        generator._generate_training_runs(db, runs, 100, start, write_order)
        generator._generate_agent_runs(db, runs, start, write_order)
        out: dict[str, Any] = {"generate_s": time.perf_counter() - t}
        out["settle_s"] = generator.wait_for_merges(db, 120)
        out["parts"] = {
            t: int(
                db.scalar(
                    "SELECT count() FROM system.parts WHERE active AND "
                    f"database = currentDatabase() AND table = '{t}'"
                )
            )
            for t in ("training_runs", "agent_training_runs")
        }
        out["rows"] = {
            t: int(db.scalar(f"SELECT count() FROM {t}"))
            for t in ("training_runs", "agent_training_runs")
        }
        return out
    finally:
        db.close()


def timed(call: Callable[[], Any], reps: int) -> tuple[list[float], Any]:
    result = call()  # warm-up
    seconds = []
    for _ in range(reps):
        t = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - t)
    return seconds, result


def _plain_page(query: Any, *, key: str, limit: int, offset: int = 0) -> list[Any]:
    return list(query.limit(limit).offset(offset).rows())


def cases(db: Database) -> dict[str, Callable[[], Any]]:
    """The calls of the issue, through the code the UI and the CLI run."""
    from fastapi.testclient import TestClient

    from suho.ui.app import create_app

    client = TestClient(create_app(db))
    runs, agents = RunBrowser(db, "supervised"), RunBrowser(db, "rl")

    def api(url: str) -> Callable[[], Any]:
        def call() -> Any:
            response = client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")
            body = response.json()
            return body["total"], body["rows"]

        return call

    def page(browser: RunBrowser, **view: Any) -> Callable[[], Any]:
        def call() -> Any:
            p = browser.page(**view)
            return p.total, p.rows

        return call

    return {
        "GET /api/runs (default view)": api("/api/runs"),
        "GET /api/agents (default view)": api("/api/agents"),
        "RunBrowser.page runs, default view": page(
            runs, status="completed", sort="final_test_accuracy"
        ),
        "RunBrowser.page runs, by f1, every status": page(runs, sort="final_f1_score"),
        "RunBrowser.page runs, newest first": page(runs, sort="created_at"),
        "RunBrowser.page runs, failed only": page(runs, status="failed", sort="created_at"),
        "RunBrowser.page agents, default view": page(
            agents, status="completed", sort="final_sharpe_ratio"
        ),
        "compare_model_performance() (seed, via repository)": lambda: TrainingRunRepository(
            db
        ).compare_model_performance(),
        "best_agents() (seed, via repository)": lambda: AgentRunRepository(db).best_agents(),
        "runs list (20 newest, suho runs list)": lambda: [
            r.model_dump() for r in TrainingRunRepository(db).list(limit=20)
        ],
        "agents best (suho agents best)": lambda: (
            AgentRunRepository(db).best_completed("final_sharpe_ratio").model_dump()
        ),  # type: ignore[union-attr]
        "seed SQL verbatim, Compare Model Performance": lambda: db.execute(
            SEED_QUERIES["compare_model_performance"]
        ),
    }


def measure_head(url: str, reps: int) -> dict[str, Any]:
    """The fast path and the plain FINAL read on the same store, case by case, the two
    alternating per case; every answer compared."""
    db = Database(url)
    out: dict[str, Any] = {}
    try:
        for name, call in cases(db).items():
            fast_s, fast = timed(call, reps)
            real = ui_queries.first_current_rows
            import repositories.current_rows as current_rows
            import repositories.runs as runs_module

            ui_queries.first_current_rows = _plain_page  # type: ignore[assignment]
            runs_module.first_current_rows = _plain_page  # type: ignore[assignment]
            try:
                final_s, final = timed(call, reps)
            finally:
                ui_queries.first_current_rows = real
                runs_module.first_current_rows = current_rows.first_current_rows
            out[name] = {
                "fast": summary(fast_s),
                "final": summary(final_s),
                "identical": _norm(fast) == _norm(final),
            }
            print(
                f"  {name}: fast {out[name]['fast']['median_ms']:.1f} ms, "
                f"FINAL {out[name]['final']['median_ms']:.1f} ms, "
                f"identical {out[name]['identical']}",
                flush=True,
            )
    finally:
        db.close()
    return out


def measure_before(url: str, reps: int) -> dict[str, Any]:
    """The old layout with the statements the old code sent (FINAL; a page and its
    count side by side on two connections)."""
    db = Database(url)
    pool = ThreadPoolExecutor(max_workers=1)
    page_sql = (
        "SELECT run_id, run_name, model_type, status, created_at, started_at, completed_at, "
        "duration_seconds, heartbeat_at, git_commit_hash, error_message, "
        + ", ".join(f"final_{m}" for m in _SUPERVISED_METRICS)
        + " FROM training_runs FINAL WHERE status = 'completed' "
        "ORDER BY final_test_accuracy DESC, run_id LIMIT 50"
    )
    count_sql = "SELECT count() FROM training_runs FINAL WHERE status = 'completed'"

    def page() -> Any:
        total = pool.submit(db.scalar, count_sql)
        rows = db.execute(page_sql)
        return total.result(), rows

    calls = {
        "RunBrowser.page runs, default view": page,
        "compare_model_performance() (seed, via repository)": lambda: db.execute(
            COMPARE_MODEL_PERFORMANCE_FINAL.replace("%(limit)s", "10")
        ),
        "best_agents() (seed, via repository)": lambda: db.execute(
            BEST_RL_AGENTS_FINAL.replace("%(limit)s", "10")
        ),
    }
    out: dict[str, Any] = {}
    try:
        for name, call in calls.items():
            seconds, _ = timed(call, reps)
            out[name] = {"final": summary(seconds)}
            print(f"  before, {name}: {out[name]['final']['median_ms']:.1f} ms", flush=True)
    finally:
        pool.shutdown()
        db.close()
    return out


_SUPERVISED_METRICS = [
    "train_loss",
    "val_loss",
    "test_loss",
    "train_accuracy",
    "val_accuracy",
    "test_accuracy",
    "f1_score",
    "auc_score",
    "precision",
    "recall",
    "rmse",
    "mae",
    "r2",
    "direction_accuracy",
]


def _norm(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    if hasattr(value, "items"):
        return {k: _norm(v) for k, v in dict(value).items()}
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--bulk", action="store_true", help="also the 1M bulk-written store")
    add_quiet_arguments(parser)
    add_results_arguments(parser, "scale", "10k and 30k runs, 5 reps")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        sizes, args.reps = [10_000, 30_000], 5
    results = Results(args)
    results["quiet"] = {}
    results["sizes"] = {}
    work = Path(tempfile.mkdtemp(prefix="suho-bench-scale-"))
    try:
        arms = [(n, "chunked", "head") for n in sizes] + [(sizes[-1], "chunked", "before")]
        if args.bulk:
            arms.append((sizes[-1], "bulk", "head"))
        for n, order, layout in arms:
            key = f"{n}/{order}/{layout}"
            url = f"clickhouse+chdb:///{work / key.replace('/', '_')}/suho_analytics"
            print(f"{key}: generating", flush=True)
            revision = "head" if layout == "head" else BEFORE_REVISION
            entry: dict[str, Any] = {"generated": generate(url, n, order, revision)}
            results["quiet"][key] = wait_for_quiet(args.max_others, args.quiet_wait)
            measure = measure_head if layout == "head" else measure_before
            entry["cases"] = measure(url, args.reps)
            results["sizes"][key] = entry
            shutil.rmtree(work / key.replace("/", "_"), ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results.write(markdown)
    return 0


def markdown(r: Results) -> list[str]:
    sizes = r["sizes"]
    lines = r.header("Runs pages and seed queries at 100k, 300k and 1M runs")
    head = {k: v for k, v in sizes.items() if k.endswith("/chunked/head")}
    names = list(next(iter(head.values()))["cases"]) if head else []
    for key, entry in sizes.items():
        g = entry["generated"]
        lines.append(
            f"- `{key}`: generated in {g['generate_s']:.0f} s, parts {g['parts']}, "
            f"stored rows (versions) {g['rows']}."
        )
    lines.append("")
    lines.append("## Median / p95 ms, fast path and the FINAL read, same store")
    lines.append("")
    rows = []
    for name in names:
        row = [name]
        for key in head:
            c = head[key]["cases"][name]
            row.append(
                f"{num(c['fast']['median_ms'])} / {num(c['fast']['p95_ms'])}"
                + ("" if c["identical"] else " (differs!)")
            )
            row.append(f"{num(c['final']['median_ms'])} / {num(c['final']['p95_ms'])}")
        rows.append(row)
    header = ["call"]
    for key in head:
        n = key.split("/")[0]
        header += [f"{int(n):,} fast", f"{int(n):,} FINAL"]
    lines += table(header, rows)
    lines.append("")
    if len(head) > 1:
        first, last = list(head)[0], list(head)[-1]
        lines.append(f"## Growth from {first.split('/')[0]} to {last.split('/')[0]} runs")
        lines.append("")
        growth = []
        for name in names:
            a, b = head[first]["cases"][name], head[last]["cases"][name]
            growth.append(
                [
                    name,
                    f"{b['fast']['median_ms'] / a['fast']['median_ms']:.2f}x",
                    f"{b['final']['median_ms'] / a['final']['median_ms']:.2f}x",
                ]
            )
        lines += table(["call", "fast", "FINAL"], growth)
        lines.append("")
    for key, entry in sizes.items():
        if key in head:
            continue
        lines.append(f"## `{key}`")
        lines.append("")
        rows = []
        for name, c in entry["cases"].items():
            arms = [a for a in ("fast", "final") if a in c]
            rows.append(
                [name]
                + [f"{a}: {num(c[a]['median_ms'])} / {num(c[a]['p95_ms'])}" for a in arms]
                + ([] if "identical" not in c else [str(c["identical"])])
            )
        lines += table(["call", "median / p95 ms", "", ""], [r + [""] * (4 - len(r)) for r in rows])
        lines.append("")
    lines.append(f"Target: {TARGET_MS:.0f} ms median on a quiet machine.")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
