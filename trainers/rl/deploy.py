"""Deployment of RL agents: promote the best completed run's agent, load it back.

Production is per agent type (the checkpoint store keys deployment on
``agent_type``): promoting an agent archives the one of the same type that held
the stage before.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from repositories.checkpoints import AgentCheckpointInfo, AgentCheckpointRepository
from repositories.errors import NotFoundError
from repositories.object_store import ObjectStore
from repositories.records import AgentTrainingRun
from repositories.runs import AgentRunRepository
from suho_models.db import Database
from suho_models.enums import AgentType, CheckpointKind, DeploymentStatus, RunStatus
from trainers.rl.agents import load_model


def best_completed_run(
    db: Database,
    *,
    agent_type: AgentType | str | None = None,
    metric: str = "final_sharpe_ratio",
    mode: Literal["max", "min"] = "max",
) -> AgentTrainingRun | None:
    """The completed run with the best ``metric`` (a run column); runs without it
    (NULL or NaN) are skipped, ties go to the newest run."""
    runs = AgentRunRepository(db).list(
        status=RunStatus.COMPLETED,
        type=None if agent_type is None else AgentType(agent_type).value,
        limit=None,
    )
    if runs and not hasattr(runs[0], metric):
        raise ValueError(f"metric: agent_training_runs has no column {metric!r}")
    scored = [(getattr(r, metric), r) for r in runs]
    scored = [(v, r) for v, r in scored if v is not None and not math.isnan(float(v))]
    if not scored:
        return None
    pick = max if mode == "max" else min
    return pick(scored, key=lambda pair: pair[0])[1]  # list() is newest first: ties -> newest


def deploy_best_agent(
    db: Database,
    *,
    agent_type: AgentType | str | None = None,
    metric: str = "final_sharpe_ratio",
    mode: Literal["max", "min"] = "max",
    stage: DeploymentStatus | str = DeploymentStatus.PRODUCTION,
    store: ObjectStore | None = None,
) -> AgentCheckpointInfo:
    """Put the best completed run's final agent in ``stage`` (previous holder archived).

    The agent is the run's ``final`` checkpoint (its latest one if it has none).
    """
    run = best_completed_run(db, agent_type=agent_type, metric=metric, mode=mode)
    if run is None:
        raise NotFoundError(f"no completed RL run with {metric} (agent_type={agent_type})")
    checkpoints = AgentCheckpointRepository(db, store)
    finals = checkpoints.list(run.run_id, kind=CheckpointKind.FINAL)
    checkpoint = finals[-1] if finals else checkpoints.latest(run.run_id)
    if checkpoint is None:
        raise NotFoundError(f"run {run.run_id} has no checkpoint to deploy")
    return checkpoints.deploy(checkpoint.checkpoint_id, stage)


def load_deployed_agent(
    db: Database,
    agent_type: AgentType | str,
    *,
    stage: DeploymentStatus | str = DeploymentStatus.PRODUCTION,
    env: Any | None = None,
    device: str = "cpu",
    store: ObjectStore | None = None,
) -> tuple[Any, AgentCheckpointInfo]:
    """The SB3 model in ``stage`` for ``agent_type`` (bytes verified) and its checkpoint."""
    checkpoints = AgentCheckpointRepository(db, store)
    info = checkpoints.deployed(AgentType(agent_type).value, stage)
    if info is None:
        raise NotFoundError(
            f"no {AgentType(agent_type).value} agent in {DeploymentStatus(stage).value}"
        )
    model = load_model(
        info.agent_type, checkpoints.load_checkpoint(info.checkpoint_id), env, device
    )
    return model, info


__all__ = ["best_completed_run", "deploy_best_agent", "load_deployed_agent"]
