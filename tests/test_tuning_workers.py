"""Distributed tuning against real servers: 4 worker processes share one study
(PostgreSQL RDB storage for supervised, the journal on Redis for RL), the runs'
tables live on the local ClickHouse server. Each study finishes exactly 12 trials,
logged once each, and one worker retrains the best and completes the run.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from repositories.errors import InvalidInputError
from repositories.features import FeatureTable
from repositories.tracking import FINAL_KINDS, RunKind, RunTrackingService
from suho_models.db import Database, migrations
from suho_models.enums import RunStatus, TrialState
from tests.conftest import fresh_database_name
from tests.storage_servers import postgres_url, redis_url  # noqa: F401 - fixtures
from trainers.data.synth import generate_ml_features
from trainers.rl.config import RLConfig
from trainers.study import TrialHeartbeat, study_storage
from trainers.supervised.config import SupervisedConfig
from trainers.workers import create_tuning_run, launch, local_workers_allowed, worker_command

TRIALS = 12
WORKERS = 4
BEAT = TrialHeartbeat(interval=1, grace=4)
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def server_db(local_server: Any) -> Iterator[Database]:
    url = local_server.native_url(fresh_database_name())
    migrations.upgrade(url)
    db = Database(url)
    FeatureTable(db).write(generate_ml_features(("EURUSD", "XAUUSD"), periods=200, start=START))
    yield db
    db.close()


def supervised_config(storage: str, rounds: int = 15) -> SupervisedConfig:
    return SupervisedConfig.model_validate(
        {
            "model_type": "lightgbm",
            "rounds": rounds,
            "cv_folds": 2,
            "early_stopping": None,
            "checkpoint_every": None,
            "progress": False,
            "threads": 1,
            "selection": {"top_k": 8},
            "run_name": f"tune-{uuid.uuid4().hex[:6]}",
            "tuning": {"trials": TRIALS, "storage": storage},
        }
    )


def rl_config(storage: str) -> RLConfig:
    return RLConfig.model_validate(
        {
            "agent": "ppo",
            "timesteps": 64,
            "checkpoint_every_episodes": 100,
            "run_name": f"tune-rl-{uuid.uuid4().hex[:6]}",
            "tuning": {
                "trials": TRIALS,
                "timesteps": 32,
                "evaluations": 1,
                "storage": storage,
                "search_space": {
                    "n_steps": {"type": "categorical", "choices": [16, 32]},
                    "batch_size": {"type": "categorical", "choices": [16]},
                    "n_epochs": {"type": "categorical", "choices": [1]},
                    "net_arch": {"type": "categorical", "choices": ["tiny"]},
                },
            },
        }
    )


def check_study(db: Database, kind: RunKind, run_id: uuid.UUID, config: Any) -> list[Any]:
    """Exactly TRIALS complete-or-pruned trials, each logged once, one final checkpoint."""
    import optuna

    tracking = RunTrackingService(db, kind)
    assert tracking.get(run_id).status is RunStatus.COMPLETED
    study = optuna.load_study(
        study_name=str(run_id), storage=study_storage(config.tuning.storage, run_id)
    )
    done = study.get_trials(
        states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    )
    assert len(done) == TRIALS
    assert not study.get_trials(
        states=(optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
    )
    logged = tracking.trials(run_id)  # read with FINAL
    numbers = [t.trial_number for t in logged]
    assert len(numbers) == len(set(numbers)) == len(study.trials)
    ok = [t for t in logged if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert sorted(t.trial_number for t in ok) == sorted(t.number for t in done)
    assert all(t.worker_host and t.worker_pid > 0 for t in logged)
    finals = [c for c in tracking.checkpoints(run_id) if c.kind in FINAL_KINDS]
    assert len(finals) == 1
    return logged


@pytest.mark.slow
def test_four_workers_finish_exactly_twelve_supervised_trials_on_postgres(
    server_db: Database,
    postgres_url: str,  # noqa: F811
) -> None:
    config = supervised_config(postgres_url)
    run = create_tuning_run("supervised", config, server_db)
    codes = launch(run, "supervised", server_db, WORKERS, progress=False, heartbeat=BEAT)
    assert codes == [0] * WORKERS
    logged = check_study(server_db, RunKind.SUPERVISED, run.run_id, config)
    assert len({t.worker_pid for t in logged}) > 1  # the work was shared

    # Two more workers on the finished study: both leave at once, nothing changes.
    env = {**os.environ, "SUHO_DATABASE_URL": server_db.url.render_as_string(False)}
    late = [
        subprocess.Popen(worker_command(run.run_id), env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in late:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "study complete" in out
    check_study(server_db, RunKind.SUPERVISED, run.run_id, config)


@pytest.mark.slow
def test_four_workers_finish_exactly_twelve_rl_trials_on_redis(
    server_db: Database,
    redis_url: str,  # noqa: F811
) -> None:
    config = rl_config(redis_url)
    run = create_tuning_run("rl", config, server_db)
    codes = launch(run, "rl", server_db, WORKERS, progress=False, heartbeat=BEAT)
    assert codes == [0] * WORKERS
    check_study(server_db, RunKind.RL, run.run_id, config)
    stored = RLConfig.model_validate_json(
        RunTrackingService(server_db, RunKind.RL).get(run.run_id).config_json
    )
    assert stored.tuned_params is not None  # the best trial's parameters trained the run


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_replaced_and_the_study_still_finishes(
    server_db: Database,
    redis_url: str,  # noqa: F811
) -> None:
    import optuna

    config = supervised_config(redis_url, rounds=120)
    run = create_tuning_run("supervised", config, server_db)
    env = {**os.environ, "SUHO_DATABASE_URL": server_db.url.render_as_string(False)}
    procs = [
        subprocess.Popen(worker_command(run.run_id, BEAT), env=env, stdout=subprocess.DEVNULL)
        for _ in range(WORKERS)
    ]
    storage = study_storage(redis_url, run.run_id)
    study = optuna.load_study(study_name=str(run.run_id), storage=storage)
    pids = {p.pid: p for p in procs}
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline:
        for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            owner = trial.system_attrs.get("suho:worker", {}).get("pid")
            if owner in pids and trial.number >= 2:
                victim = (pids[owner], trial.number)
                break
        time.sleep(0.05)
    assert victim is not None, "no trial was seen running"
    proc, killed_number = victim
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    for other in procs:
        if other is not proc:
            assert other.wait(timeout=300) == 0
    logged = check_study(server_db, RunKind.SUPERVISED, run.run_id, config)
    killed = next(t for t in logged if t.trial_number == killed_number)
    assert killed.state is TrialState.FAILED and killed.worker_pid == proc.pid
    retry = [
        t
        for t in optuna.load_study(study_name=str(run.run_id), storage=storage).trials
        if t.system_attrs.get("failed_trial") == killed_number
    ]
    assert len(retry) == 1 and retry[0].state.is_finished()


def test_several_workers_on_the_embedded_store_are_refused(embedded_dir: Any) -> None:
    url = f"clickhouse+chdb:///{embedded_dir}/{fresh_database_name()}"
    db = Database(url)
    with pytest.raises(InvalidInputError, match=r"workers: 2 .*Unset SUHO_DATABASE_URL"):
        local_workers_allowed(db, 2)
    local_workers_allowed(db, 1)


def test_a_tuning_run_needs_trials(server_db: Database) -> None:
    config = supervised_config("redis://unused").model_copy(
        update={"tuning": supervised_config("x").tuning.model_copy(update={"trials": 0})}
    )
    with pytest.raises(InvalidInputError, match="tuning.trials"):
        create_tuning_run("supervised", config, server_db)
    assert not RunTrackingService(server_db, RunKind.SUPERVISED).list_runs()


# --------------------------------------------------------------------------- storage, CLI
def test_storage_url_setting_and_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    from suho_models.settings import get_settings
    from trainers.study import storage_url

    assert storage_url(None) is None  # the run's journal file
    monkeypatch.setenv("SUHO_OPTUNA_STORAGE", "postgresql://u@h/optuna")
    get_settings.cache_clear()
    assert storage_url(None) == "postgresql+psycopg://u@h/optuna"  # psycopg 3, no psycopg2
    assert storage_url("mysql://u@h/o") == "mysql://u@h/o"  # the config's wins


def test_redis_url_opens_the_journal_on_redis(redis_url: str) -> None:  # noqa: F811
    from optuna.storages import JournalStorage

    from trainers.study import create_shared_study, study_done

    run_id = uuid.uuid4()
    storage = study_storage(redis_url, run_id, heartbeat=BEAT)
    assert isinstance(storage, JournalStorage) and storage.get_heartbeat_interval() == 1
    study = create_shared_study(run_id, storage, study_name=str(run_id), trials=3)
    again = create_shared_study(run_id, storage, study_name=str(run_id), trials=3)
    assert len(again.trials) == len(study.trials) == 3 and not study_done(study)


def cli_store(embedded_dir: Any, monkeypatch: pytest.MonkeyPatch, features: bool) -> str:
    from suho_models.settings import get_settings

    url = f"clickhouse+chdb:///{embedded_dir}/{fresh_database_name()}"
    migrations.upgrade(url)
    if features:
        db = Database(url)
        FeatureTable(db).write(generate_ml_features(("EURUSD", "XAUUSD"), periods=200, start=START))
    monkeypatch.setenv("SUHO_DATABASE_URL", url)
    get_settings.cache_clear()
    return url


def test_cli_refuses_workers_on_the_embedded_store_before_creating_a_run(
    embedded_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from suho.cli import app

    url = cli_store(embedded_dir, monkeypatch, features=False)
    result = CliRunner().invoke(app, ["tune", "supervised", "--trials", "4", "--workers", "2"])
    assert result.exit_code != 0
    assert "Unset SUHO_DATABASE_URL" in str(result.exception)
    assert not RunTrackingService(Database(url), RunKind.SUPERVISED).list_runs()

    unknown = CliRunner().invoke(app, ["tune", "worker", str(uuid.uuid4())])
    assert unknown.exit_code != 0 and "no supervised or RL run" in str(unknown.exception)


@pytest.mark.slow
def test_cli_tunes_with_one_worker_on_the_embedded_store(
    embedded_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from suho.cli import app

    url = cli_store(embedded_dir, monkeypatch, features=True)
    args = ["tune", "supervised", "--trials", "3", "--rounds", "10", "--cv", "2", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    db = Database(url)
    (run,) = RunTrackingService(db, RunKind.SUPERVISED).list_runs()
    assert run.status is RunStatus.COMPLETED
    trials = RunTrackingService(db, RunKind.SUPERVISED).trials(run.run_id)
    assert [t.trial_number for t in trials] == [0, 1, 2]
    assert {t.worker_pid for t in trials} == {os.getpid()}
    late = CliRunner().invoke(app, ["tune", "worker", str(run.run_id)])
    assert late.exit_code == 0 and "study complete" in late.output


@pytest.mark.slow
def test_a_worker_that_loses_the_database_keeps_tuning_and_every_trial_is_logged(
    tmp_path: Any,
    redis_url: str,  # noqa: F811
) -> None:
    """The ClickHouse server stops after 2 trials and comes back after 5: the worker
    tunes on (the study holds the trials), and the final training logs the missing rows."""
    import optuna

    from suho_models.db.server import LocalServer
    from trainers.study import slots_finished

    server = LocalServer(tmp_path / "outage").start()
    ports = {"tcp_port": server.tcp_port, "http_port": server.http_port}
    url = server.native_url(fresh_database_name())
    migrations.upgrade(url)
    db = Database(url)
    FeatureTable(db).write(generate_ml_features(("EURUSD", "XAUUSD"), periods=200, start=START))
    config = supervised_config(redis_url, rounds=200)
    run = create_tuning_run("supervised", config, db)
    env = {**os.environ, "SUHO_DATABASE_URL": db.url.render_as_string(False)}
    proc = subprocess.Popen(worker_command(run.run_id, BEAT), env=env, stdout=subprocess.DEVNULL)
    study = optuna.load_study(
        study_name=str(run.run_id), storage=study_storage(redis_url, run.run_id)
    )

    def wait_for(finished: int) -> None:
        deadline = time.monotonic() + 180
        while slots_finished(study) < finished:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)

    try:
        wait_for(2)
        server.stop()
        wait_for(5)  # trials go on while the database is away
        server = LocalServer(tmp_path / "outage", **ports).start()
        assert proc.wait(timeout=300) == 0
        db.close()
        db = Database(url)  # this process's connections died with the first server
        check_study(db, RunKind.SUPERVISED, run.run_id, config)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
        db.close()
