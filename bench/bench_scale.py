"""The runs pages and the seed's queries as the runs grow: 100k, 300k and 1M runs of
each kind (three status versions per run), in revision 0010's layout against the
layout before it, the same code and the same data, in one run.

* ``0010``: runs ordered by ``(created_at, run_id)``, 1,024-row granules (today);
* ``0009``: ``ORDER BY run_id``, the layout before (a store migrated to 0009 only;
  the revision check is bypassed so that the very same calls run on it).

Runs are written as real runs are (``bench_queries``' generator, ``chunked``: in
creation order, their versions together); ``--bulk`` adds the largest size written
the old way (each version of every run in one INSERT: three parts spanning all
runs), in both layouts. Every answer is checked to be the same in both layouts.

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

from repositories.queries import (  # noqa: E402
    SEED_QUERIES,  # noqa: E402
)
from repositories.runs import AgentRunRepository, TrainingRunRepository  # noqa: E402
from repositories.ui_queries import RunBrowser  # noqa: E402
from suho_models.db import Database, migrations  # noqa: E402

TARGET_MS = 100.0
BEFORE_REVISION = "0009_signing_epoch"


def generate(url: str, runs: int, write_order: str, revision: str, start: int) -> dict[str, Any]:
    """``start``: the first run's creation time, the same for every store, so that
    both layouts hold the very same rows."""
    migrations.upgrade(url, revision)
    db = Database(url)
    try:
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


def measure(url: str, reps: int) -> dict[str, Any]:
    """Each call ``reps`` times after a warm-up: its timings and its answer."""
    Database.verify_schema = lambda self: None  # type: ignore[method-assign]
    db = Database(url)
    out: dict[str, Any] = {}
    try:
        for name, call in cases(db).items():
            seconds, answer = timed(call, reps)
            out[name] = {**summary(seconds), "answer": repr(_norm(answer))}
            print(f"  {name}: {out[name]['median_ms']:.1f} ms", flush=True)
    finally:
        db.close()
    return out


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
    start = int(time.time()) - generator.SPAN_DAYS * 86_400
    try:
        arms = [(n, "chunked", layout) for n in sizes for layout in ("0010", "0009")]
        if args.bulk:
            arms += [(sizes[-1], "bulk", layout) for layout in ("0010", "0009")]
        for n, order, layout in arms:
            key = f"{n}/{order}/{layout}"
            path = work / key.replace("/", "_")
            url = f"clickhouse+chdb:///{path}/suho_analytics"
            print(f"{key}: generating", flush=True)
            revision = "head" if layout == "0010" else BEFORE_REVISION
            entry: dict[str, Any] = {"generated": generate(url, n, order, revision, start)}
            results["quiet"][key] = wait_for_quiet(args.max_others, args.quiet_wait)
            entry["cases"] = measure(url, args.reps)
            results["sizes"][key] = entry
            shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results.write(markdown)
    return 0


def markdown(r: Results) -> list[str]:
    sizes = r["sizes"]
    lines = r.header("Runs pages and seed queries at 100k, 300k and 1M runs")
    for key, entry in sizes.items():
        g = entry["generated"]
        lines.append(
            f"- `{key}`: generated in {g['generate_s']:.0f} s, settled in "
            f"{g['settle_s']:.0f} s; active parts {g['parts']}; stored row versions {g['rows']}."
        )
    lines.append("")
    for order in ("chunked", "bulk"):
        keys = [k for k in sizes if f"/{order}/" in k]
        if not keys:
            continue
        ns = sorted({int(k.split("/")[0]) for k in keys})
        names = list(sizes[keys[0]]["cases"])
        lines += [f"## Median / p95 ms, runs written {order}: 0010 layout, 0009 layout", ""]
        rows = []
        for name in names:
            row = [name]
            for n in ns:
                new, old = (sizes[f"{n}/{order}/{lay}"]["cases"][name] for lay in ("0010", "0009"))
                same = "" if new["answer"] == old["answer"] else " (answers differ!)"
                row.append(f"{num(new['median_ms'])} / {num(new['p95_ms'])}{same}")
                row.append(f"{num(old['median_ms'])} / {num(old['p95_ms'])}")
            rows.append(row)
        header = ["call"]
        for n in ns:
            header += [f"{n:,} (0010)", f"{n:,} (0009)"]
        lines += table(header, rows)
        lines.append("")
        if len(ns) > 1:
            lines += [f"Growth of the median from {ns[0]:,} to {ns[-1]:,} runs:", ""]
            growth = []
            for name in names:
                g = [name]
                for lay in ("0010", "0009"):
                    a_, b_ = (sizes[f"{n}/{order}/{lay}"]["cases"][name] for n in (ns[0], ns[-1]))
                    g.append(f"{b_['median_ms'] / a_['median_ms']:.2f}x")
                growth.append(g)
            lines += table(["call", "0010", "0009"], growth)
            lines.append("")
    lines.append(f"Target: {TARGET_MS:.0f} ms median on a quiet machine.")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
