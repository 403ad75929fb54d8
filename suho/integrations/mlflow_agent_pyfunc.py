"""The MLflow pyfunc of a suho RL agent (logged as code, never pickled).

MLflow loads this file by path (models from code) next to two artifacts: the
agent's ``sb3_state`` checkpoint (weights as tensors, loaded with torch's
weights-only unpickler, and the JSON that rebuilds the policy: no stored code runs)
and ``suho.json`` (agent type, the run's configuration and observation statistics).
Acting goes through :class:`~trainers.rl.deploy.DeployedAgent`, so the actions equal
``suho.load_model(...).act(states)``'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import mlflow
import numpy as np
import pandas as pd


class SuhoAgentModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """``predict(df)``: one FinRL raw state per row (columns ``state_0`` ...), one
    greedy action per ticker (columns ``action_<ticker>``) per row."""

    def load_context(self, context: Any) -> None:
        from trainers.rl.agents import load_model
        from trainers.rl.config import RLConfig
        from trainers.rl.deploy import DeployedAgent
        from trainers.rl.environment import stored_scaling

        meta = json.loads(Path(context.artifacts["suho"]).read_text())
        self.states: list[str] = list(meta["states"])
        self.actions: list[str] = list(meta["actions"])
        data = Path(context.artifacts["model"]).read_bytes()  # plain bytes: sb3_state only
        self.agent = DeployedAgent(
            model=load_model(meta["agent_type"], data),
            info=cast(Any, None),  # the registry's version stands for the checkpoint row
            config=RLConfig.model_validate_json(meta["config_json"]),
            env_config_json=meta["env_config_json"],
            scaling=stored_scaling(meta["env_config_json"]),
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        states = pd.DataFrame(model_input)[self.states].to_numpy(dtype=np.float64)
        actions = np.asarray(self.agent.predict(states), dtype=np.float64)
        return pd.DataFrame(actions.reshape(len(states), -1), columns=self.actions)


mlflow.models.set_model(SuhoAgentModel())
