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
``--quiet-wait`` s for quiet; no pair starts after ``--budget`` s. Optionally
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

Usage: ``python bench/bench_training.py [--quick] [--reps R] [--libs ...]``.
Results go to ``bench/results/training.json`` and ``training.md`` (``--quick``:
50k rows, 50 rounds, 2 pairs, about 1-2 minutes; writes nothing unless ``--out``).
About 5 minutes on a quiet 2-CPU machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from repositories.runs import TrainingRunRepository  # noqa: E402
from repositories.series import TrainingMetricRepository  # noqa: E402
from suho_models.db import Database, migrations  # noqa: E402
from suho_models.enums import TaskType  # noqa: E402
from trainers.data.split import chronological_split  # noqa: E402
from trainers.data.synth import FEATURE_COLUMNS, generate_ml_features  # noqa: E402
from trainers.supervised import boosters as B  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGET_OVERHEAD = 0.03
LIBRARIES = ("xgboost", "lightgbm", "catboost")
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "BTCUSD", "AUDUSD", "USDCAD", "NZDUSD")
THREAD_PARAM = {"xgboost": "nthread", "lightgbm": "num_threads", "catboost": "thread_count"}
SEED = 42


# --------------------------------------------------------------------------- load
def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all CPUs, from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


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
        self.busy0, self.cpu0 = _machine_busy_s(), _own_cpu_s()
        self.threads0 = _threads_cpu()
        self.main_comm = self.threads0.get(os.getpid(), ("python", 0.0))[0]
        self.t0 = time.perf_counter()
        return self

    def stop(self) -> Meter:
        self.seconds = time.perf_counter() - self.t0
        threads1 = _threads_cpu()
        self.cpu_seconds = _own_cpu_s() - self.cpu0
        others = (_machine_busy_s() - self.busy0) - self.cpu_seconds
        # Share of the machine's CPUs used by other processes during the span.
        self.others_share = max(others, 0.0) / (self.seconds * (os.cpu_count() or 1))
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


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


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
            "cpu_seconds": _own_cpu_s() - meter.cpu0,
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
def others_busy(seconds: float) -> float:
    """Share of the machine's CPUs other processes use over the next ``seconds``."""
    busy0, cpu0, t0 = _machine_busy_s(), _own_cpu_s(), time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - t0
    others = (_machine_busy_s() - busy0) - (_own_cpu_s() - cpu0)
    return max(others, 0.0) / (elapsed * (os.cpu_count() or 1))


def wait_for_quiet(threshold: float, patience: float) -> float:
    """Wait (at most ``patience`` s) until other processes leave the CPUs; seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < patience and others_busy(1.0) > threshold:
        pass
    return time.perf_counter() - t0


def run_pairs(
    bench: Bench, libs: list[str], arms: list[str], args: argparse.Namespace, deadline: float
) -> dict[str, list[dict[str, Any]]]:
    """Adjacent (without, with[, noop]) pairs per library, in alternating order, until each
    library has ``args.reps`` clean pairs (other processes used at most ``args.max_others``
    of the machine in every run of the pair) or the time budget would be exceeded."""
    pairs: dict[str, list[dict[str, Any]]] = {lib: [] for lib in libs}
    last: dict[str, float] = {}

    def clean(lib: str) -> int:
        return sum(p["clean"] for p in pairs[lib])

    while True:
        todo = [lib for lib in libs if clean(lib) < args.reps]
        if not todo:
            return pairs
        started_any = False
        for lib in todo:
            if time.perf_counter() + last.get(lib, 0.0) > deadline:
                continue
            waited = wait_for_quiet(args.max_others, args.quiet_wait)
            n = len(pairs[lib])
            k = n + libs.index(lib)
            if len(arms) == 2:  # ABBA: as many pairs with `with` first as second
                order = arms if k % 2 == 0 else arms[::-1]
            else:  # rotate, so that every arm takes every position equally often
                order = arms[k % len(arms) :] + arms[: k % len(arms)]
            t0 = time.perf_counter()
            pair: dict[str, Any] = {"order": order, "waited_s": waited}
            for arm in order:
                pair[arm] = ARMS[arm](bench, lib, args.rounds)
            last[lib] = time.perf_counter() - t0
            pair["clean"] = all(pair[a]["others_cpu_share"] <= args.max_others for a in arms)
            pairs[lib].append(pair)
            started_any = True
            print(
                f"pair {n + 1} {lib:8s} "
                + ", ".join(
                    f"{a} {pair[a]['seconds']:.3f}s (others {pair[a]['others_cpu_share']:.0%})"
                    for a in order
                )
                + ("" if pair["clean"] else "  [not clean]")
                + (f"  (waited {waited:.0f}s)" if waited >= 2 else ""),
                flush=True,
            )
        if not started_any:
            return pairs


# --------------------------------------------------------------------------- summary
def _med(values: Any) -> float:
    return statistics.median(list(values))


def summarise(times: dict[str, list[dict[str, Any]]], rounds: int) -> dict[str, Any]:
    s: dict[str, Any] = {}
    for arm, reps in times.items():
        secs = [r["seconds"] for r in reps]
        s[arm] = {
            "median_s": _med(secs),
            "min_s": min(secs),
            "max_s": max(secs),
            "all_s": secs,
            "median_cpu_s": _med(r["cpu_seconds"] for r in reps),
            "max_others_cpu_share": max(r["others_cpu_share"] for r in reps),
            "median_others_cpu_share": _med(r["others_cpu_share"] for r in reps),
            "median_cpu_by_thread_s": {
                k: _med(r["cpu_by_thread"][k] for r in reps) for k in reps[0]["cpu_by_thread"]
            },
        }
    base = s["without"]["median_s"]
    for arm in s:
        if arm == "without":
            continue
        paired = [
            w["seconds"] / b["seconds"] for w, b in zip(times[arm], times["without"], strict=True)
        ]
        s[arm]["ratio_of_medians"] = s[arm]["median_s"] / base
        s[arm]["ratio_of_mins"] = s[arm]["min_s"] / s["without"]["min_s"]
        s[arm]["median_paired_ratio"] = _med(paired)
        s[arm]["paired_ratios"] = paired
        s[arm]["overhead"] = s[arm]["ratio_of_medians"] - 1.0
        s[arm]["extra_us_per_iter"] = (s[arm]["median_s"] - base) / rounds * 1e6
        s[arm]["cpu_ratio_of_medians"] = s[arm]["median_cpu_s"] / s["without"]["median_cpu_s"]
    if "with" in times:
        w = times["with"]
        sw = s["with"]
        sw["in_on_iteration_us_per_iter"] = _med(r["in_on_iteration_us_per_iter"] for r in w)
        sw["in_on_iteration_cpu_us_per_iter"] = _med(
            r["in_on_iteration_cpu_us_per_iter"] for r in w
        )
        sw["open_ms"] = _med(r["open_seconds"] for r in w) * 1e3
        sw["close_ms"] = _med(r["close_seconds"] for r in w) * 1e3
        sw["inserts"] = [r["inserts"] for r in w]
        # Work our logging adds, from CPU accounting (robust to other processes), per
        # `with` run: the callback's CPU on the training thread, the writer thread,
        # ClickHouse threads beyond their idle rate in the `without` arm, and the logger's
        # open + close (sequential, on the main thread); as a share of the rest of that run.
        base_rate = _med(
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
        sw["accounted"] = {key: _med(p[key] for p in per_run) for key in per_run[0]}
        sw["accounted"]["per_run"] = per_run
    return s


def _gmean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def order_balanced(pairs: list[dict[str, Any]]) -> float | None:
    """with/without, averaging the pairs where `with` ran first and those where it ran
    second separately, so that a slower second run (see position_effect) cancels out."""
    groups: dict[bool, list[float]] = {True: [], False: []}
    for p in pairs:
        first = p["order"].index("with") < p["order"].index("without")
        groups[first].append(p["with"]["seconds"] / p["without"]["seconds"])
    if not groups[True] or not groups[False]:
        return None
    return _gmean([_gmean(groups[True]), _gmean(groups[False])])


def position_effect(pairs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How much slower the last fit of a pair is than the first, whatever the arms."""
    ratios = [p[p["order"][-1]]["seconds"] / p[p["order"][0]]["seconds"] for p in pairs]
    if not ratios:
        return None
    return {
        "pairs": len(ratios),
        "last_over_first_gmean": _gmean(ratios),
        "last_slower_in": sum(r > 1 for r in ratios),
    }


def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def _pct(x: float) -> str:
    return f"{x * 100:+.2f}%"


def _markdown(result: dict[str, Any]) -> str:
    env, cfg, data = result["environment"], result["config"], result["data"]
    arms = cfg["arms"]
    libs = result["libraries"]
    lines = [
        "# Training with per-iteration logging vs without",
        "",
        f"Run {result['when']} on {env['cpus']} CPUs (load average at start "
        f"{env['loadavg_at_start'][0]:.2f}), Python {env['python']}, chdb {env['chdb']}, "
        + ", ".join(f"{k} {v}" for k, v in env["libraries"].items())
        + f"; {result['total_seconds']:.0f} s in all.",
        "",
        f"Data: `generate_ml_features` ({cfg['symbols']} symbols x {cfg['periods']:,} bars) = "
        f"{data['rows']:,} rows x {data['features']} features, chronological split "
        f"{data['train_rows']:,} / {data['val_rows']:,} / {data['test_rows']:,}; "
        f"target `{cfg['target']}` ({cfg['task']}); train and val evaluated every iteration. "
        f"{cfg['rounds']} rounds, {cfg['threads']} threads, seed {SEED}, no early stopping; "
        f"{cfg['reps']} clean adjacent pairs per library wanted (order alternating, ABBA; "
        f"others ≤ {cfg['max_others']:.0%} of the CPUs; waiting up to {cfg['quiet_wait']:.0f} s "
        f"for quiet before a pair, none started after {cfg['budget']:.0f} s), after an untimed "
        "warm-up." + (" **Quick mode.**" if cfg["quick"] else ""),
        "",
        "`without`: `on_iteration=None`. `with`: the trainer's wiring, "
        "`TrainingMetricRepository.logger(run_id)` around the fit and "
        "`logger.log(iteration, **metrics)` per iteration into embedded ClickHouse; the timed "
        "span includes opening the logger and its final flush (`close()`); every run's "
        "rows were checked with `count() ... FINAL`."
        + (
            f" Writer option for this run: `max_seconds={cfg['writer_max_seconds']}`."
            if cfg.get("writer_max_seconds") is not None
            else " The writer runs with its defaults (flush every 2 s or 50,000 rows)."
        )
        + (
            " `noop`: the adapter's callback with an `on_iteration` that does nothing."
            if "noop" in arms
            else ""
        ),
        "",
        "## Wall time",
        "",
    ]
    header = "| library | " + " | ".join(f"{a} median (s)" for a in arms)
    header += (
        " | with / without (medians) | median paired ratio | order-balanced | min / min "
        "| others' CPU | clean pairs |"
    )
    lines += [header, "|---|" + "---:|" * (len(arms) + 6)]
    for lib, s in libs.items():
        w = s["with"]
        others = max(s[a]["max_others_cpu_share"] for a in arms)
        row = f"| {lib} | " + " | ".join(f"{s[a]['median_s']:.3f}" for a in arms)
        row += (
            f" | {w['ratio_of_medians']:.4f} ({_pct(w['overhead'])}) | "
            f"{w['median_paired_ratio']:.4f} | {_ratio(w['order_balanced_ratio'])} | "
            f"{w['ratio_of_mins']:.4f} | ≤ {others:.0%} | "
            f"{s['pairs_clean']} of {s['pairs_run']} |"
        )
        lines.append(row)
    lines += [
        "",
        "Order-balanced: the geometric mean of the pairs where `with` ran first and of those "
        "where it ran second, each averaged on its own, so that a systematic difference "
        "between the first and the second fit of a pair does not count as overhead."
        + (
            f" Position effect over all {result['position_effect']['pairs']} clean pairs: the "
            "last fit of a pair took "
            f"{_pct(result['position_effect']['last_over_first_gmean'] - 1)} (geometric mean) "
            "relative to the first, and was slower in "
            f"{result['position_effect']['last_slower_in']}."
            if result.get("position_effect")
            else ""
        ),
        "",
        "Others' CPU: the largest share of the machine's CPUs that other processes used "
        "during any timed fit (from /proc/stat). When it is far from 0 the wall-time ratios "
        "measure the neighbours as much as the logging; the CPU accounting below does not "
        "depend on them.",
        "",
        "Every pair, in run order (seconds, others' CPU share; statistics above use the "
        f"clean pairs, where others used ≤ {cfg['max_others']:.0%} in every run of the pair, "
        "or all pairs where none was clean):",
        "",
    ]
    for lib, s in libs.items():
        lines.append(f"- {lib}: {s['pairs_clean']} clean of {s['pairs_run']}:")
        for p in result["pairs"][lib]:
            runs = ", ".join(
                f"{a} {p[a]['seconds']:.2f} ({p[a]['others_cpu_share']:.0%})" for a in p["order"]
            )
            lines.append(f"  - {runs}" + ("" if p["clean"] else " — not clean"))
    if "noop" in arms:
        lines += ["", "Where the difference goes (medians):", ""]
        for lib, s in libs.items():
            lines.append(
                f"- {lib}: library calling back into Python + adapter (noop - without) "
                f"{(s['noop']['median_s'] - s['without']['median_s']) * 1e3:+.1f} ms; "
                f"our logging (with - noop) "
                f"{(s['with']['median_s'] - s['noop']['median_s']) * 1e3:+.1f} ms"
            )
    lines += [
        "",
        "## CPU accounting (independent of other processes)",
        "",
        "CPU seconds per fit by thread (medians), and the work the logging adds: the "
        "callback's own CPU on the training thread (`time.thread_time`), the BatchWriter "
        "thread, ClickHouse threads beyond their use in the `without` arm, and opening + "
        "closing the logger (sequential, on the main thread). With 2 training threads on "
        f"{env['cpus']} CPUs, any extra CPU work delays training by at most about as much, "
        "so the total, as a share of the rest of the run, bounds the overhead (medians over "
        "the `with` runs used above; ClickHouse's idle rate in the `without` runs is "
        "subtracted).",
        "",
        "| library | arm | training threads | writer thread | ClickHouse threads (+exited) |",
        "|---|---|---:|---:|---:|",
    ]
    for lib, s in libs.items():
        for a in arms:
            k = s[a]["median_cpu_by_thread_s"]
            lines.append(
                f"| {lib} | {a} | {k['training']:.2f} | {k['writer']:.3f} | "
                f"{k['chdb']:.3f} (+{k['exited']:.3f}) |"
            )
    lines += [
        "",
        "| library | callback CPU | writer thread | ClickHouse extra | open + close | "
        "total | share of the fit |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for lib, s in libs.items():
        acc = s["with"]["accounted"]
        lines.append(
            f"| {lib} | {acc['callback_cpu_s'] * 1e3:.1f} ms | "
            f"{acc['writer_thread_cpu_s'] * 1e3:.1f} ms | "
            f"{acc['chdb_threads_extra_cpu_s'] * 1e3:+.1f} ms | {acc['open_close_s'] * 1e3:.1f} ms "
            f"| {acc['total_s'] * 1e3:.1f} ms | {acc['share'] * 100:.2f}% |"
        )
    lines += [
        "",
        "CPU times come from /proc in clock ticks (10 ms), so the per-thread figures are "
        "coarse; ClickHouse's are summed over its pool threads.",
        "",
        "## Per-iteration cost of the callback",
        "",
        "| library | `on_iteration` in real fits (wall / CPU) | adapter callback, no-op "
        "`on_iteration` | adapter + `logger.log` | of which `logger.log` | amortised incl. "
        "open + close | logger open / close in fits |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for lib, s in libs.items():
        m, w = result["micro"][lib], s["with"]
        lines.append(
            f"| {lib} | {w['in_on_iteration_us_per_iter']:.1f} / "
            f"{w['in_on_iteration_cpu_us_per_iter']:.1f} µs | {m['adapter_noop_us']:.2f} µs "
            f"| {m['adapter_logger_us']:.2f} µs | {m['logger_us']:.2f} µs | "
            f"{m['amortised_us']:.2f} µs | {w['open_ms']:.1f} / {w['close_ms']:.1f} ms |"
        )
    lines += [
        "",
        f"Micro-benchmark: {result['micro'][next(iter(result['micro']))]['calls']:,} direct "
        "calls of each adapter's callback, fed the library's own per-iteration structure "
        "captured from a real fit (`evals_log`, `evaluation_result_list`, CatBoost's "
        f"`info.metrics`, histories grown to {cfg['rounds']} values); amortised = (open + "
        "calls + close) / calls. In real fits the call is slower than in the tight loop "
        "(cold caches after each boosting round); the CPU column excludes time the thread "
        "was descheduled.",
        "",
        "## Against the target",
        "",
    ]
    lines += [f"- {t}" for t in result["targets"]]
    lines.append("")
    if result.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(lines)


def _notes(result: dict[str, Any]) -> list[str]:
    spreads = []
    for lib, s in result["libraries"].items():
        paired = s["with"]["paired_ratios"]
        if len(paired) > 1:
            spreads.append(
                f"{lib} {statistics.stdev(paired) * 100:.1f}% "
                f"({min(paired) - 1:+.1%} to {max(paired) - 1:+.1%})"
            )
    if not spreads:
        return []
    return [
        "Noise floor: standard deviation (and range) of the paired with/without ratios: "
        + "; ".join(spreads)
        + ". A wall-time difference smaller than about twice that over the square root of "
        "the number of pairs is not resolved; the CPU accounting is the finer measure."
    ]


def _targets(result: dict[str, Any]) -> list[str]:
    out = []
    rounds = result["config"]["rounds"]
    for lib, s in result["libraries"].items():
        w = s["with"]
        acc = w["accounted"]
        per_iter = w["in_on_iteration_cpu_us_per_iter"]
        # Verdict on the median of the paired ratios: each pair is adjacent in time (drift
        # cancels), the order alternates, and one disturbed pair cannot move a median.
        wall_ok = "met" if w["median_paired_ratio"] - 1 <= TARGET_OVERHEAD else "NOT met"
        wall_ok += " (judged on the median paired ratio"
        if s["pairs_clean"] < result["config"]["reps"]:
            wall_ok += (
                f"; only {s['pairs_clean']} clean pair(s) of {s['pairs_run']}: other processes "
                "loaded the machine, so this figure is not reliable"
            )
        wall_ok += ")"
        acc_ok = "met" if acc["share"] <= TARGET_OVERHEAD else "NOT met"
        out.append(
            f"{lib}: wall time {_pct(w['overhead'])} (ratio of medians; paired "
            f"{_pct(w['median_paired_ratio'] - 1)}, order-balanced "
            + ("–" if w["order_balanced_ratio"] is None else _pct(w["order_balanced_ratio"] - 1))
            + f", mins {_pct(w['ratio_of_mins'] - 1)}) "
            f"vs ≤{TARGET_OVERHEAD:.0%}: {wall_ok}; accounted work "
            f"{acc['share'] * 100:.2f}% of the fit: {acc_ok}. The callback itself: "
            f"{per_iter:.1f} µs CPU x {rounds} iterations = {per_iter * rounds / 1e3:.1f} ms."
        )
    return out


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
    parser.add_argument(
        "--max-others",
        type=float,
        default=0.10,
        help="a pair is clean when other processes used at most this share of the CPUs",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=45.0, help="seconds to wait for quiet before a pair"
    )
    parser.add_argument(
        "--budget", type=float, default=540.0, help="seconds after which no new pair starts"
    )
    parser.add_argument("--micro-calls", type=int, default=20_000)
    parser.add_argument(
        "--quick", action="store_true", help="50k rows, 50 rounds, 2 reps: about a minute"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="path stem (default bench/results/training; --quick writes nothing unless given)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.symbols, args.periods, args.rounds, args.reps = 4, 12_600, 50, 2
        args.micro_calls, args.budget, args.quiet_wait = 5_000, 150.0, 10.0
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
    import chdb
    import lightgbm
    import xgboost

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    os.environ["SUHO_DATA_DIR"] = str(work / "suho")
    result: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "config": {
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
            "quiet_wait": args.quiet_wait,
            "budget": args.budget,
            "quick": args.quick,
            "seed": SEED,
        },
        "environment": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "chdb": chdb.__version__,
            "libraries": {
                "xgboost": xgboost.__version__,
                "lightgbm": lightgbm.__version__,
                "catboost": catboost.__version__,
            },
            "numpy": np.__version__,
            "platform": platform.platform(),
            "loadavg_at_start": os.getloadavg(),
        },
    }
    try:
        url = f"clickhouse+chdb:///{work}/suho/clickhouse/suho_analytics"
        migrations.upgrade(url)
        db = Database(url)
        try:
            t = time.perf_counter()
            data = make_data(args.symbols, args.periods, args.target)
            print(f"data: {data['rows']:,} rows in {time.perf_counter() - t:.1f}s", flush=True)
            result["data"] = {k: v for k, v in data.items() if not k.startswith(("X_", "y_"))}
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

            pairs = run_pairs(bench, libs, arms, args, deadline=started + args.budget)
            result["pairs"] = pairs
            result["libraries"] = {}
            for lib in libs:
                clean = [p for p in pairs[lib] if p["clean"]]
                used = clean or pairs[lib]  # no clean pair at all: use them all, flagged
                times = {arm: [p[arm] for p in used] for arm in arms}
                result["libraries"][lib] = summarise(times, args.rounds)
                result["libraries"][lib]["pairs_run"] = len(pairs[lib])
                result["libraries"][lib]["pairs_clean"] = len(clean)
                result["libraries"][lib]["with"]["order_balanced_ratio"] = order_balanced(used)
            result["position_effect"] = position_effect(
                [p for lib in libs for p in pairs[lib] if p["clean"]]
            )
            result["micro"] = {}
            for lib in libs:
                result["micro"][lib] = micro(bench, lib, captured[lib], args.micro_calls)
                m = result["micro"][lib]
                print(
                    f"micro {lib}: adapter {m['adapter_noop_us']:.2f} µs, + logger "
                    f"{m['adapter_logger_us']:.2f} µs",
                    flush=True,
                )
        finally:
            db.close()
        result["targets"] = _targets(result)
        result["notes"] = _notes(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["environment"]["loadavg_at_end"] = os.getloadavg()
    result["total_seconds"] = time.perf_counter() - started

    out = args.out if args.out is not None or args.quick else RESULTS / "training"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))
    print(f"total {result['total_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
