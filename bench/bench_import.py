"""``suho data import`` speed: bars/s for a long 1-minute history of one symbol, against
a pandas script computing the same indicators, peak memory, and a one-day append.

Arms, each in a fresh process (so ``ru_maxrss`` is its own peak memory):

* ``import``: ``trainers.data.importer.import_ohlcv`` of a Parquet file into a fresh
  embedded store: read, checks (duplicates, order, NaN, prices, gaps), bar size, the
  110 features and 2 targets, and the partition-split write to ClickHouse.
* ``pandas``: what a user would script by hand: read the same Parquet file, compute the
  same 110 features and targets with pandas (the indicator code ``suho data synth``
  uses, on the whole frame at once), drop warm-up, write Parquet. No checks, no
  database.
* ``append``: into the store ``import`` filled, ``import_ohlcv`` of a file holding the
  last imported bar and one new day of 1-minute bars (1,441 bars), three days in a row.
  Each reads 2,000 stored bars back for the indicators' warm-up.

The machine is shared: wall time moves with other load, so the table also gives CPU
seconds of the process (chDB's threads included) and the load average.

    python bench/bench_import.py            # 2.5M bars (about 10 years of FX minutes)
    python bench/bench_import.py --bars 200000 --name import_quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

DAY = 1440


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_bars(path: Path, bars: int) -> None:
    from trainers.data.synth import simulate_ohlcv

    frame = simulate_ohlcv(("EURUSD",), periods=bars, freq="1min", seed=7,
                           start=datetime(2014, 1, 1, tzinfo=UTC))  # fmt: skip
    frame.to_parquet(path)


def arm_import(work: Path) -> dict[str, float]:
    from suho_models.db import Database, migrations
    from trainers.data.importer import import_ohlcv

    url = f"clickhouse+chdb:///{work}/store/bench"
    migrations.upgrade(url)
    db = Database(url)
    history = work / "bars.parquet"
    import pandas as pd

    full = pd.read_parquet(history)
    head = work / "head.parquet"
    full.iloc[: len(full) - 3 * DAY].to_parquet(head)  # the last 3 days are appended later
    del full
    cpu, wall = _cpu(), time.perf_counter()
    result = import_ohlcv(db, [head])
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    db.close()
    bars = float(len(pd.read_parquet(head, columns=["close"])))
    return {"bars": bars, "wall_s": wall, "cpu_s": cpu,
            "rows_written": float(result.rows_written), "peak_mb": _peak_mb()}  # fmt: skip


def arm_append(work: Path) -> dict[str, object]:
    import pandas as pd

    from suho_models.db import Database
    from trainers.data.importer import import_ohlcv

    db = Database(f"clickhouse+chdb:///{work}/store/bench")
    full = pd.read_parquet(work / "bars.parquet")
    walls, cpus, written = [], [], []
    for day in (3, 2, 1):
        end = len(full) - (day - 1) * DAY
        piece = work / f"day{day}.parquet"
        full.iloc[end - DAY - 1 : end].to_parquet(piece)  # the last stored bar + one day
        cpu, wall = _cpu(), time.perf_counter()
        result = import_ohlcv(db, [piece])
        walls.append(time.perf_counter() - wall)
        cpus.append(_cpu() - cpu)
        written.append(result.rows_written)
    db.close()
    return {"wall_s": max(walls), "wall_median_s": sorted(walls)[1], "cpu_s": max(cpus),
            "cpu_median_s": sorted(cpus)[1], "walls": walls, "cpus": cpus,
            "rows_written": float(min(written)), "peak_mb": _peak_mb()}  # fmt: skip


def arm_pandas(work: Path) -> dict[str, float]:
    import pandas as pd

    from trainers.data.indicators import WARMUP_PERIODS, compute_features, compute_targets

    cpu, wall = _cpu(), time.perf_counter()
    bars = pd.read_parquet(work / "bars.parquet")
    bars = bars.iloc[: len(bars) - 3 * DAY]
    frame = pd.concat([bars, compute_features(bars), compute_targets(bars)], axis=1)
    frame = frame.iloc[WARMUP_PERIODS:-1]
    frame.to_parquet(work / "pandas_out.parquet")
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    return {"bars": float(len(bars)), "wall_s": wall, "cpu_s": cpu,
            "rows_written": float(len(frame)), "peak_mb": _peak_mb()}  # fmt: skip


ARMS = {"import": arm_import, "append": arm_append, "pandas": arm_pandas}


def run_arm(name: str, work: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, __file__, "--arm", name, "--work", str(work)],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(args: argparse.Namespace, results: dict[str, dict[str, float]], took: float,
           load: tuple[tuple[float, ...], tuple[float, ...]]) -> str:  # fmt: skip
    imp, pds, app = results["import"], results["pandas"], results["append"]
    rate = lambda r, k: r["bars"] / r[k]  # noqa: E731
    lines = [
        "# `suho data import` against pandas by hand",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `python bench/bench_import.py "
        f"--bars {args.bars}`, {took:.0f} s. Load average "
        f"{', '.join(f'{x:.1f}' for x in load[0])} at the start, "
        f"{', '.join(f'{x:.1f}' for x in load[1])} at the end, on 2 shared CPUs "
        "(other sessions were running: compare within this run, as ratios).",
        "",
        f"{int(imp['bars']):,} bars of 1 minute, 1 symbol ({imp['bars'] / (1440 * 365.25):.1f} "
        "years at 24x7), from a Parquet file; 110 features and 2 targets.",
        "",
        "| arm | wall s | bars/s (wall) | CPU s | bars/s (CPU) | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
        f"| `import_ohlcv` (checks, features, ClickHouse write) | {imp['wall_s']:.1f} | "
        f"{rate(imp, 'wall_s'):,.0f} | {imp['cpu_s']:.1f} | {rate(imp, 'cpu_s'):,.0f} | "
        f"{imp['peak_mb']:,.0f} |",
        f"| pandas by hand (features, Parquet write) | {pds['wall_s']:.1f} | "
        f"{rate(pds, 'wall_s'):,.0f} | {pds['cpu_s']:.1f} | {rate(pds, 'cpu_s'):,.0f} | "
        f"{pds['peak_mb']:,.0f} |",
        "",
        f"Import / pandas: {imp['wall_s'] / pds['wall_s']:.2f}x the wall time, "
        f"{imp['cpu_s'] / pds['cpu_s']:.2f}x the CPU time, "
        f"{imp['peak_mb'] / pds['peak_mb']:.2f}x the peak memory.",
        "",
        f"Append of one day (1,440 new bars, {int(app['rows_written']):,} rows written each "
        f"time), three days in a row: wall {', '.join(f'{w:.2f}' for w in app['walls'])} s; "
        f"CPU {', '.join(f'{c:.2f}' for c in app['cpus'])} s (the first pays lazy imports). "
        "Each reads 2,000 stored bars back, computes 3,441 bars and writes 1,440 rows.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=2_500_000)
    parser.add_argument("--name", default="import")
    parser.add_argument("--arm", choices=sorted(ARMS))
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(ARMS[args.arm](args.work)))
        return
    start, load0 = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_import_") as tmp:
        work = Path(tmp)
        make_bars(work / "bars.parquet", args.bars)
        results = {name: run_arm(name, work) for name in ("pandas", "import", "append")}
    took, load1 = time.perf_counter() - start, os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(
        {"bars": args.bars, "results": results, "load": [load0, load1], "seconds": took},
        indent=2))  # fmt: skip
    text = report(args, results, took, (load0, load1))
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
