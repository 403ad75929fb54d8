"""Supervised recovery: intermediate checkpoints, SIGKILL mid-run, resume.

The killed and resumed trainers run in subprocesses with their own data
directory (a chDB directory belongs to one process at a time); a last subprocess
reads the results back and prints them as JSON for the assertions here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from repositories.checkpoints import ModelCheckpointRepository
from repositories.errors import InvalidTransitionError, NotFoundError
from repositories.runs import TrainingRunRepository
from suho_models.db import Database, migrations
from trainers.supervised.trainer import SupervisedTrainer

SETUP = textwrap.dedent(
    """
    import datetime as dt, json, os, signal, sys
    from suho_models.db import Database, migrations
    from repositories.features import FeatureTable
    from trainers.data.synth import generate_ml_features
    from trainers.supervised.config import SupervisedConfig
    from trainers.supervised.trainer import SupervisedTrainer

    URL = os.environ["SUHO_DATABASE_URL"]
    START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)

    def config(**kw):
        base = dict(
            model_type=os.environ["MODEL"], rounds=60, checkpoint_every=10, keep_checkpoints=2,
            early_stopping=None, progress=False, cv_folds=2, seed=3,
            selection={"top_k": 15}, tuning={"trials": int(os.environ.get("TRIALS", "0"))},
            # Row/column sampling re-seeds on continuation: off, so that a resumed
            # model can be compared bit for bit.
            params={
                "xgboost": {"subsample": 1.0, "colsample_bytree": 1.0},
                "lightgbm": {"bagging_fraction": 1.0, "feature_fraction": 1.0},
            }.get(os.environ["MODEL"], {}),
        )
        base.update(kw)
        return SupervisedConfig.model_validate(base)
    """
)

KILL = SETUP + textwrap.dedent(
    """
    migrations.upgrade(URL)
    db = Database(URL)
    FeatureTable(db).write(generate_ml_features(("EURUSD", "XAUUSD"), periods=500, start=START))
    trainer = SupervisedTrainer(config(), db)
    fit, kill_at = trainer.booster.fit, int(os.environ["KILL_AT"])

    def dying_fit(*args, **kwargs):
        log = kwargs.get("on_iteration")
        if log is None:  # cross-validation fits: not the tracked training
            return fit(*args, **kwargs)
        def on_iteration(i, metrics):
            log(i, metrics)
            if i == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        kwargs["on_iteration"] = on_iteration
        return fit(*args, **kwargs)

    if kill_at:
        trainer.booster.fit = dying_fit
    if os.environ.get("KILL_IN_TUNING"):
        import trainers.supervised.tuning as tuning
        real = tuning.cross_validate
        def dying_cv(*a, **k):  # dies as the study starts trial KILL_IN_TUNING
            done = len(trainer.tracking.trials(trainer.tracking.list_runs()[0].run_id))
            if done >= int(os.environ["KILL_IN_TUNING"]):
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **k)
        tuning.cross_validate = dying_cv
    trainer.run()
    """
)

RESUME = SETUP + textwrap.dedent(
    """
    import numpy as np
    from repositories.checkpoints import ModelCheckpointRepository
    from repositories.runs import TrainingRunRepository
    from repositories.series import TrainingMetricRepository
    from repositories.trials import HyperparameterTrialRepository

    db = Database(URL)
    runs = TrainingRunRepository(db)
    (crashed,) = runs.list()
    before = {"status": crashed.status.value,
              "rows": TrainingMetricRepository(db).count(crashed.run_id),
              "checkpoints": [c.step for c in ModelCheckpointRepository(db).list(crashed.run_id)]}
    import trainers.supervised.trainer as trainer_module
    real_cv, cv_calls = trainer_module.cross_validate, []
    def counting_cv(*a, **k):
        cv_calls.append(1)
        return real_cv(*a, **k)
    trainer_module.cross_validate = counting_cv
    resumed = SupervisedTrainer.resume(crashed.run_id, db)
    trainer_module.cross_validate = real_cv
    straight = SupervisedTrainer(config(), db).run()
    task = straight.run.task_type
    X = straight.split.test[straight.features].to_numpy(dtype=float)
    diff = np.max(np.abs(resumed.booster.predict(resumed.model, X, task)
                         - straight.booster.predict(straight.model, X, task)))
    metrics = TrainingMetricRepository(db)
    rid = crashed.run_id
    physical = db.scalar("SELECT count() FROM training_metrics WHERE run_id = %(r)s", {"r": rid})
    final_cols = [c for c in type(resumed.run).model_fields if c.startswith("final_")]
    trials = HyperparameterTrialRepository(db)
    print(json.dumps({
        "before": before,
        "status": runs.get(rid).status.value,
        "iterations": [p.iteration_number for p in metrics.learning_curve(rid)],
        "distinct": db.scalar(
            "SELECT uniqExact(iteration_number) FROM training_metrics WHERE run_id = %(r)s",
            {"r": rid}),
        "physical": physical,
        "max_prediction_diff": float(diff),
        "same_features": resumed.features == straight.features,
        "final_resumed": {c: getattr(runs.get(rid), c) for c in final_cols},
        "final_straight": {c: getattr(straight.run, c) for c in final_cols},
        "trial_numbers": [t.trial_number for t in trials.list(rid)],
        "trial_states": [t.state.value for t in trials.list(rid)],
        "checkpoint_kinds": sorted(c.kind.value for c in ModelCheckpointRepository(db).list(rid)),
        "cv_calls_on_resume": len(cv_calls),
        "cv_resumed": resumed.cv_scores,
        "cv_straight": straight.cv_scores,
    }, default=str))
    """
)


def _run(script: str, env: dict[str, str], expect_kill: bool = False) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    if expect_kill:
        assert proc.returncode == -9, proc.stderr[-3000:]
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _env(tmp_path: Path, model: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUHO_")}
    env.update(
        SUHO_DATA_DIR=str(tmp_path / "data"),
        SUHO_DATABASE_URL=f"clickhouse+chdb:///{tmp_path}/chdb/suho_analytics",
        MODEL=model,
        KILL_AT="0",
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )
    env.update(extra)
    return env


@pytest.mark.slow
@pytest.mark.parametrize("model", ["xgboost", "lightgbm", "catboost"])
def test_sigkill_mid_training_then_resume(tmp_path: Path, model: str) -> None:
    _run(KILL, _env(tmp_path, model, KILL_AT="35"), expect_kill=True)
    out = json.loads(_run(RESUME, _env(tmp_path, model)).strip().splitlines()[-1])
    before = out["before"]
    assert before["status"] == "running"  # SIGKILL leaves it running
    assert before["checkpoints"] == [20, 30]  # every 10, the last 2 kept
    assert before["rows"] >= 30  # flushed before each checkpoint
    assert out["status"] == "completed"
    assert out["iterations"] == list(range(1, 61))  # each exactly once as readers see it
    assert out["distinct"] == 60
    assert out["same_features"]
    # The final model predicts like an uninterrupted run, bit for bit (CatBoost
    # trains in checkpoint-sized chunks either way, so it matches too).
    assert out["max_prediction_diff"] == 0.0
    assert out["final_resumed"] == out["final_straight"]
    assert out["checkpoint_kinds"] == ["final", "intermediate", "intermediate"]
    # The folds were scored once, before the kill: the resumed run reused the scores.
    assert out["cv_calls_on_resume"] == 0
    assert out["cv_resumed"] == out["cv_straight"] and len(out["cv_resumed"]) == 2


@pytest.mark.slow
def test_killed_study_resumes_without_rerunning_trials(tmp_path: Path) -> None:
    env = _env(tmp_path, "lightgbm", TRIALS="4", KILL_IN_TUNING="2")
    _run(KILL, env, expect_kill=True)
    out = json.loads(_run(RESUME, env).strip().splitlines()[-1])
    assert out["status"] == "completed"
    # Trials 0-1 finished before the kill and were not logged twice; trial 2 was
    # running when killed (closed as failed); the rest ran after the resume.
    assert out["trial_numbers"] == [0, 1, 2, 3]
    assert out["trial_states"][2] == "failed"
    assert out["iterations"] == list(range(1, 61))


TERM = SETUP + textwrap.dedent(
    """
    import time
    migrations.upgrade(URL)
    db = Database(URL)
    FeatureTable(db).write(generate_ml_features(("EURUSD", "XAUUSD"), periods=500, start=START))
    trainer = SupervisedTrainer(config(rounds=400, checkpoint_every=None), db)
    fit, last = trainer.booster.fit, [0]

    def slow_fit(*args, **kwargs):
        log = kwargs.get("on_iteration")
        if log is None:
            return fit(*args, **kwargs)
        def on_iteration(i, metrics):
            log(i, metrics)
            last[0] = i
            if i == 20:
                print("TRAINING", flush=True)
            if i >= 20:
                time.sleep(0.05)  # the parent's SIGTERM lands in here
        kwargs["on_iteration"] = on_iteration
        return fit(*args, **kwargs)

    trainer.booster.fit = slow_fit
    try:
        trainer.run()
    except KeyboardInterrupt as exc:
        print(json.dumps({"caught": type(exc).__name__, "last": last[0]}), flush=True)
        sys.exit(3)
    """
)

READ_RUN = textwrap.dedent(
    """
    import json, os
    from suho_models.db import Database
    from repositories.runs import TrainingRunRepository
    from repositories.series import TrainingMetricRepository
    db = Database(os.environ["SUHO_DATABASE_URL"])
    (run,) = TrainingRunRepository(db).list()
    print(json.dumps({
        "status": run.status.value, "error": run.error_message,
        "heartbeat": run.heartbeat_at is not None,
        "iterations": [p.iteration_number for p in TrainingMetricRepository(db).learning_curve(
            run.run_id)],
    }))
    """
)


@pytest.mark.slow
def test_sigterm_is_treated_like_ctrl_c(tmp_path: Path) -> None:
    """A training process gets SIGTERM: its metrics are flushed, the run is cancelled."""
    import signal

    child = subprocess.Popen(
        [sys.executable, "-c", TERM],
        env=_env(tmp_path, "xgboost"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.strip() == "TRAINING", child.stderr.read() if child.stderr else ""
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 3, err[-3000:]
    caught = json.loads(out.strip().splitlines()[-1])
    assert caught["caught"] == "Terminated" and 20 <= caught["last"] < 400
    read = json.loads(_run(READ_RUN, _env(tmp_path, "xgboost")).strip().splitlines()[-1])
    assert read["status"] == "cancelled" and "SIGTERM" in read["error"]
    assert read["heartbeat"]
    # Every iteration logged before the signal reached the table (flushed on the way out).
    assert read["iterations"] == list(range(1, caught["last"] + 1))


def test_resume_refuses_completed_and_checkpointless_runs(embedded_dir: Path) -> None:
    url = f"clickhouse+chdb:///{embedded_dir}/resume_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(url)
    db = Database(url)
    try:
        runs = TrainingRunRepository(db)
        run = runs.create({"run_name": "r", "model_type": "xgboost", "target_variable": "t"})
        runs.start(run.run_id)
        with pytest.raises(NotFoundError, match="no checkpoint"):
            SupervisedTrainer.resume(run.run_id, db)
        assert runs.get(run.run_id).status.value == "running"
        ModelCheckpointRepository(db).save_checkpoint(run.run_id, b"x", "xgboost_ubjson")
        runs.complete(run.run_id, {"final_test_accuracy": 0.5})
        before = db.execute("SELECT * FROM training_runs ORDER BY updated_at")
        with pytest.raises(InvalidTransitionError, match="completed"):
            SupervisedTrainer.resume(run.run_id, db)
        assert db.execute("SELECT * FROM training_runs ORDER BY updated_at") == before
    finally:
        db.close()
