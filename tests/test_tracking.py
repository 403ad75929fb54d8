"""The run-tracking service, on both backends: guarding, heartbeats, staleness, the
resume protocol, finding a run's kind, the final checkpoint and deploy_best."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
import uuid
from typing import Any

import pytest

from repositories.errors import InvalidInputError, InvalidTransitionError, NotFoundError
from repositories.tracking import (
    STALE_AFTER_BEATS,
    RunKind,
    RunTrackingService,
    Terminated,
    find_checkpoint,
    find_run,
)
from suho_models.db import Database
from suho_models.enums import CheckpointKind, DeploymentStatus, RunStatus
from trainers.study import study_storage


def supervised_run(tracking: RunTrackingService, name: str = "r", **kw: Any) -> Any:
    data = {"run_name": name, "model_type": "xgboost", "target_variable": "t", **kw}
    return tracking.create(data)


def agent_run(tracking: RunTrackingService, name: str = "a", **kw: Any) -> Any:
    return tracking.create({"run_name": name, "agent_type": "ppo", **kw})


def started(tracking: RunTrackingService, run: Any) -> Any:
    return tracking.start(run.run_id)


# --------------------------------------------------------------------------- guard
@pytest.mark.parametrize("kind", list(RunKind))
def test_guard_marks_failures_and_interrupts(db: Database, kind: RunKind) -> None:
    tracking = RunTrackingService(db, kind)
    new = supervised_run if kind is RunKind.SUPERVISED else agent_run

    failing = started(tracking, new(tracking, "failing"))
    with pytest.raises(ValueError, match="bad data"), tracking.guard(failing.run_id):
        raise ValueError("bad data")
    stored = tracking.get(failing.run_id)
    assert stored.status is RunStatus.FAILED
    assert stored.error_message == "ValueError: bad data"

    interrupted = started(tracking, new(tracking, "interrupted"))
    with pytest.raises(KeyboardInterrupt), tracking.guard(interrupted.run_id):
        raise KeyboardInterrupt
    stored = tracking.get(interrupted.run_id)
    assert stored.status is RunStatus.CANCELLED and "KeyboardInterrupt" in stored.error_message

    fine = started(tracking, new(tracking, "fine"))
    with tracking.guard(fine.run_id):
        tracking.complete(fine.run_id)
    assert tracking.get(fine.run_id).status is RunStatus.COMPLETED


def test_an_error_after_completion_keeps_the_status_and_the_error(db: Database) -> None:
    tracking = RunTrackingService(db, RunKind.SUPERVISED)
    run = started(tracking, supervised_run(tracking))
    with pytest.raises(RuntimeError, match="after"), tracking.guard(run.run_id):
        tracking.complete(run.run_id)
        raise RuntimeError("after completion")
    assert tracking.get(run.run_id).status is RunStatus.COMPLETED


def test_sigterm_inside_guard_cancels_and_the_handler_is_restored(db: Database) -> None:
    tracking = RunTrackingService(db, RunKind.SUPERVISED)
    run = started(tracking, supervised_run(tracking))
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), tracking.guard(run.run_id):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises in the main thread before this ends
    stored = tracking.get(run.run_id)
    assert stored.status is RunStatus.CANCELLED and "SIGTERM" in stored.error_message
    assert signal.getsignal(signal.SIGTERM) is before
    assert issubclass(Terminated, KeyboardInterrupt)  # Ctrl-C's cleanup paths run for it


def test_guard_outside_the_main_thread_leaves_signals_alone(db: Database) -> None:
    tracking = RunTrackingService(db, RunKind.RL)
    run = started(tracking, agent_run(tracking))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with tracking.guard(run.run_id):
                tracking.complete(run.run_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert errors == []
    assert tracking.get(run.run_id).status is RunStatus.COMPLETED


# --------------------------------------------------------------------------- heartbeats
def test_heartbeats_while_guarded_never_undo_a_status_change(db: Database) -> None:
    tracking = RunTrackingService(db, RunKind.SUPERVISED, heartbeat_seconds=0.02)
    run = started(tracking, supervised_run(tracking))
    assert run.heartbeat_at is None
    with tracking.guard(run.run_id):
        first = tracking.get(run.run_id).heartbeat_at
        assert first is not None  # a beat at once
        deadline = time.monotonic() + 30
        while tracking.get(run.run_id).heartbeat_at == first:
            assert time.monotonic() < deadline, "no heartbeat from the thread"
            time.sleep(0.02)
        # Status changes and heartbeats interleave; the change always survives.
        for n in range(20):
            tracking.update(run.run_id, train_rows=n)
        assert tracking.get(run.run_id).train_rows == 19
        tracking.complete(run.run_id, {"final_test_accuracy": 0.5})
        time.sleep(0.1)  # several intervals: any beat now must not write
    stored = tracking.get(run.run_id)
    assert stored.status is RunStatus.COMPLETED and stored.final_test_accuracy == 0.5
    assert stored.train_rows == 19
    assert tracking.heartbeat(run.run_id) is False  # not running: nothing written


# --------------------------------------------------------------------------- staleness
def test_stale_runs_are_found_shown_and_swept(db: Database) -> None:
    tracking = RunTrackingService(db, RunKind.RL)
    now = dt.datetime.now(dt.UTC)
    long_ago = now - dt.timedelta(seconds=10 * STALE_AFTER_BEATS * tracking.heartbeat_seconds)
    dead = started(tracking, agent_run(tracking, "dead"))
    dead = tracking.update(dead.run_id, heartbeat_at=long_ago)
    alive = started(tracking, agent_run(tracking, "alive"))
    tracking.heartbeat(alive.run_id)
    never_beat = started(tracking, agent_run(tracking, "old-style"))  # started long ago
    tracking.update(never_beat.run_id, started_at=long_ago)
    finished = started(tracking, agent_run(tracking, "finished"))
    tracking.update(finished.run_id, heartbeat_at=long_ago)
    tracking.complete(finished.run_id)

    assert tracking.is_stale(dead) and not tracking.is_stale(tracking.get(alive.run_id))
    assert not tracking.is_stale(tracking.get(finished.run_id))
    stale = {r.run_name for r in tracking.stale_runs()}
    assert stale == {"dead", "old-style"}
    swept = tracking.sweep_stale()
    assert {r.run_name for r in swept} == {"dead", "old-style"}
    for run in swept:
        stored = tracking.get(run.run_id)
        assert stored.status is RunStatus.FAILED and "stale: no heartbeat since" in (
            stored.error_message
        )
    assert tracking.get(alive.run_id).status is RunStatus.RUNNING
    assert tracking.stale_runs() == []


def test_end_by_hand_either_way_with_a_reason(db: Database) -> None:
    tracking = RunTrackingService(db, RunKind.SUPERVISED)
    a = started(tracking, supervised_run(tracking, "a"))
    b = started(tracking, supervised_run(tracking, "b"))
    assert tracking.end(a.run_id, "failed", "machine died").error_message == "machine died"
    assert tracking.end(b.run_id, "cancelled").status is RunStatus.CANCELLED
    with pytest.raises(InvalidInputError, match="status: expected failed or cancelled"):
        tracking.end(a.run_id, "completed")
    with pytest.raises(InvalidTransitionError):
        tracking.end(b.run_id, "failed")  # already ended


# --------------------------------------------------------------------------- resume
def test_one_resume_protocol(db: Database) -> None:
    tracking = RunTrackingService(db, RunKind.SUPERVISED)
    pending = supervised_run(tracking, "pending")
    with pytest.raises(InvalidTransitionError, match="pending"):
        tracking.resume(pending.run_id)

    crashed = started(tracking, supervised_run(tracking, "crashed"))
    before = db.execute("SELECT * FROM training_runs ORDER BY updated_at")
    with pytest.raises(NotFoundError, match="no checkpoint"):
        tracking.resume(crashed.run_id, require_state=True)
    assert db.execute("SELECT * FROM training_runs ORDER BY updated_at") == before

    checkpoint = tracking.save_checkpoint(crashed.run_id, b"x", "xgboost_ubjson")
    tracking.fail(crashed.run_id, "killed")
    run, latest = tracking.resume(crashed.run_id, require_state=True)
    assert run.status is RunStatus.RUNNING and run.error_message == ""
    assert run.heartbeat_at is not None and latest.checkpoint_id == checkpoint.checkpoint_id
    run, latest = tracking.resume(crashed.run_id)  # still "running": a killed process
    assert run.status is RunStatus.RUNNING

    tracking.complete(crashed.run_id)
    with pytest.raises(InvalidTransitionError, match="completed"):
        tracking.resume(crashed.run_id)


# --------------------------------------------------------------------------- lookups
def test_find_run_and_checkpoint_of_either_kind(db: Database) -> None:
    supervised = RunTrackingService(db, RunKind.SUPERVISED)
    rl = RunTrackingService(db, RunKind.RL)
    s, a = supervised_run(supervised), agent_run(rl)
    assert find_run(db, s.run_id)[0] is RunKind.SUPERVISED
    kind, record = find_run(db, str(a.run_id))
    assert kind is RunKind.RL and record.run_id == a.run_id
    with pytest.raises(NotFoundError, match="no supervised or RL run with run_id"):
        find_run(db, uuid.uuid4())
    with pytest.raises(InvalidInputError, match="run_id: not a UUID"):
        find_run(db, "nope")
    saved = rl.save_checkpoint(a.run_id, b"agent", "sb3_zip")
    kind, repo, info = find_checkpoint(db, saved.checkpoint_id)
    assert kind is RunKind.RL and info.checkpoint_id == saved.checkpoint_id
    with pytest.raises(NotFoundError, match="no model or agent checkpoint"):
        find_checkpoint(db, uuid.uuid4())
    with pytest.raises(InvalidInputError, match="kind"):
        RunTrackingService(db, "unsupervised")


def test_final_checkpoint_reads_the_legacy_best_kind(db: Database) -> None:
    tracking = RunTrackingService(db, RunKind.SUPERVISED)
    run = supervised_run(tracking)
    assert tracking.final_checkpoint(run.run_id) is None
    first = tracking.save_checkpoint(run.run_id, b"1", "xgboost_ubjson", iteration=5)
    assert tracking.final_checkpoint(run.run_id).checkpoint_id == first.checkpoint_id  # latest
    legacy = tracking.save_checkpoint(run.run_id, b"2", "xgboost_ubjson", iteration=6, kind="best")
    tracking.save_checkpoint(run.run_id, b"3", "xgboost_ubjson", iteration=7)
    assert tracking.final_checkpoint(run.run_id).checkpoint_id == legacy.checkpoint_id
    final = tracking.save_checkpoint(
        run.run_id, b"4", "xgboost_ubjson", iteration=6, kind=CheckpointKind.FINAL
    )
    assert tracking.final_checkpoint(run.run_id).checkpoint_id == final.checkpoint_id  # newer


# --------------------------------------------------------------------------- deploy_best
def _completed_agent(rl: RunTrackingService, name: str, **final: Any) -> tuple[Any, Any]:
    run = started(
        rl,
        agent_run(
            rl, name, **({"agent_type": final.pop("agent_type")} if "agent_type" in final else {})
        ),
    )
    rl.save_checkpoint(run.run_id, b"mid", "sb3_zip", episode_number=1)
    checkpoint = rl.save_checkpoint(
        run.run_id, name.encode(), "sb3_zip", episode_number=2, kind=CheckpointKind.FINAL
    )
    rl.complete(run.run_id, final)
    return run, checkpoint


def test_deploy_best_ranks_in_clickhouse_skipping_null_and_nan(db: Database) -> None:
    rl = RunTrackingService(db, RunKind.RL)
    with pytest.raises(NotFoundError, match="no completed rl run"):
        rl.deploy_best()
    _, low = _completed_agent(rl, "low", final_sharpe_ratio=0.5, total_timesteps=900)
    _completed_agent(rl, "nan", final_sharpe_ratio=float("nan"), total_timesteps=100)
    _completed_agent(rl, "null", total_timesteps=50)
    _, high = _completed_agent(rl, "high", final_sharpe_ratio=1.5, total_timesteps=200)
    _, sac = _completed_agent(rl, "sac", final_sharpe_ratio=9.0, agent_type="sac")
    running = started(rl, agent_run(rl, "running"))
    rl.update(running.run_id, final_sharpe_ratio=99.0)  # not completed: never picked

    assert rl.deploy_best(type="ppo").checkpoint_id == high.checkpoint_id
    assert rl.deploy_best().checkpoint_id == sac.checkpoint_id
    deployed = rl.deploy_best(by="final_sharpe_ratio", mode="min", stage="staging")
    assert deployed.checkpoint_id == low.checkpoint_id
    assert deployed.deployment_status is DeploymentStatus.STAGING
    assert rl.deploy_best(by="total_timesteps", type="ppo").checkpoint_id == low.checkpoint_id
    assert rl.checkpoint(high.checkpoint_id).deployment_status is DeploymentStatus.ARCHIVED

    # Ties go to the newest run.
    time.sleep(0.01)
    _, tie = _completed_agent(rl, "tie", final_sharpe_ratio=1.5)
    assert rl.deploy_best(type="ppo").checkpoint_id == tie.checkpoint_id
    for bad, needle in (("run_name", "metric"), ("no_such", "metric"), ("status", "metric")):
        with pytest.raises(InvalidInputError, match=needle):
            rl.deploy_best(by=bad)
    with pytest.raises(InvalidInputError, match="mode"):
        rl.deploy_best(mode="best")


def test_deploy_best_supervised_takes_the_final_model(db: Database) -> None:
    tracking = RunTrackingService(db, RunKind.SUPERVISED)
    deployed = {}
    for name, accuracy in (("a", 0.6), ("b", 0.7)):
        run = started(tracking, supervised_run(tracking, name))
        tracking.save_checkpoint(run.run_id, b"i", "xgboost_ubjson", iteration=3)
        deployed[name] = tracking.save_checkpoint(
            run.run_id, name.encode(), "xgboost_ubjson", iteration=2, kind=CheckpointKind.FINAL
        )
        tracking.complete(run.run_id, {"final_test_accuracy": accuracy})
    info = tracking.deploy_best()  # default: final_test_accuracy
    assert info.checkpoint_id == deployed["b"].checkpoint_id
    assert info.deployment_status is DeploymentStatus.PRODUCTION


def test_one_study_storage_policy(tmp_path: Any) -> None:
    run_id = uuid.uuid4()
    assert study_storage("sqlite:///x.db", run_id) == "sqlite:///x.db"
    storage = study_storage(None, run_id)
    from suho_models.settings import get_settings

    assert type(storage).__name__ == "JournalStorage"
    assert (get_settings().data_dir / "optuna" / f"{run_id}.journal").parent.is_dir()
