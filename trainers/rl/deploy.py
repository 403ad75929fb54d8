"""Loading a deployed RL agent back as a live SB3 model.

Promoting one is ``RunTrackingService(db, RunKind.RL).deploy_best(...)`` (or the
checkpoint repository's ``deploy``): one home for deployment of both kinds.
Production is per agent type: promoting an agent archives the one of the same
type that held the stage before.
"""

from __future__ import annotations

from typing import Any

from repositories.checkpoints import AgentCheckpointInfo, AgentCheckpointRepository
from repositories.errors import NotFoundError
from repositories.object_store import ObjectStore
from suho_models.db import Database
from suho_models.enums import AgentType, DeploymentStatus
from trainers.rl.agents import load_model


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


__all__ = ["load_deployed_agent"]
