"""Distributed tuning: wall time of one 24-trial LightGBM study with 1, 2 and 4 worker
processes, and the study storage's own cost per trial.

Each arm is a whole ``suho tune supervised`` run on the local ClickHouse server:
the run and its study are created, W worker processes start (``suho tune worker``),
claim the 24 slots, and the last one retrains the best trial. Reported per arm:
the wall time of the whole run, the tuning span (first trial start to last trial
end, from the study), and the median trial duration. The storage overhead is
measured apart: trials whose objective returns at once, run through the same
worker loop (claim, heartbeat, tell, stale check) on each storage, so what is
left is the storage's time per trial.

    python bench/bench_tuning.py            # 24 trials, 1/2/4 workers, journal file + Redis
    python bench/bench_tuning.py --quick    # 8 trials, 1/2 workers
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from harness import (
    Results,
    add_quiet_arguments,
    add_results_arguments,
    num,
    table,
    wait_for_quiet,
)


def _features(db: Any) -> None:
    from repositories.features import FeatureTable
    from trainers.data.synth import generate_ml_features

    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    FeatureTable(db).write(generate_ml_features(("EURUSD", "XAUUSD"), periods=600, start=start))


def _config(trials: int, storage: str | None) -> Any:
    from trainers.supervised.config import SupervisedConfig

    tuning: dict[str, Any] = {"trials": trials, "pruning": False}
    if storage:
        tuning["storage"] = storage
    return SupervisedConfig.model_validate(
        {
            "model_type": "lightgbm",
            "rounds": 60,
            "cv_folds": 3,
            "early_stopping": None,
            "checkpoint_every": None,
            "progress": False,
            "threads": 1,
            "selection": {"top_k": 20},
            "tuning": tuning,
        }
    )


def _arm(db: Any, workers: int, trials: int) -> dict[str, Any]:
    import optuna

    from trainers.study import study_storage
    from trainers.workers import create_tuning_run, launch

    started, started_at = time.perf_counter(), time.time()
    config = _config(trials, None)
    run = create_tuning_run("supervised", config, db)
    created = time.perf_counter() - started
    codes = launch(run, "supervised", db, workers, progress=False)
    wall = time.perf_counter() - started
    ended_at = time.time()
    study = optuna.load_study(study_name=str(run.run_id), storage=study_storage(None, run.run_id))
    done = [t for t in study.trials if t.state.is_finished()]
    span = (
        max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)
    ).total_seconds()
    durations = [t.duration.total_seconds() for t in done]
    first = min(t.datetime_start for t in done).timestamp()  # naive local times
    last = max(t.datetime_complete for t in done).timestamp()
    return {
        "create_s": created,
        "to_first_trial_s": first - started_at,
        "after_last_trial_s": ended_at - last,
        "workers": workers,
        "exit_codes": codes,
        "trials": len(done),
        "wall_s": wall,
        "tuning_span_s": span,
        "median_trial_s": statistics.median(durations),
        "trial_s_sum": sum(durations),
    }


def _overhead(storage_url: str | None, trials: int) -> dict[str, Any]:
    """Seconds per trial of the worker loop on ``storage_url`` with an empty objective."""
    from trainers.study import TrialHeartbeat, create_shared_study, study_storage, work

    run_id = uuid.uuid4()
    beat = TrialHeartbeat()
    storage = study_storage(storage_url, run_id, heartbeat=beat)
    study = create_shared_study(run_id, storage, study_name=str(run_id), trials=trials)

    def objective(trial: Any) -> float:
        return trial.suggest_float("x", 0.0, 1.0)

    started = time.perf_counter()
    work(study, objective, lambda *_: None, beat)
    return {"trials": trials, "per_trial_ms": (time.perf_counter() - started) / trials * 1e3}


def _redis(directory: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    from suho_models.db.server import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--overhead-trials", type=int, default=100)
    add_quiet_arguments(parser, threshold=0.25, patience_s=20.0)
    add_results_arguments(parser, "tuning", "8 trials, 1 and 2 workers")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.workers, args.overhead_trials, args.quiet_wait = 8, "1,2", 30, 3.0

    import lightgbm
    import optuna

    from suho_models.db import Database, migrations
    from suho_models.db.server import LocalServer

    results = Results(args, optuna=optuna.__version__, lightgbm=lightgbm.__version__)
    tmp = Path(tempfile.mkdtemp(prefix="bench-tuning-"))
    os.environ["SUHO_DATA_DIR"] = str(tmp / "data")
    from suho_models.settings import get_settings

    get_settings.cache_clear()
    server = LocalServer(tmp / "server").start()
    redis = _redis(tmp)
    quiet: dict[str, Any] = {}
    try:
        url = server.native_url("suho_analytics")
        migrations.upgrade(url)
        db = Database(url)
        _features(db)
        arms = []
        for workers in (int(w) for w in args.workers.split(",")):
            quiet[f"{workers} workers"] = wait_for_quiet(args.max_others, args.quiet_wait)
            arms.append(_arm(db, workers, args.trials))
            print(arms[-1], flush=True)
        overheads = {"journal file": _overhead(None, args.overhead_trials)}
        if redis is not None:
            overheads["journal on Redis"] = _overhead(redis[1], args.overhead_trials)
        db.close()
    finally:
        server.stop()
        if redis is not None:
            redis[0].terminate()
            redis[0].wait()
        shutil.rmtree(tmp, ignore_errors=True)
    results["quiet"] = quiet
    results["arms"] = arms
    results["storage_overhead"] = overheads

    def body(r: Results) -> list[str]:
        base = arms[0]["wall_s"]
        lines = r.header(f"Distributed tuning: {args.trials} LightGBM trials, 1 run per arm")
        lines += table(
            [
                "workers",
                "run wall s",
                "run created s",
                "to first trial s",
                "tuning span s",
                "final training s",
                "speed-up (wall)",
                "median trial s",
                "trial s summed",
            ],
            [
                [
                    a["workers"],
                    num(a["wall_s"]),
                    num(a["create_s"]),
                    num(a["to_first_trial_s"]),
                    num(a["tuning_span_s"]),
                    num(a["after_last_trial_s"]),
                    num(base / a["wall_s"], ".2f"),
                    num(a["median_trial_s"], ".2f"),
                    num(a["trial_s_sum"]),
                ]
                for a in arms
            ],
        )
        lines += ["", "Storage overhead per trial (empty objective, one worker):", ""]
        lines += table(
            ["storage", "trials", "ms per trial"],
            [[k, v["trials"], num(v["per_trial_ms"], ".1f")] for k, v in overheads.items()],
        )
        return lines

    results.write(body)


if __name__ == "__main__":
    sys.exit(main())
