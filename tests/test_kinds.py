"""The registry of run kinds and the door's protocols (issue 22): every kind has its
facts in each layer's registry, consumers do not branch on the kind, and the
service owns what callers used to assemble (flush before a checkpoint, trim on
resume, the deployed checkpoint with its run, start/resume hooks)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from repositories.errors import InvalidInputError, NotFoundError
from repositories.kinds import PROFILES, RL, SUPERVISED, RunKind, curve_owner, profile_of
from repositories.records import AgentTrainingRun, TrainingRun
from repositories.tracking import (
    RunTrackingService,
    SeriesNotStoredError,
    tracking_for_checkpoint,
    tracking_for_run,
)
from suho.kinds import PRESENTATIONS
from suho_models.db import Database
from suho_models.enums import DeploymentStatus, RunStatus
from trainers.kinds import TRAINERS

ROOT = Path(__file__).resolve().parents[1]
REGISTRIES = {"repositories/kinds.py", "trainers/kinds.py", "suho/kinds.py"}
MAX_BRANCHES = 5
"""``RunKind.X`` uses allowed outside the registries (issue 22: at most 5)."""


def test_every_kind_has_an_entry_in_every_layer() -> None:
    assert set(PROFILES) == set(TRAINERS) == set(PRESENTATIONS) == set(RunKind)
    for kind in RunKind:
        assert PROFILES[kind].kind is kind
        assert TRAINERS[kind].data is PROFILES[kind]
        assert PRESENTATIONS[kind].data is PROFILES[kind]
        curves = [c.name for c in PROFILES[kind].curves]
        assert set(PRESENTATIONS[kind].mlflow_series) <= set(curves), kind


def test_facts_the_consumers_used_to_decide_themselves() -> None:
    assert (SUPERVISED.direction, RL.direction) == ("minimize", "maximize")
    assert (SUPERVISED.objective_column, RL.objective_column) == ("objective_value", "mean_reward")
    assert (SUPERVISED.ranking_metric, RL.ranking_metric) == (
        "final_test_accuracy",
        "final_sharpe_ratio",
    )
    assert curve_owner("episodes")[0] is RL and curve_owner("metrics")[0] is SUPERVISED
    with pytest.raises(InvalidInputError, match=r"curve: .*'bogus'"):
        curve_owner("bogus")
    with pytest.raises(InvalidInputError, match=r"kind: .*'nope'"):
        profile_of("nope")
    assert TRAINERS[RunKind.RL].config_class().__name__ == "RLConfig"


def test_consumers_do_not_branch_on_the_kind() -> None:
    uses = []
    for package in ("suho", "trainers", "repositories"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name in REGISTRIES:
                continue
            text = path.read_text()
            uses += [f"{name}: {m.group(0)}" for m in re.finditer(r"RunKind\.\w+", text)]
    assert len(uses) <= MAX_BRANCHES, uses


# --------------------------------------------------------------------------- the door
def _supervised(db: Database) -> tuple[Any, TrainingRun]:
    tracking = RunTrackingService(db, SUPERVISED)
    run = tracking.create({"run_name": "door", "model_type": "xgboost", "target_variable": "t"})
    return tracking, tracking.start(run.run_id)


class _Unflushable:
    """A series logger whose rows could not be inserted: ``memory_rows`` of them are
    held only in memory (the spool failed too), the rest are in spool files."""

    def __init__(self, memory_rows: int) -> None:
        self.memory_rows = memory_rows

    def flush(self) -> bool:
        return False


def test_no_checkpoint_while_its_series_is_not_stored(db: Database) -> None:
    tracking, run = _supervised(db)
    with pytest.raises(SeriesNotStoredError, match=str(run.run_id)):
        tracking.save_checkpoint(
            run.run_id, b"m", "xgboost_ubjson", iteration=3, flush=_Unflushable(5)
        )
    assert tracking.checkpoints(run.run_id) == []
    # spooled rows are durable (replayed by the next writer, and before a resume trims)
    spooled = tracking.save_checkpoint(
        run.run_id, b"m", "xgboost_ubjson", iteration=2, flush=_Unflushable(0)
    )
    assert [c.checkpoint_id for c in tracking.checkpoints(run.run_id)] == [spooled.checkpoint_id]
    tracking.delete_checkpoint(spooled.checkpoint_id)
    with tracking.open_series(run.run_id) as logger:
        logger.log(1, train_loss=0.5)
        saved = tracking.save_checkpoint(
            run.run_id, b"m", "xgboost_ubjson", iteration=1, flush=logger
        )
        assert tracking.series_count(run.run_id) == 1  # flushed before the checkpoint
    assert saved.iteration == 1 and tracking.load_checkpoint(saved.checkpoint_id) == b"m"


@pytest.mark.parametrize("profile", [SUPERVISED, RL], ids=["supervised", "rl"])
def test_resume_trims_the_series_past_the_checkpoint(db: Database, profile: Any) -> None:
    tracking = RunTrackingService(db, profile)
    fields = {
        "run_name": "trim",
        profile.type_column: "xgboost" if profile is SUPERVISED else "ppo",
    }
    if profile is SUPERVISED:
        fields["target_variable"] = "t"
        rows = [{"iteration_number": i, "train_loss": 1.0 / i} for i in range(1, 11)]
        at = {"iteration": 4}
    else:
        rows = [
            {
                "episode_number": 1,
                "timestep_number": t,
                "step_reward": 0.1,
                "episode_cumulative_reward": 0.1,
            }
            for t in range(1, 11)
        ]
        at = {"episode_number": 1, "timestep": 4}
    run = tracking.start(tracking.create(fields).run_id)
    tracking.log_series(run.run_id, rows)
    tracking.save_checkpoint(run.run_id, b"x", "raw" if profile is RL else "xgboost_ubjson", **at)
    tracking.fail(run.run_id, "killed")
    resumed, latest = tracking.resume(run.run_id)
    assert resumed.status is RunStatus.RUNNING and latest is not None
    tracking.open_series(run.run_id, latest).close()
    xs = [p.x for p in tracking.series(run.run_id, profile.curves[-1].name, columns=())]
    assert xs == [1, 2, 3, 4]


def test_start_and_resume_call_the_hooks(db: Database) -> None:
    seen: list[uuid.UUID] = []
    tracking = RunTrackingService(db, RL, on_run=seen.append)
    run = tracking.create({"run_name": "hooked", "agent_type": "ppo"})
    tracking.start(run.run_id)
    tracking.cancel(run.run_id, "stop")
    tracking.resume(run.run_id)
    assert seen == [run.run_id, run.run_id]


def test_deployed_checkpoint_comes_with_its_bytes_and_run(db: Database) -> None:
    tracking, run = _supervised(db)
    with pytest.raises(NotFoundError, match="production"):
        tracking.deployed("door")
    info = tracking.save_checkpoint(run.run_id, b"model", "xgboost_ubjson", kind="final")
    tracking.deploy(info.checkpoint_id, DeploymentStatus.PRODUCTION)
    deployed = tracking.deployed("door")
    assert deployed.info.checkpoint_id == info.checkpoint_id
    assert deployed.data == b"model" and deployed.run.run_id == run.run_id
    found, record = tracking_for_run(db, run.run_id)
    assert found.kind is RunKind.SUPERVISED and isinstance(record, TrainingRun)
    found, checkpoint = tracking_for_checkpoint(db, info.checkpoint_id)
    assert found.kind is RunKind.SUPERVISED and checkpoint.checkpoint_id == info.checkpoint_id
    agents = RunTrackingService(db, RL)
    agent = agents.create({"run_name": "agent", "agent_type": "ppo"})
    found, record = tracking_for_run(db, agent.run_id)
    assert found.kind is RunKind.RL and isinstance(record, AgentTrainingRun)
