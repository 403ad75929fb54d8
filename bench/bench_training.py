"""Cost of per-iteration metric logging during gradient-boosting training.

For XGBoost, LightGBM and CatBoost, on the same synthetic ``ml_features`` data
(``generate_ml_features``: 8 symbols x 25,100 hourly bars = 200,000 rows x 110
features, split chronologically 70/15/15 by ``chronological_split``; the model
trains on the train part and evaluates train and val every iteration), this
times ``Booster.fit`` in two arms that differ only in our callback:

* ``without``: ``on_iteration=None``;
* ``with``: ``on_iteration`` wired exactly as ``SupervisedTrainer`` wires it:
  ``with TrainingMetricRepository(db).logger(run_id) as logger:`` around the
  fit, and ``logger.log(iteration, **metrics)`` per iteration, into a real
  embedded ClickHouse (chDB) database. The timed span is the ``with`` block:
  opening the logger (the run-exists check), the fit, and ``close()`` (the final
  flush). The row count is then checked with ``count() ... FINAL``.

Same params (each adapter's ``default_params``, seed 42, 2 threads), same eval
sets, same number of rounds, no early stopping. After an untimed warm-up of
each library, the arms run as adjacent pairs, libraries in turn, in alternating
order (ABBA), until each library has ``--reps`` clean pairs: pairs during which
other processes used at most ``--max-others`` of the machine's CPUs (from
/proc/stat; with 2 training threads on a small machine, a busy neighbour slows a
fit by up to 10x and swamps a 3% effect). Before each pair it waits up to
``--quiet-wait`` s for quiet; after warm-up, no pair starts after ``--budget`` s
(each library gets one pair at least). Optionally
(``--arms``) a third arm ``noop`` runs the adapter's callback with an
``on_iteration`` that does nothing (arms then rotate through the positions),
which separates the library's cost of calling back into Python from ours.

Besides wall time, CPU time is accounted per thread (/proc/self/task): the
callback's own CPU (``time.thread_time``), the BatchWriter thread, and
ClickHouse's threads. That bounds the work the logging adds independently of
other processes.

The per-iteration cost of the callback itself is measured twice: in the real
fits (time in ``on_iteration``, i.e. ``logger.log``, wall and thread CPU), and
in a micro-benchmark that calls each adapter's callback directly, fed the
library's own per-iteration structures captured from a real fit
(``evals_log``, ``evaluation_result_list``, CatBoost's ``info.metrics``), once
with a no-op ``on_iteration`` and once with the real logger.

The work the logging adds (``accounted``): the callback's own CPU on the training
thread, the BatchWriter thread, ClickHouse threads beyond their idle rate in the
``without`` arm, and opening + closing the logger, as a share of the rest of the
run. Order-balanced ratio: the geometric mean of the pairs where ``with`` ran first
and of those where it ran second, each averaged on its own. CPU times come from
/proc in clock ticks (10 ms).

Usage: ``python bench/bench_training.py [--quick] [--reps R] [--libs ...]
[--results-dir DIR] [--name STEM]``. Results go to ``bench/results/training.json``
and ``training.md`` (``--quick``: 10k rows, 30 rounds, 1 pair, about a minute;
writes nothing unless ``--results-dir`` is given). About 5 minutes on a quiet 2-CPU
machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import (
    OthersMeter,
    Results,
    add_quiet_arguments,
    add_results_arguments,
    clean_or_all,
    median,
    order_balanced,
    own_cpu_s,
    paired_ratios,
    pct,
    position_effect,
    run_pairs,
    table,
)

from repositories.runs import TrainingRunRepository
from repositories.series import TrainingMetricRepository
from suho_models.db import Database, migrations
from suho_models.enums import TaskType
from trainers.data.split import chronological_split
from trainers.data.synth import FEATURE_COLUMNS, generate_ml_features
from trainers.supervised import boosters as B

TARGET_OVERHEAD = 0.03
LIBRARIES = ("xgboost", "lightgbm", "catboost")
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "BTCUSD", "AUDUSD", "USDCAD", "NZDUSD")
THREAD_PARAM = {"xgboost": "nthread", "lightgbm": "num_threads", "catboost": "thread_count"}
SEED = 42


# --------------------------------------------------------------------------- load
_TICK = os.sysconf("SC_CLK_TCK")


def _threads_cpu() -> dict[int, tuple[str, float]]:
    """tid -> (thread name, CPU seconds) for every live thread of this process."""
    out = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        out[int(tid)] = (comm, (int(stat[11]) + int(stat[12])) / _TICK)
    return out


class Meter:
    """Wall time, CPU time by kind of thread, and the CPU other processes took meanwhile.

    Threads are told apart by name: ClickHouse (chDB) and jemalloc name theirs
    ("ThreadPool", "BgSchPool", "MergeMutate", ...); the training library's worker
    threads and the main thread keep the interpreter's name; the BatchWriter's
    daemon thread is recognised by its id. CPU of threads that exited during the
    span (process total minus live threads) is reported as ``exited``.
    """

    def __init__(self) -> None:
        self.writer_tids: set[int] = set()

    def start(self) -> Meter:
        self.others = OthersMeter().start()
        self.cpu0 = own_cpu_s()
        self.threads0 = _threads_cpu()
        self.main_comm = self.threads0.get(os.getpid(), ("python", 0.0))[0]
        self.t0 = time.perf_counter()
        return self

    def stop(self) -> Meter:
        self.seconds = time.perf_counter() - self.t0
        threads1 = _threads_cpu()
        self.cpu_seconds = own_cpu_s() - self.cpu0
        self.others_share = self.others.share()
        kinds = {"training": 0.0, "writer": 0.0, "chdb": 0.0}
        for tid, (comm, cpu) in threads1.items():
            delta = cpu - self.threads0.get(tid, (comm, 0.0))[1]
            if tid in self.writer_tids:
                kinds["writer"] += delta
            elif comm == self.main_comm:
                kinds["training"] += delta
            else:
                kinds["chdb"] += delta
        kinds["exited"] = max(self.cpu_seconds - sum(kinds.values()), 0.0)
        self.kinds = kinds
        return self

    def __enter__(self) -> Meter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "others_cpu_share": self.others_share,
            "cpu_by_thread": self.kinds,
        }


# --------------------------------------------------------------------------- data
def make_data(symbols: int, periods: int, target: str) -> dict[str, Any]:
    names = SYMBOLS[:symbols] if symbols <= len(SYMBOLS) else [f"SYM{i}" for i in range(symbols)]
    frame = generate_ml_features(symbols=names, periods=periods, seed=SEED)
    split = chronological_split(frame, "time", (0.7, 0.15, 0.15))
    features = list(FEATURE_COLUMNS)
    return {
        "rows": len(frame),
        "features": len(features),
        "X_train": split.train[features].to_numpy(dtype=float),
        "y_train": split.train[target].to_numpy(),
        "X_val": split.val[features].to_numpy(dtype=float),
        "y_val": split.val[target].to_numpy(),
        "train_rows": split.info["train"].rows,
        "val_rows": split.info["val"].rows,
        "test_rows": split.info["test"].rows,
    }


# --------------------------------------------------------------------------- arms
class Bench:
    def __init__(self, db: Database, data: dict[str, Any], args: argparse.Namespace) -> None:
        self.db = db
        self.data = data
        self.args = args
        self.task = TaskType(args.task)
        self.runs = TrainingRunRepository(db)
        self.metrics = TrainingMetricRepository(db)
        # BatchWriter options for the `with` arm; none by default, as the trainer passes.
        self.writer_options: dict[str, Any] = (
            {} if args.max_seconds is None else {"max_seconds": args.max_seconds}
        )

    def params(self, lib: str) -> dict[str, Any]:
        booster = B.booster_for(lib)
        params = booster.default_params(self.task, SEED)
        params[THREAD_PARAM[lib]] = self.args.threads
        return params

    def _fit(self, lib: str, rounds: int, on_iteration: Any, pruning: Any = None) -> Any:
        d = self.data
        return B.booster_for(lib).fit(
            d["X_train"],
            d["y_train"],
            d["X_val"],
            d["y_val"],
            task=self.task,
            params=self.params(lib),
            rounds=rounds,
            early_stopping=None,
            on_iteration=on_iteration,
            pruning=pruning,
        )

    def _new_run(self, lib: str) -> uuid.UUID:
        run = self.runs.create(
            {
                "run_name": f"bench-{lib}-{uuid.uuid4().hex[:8]}",
                "model_type": lib,
                "task_type": self.task,
                "target_variable": self.args.target,
            }
        )
        self.runs.start(run.run_id)
        return run.run_id

    def without(self, lib: str, rounds: int) -> dict[str, Any]:
        gc.collect()
        with Meter() as m:
            self._fit(lib, rounds, None)
        return m.as_dict()

    def noop(self, lib: str, rounds: int) -> dict[str, Any]:
        calls = 0

        def on_iteration(iteration: int, values: dict[str, Any]) -> None:
            nonlocal calls
            calls += 1

        gc.collect()
        with Meter() as m:
            self._fit(lib, rounds, on_iteration)
        assert calls == rounds, (calls, rounds)
        return m.as_dict()

    def with_logger(self, lib: str, rounds: int) -> dict[str, Any]:
        run_id = self._new_run(lib)
        inside = inside_cpu = 0.0
        calls = 0
        clock, thread_clock = time.perf_counter, time.thread_time
        gc.collect()
        meter = Meter().start()
        start = meter.t0
        # As SupervisedTrainer._train does (progress disabled: advance() is a no-op).
        with self.metrics.logger(run_id, **self.writer_options) as logger:
            opened = clock()
            meter.writer_tids.add(logger.writer._thread.native_id)
            advance: Callable[..., None] = lambda n=1: None  # noqa: E731

            def on_iteration(iteration: int, values: dict[str, Any]) -> None:
                nonlocal inside, inside_cpu, calls
                t, c = clock(), thread_clock()
                logger.log(iteration, **values)
                advance()
                inside_cpu += thread_clock() - c
                inside += clock() - t
                calls += 1

            self._fit(lib, rounds, on_iteration)
            fitted = clock()
            threads_at_fit_end = meter.stop()  # per-thread CPU before the writer thread exits
            kinds_fit = dict(threads_at_fit_end.kinds)
            writer = logger.writer
        end = clock()
        stored = self.metrics.count(run_id)
        assert calls == rounds and stored == rounds, (calls, stored, rounds)
        assert writer.rows_flushed == rounds and not writer.rows_rejected, writer.stats()
        others = meter.others_share
        return {
            "seconds": end - start,
            "cpu_seconds": own_cpu_s() - meter.cpu0,
            "others_cpu_share": others,
            "cpu_by_thread": kinds_fit,  # open + fit (not close)
            "open_seconds": opened - start,
            "close_seconds": end - fitted,
            "in_on_iteration_seconds": inside,
            "in_on_iteration_us_per_iter": inside / rounds * 1e6,
            "in_on_iteration_cpu_us_per_iter": inside_cpu / rounds * 1e6,
            "inserts": writer.flush_count,
        }


ARMS: dict[str, Callable[[Bench, str, int], dict[str, Any]]] = {
    "without": Bench.without,
    "with": Bench.with_logger,
    "noop": Bench.noop,
}


# --------------------------------------------------------------------------- micro
def _copy_history(history: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[Any]]]:
    return {name: {metric: list(v) for metric, v in d.items()} for name, d in history.items()}


def _padded(value: Any, length: int) -> Any:
    """Metric histories grown to ``length`` values (the adapters only read the last)."""
    if isinstance(value, dict):
        return {
            name: {m: v + [v[-1]] * (length - len(v)) for m, v in d.items()}
            for name, d in value.items()
        }
    return value


class _Capture:
    """Keeps the library's last per-iteration structure (passed as ``pruning``)."""

    def __init__(self, lib: str) -> None:
        self.lib = lib
        self.value: Any = None
        if lib == "xgboost":
            import xgboost as xgb

            outer = self

            class _Cb(xgb.callback.TrainingCallback):
                def after_iteration(self, model, epoch, evals_log):
                    outer.value = _copy_history(evals_log)
                    return False

            self.callback: Any = _Cb()
        elif lib == "lightgbm":

            def cb(env: Any) -> None:
                self.value = list(env.evaluation_result_list)

            self.callback = cb
        else:
            self.callback = self

    # CatBoost's callback protocol (and the adapter's pruning.check_pruned()).
    def after_iteration(self, info: Any) -> bool:
        self.value = _copy_history(info.metrics)
        return True

    def check_pruned(self) -> None:
        pass


def _adapter_calls(lib: str, on_iteration: Any, task: TaskType, captured: Any, n: int) -> Any:
    """A zero-argument function making ``n`` calls of the adapter's callback."""
    if lib == "xgboost":
        cb = B._xgb_logger(on_iteration, task, 0.1)
        cb.before_training(None)
        after = cb.after_iteration

        def run() -> None:
            for i in range(n):
                after(None, i, captured)

    elif lib == "lightgbm":
        import lightgbm as lgb

        cb = B._lgb_logger(on_iteration, task, 0.1)
        envs = [lgb.callback.CallbackEnv(None, {}, i, 0, n, captured) for i in range(n)]

        def run() -> None:
            for env in envs:
                cb(env)

    else:
        logger_cb = B._CatBoostLogger(on_iteration, task, 0.1)
        infos = [types.SimpleNamespace(iteration=i + 1, metrics=captured) for i in range(n)]
        after = logger_cb.after_iteration

        def run() -> None:
            for info in infos:
                after(info)

    return run


def micro(bench: Bench, lib: str, captured: Any, n: int) -> dict[str, Any]:
    """µs per call of the adapter's callback: no-op on_iteration, then the real logger."""
    task = bench.task

    def noop(iteration: int, values: dict[str, Any]) -> None:
        pass

    out: dict[str, Any] = {"calls": n}
    run = _adapter_calls(lib, noop, task, captured, n)
    gc.collect()
    t = time.perf_counter()
    run()
    out["adapter_noop_us"] = (time.perf_counter() - t) / n * 1e6

    run_id = bench._new_run(lib)
    gc.collect()
    t = time.perf_counter()
    with bench.metrics.logger(run_id) as logger:
        opened = time.perf_counter()

        def on_iteration(iteration: int, values: dict[str, Any]) -> None:
            logger.log(iteration, **values)

        run = _adapter_calls(lib, on_iteration, task, captured, n)
        t_calls = time.perf_counter()
        run()
        logged = time.perf_counter()
    closed = time.perf_counter()
    assert bench.metrics.count(run_id) == n
    out["adapter_logger_us"] = (logged - t_calls) / n * 1e6
    out["logger_us"] = out["adapter_logger_us"] - out["adapter_noop_us"]
    out["open_ms"] = (opened - t) * 1e3
    out["close_ms"] = (closed - logged) * 1e3
    out["amortised_us"] = ((opened - t) + (logged - t_calls) + (closed - logged)) / n * 1e6
    return out


# --------------------------------------------------------------------------- schedule
def run_all_pairs(
    bench: Bench, libs: list[str], arms: list[str], args: argparse.Namespace, deadline: float
) -> dict[str, list[dict[str, Any]]]:
    """Pairs of the arms per library, libraries in turn (so that a change of load falls
    on all of them), until each has ``args.reps`` clean pairs or the time is up."""
    pairs: dict[str, list[dict[str, Any]]] = {lib: [] for lib in libs}
    last: dict[str, float] = {}
    while True:
        todo = [lib for lib in libs if sum(p["clean"] for p in pairs[lib]) < args.reps]
        ran = False
        for lib in todo:
            t0 = time.perf_counter()
            new = run_pairs(
                {
                    arm: (lambda arm=arm, lib=lib: ARMS[arm](bench, lib, args.rounds))
                    for arm in arms
                },
                wanted=1,
                max_pairs=1,
                max_others=args.max_others,
                quiet_wait=args.quiet_wait,
                deadline=deadline - last[lib] if lib in last else None,  # one pair at least
                offset=len(pairs[lib]) + libs.index(lib),
                first_number=len(pairs[lib]) + 1,
                label=f"{lib:8s}",
            )
            if new:
                last[lib] = time.perf_counter() - t0
                pairs[lib] += new
                ran = True
        if not ran:
            return pairs


# --------------------------------------------------------------------------- summary
def summarise(times: dict[str, list[dict[str, Any]]], rounds: int) -> dict[str, Any]:
    s: dict[str, Any] = {}
    for arm, reps in times.items():
        secs = [r["seconds"] for r in reps]
        s[arm] = {
            "median_s": median(secs),
            "min_s": min(secs),
            "max_s": max(secs),
            "all_s": secs,
            "median_cpu_s": median(r["cpu_seconds"] for r in reps),
            "max_others_cpu_share": max(r["others_cpu_share"] for r in reps),
            "median_others_cpu_share": median(r["others_cpu_share"] for r in reps),
            "median_cpu_by_thread_s": {
                k: median(r["cpu_by_thread"][k] for r in reps) for k in reps[0]["cpu_by_thread"]
            },
        }
    base = s["without"]["median_s"]
    for arm in s:
        if arm == "without":
            continue
        paired = paired_ratios(
            [w["seconds"] for w in times[arm]], [b["seconds"] for b in times["without"]]
        )
        s[arm]["ratio_of_medians"] = s[arm]["median_s"] / base
        s[arm]["ratio_of_mins"] = s[arm]["min_s"] / s["without"]["min_s"]
        s[arm]["median_paired_ratio"] = median(paired)
        s[arm]["paired_ratios"] = paired
        s[arm]["overhead"] = s[arm]["ratio_of_medians"] - 1.0
        s[arm]["extra_us_per_iter"] = (s[arm]["median_s"] - base) / rounds * 1e6
        s[arm]["cpu_ratio_of_medians"] = s[arm]["median_cpu_s"] / s["without"]["median_cpu_s"]
    if "with" in times:
        w = times["with"]
        sw = s["with"]
        sw["in_on_iteration_us_per_iter"] = median(r["in_on_iteration_us_per_iter"] for r in w)
        sw["in_on_iteration_cpu_us_per_iter"] = median(
            r["in_on_iteration_cpu_us_per_iter"] for r in w
        )
        sw["open_ms"] = median(r["open_seconds"] for r in w) * 1e3
        sw["close_ms"] = median(r["close_seconds"] for r in w) * 1e3
        sw["inserts"] = [r["inserts"] for r in w]
        # Work our logging adds, from CPU accounting (robust to other processes), per
        # `with` run: the callback's CPU on the training thread, the writer thread,
        # ClickHouse threads beyond their idle rate in the `without` arm, and the logger's
        # open + close (sequential, on the main thread); as a share of the rest of that run.
        base_rate = median(
            (r["cpu_by_thread"]["chdb"] + r["cpu_by_thread"]["exited"]) / r["seconds"]
            for r in times["without"]
        )
        per_run = []
        for r in w:
            k = r["cpu_by_thread"]
            parts = {
                "callback_cpu_s": r["in_on_iteration_cpu_us_per_iter"] * rounds / 1e6,
                "writer_thread_cpu_s": k["writer"],
                "chdb_threads_extra_cpu_s": k["chdb"] + k["exited"] - base_rate * r["seconds"],
                "open_close_s": r["open_seconds"] + r["close_seconds"],
            }
            total = sum(parts.values())
            per_run.append({**parts, "total_s": total, "share": total / (r["seconds"] - total)})
        sw["accounted"] = {key: median(p[key] for p in per_run) for key in per_run[0]}
        sw["accounted"]["per_run"] = per_run
    return s


def _f(x: float | None, fmt: str = ".4f") -> str:
    return "–" if x is None else format(x, fmt)


def _markdown(r: Results) -> list[str]:
    cfg, data, libs = r["config"], r["data"], r["libraries"]
    arms = cfg["arms"]
    lines = r.header("Training with per-iteration logging vs without")
    lines += [
        f"Data: `generate_ml_features` ({cfg['symbols']} symbols x {cfg['periods']:,} bars) = "
        f"{data['rows']:,} rows x {data['features']} features, chronological split "
        f"{data['train_rows']:,} / {data['val_rows']:,} / {data['test_rows']:,}; target "
        f"`{cfg['target']}` ({cfg['task']}); {cfg['rounds']} rounds, {cfg['threads']} threads, "
        f"seed {SEED}. Arms and figures are defined in the module docstring; statistics use "
        "the clean pairs (all pairs where none was clean)."
        + (" **Quick mode.**" if cfg["quick"] else ""),
        "",
        "## Wall time",
        "",
    ]
    header = ["library", *(f"{a} median s" for a in arms), "with / without (medians)"]
    header += ["median paired ratio", "stdev of paired ratios", "order-balanced", "min / min"]
    header += ["max others' CPU", "clean pairs"]
    rows = []
    for lib, s in libs.items():
        w = s["with"]
        paired = w["paired_ratios"]
        rows.append(
            [
                lib,
                *(f"{s[a]['median_s']:.3f}" for a in arms),
                f"{w['ratio_of_medians']:.4f}",
                f"{w['median_paired_ratio']:.4f}",
                _f(statistics.stdev(paired) if len(paired) > 1 else None),
                _f(w["order_balanced_ratio"]),
                f"{w['ratio_of_mins']:.4f}",
                f"{max(s[a]['max_others_cpu_share'] for a in arms):.0%}",
                f"{s['pairs_clean']} of {s['pairs_run']}",
            ]
        )
    lines += table(header, rows)
    effect = r.data.get("position_effect")
    if effect:
        lines += [
            "",
            *table(
                ["clean pairs", "last / first run of a pair (gmean)", "last slower in"],
                [
                    [
                        effect["pairs"],
                        _f(effect["last_over_first_gmean"]),
                        effect["last_slower_in"],
                    ]
                ],
                numeric_from=0,
            ),
        ]
    if "noop" in arms:
        lines += [
            "",
            *table(
                ["library", "noop - without ms", "with - noop ms"],
                [
                    [
                        lib,
                        f"{(s['noop']['median_s'] - s['without']['median_s']) * 1e3:+.1f}",
                        f"{(s['with']['median_s'] - s['noop']['median_s']) * 1e3:+.1f}",
                    ]
                    for lib, s in libs.items()
                ],
            ),
        ]
    rows = []
    for lib in libs:
        for n, p in enumerate(r["pairs"][lib], 1):
            runs = ", ".join(
                f"{a} {p[a]['seconds']:.2f} s ({p[a]['others_cpu_share']:.0%})" for a in p["order"]
            )
            rows.append([lib, n, runs, f"{p['waited_s']:.0f}", "yes" if p["clean"] else "no"])
    lines += [
        "",
        "Every pair, in run order (seconds, others' share of the CPUs):",
        "",
        *table(["library", "pair", "runs", "waited for quiet s", "clean"], rows, numeric_from=1),
        "",
        "## CPU accounting",
        "",
        "CPU seconds per fit by thread (medians):",
        "",
    ]
    rows = [
        [
            lib,
            a,
            f"{(k := s[a]['median_cpu_by_thread_s'])['training']:.2f}",
            f"{k['writer']:.3f}",
            f"{k['chdb']:.3f}",
            f"{k['exited']:.3f}",
        ]
        for lib, s in libs.items()
        for a in arms
    ]
    header = ["library", "arm", "training threads", "writer thread", "ClickHouse threads"]
    lines += table([*header, "exited threads"], rows, numeric_from=2)
    rows = []
    for lib, s in libs.items():
        acc = s["with"]["accounted"]
        rows.append(
            [
                lib,
                f"{acc['callback_cpu_s'] * 1e3:.1f}",
                f"{acc['writer_thread_cpu_s'] * 1e3:.1f}",
                f"{acc['chdb_threads_extra_cpu_s'] * 1e3:+.1f}",
                f"{acc['open_close_s'] * 1e3:.1f}",
                f"{acc['total_s'] * 1e3:.1f}",
                f"{acc['share'] * 100:.2f}%",
            ]
        )
    header = ["library", "callback CPU ms", "writer thread ms", "ClickHouse extra ms"]
    header += ["open + close ms", "total ms", "share of the fit"]
    lines += ["", "Work the logging adds (medians over the `with` runs):", ""]
    lines += table(header, rows)
    rows = []
    for lib, s in libs.items():
        m, w = r["micro"][lib], s["with"]
        rows.append(
            [
                lib,
                f"{w['in_on_iteration_us_per_iter']:.1f}",
                f"{w['in_on_iteration_cpu_us_per_iter']:.1f}",
                f"{m['adapter_noop_us']:.2f}",
                f"{m['adapter_logger_us']:.2f}",
                f"{m['logger_us']:.2f}",
                f"{m['amortised_us']:.2f}",
                f"{w['open_ms']:.1f} / {w['close_ms']:.1f}",
                f"{m['calls']:,}",
            ]
        )
    header = ["library", "on_iteration in fits µs", "its CPU µs", "adapter, no-op µs"]
    header += ["adapter + logger.log µs", "logger.log µs", "amortised incl. open + close µs"]
    header += ["open / close in fits ms", "micro calls"]
    lines += ["", "## Per-iteration cost of the callback", "", *table(header, rows)]
    rows = [
        [
            lib,
            f"{TARGET_OVERHEAD:.0%}",
            pct(s["with"]["median_paired_ratio"] - 1),
            f"{s['with']['accounted']['share'] * 100:.2f}%",
        ]
        for lib, s in libs.items()
    ]
    lines += [
        "",
        "## Target",
        "",
        *table(["library", "target", "median paired overhead", "accounted share"], rows),
    ]
    return lines


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument(
        "--reps",
        type=int,
        default=6,
        help="clean pairs per library (even: as many with `with` first as second)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--periods", type=int, default=25_100, help="bars per symbol")
    parser.add_argument("--target", default="target_direction")
    parser.add_argument("--libs", default=",".join(LIBRARIES))
    parser.add_argument("--arms", default="without,with", help="without,with[,noop]")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="BatchWriter max_seconds for the `with` arm (default: the trainer's, i.e. none)",
    )
    add_quiet_arguments(parser, threshold=0.10, patience_s=45.0)
    parser.add_argument(
        "--budget", type=float, default=540.0, help="seconds after which no new pair starts"
    )
    parser.add_argument("--micro-calls", type=int, default=20_000)
    add_results_arguments(parser, "training", "10k rows, 30 rounds, 1 pair: about a minute")
    args = parser.parse_args(argv)
    if args.quick:
        args.symbols, args.periods, args.rounds, args.reps = 2, 5_100, 30, 1
        args.micro_calls, args.budget, args.quiet_wait = 2_000, 60.0, 5.0
    args.task = (
        TaskType.CLASSIFICATION.value
        if args.target == "target_direction"
        else TaskType.REGRESSION.value
    )
    libs = [x for x in args.libs.split(",") if x]
    arms = [x for x in args.arms.split(",") if x]
    if arms[:2] != ["without", "with"] or not set(arms) <= set(ARMS):
        parser.error("--arms must start with without,with (optionally followed by noop)")

    import catboost
    import lightgbm
    import xgboost

    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    os.environ["SUHO_DATA_DIR"] = str(work / "suho")
    results = Results(
        args,
        xgboost=xgboost.__version__,
        lightgbm=lightgbm.__version__,
        catboost=catboost.__version__,
    )
    results["config"] = {
        "rounds": args.rounds,
        "reps": args.reps,
        "threads": args.threads,
        "symbols": args.symbols,
        "periods": args.periods,
        "target": args.target,
        "task": args.task,
        "arms": arms,
        "writer_max_seconds": args.max_seconds,
        "max_others": args.max_others,
        "quick": args.quick,
        "seed": SEED,
    }
    try:
        url = f"clickhouse+chdb:///{work}/suho/clickhouse/suho_analytics"
        migrations.upgrade(url)
        db = Database(url)
        try:
            t = time.perf_counter()
            data = make_data(args.symbols, args.periods, args.target)
            print(f"data: {data['rows']:,} rows in {time.perf_counter() - t:.1f}s", flush=True)
            results["data"] = {k: v for k, v in data.items() if not k.startswith(("X_", "y_"))}
            bench = Bench(db, data, args)

            captured: dict[str, Any] = {}
            for lib in libs:  # warm-up: imports, first-call costs, the structures for micro
                t = time.perf_counter()
                capture = _Capture(lib)
                bench._fit(lib, 10, None, pruning=capture.callback)
                captured[lib] = _padded(capture.value, args.rounds)
                for arm in arms:
                    ARMS[arm](bench, lib, 5)
                print(f"warm-up {lib}: {time.perf_counter() - t:.1f}s", flush=True)

            deadline = time.perf_counter() + args.budget
            pairs = run_all_pairs(bench, libs, arms, args, deadline)
            results["pairs"] = pairs
            summary: dict[str, Any] = {}
            for lib in libs:
                used = clean_or_all(pairs[lib])
                times = {arm: [p[arm] for p in used] for arm in arms}
                summary[lib] = summarise(times, args.rounds)
                summary[lib]["pairs_run"] = len(pairs[lib])
                summary[lib]["pairs_clean"] = sum(p["clean"] for p in pairs[lib])
                summary[lib]["with"]["order_balanced_ratio"] = order_balanced(
                    used, "with", "without", "seconds"
                )
            results["libraries"] = summary
            results["position_effect"] = position_effect(
                [p for lib in libs for p in pairs[lib] if p["clean"]], "seconds"
            )
            results["micro"] = {}
            for lib in libs:
                m = results["micro"][lib] = micro(bench, lib, captured[lib], args.micro_calls)
                print(
                    f"micro {lib}: adapter {m['adapter_noop_us']:.2f} µs, + logger "
                    f"{m['adapter_logger_us']:.2f} µs",
                    flush=True,
                )
        finally:
            db.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results.write(_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
