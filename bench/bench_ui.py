"""The web UI's API at scale: the runs listing over 100k runs and a 100k-point curve.

Data: bench_queries' generator (``INSERT ... SELECT ... FROM numbers()``, reused, not
copied): ``--runs`` supervised and as many RL runs, three status versions each (so
FINAL merges), ``--iterations`` metric rows for every run but the last, and
``--long-points`` rows for the last run (the 100k-point curve MLflow's PR #20928
measured). Each backend (embedded chDB, the local server over TCP) gets its own
freshly generated database.

Measured through the app (FastAPI's TestClient: routing, the repository call, JSON
encoding; no socket) and, next to it, the repository call alone:

* the runs API's first page (50 rows) in the seed's default view (completed runs by
  ``final_test_accuracy``) and sorted by another metric over every status, a deep
  page, a name filter, the agents' default view, and the server-rendered runs page;
* the curve API of the long run: what the run page's loss chart asks for (train and
  validation loss, each LTTB-downsampled to 1,500 points), one series, all six series
  at once (no page asks for that), and a zoomed range (10,000 iterations in, 1,500
  out per series).

MLflow's UI for comparison (its own issues): listing 500 runs took about a minute
(mlflow#1517); a 100k-point metric history 2.5 s, 220 ms after an index
(mlflow#20928). Target: both under 100 ms here.

Usage: ``python bench/bench_ui.py [--runs N] [--long-points P] [--reps R] [--quick]``;
results in ``bench/results/ui.json`` and ``ui.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
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

from repositories.ui_queries import CurveReader, RunBrowser  # noqa: E402
from suho_models.db import Database, migrations  # noqa: E402
from suho_models.db.server import LocalServer  # noqa: E402

TARGET_MS = 100.0
MLFLOW = {
    "runs": ("listing 500 runs, mlflow#1517", 60_000.0),
    "curve": ("100k-point metric history, mlflow#20928 (after its index: 220 ms)", 2_500.0),
}


def generate(db: Database, runs: int, iterations: int, long_points: int) -> dict[str, Any]:
    """bench_queries' tables; the last supervised run carries the long curve."""
    start = int(time.time()) - generator.SPAN_DAYS * 86_400
    out: dict[str, Any] = {}
    t = time.perf_counter()
    generator._generate_training_runs(db, runs, iterations, start)
    generator._generate_agent_runs(db, runs, start)
    out["runs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    if iterations:
        generator._generate_metrics(
            db, "training_metrics", runs - 1, iterations, start, resumed=False
        )
    long_run = runs - 1
    source = f"(SELECT toUInt64({long_run}) AS r, number AS it, number FROM numbers({long_points}))"
    db.execute(
        f"INSERT INTO training_metrics ({generator.METRIC_COLUMNS}) "
        + generator._metrics_select(
            runs, source, start, 2 << 40, -(long_points + 3600), generator.SPAN_DAYS
        )
    )
    out["metrics_s"] = time.perf_counter() - t
    out["settle_s"] = generator.wait_for_merges(db, 60)
    out["long_run_id"] = str(
        db.scalar(f"SELECT reinterpretAsUUID(sipHash128('train', toUInt64({long_run})))")
    )
    out["metric_rows"] = int(db.scalar("SELECT count() FROM training_metrics"))
    return out


def cases(long_run: str, runs: int, long_points: int) -> dict[str, tuple[str, str]]:
    mid = long_points // 2
    middle = int(runs * 0.85) // 2 // 50 * 50  # a page in the middle of the completed runs
    return {
        "runs_default_view": ("runs", "/api/runs"),
        "runs_sorted_f1_any_status": ("runs", "/api/runs?status=&sort=final_f1_score&order=asc"),
        "runs_middle_page": ("runs", f"/api/runs?offset={middle}"),
        "runs_name_filter": ("runs", "/api/runs?status=&name=xgb-4240"),
        "agents_default_view": ("runs", "/api/agents"),
        "runs_page_html": ("runs", "/runs"),
        "curve_all_series": ("curve", f"/api/runs/{long_run}/curve"),
        # What the run page's loss chart asks for (each chart fetches its own series).
        "curve_loss_chart": ("curve", f"/api/runs/{long_run}/curve?series=train_loss,val_loss"),
        "curve_val_loss": ("curve", f"/api/runs/{long_run}/curve?series=val_loss"),
        "curve_zoom_10k": (
            "curve",
            f"/api/runs/{long_run}/curve?series=train_loss,val_loss"
            f"&x_from={mid}&x_to={mid + 9_999}",
        ),
    }


def timed(call: Any, reps: int, warmup: int) -> tuple[list[float], Any]:
    result = None
    for _ in range(warmup):
        result = call()
    seconds = []
    for _ in range(reps):
        t = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - t)
    return seconds, result


def measure(db: Database, generated: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from suho.ui.app import create_app

    client = TestClient(create_app(db))
    out: dict[str, Any] = {"api": {}, "repository": {}}
    for name, (group, url) in cases(generated["long_run_id"], args.runs, args.long_points).items():

        def call(url: str = url) -> Any:
            response = client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")
            return response

        seconds, response = timed(call, args.reps, args.warmup)
        detail: dict[str, Any] = {"group": group, "url": url, "bytes": len(response.content)}
        if url.startswith("/api/runs?") or url in ("/api/runs", "/api/agents"):
            body = response.json()
            detail.update(total=body["total"], rows=len(body["rows"]))
        elif group == "curve":
            body = response.json()
            detail.update(
                points_in_range=body["points_in_range"], points_returned=body["points_returned"]
            )
        out["api"][name] = {**summary(seconds), **detail}
        print(f"  {name}: {out['api'][name]['median_ms']:.1f} ms", flush=True)

    browser = RunBrowser(db, "supervised")
    curves = CurveReader(db)
    long_run = generated["long_run_id"]
    direct = {
        # The seed's query as bench_queries measures it: the same FINAL merge and top-N
        # sort, so the ratio to it shows what the listing adds on a loaded machine.
        "compare_model_performance() (seed, 10 rows)": browser.runs.compare_model_performance,
        "RunBrowser.page (default view)": lambda: browser.page(
            status="completed", sort="final_test_accuracy"
        ),
        "CurveReader.curve (all series)": lambda: curves.curve(long_run),
    }
    direct.update(listing_variants(browser))
    for name, call in direct.items():
        seconds, _ = timed(call, args.reps, args.warmup)
        out["repository"][name] = summary(seconds)
    return out


DATABASE = "suho_ui_bench"


def listing_variants(browser: RunBrowser) -> dict[str, Any]:
    """The alternatives RunBrowser.page was measured against (same rows, same total)."""
    import sqlalchemy as sa

    repo = browser.runs
    c = repo.table.c
    where = [c.status == "completed"]
    order = [c.final_test_accuracy.desc(), c.run_id]
    listed = [c[n] for n in browser.list_columns]

    def window() -> Any:
        return repo.read(*where, columns=[*listed, sa.func.count().over()]).order_by(*order)

    def narrow_then_by_key() -> Any:
        ranked = repo.read(*where, columns=[c.run_id, sa.func.count().over()])
        ids = [r["run_id"] for r in ranked.order_by(*order).limit(50).rows()]
        return repo.read(c.run_id.in_(ids), columns=listed).rows()

    def page_then_count() -> Any:
        query = repo.read(*where, columns=listed)
        return query.order_by(*order).limit(50).rows(), query.count()

    return {
        "variant: the page, then its count() (one connection)": page_then_count,
        "variant: count() OVER () in the page's read": lambda: window().limit(50).rows(),
        "variant: rank narrow rows, then read the page by key": narrow_then_by_key,
    }


def phase_generate(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """In its own process: the embedded engine locks the directory to this process,
    and the server later serves the very same directory."""
    url = f"clickhouse+chdb:///{work}/data/{DATABASE}"
    migrations.upgrade(url)
    db = Database(url)
    try:
        return generate(db, args.runs, args.iterations, args.long_points)
    finally:
        db.close()


def phase_measure(work: Path, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    generated = json.loads((work / "generate.json").read_text())
    server = None
    if backend == "embedded":
        url = f"clickhouse+chdb:///{work}/data/{DATABASE}"
    else:
        server = LocalServer(work / "data", start_timeout=120).start()
        url = server.native_url(DATABASE)
    try:
        db = Database(url)
        try:
            quiet = wait_for_quiet(args.max_others, args.quiet_wait)
            print(f"{backend}: measuring (others used {quiet['others_share']:.0%})", flush=True)
            return {"quiet": quiet, **measure(db, generated, args)}
        finally:
            db.close()
    finally:
        if server is not None:
            server.stop()


def _phase(work: Path, name: str, argv: list[str]) -> dict[str, Any]:
    """Run one phase in a fresh process; its result comes back as JSON."""
    subprocess.run(
        [sys.executable, __file__, "--phase", name, "--work", str(work), *argv], check=True
    )
    return json.loads((work / f"{name}.json").read_text())


def markdown(r: Results) -> list[str]:
    lines = r.header("UI API latency: runs listing over 100k runs, 100k-point curve")
    backends = r["backends"]
    names = list(next(iter(backends.values()))["api"])
    rows = []
    for name in names:
        first = next(iter(backends.values()))["api"][name]
        cells = [name, f"`{first['url']}`"]
        for b in backends.values():
            case = b["api"][name]
            cells.append(f"{num(case['median_ms'])} / {num(case['p95_ms'])}")
        if first["group"] == "curve":
            out = ", ".join(f"{k} {v}" for k, v in first["points_returned"].items() if v)
            cells.append(f"{first['points_in_range']:,} -> {out}")
        else:
            cells.append(
                f"{first.get('rows', '')} of {first.get('total', ''):,}"
                if "total" in first
                else "HTML"
            )
        rows.append(cells)
    lines += table(
        ["case", "request", *(f"{b} median / p95 ms" for b in backends), "rows / points"],
        rows,
        numeric_from=2,
    )
    lines += ["", "The repository call alone (no HTTP, no JSON):", ""]
    rep_names = list(next(iter(backends.values()))["repository"])
    lines += table(
        ["call", *(f"{b} median / p95 ms" for b in backends)],
        [
            [n]
            + [
                f"{num(b['repository'][n]['median_ms'])} / {num(b['repository'][n]['p95_ms'])}"
                for b in backends.values()
            ]
            for n in rep_names
        ],
    )
    lines += ["", f"Against MLflow's UI figures and the {TARGET_MS:.0f} ms target:", ""]
    target_rows = []
    for group, case in (
        ("runs", "runs_default_view"),
        ("curve", "curve_loss_chart"),
        ("curve", "curve_zoom_10k"),
    ):
        what, mlflow_ms = MLFLOW[group]
        for backend, b in backends.items():
            ms = b["api"][case]["median_ms"]
            target_rows.append(
                [
                    f"{case} ({backend})",
                    what,
                    num(mlflow_ms, ",.0f"),
                    num(ms),
                    "met" if b["api"][case]["p95_ms"] < TARGET_MS else "not met (p95)",
                ]
            )
    lines += table(
        ["ours", "MLflow", "MLflow ms", "ours median ms", "target (p95)"],
        target_rows,
        numeric_from=2,
    )
    g = r["generated"]
    lines += [
        "",
        f"Generation (embedded, then served as it is): runs {g['runs_s']:.1f} s, "
        f"{g['metric_rows']:,} metric rows {g['metrics_s']:.1f} s, merges settled "
        f"{g['settle_s']:.1f} s.",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--iterations", type=int, default=100, help="metric rows of each run")
    parser.add_argument("--long-points", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--backends", default="embedded,server")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    add_quiet_arguments(parser, patience_s=20.0)
    add_results_arguments(parser, "ui", "10k runs, 20k points, 5 repetitions")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.long_points, args.reps, args.iterations = 10_000, 20_000, 5, 20
    if args.phase:
        work = Path(args.work)
        if args.phase == "generate":
            data = phase_generate(work, args)
        else:
            data = phase_measure(work, args.phase.removeprefix("measure-"), args)
        (work / f"{args.phase}.json").write_text(json.dumps(data, default=str))
        return 0
    results = Results(args)
    work = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    passed = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--quick"]
    passed += [
        f"--runs={args.runs}",
        f"--iterations={args.iterations}",
        f"--long-points={args.long_points}",
        f"--reps={args.reps}",
    ]
    try:
        print("generating", flush=True)
        generated = _phase(work, "generate", passed)
        results["generated"] = generated
        results["backends"] = {
            b: _phase(work, f"measure-{b}", passed) for b in args.backends.split(",") if b
        }
    finally:  # the store is 85-486 MB a run: never left behind, even when a phase fails
        shutil.rmtree(work, ignore_errors=True)
    results.write(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
