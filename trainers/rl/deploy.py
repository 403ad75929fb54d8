"""Loading a deployed RL agent back as a live agent that acts as it did in training.

Promoting one is ``RunTrackingService(db, RL).deploy_best(...)`` (or its
``deploy``): one home for deployment of both kinds.
Production is per agent type: promoting an agent archives the one of the same
type that held the stage before.

The SB3 model alone is not the agent: it was trained on scaled observations whose
statistics live in its run's ``env_config_json``. :class:`DeployedAgent` carries them,
so a reloaded agent given FinRL's raw state (or an env built by :meth:`make_env`) takes
exactly the actions it took before it was saved.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from repositories.checkpoints import AgentCheckpointInfo
from repositories.errors import NotFoundError
from repositories.kinds import RL
from repositories.object_store import ObjectStore
from repositories.records import AgentTrainingRun
from repositories.serialization import CheckpointBytes
from repositories.tracking import RunTrackingService
from suho_models.db import Database
from suho_models.enums import AgentType, DeploymentStatus
from trainers.rl.agents import load_model
from trainers.rl.config import RLConfig
from trainers.rl.environment import (
    load_market,
    make_env,
    observation_scaling,
    stored_scaling,
    use_stored_scaling,
)
from trainers.rl.finrl_env import MarketData
from trainers.rl.observation import ObservationScaling


@dataclass
class DeployedAgent:
    """A deployed checkpoint's model with its run's configuration and observation
    statistics."""

    model: Any
    info: AgentCheckpointInfo
    config: RLConfig
    env_config_json: dict[str, Any] | str | None
    scaling: ObservationScaling | None

    def observe(self, states: np.ndarray) -> np.ndarray:
        """FinRL raw states (one, or one per row) -> what the model was trained on."""
        x = np.asarray(states, dtype=np.float64)
        if self.scaling is None:
            return x.astype(np.float32)
        raw_dim = 1 + 2 * self.scaling.stock_dim + len(self.scaling.tech_mean)
        if x.shape[-1] != raw_dim:
            raise ValueError(
                f"state: expected FinRL's raw state of {raw_dim} values, got shape {x.shape}"
            )
        return self.scaling.transform(x)

    def predict(self, states: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """The agent's actions for FinRL raw states (greedy by default)."""
        action, _ = self.model.predict(self.observe(states), deterministic=deterministic)
        return np.asarray(action)

    def use_on(self, market: MarketData) -> MarketData:
        """Make ``market``'s envs use this agent's stored observation statistics."""
        use_stored_scaling(market, self.env_config_json)
        if observation_scaling(market, self.config) != self.scaling:
            raise ValueError("market: its observation scaling differs from the agent's run")
        return market

    def make_env(self, data: pd.DataFrame, market: MarketData) -> Any:
        """An env over ``data`` (a frame of ``market``) whose observations the model reads
        directly: the run's env, sizing, reward and stored scaling."""
        return make_env(data, self.use_on(market), self.config)

    def load_market(self, db: Database) -> MarketData:
        """The run's recorded periods, with its stored scaling applied."""
        run = RunTrackingService(db, RL).get(self.info.run_id)
        market = load_market(
            self.config, db, start=run.train_start, end=run.trade_end, trade_start=run.trade_start
        )
        return self.use_on(market)


def load_deployed_agent(
    db: Database,
    agent_type: AgentType | str,
    *,
    stage: DeploymentStatus | str = DeploymentStatus.PRODUCTION,
    env: Any | None = None,
    device: str = "cpu",
    store: ObjectStore | None = None,
) -> DeployedAgent:
    """The agent in ``stage`` for ``agent_type`` (bytes verified), with its run's
    observation statistics."""
    tracking = RunTrackingService(db, RL, store=store)
    try:
        deployed = tracking.deployed(AgentType(agent_type).value, stage)
    except NotFoundError:
        raise NotFoundError(
            f"no {AgentType(agent_type).value} agent in {DeploymentStatus(stage).value}"
        ) from None
    return _agent(deployed.info, deployed.data, deployed.run, env, device)


def load_run_agent(
    db: Database,
    run_id: uuid.UUID | str,
    *,
    env: Any | None = None,
    device: str = "cpu",
    store: ObjectStore | None = None,
) -> DeployedAgent:
    """A run's final agent (its latest checkpoint if it has no final one; bytes
    verified), with its run's observation statistics."""
    tracking = RunTrackingService(db, RL, store=store)
    run = tracking.get(run_id)
    info = tracking.final_checkpoint(run.run_id)
    if info is None:
        raise NotFoundError(f"run {run.run_id} has no agent checkpoint to evaluate")
    return _agent(info, tracking.load_checkpoint(info.checkpoint_id), run, env, device)


def _agent(
    info: AgentCheckpointInfo,
    data: CheckpointBytes,
    run: AgentTrainingRun,
    env: Any | None,
    device: str,
) -> DeployedAgent:
    model = load_model(info.agent_type, data, env, device)
    config = RLConfig.model_validate_json(run.config_json)
    scaling = stored_scaling(run.env_config_json)
    if config.observation != "finrl" and scaling is None:
        raise ValueError(
            f"run {run.run_id}: env_config_json has no observation_scaling for its "
            f"{config.observation!r} observation"
        )
    return DeployedAgent(model, info, config, run.env_config_json, scaling)


__all__ = ["DeployedAgent", "load_deployed_agent", "load_run_agent"]
