"""The compare page in a real browser: 10 overlaid 100k-point curves against 2.

Issue 15 asks that charts stay responsive with 10 overlaid curves. Measured in
Debian's chromium, headless, through Playwright, on the app served by uvicorn over
an embedded store:

* **open**: from navigation to every chart drawn (the compare page gets each run's
  curve downsampled to 1,500 points per series, as the API serves it);
* **zoom**: one redraw of the validation-loss chart after ``setScale`` on x, over
  ``--zooms`` ranges (in the page: ``performance.now()`` around the redraw);
* **hover**: one cursor move (``setCursor``: crosshair, legend values), over
  ``--hovers`` positions.

Each arm runs in one page, timed inside it; 10 runs and 2 (compare's fewest)
alternate per repeat, so the ratio compares like with like. 60 frames per second
leave 16.7 ms a frame.

Usage: ``python bench/bench_ui_browser.py [--runs 10] [--points 100000]``; results in
``bench/results/ui_browser.json`` and ``ui_browser.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import Results, add_results_arguments, num, summary, table  # noqa: E402

from repositories.runs import TrainingRunRepository  # noqa: E402
from suho.ui.app import create_app  # noqa: E402
from suho_models.db import Database, migrations  # noqa: E402
from tests.test_ui_browser import CHROMIUM, Served  # noqa: E402

FRAME_MS = 1000 / 60

# Runs in the page: the chart's uPlot instance is on its element (app.js, record()).
MEASURE_JS = """async ([zooms, hovers]) => {
  const u = document.querySelector('#compare-val_loss').suhoChart;
  const xs = u.data[0], lo = xs[0], hi = xs[xs.length - 1];
  const zoom = [], hover = [];
  for (let k = 0; k < zooms; k++) {
    const a = lo + (hi - lo) * (k % 10) / 20, b = a + (hi - lo) / (2 + k % 5);
    const t = performance.now();
    u.setScale('x', {min: a, max: b});
    await Promise.resolve();  // uPlot commits the redraw in a microtask queued first
    zoom.push(performance.now() - t);
  }
  u.setScale('x', {min: lo, max: hi});
  await Promise.resolve();
  for (let k = 0; k < hovers; k++) {
    const t = performance.now();
    u.setCursor({left: (k * 37) % u.over.clientWidth, top: 40});
    hover.push(performance.now() - t);
  }
  return {zoom, hover, series: u.series.length - 1, points: u.data[0].length};
}"""


def generate(db: Database, runs: int, points: int) -> list[str]:
    """``runs`` completed runs with ``points`` metric rows each, written by ClickHouse."""
    repo = TrainingRunRepository(db)
    ids = []
    for i in range(runs):
        run = repo.create(
            {"run_name": f"bench-{i}", "model_type": "xgboost", "target_variable": "t"}
        )
        repo.start(run.run_id)
        db.execute(
            "INSERT INTO training_metrics (run_id, iteration_number, train_loss, val_loss, "
            "learning_rate, iteration_duration_ms, recorded_at) "
            f"SELECT toUUID('{run.run_id}'), number + 1, "
            f"exp(-number / {points / 4}) + 0.02 * sin(number / 7 + {i}), "
            f"exp(-number / {points / 3.5}) + 0.1 + 0.03 * sin(number / 11 + {i}) "
            f"+ 0.01 * {i}, 0.1 * pow(0.9999, number), 1.0, now64(3) "
            f"FROM numbers({points})"
        )
        repo.complete(run.run_id, {"final_test_accuracy": 0.5 + i / 100})
        ids.append(str(run.run_id))
    return ids


def measure(base: str, ids: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    arms = {f"{len(ids)} runs": ids, "2 runs": ids[:2]}
    out: dict[str, dict[str, list[float]]] = {
        arm: {"open": [], "zoom": [], "hover": []} for arm in arms
    }
    shape: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for k in range(args.repeat):
                order = list(arms) if k % 2 == 0 else list(reversed(arms))
                for arm in order:
                    query = ",".join(arms[arm])
                    context = browser.new_context(viewport={"width": 1280, "height": 860})
                    page = context.new_page()
                    t = time.perf_counter()
                    page.goto(f"{base}/compare?ids={query}")
                    page.wait_for_function(
                        "() => document.querySelector('#compare-val_loss')?.suhoChart"
                    )
                    out[arm]["open"].append(time.perf_counter() - t)
                    got = page.evaluate(MEASURE_JS, [args.zooms, args.hovers])
                    out[arm]["zoom"] += [ms / 1000 for ms in got["zoom"]]
                    out[arm]["hover"] += [ms / 1000 for ms in got["hover"]]
                    shape[arm] = {"series": got["series"], "points": got["points"]}
                    context.close()
        finally:
            browser.close()
    return {
        arm: {**{op: summary(s) for op, s in ops.items()}, **shape[arm]} for arm, ops in out.items()
    }


def markdown(r: Results) -> list[str]:
    lines = r.header("Compare page in chromium: 10 overlaid curves against 2")
    m = r["measured"]
    many, one = list(m)
    rows = []
    for op, what in (
        ("open", "open the page until every chart is drawn"),
        ("zoom", "redraw after a zoom (setScale)"),
        ("hover", "cursor move (setCursor)"),
    ):
        rows.append(
            [
                what,
                f"{num(m[many][op]['median_ms'])} / {num(m[many][op]['p95_ms'])}",
                f"{num(m[one][op]['median_ms'])} / {num(m[one][op]['p95_ms'])}",
                num(m[many][op]["median_ms"] / m[one][op]["median_ms"], ".2f"),
            ]
        )
    lines += table(
        ["operation", f"{many} median / p95 ms", f"{one} median / p95 ms", "ratio"], rows
    )
    lines += [
        "",
        f"Validation-loss chart: {m[many]['series']} series over {m[many]['points']:,} "
        f"x values ({many}); {m[one]['series']} series over {m[one]['points']:,} ({one}). "
        f"One frame at 60 fps is {FRAME_MS:.1f} ms: a zoom redraw of {many} "
        + (
            "fits in one frame at p95."
            if m[many]["zoom"]["p95_ms"] < FRAME_MS
            else "takes more than one frame at p95."
        ),
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--zooms", type=int, default=30)
    parser.add_argument("--hovers", type=int, default=100)
    add_results_arguments(parser, "ui_browser", "2 repeats of 10 zooms and 30 hovers")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.zooms, args.hovers = 2, 10, 30
    results = Results(args)
    with tempfile.TemporaryDirectory(prefix="bench-ui-browser-") as work:
        url = f"clickhouse+chdb:///{work}/bench"
        migrations.upgrade(url)
        with Database(url) as db:
            t = time.perf_counter()
            ids = generate(db, args.runs, args.points)
            results["generate_s"] = time.perf_counter() - t
            with Served(create_app(db)) as base:
                results["measured"] = measure(base, ids, args)
    results.write(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
