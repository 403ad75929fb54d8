"""The client: ``suho.init`` / ``log`` / ``finish`` / ``log_model`` against the real engine."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import suho
from repositories.errors import InvalidInputError
from repositories.series import RewardHistoryRepository, TrainingMetricRepository
from repositories.tracking import RunKind, RunTrackingService, find_run
from suho_models.db import Database, migrations
from suho_models.enums import RunStatus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_open_run() -> Iterator[None]:
    yield
    run = suho.active_run()
    if run is not None:
        run.finish("failed", "left open by a test")


def _stored(db: Database, run: suho.Run) -> object:
    return find_run(db, run.run_id)[1]


def test_a_loop_is_tracked_with_finals_series_and_params(db: Database) -> None:
    config = {"max_depth": 6, "eta": np.float32(0.25), "objective": "binary:logistic"}
    with suho.init(name="xgb", config=config, tags={"team": "ml"}, db=db) as run:
        for i in range(20):
            run.log({"train_loss": 1 / (i + 1), "val_auc": 0.5 + i / 100})
        assert suho.log({"extra": 3}) == 20  # the active run, the next step
        run.summary.update(test_accuracy=0.91, best_auc=0.69)
    stored = _stored(db, run)
    assert stored.status is RunStatus.COMPLETED and run.status is RunStatus.COMPLETED
    assert stored.final_test_accuracy == 0.91 and stored.final_train_loss == 0.05
    service = RunTrackingService(db, "supervised")
    keys = {k.key: k for k in service.metric_keys(run.run_id)}
    assert sorted(keys) == ["best_auc", "extra", "train_loss", "val_auc"]  # nothing dropped
    assert keys["best_auc"].last_value == 0.69 and keys["val_auc"].count == 20
    assert service.metric_series(run.run_id, "val_auc")[3] == (3, 0.53)
    # train_loss is a training_metrics column: the seed's table has it too.
    curve = TrainingMetricRepository(db).learning_curve(run.run_id)
    assert [(p.iteration_number, p.train_loss) for p in curve][:2] == [(0, 1.0), (1, 0.5)]
    assert len(curve) == 20
    # Every config value is stored and filterable, with its type.
    assert [r.run_id for r in service.runs_with_params({"max_depth": 6})] == [run.run_id]
    assert service.runs_with_params({"max_depth": 5}) == []
    assert service.runs_with_params({"max_depth": "6"}) == []  # a string is not the number
    assert [r.run_id for r in service.runs_with_params({"eta": 0.25})] == [run.run_id]
    assert len(service.runs_with_params({"objective": "binary:logistic", "_tags.team": "ml"}))


def test_any_library_name_and_an_rl_run(db: Database) -> None:
    with suho.init(kind="rl", agent_type="cleanrl-dqn", db=db) as run:
        for t in range(5):
            run.log({"step_reward": 1.0, "episode_cumulative_reward": t + 1.0, "q": 0.1}, step=t)
        run.summary["sharpe_ratio"] = 1.5
    kind, stored = find_run(db, run.run_id)
    assert kind is RunKind.RL and str(stored.agent_type) == "cleanrl-dqn"
    assert stored.final_sharpe_ratio == 1.5
    assert [p.episode_cumulative_reward for p in RewardHistoryRepository(db).steps(run.run_id)] == [
        1.0,
        2.0,
        3.0,
        4.0,
        5.0,
    ]
    with suho.init(model_type="pytorch", db=db) as run:
        pass
    assert str(_stored(db, run).model_type) == "pytorch"
    with pytest.raises(InvalidInputError, match="model_type"):
        suho.init(model_type="Not A Name!", db=db)


def test_an_exception_fails_the_run_and_is_raised(db: Database) -> None:
    with pytest.raises(ZeroDivisionError), suho.init(db=db) as run:
        run.log({"loss": 1.0})
        1 / 0  # noqa: B018
    stored = _stored(db, run)
    assert stored.status is RunStatus.FAILED and "ZeroDivisionError" in stored.error_message
    assert RunTrackingService(db, "supervised").metric_series(run.run_id, "loss") == [(0, 1.0)]
    assert suho.active_run() is None


def test_bad_input_names_key_and_value_and_changes_nothing(db: Database) -> None:
    run = suho.init(db=db)
    run.log({"loss": 1.0})
    for bad, message in [
        ({"loss": "high"}, "metric 'loss': expected a number \\(got 'high'"),
        ({"loss": object()}, "metric 'loss': expected a number"),
        ({"": 1.0}, "metric key: must not be empty"),
        ({"k" * 251: 1.0}, "at most 250 characters"),
        ({f"k{i}": 1.0 for i in range(10_000)}, "at most 1000 keys per call"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            run.log(bad)
    for step in (-1, 2.5, "3"):
        with pytest.raises(
            InvalidInputError, match=f"step: expected a non-negative integer \\(got {step!r}"
        ):
            run.log({"loss": 2.0}, step=step)
    with pytest.raises(InvalidInputError, match="suho.init: run .* is still open"):
        suho.init(db=db)
    with pytest.raises(InvalidInputError, match="cannot store a builtins.list"):
        run.log_model([1, 2, 3])
    run.log({"loss": math.nan, "inf": math.inf})  # non-finite values are kept (documented)
    run.finish()
    with pytest.raises(InvalidInputError, match="log after finish"):
        run.log({"loss": 1.0})
    with pytest.raises(InvalidInputError, match="no active run"):
        suho.log({"loss": 1.0})
    series = RunTrackingService(db, "supervised").metric_series(run.run_id, "loss")
    assert series[0] == (0, 1.0) and len(series) == 2 and math.isnan(series[1][1])
    assert RunTrackingService(db, "supervised").metric_series(run.run_id, "inf") == [(1, math.inf)]


def test_a_pytorch_loop_logs_any_key_and_its_model(db: Database) -> None:
    import torch

    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with suho.init(name="torch", model_type="pytorch", config={"lr": 0.05}, db=db) as run:
        for epoch in range(30):
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            grad = torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)
            run.log({"mse": loss, "grad_norm/all": grad, "lr": 0.05}, step=epoch)
        info = run.log_model(model, name="regressor")
    assert info.model_format.value == "torch_state_dict"
    mse = RunTrackingService(db, "supervised").metric_series(run.run_id, "mse")
    assert len(mse) == 30 and mse[-1][1] < mse[0][1]
    state = suho.load_model(info.checkpoint_id, db=db)
    again = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    again.load_state_dict(state)
    assert torch.equal(again(x), model(x))


# --------------------------------------------------------------------------- processes
SCRIPT = """
import os, sys, time
import suho
run = suho.init(name="child", db=sys.argv[1], heartbeat_seconds=0.2)
for i in range(1000):
    run.log({"loss": float(i)})
run.flush()
print("sealed", run.run_id, flush=True)
for i in range(1000, 1500):
    run.log({"loss": float(i)})
print("logged", flush=True)
time.sleep(60)
"""


def _child(url: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), url],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.startswith("sealed"), line
    assert child.stdout.readline().startswith("logged")
    return child, line.split()[1]


@pytest.fixture
def server_url(local_server: object) -> str:
    from tests.conftest import fresh_database_name

    url = local_server.native_url(fresh_database_name())  # type: ignore[attr-defined]
    migrations.upgrade(url)
    return url


def test_kill_9_keeps_every_sealed_row_and_the_run_goes_stale(server_url: str) -> None:
    child, run_id = _child(server_url)
    child.kill()
    child.wait()
    time.sleep(1.0)  # several missed heartbeats of 0.2 s
    db = Database(server_url)
    try:
        service = RunTrackingService(db, "supervised", heartbeat_seconds=0.2)
        series = service.metric_series(run_id, "loss")
        assert series[:1000] == [(i, float(i)) for i in range(1000)]  # all sealed rows
        stored = service.get(run_id)
        assert stored.status is RunStatus.RUNNING and service.is_stale(stored)
    finally:
        db.close()


def test_sigterm_cancels_the_run_and_writes_its_metrics(server_url: str) -> None:
    child, run_id = _child(server_url)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) != 0
    db = Database(server_url)
    try:
        service = RunTrackingService(db, "supervised")
        stored = service.get(run_id)
        assert stored.status is RunStatus.CANCELLED and "SIGTERM" in stored.error_message
        assert len(service.metric_series(run_id, "loss")) == 1500  # flushed on the way out
    finally:
        db.close()
