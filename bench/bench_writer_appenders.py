"""BatchWriter.log(): the per-schema compiled appender against a plain loop over the
columns, both with the same checks (repositories.arrow_schema.ColumnRule), in one run.

Decides whether the ``exec``-compiled appenders earn their keep (issue 11). Each
variant is measured interleaved with the others: the Python cost of one call while
only buffering (``--call-repeat`` runs of ``--call-rows`` calls; on a busy machine
the minimum is the figure to read), and end to end (``--repeat`` runs of ``--rows``
rows logged into the embedded engine until ``close()``, count checked with FINAL).

Usage: ``python bench/bench_writer_appenders.py [--rows N] [--repeat R]``; results
go to ``bench/results/writer_appenders.{json,md}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_writer import _count, _values  # noqa: E402

from repositories.batch_writer import BatchWriter, training_metrics_writer  # noqa: E402
from suho_models.db import Database, migrations  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def plain_log(w: BatchWriter) -> Callable[..., None]:
    """log() as a plain loop over the column rules: same checks, same buffers."""
    plan = [
        (name, r.fast, r.low, r.high, r.may_be_none, r.check)
        for name, r in zip(w._names, w._rules, strict=True)
    ]
    appends = [c.append for c in w._columns]
    first, lock, names_ge = w._columns[0], w._lock, w._name_set.issuperset

    def log(**row: Any) -> None:
        if not names_ge(row):
            w._unknown_columns(row)
        values = []
        for name, fast, low, high, none_ok, check in plan:
            v = row.get(name)
            if v is None:
                if not none_ok:
                    v = check(v)
            elif v.__class__ is not fast or (low is not None and not low <= v <= high):
                v = check(v)
            values.append(v)
        with lock:
            if w._closed:
                w._raise_closed()
            for append, v in zip(appends, values, strict=True):
                append(v)
            n = len(first)
            if n == 1:
                w._rows_first_at = time.monotonic()
        if n == 1:
            w._wake.set()
        if n >= w.max_rows:
            w._on_full()

    return log


def unchecked_log(w: BatchWriter) -> Callable[..., None]:
    """The compiled log() as it was before the checks (the baseline of their cost)."""
    namespace: dict[str, Any] = {f"a{i}": c.append for i, c in enumerate(w._columns)}
    namespace.update(w=w, lock=w._lock, first=w._columns[0], names_ge=w._name_set.issuperset)
    namespace.update(monotonic=time.monotonic, wake=w._wake.set, max_rows=w.max_rows)
    appends = "".join(f"        a{i}(get({n!r}))\n" for i, n in enumerate(w._names))
    source = f"""
def log(**row):
    if not names_ge(row):
        w._unknown_columns(row)
    get = row.get
    with lock:
        if w._closed:
            w._raise_closed()
{appends}        n = len(first)
        if n == 1:
            w._rows_first_at = monotonic()
    if n == 1:
        wake()
    if n >= max_rows:
        w._on_full()
"""
    exec(compile(source, "<unchecked log>", "exec"), namespace)
    return namespace["log"]


VARIANTS: dict[str, Callable[[BatchWriter], Callable[..., None]]] = {
    "compiled, with checks (now)": lambda w: w.log,
    "plain loop, with checks": plain_log,
    "compiled, no checks (before)": unchecked_log,
}


def call_cost(db: Database, variant: str, n: int, spool: Path) -> float:
    """Microseconds per log() call (9 values, as end_to_end), buffering only: no
    flush during the loop. Short runs, many of them: the minimum is the cost."""
    run = uuid.uuid4()
    w = training_metrics_writer(
        db, spool_dir=spool, max_rows=n + 1, max_buffered_rows=n + 1, max_seconds=3600
    )
    log = VARIANTS[variant](w)
    gc.collect()
    start = time.perf_counter()
    for i in range(n):
        log(
            run_id=run,
            iteration_number=i,
            train_loss=0.5,
            val_loss=0.4,
            train_accuracy=0.3,
            val_accuracy=0.2,
            learning_rate=0.05,
            gradient_norm=1.0,
            iteration_duration_ms=1.0,
        )
    elapsed = time.perf_counter() - start
    assert w.close(timeout=60), w.last_error
    return elapsed / n * 1e6


def end_to_end(db: Database, variant: str, n: int, spool: Path) -> float:
    """Rows/s, as bench_writer.bench_log: 9 values per call, flushes included."""
    run = uuid.uuid4()
    v = {k: a.tolist() for k, a in _values(n).items()}
    tl, vl, ta, va = v["train_loss"], v["val_loss"], v["train_accuracy"], v["val_accuracy"]
    lr, gn, ms = v["learning_rate"], v["gradient_norm"], v["iteration_duration_ms"]
    gc.collect()
    start = time.perf_counter()
    w = training_metrics_writer(db, spool_dir=spool)
    log = VARIANTS[variant](w)
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
    assert w.close(timeout=60), w.last_error
    elapsed = time.perf_counter() - start
    assert _count(db, run) == n
    return n / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--call-rows", type=int, default=20_000, help="rows per call-cost run")
    parser.add_argument("--call-repeat", type=int, default=30, help="call-cost runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "writer_appenders")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-appenders-"))
    os.environ["SUHO_DATA_DIR"] = str(work / "suho")
    url = f"clickhouse+chdb:///{work}/suho/clickhouse/suho_analytics"
    migrations.upgrade(url)
    db = Database(url)
    loadavg = os.getloadavg()
    costs: dict[str, list[float]] = {v: [] for v in VARIANTS}
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    try:
        for r in range(args.call_repeat):
            for variant in VARIANTS:
                costs[variant].append(call_cost(db, variant, args.call_rows, work / f"c{r}"))
                print(f"[{r}] {variant}: {costs[variant][-1]:.2f} us/call", flush=True)
        for r in range(args.repeat):
            for variant in VARIANTS:
                rates[variant].append(end_to_end(db, variant, args.rows, work / f"e{r}"))
                print(f"[{r}] {variant}: {rates[variant][-1]:,.0f} rows/s", flush=True)
    finally:
        db.close()
    result = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rows": args.rows,
        "repeat": args.repeat,
        "call_rows": args.call_rows,
        "call_repeat": args.call_repeat,
        "environment": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_start": loadavg,
        },
        "call_us": costs,
        "rows_per_s": rates,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "| variant | µs per call, buffering (min, median) | rows/s end to end (max, median) |",
        "|---|---:|---:|",
    ]
    for variant in VARIANTS:
        c, e = costs[variant], rates[variant]
        lines.append(
            f"| {variant} | {min(c):.2f}, {statistics.median(c):.2f} | "
            f"{max(e):,.0f}, {statistics.median(e):,.0f} |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
