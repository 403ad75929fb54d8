"""Runs for the UI tests, written through the repositories (no training)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from repositories.checkpoints import AgentCheckpointRepository, ModelCheckpointRepository
from repositories.runs import AgentRunRepository, TrainingRunRepository
from repositories.series import RewardHistoryRepository, TrainingMetricRepository
from repositories.trials import HyperparameterTrialRepository, RLTrialRepository
from suho_models.db import Database
from suho_models.enums import CheckpointKind, ModelFormat
from trainers.supervised.config import SupervisedConfig

MODEL_TYPES = ("xgboost", "lightgbm", "catboost")
FEATURES = ["f_momentum", "f_volume", "f_noise"]


def tiny_xgboost_model() -> bytes:
    """A real XGBoost model on three features (f_momentum matters most)."""
    import xgboost as xgb

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
        xgb.DMatrix(X, label=y),
        num_boost_round=5,
    )
    return bytes(booster.save_raw("ubj"))


def populate(db: Database, *, runs: int = 6, iterations: int = 50) -> dict[str, Any]:
    """``runs`` completed supervised runs (one with a checkpointed real model, trials
    and ``iterations`` metric points), one running, one failed, and two agents."""
    repo = TrainingRunRepository(db)
    metrics = TrainingMetricRepository(db)
    out: dict[str, Any] = {"supervised": [], "agents": []}
    for i in range(runs):
        model_type = MODEL_TYPES[i % 3]
        config = SupervisedConfig(
            model_type=model_type, target="target_direction", params={"max_depth": 2 + i}
        )
        run = repo.create(
            {
                "run_name": f"{model_type}-{i}",
                "model_type": model_type,
                "target_variable": "target_direction",
                "features_used": FEATURES,
                "config_json": config.model_dump_json(),
                "git_commit_hash": f"{i:040x}",
            }
        )
        repo.start(run.run_id)
        metrics.log_many(
            run.run_id,
            [
                {
                    "iteration_number": k,
                    "train_loss": math.exp(-k / (10 + i)),
                    "val_loss": math.exp(-k / (12 + i)) + 0.1,
                    "train_accuracy": 1 - math.exp(-k / 10) * 0.5,
                    "val_accuracy": 1 - math.exp(-k / 12) * 0.5,
                    "learning_rate": 0.1 * 0.99**k,
                }
                for k in range(iterations)
            ],
        )
        repo.complete(
            run.run_id,
            {"final_test_accuracy": 0.5 + 0.07 * ((i * 3) % runs), "final_f1_score": 0.4 + i / 50},
        )
        out["supervised"].append(run.run_id)
    first = out["supervised"][0]
    models = ModelCheckpointRepository(db)
    out["checkpoint"] = models.save_checkpoint(
        first,
        tiny_xgboost_model(),
        ModelFormat.XGBOOST_UBJSON,
        {"val_accuracy": 0.6},
        iteration=5,
        kind=CheckpointKind.FINAL,
        model_name="ui-model",
    ).checkpoint_id
    trials = HyperparameterTrialRepository(db)
    for n, loss in enumerate([0.7, 0.6, 0.65]):
        trials.log(
            first,
            {"trial_number": n, "hyperparameters": {"max_depth": 2 + n}, "objective_value": loss},
        )
    running = repo.create(
        {"run_name": "still-training", "model_type": "xgboost", "target_variable": "t"}
    )
    repo.start(running.run_id)
    out["running"] = running.run_id
    failed = repo.create({"run_name": "broken", "model_type": "lightgbm", "target_variable": "t"})
    repo.start(failed.run_id)
    repo.fail(failed.run_id, "RuntimeError: out of memory")
    out["failed"] = failed.run_id

    agents = AgentRunRepository(db)
    rewards = RewardHistoryRepository(db)
    for i, agent_type in enumerate(("ppo", "sac")):
        run = agents.create(
            {
                "run_name": f"{agent_type}-agent",
                "agent_type": agent_type,
                "tickers": ["AAA", "BBB"],
                "config_json": json.dumps({"agent": agent_type, "timesteps": 100 + i}),
            }
        )
        agents.start(run.run_id)
        steps = []
        for episode in range(4):
            for t in range(10):
                step = episode * 10 + t
                steps.append(
                    {
                        "episode_number": episode,
                        "timestep_number": step,
                        "step_reward": 0.01 * t,
                        "episode_cumulative_reward": 0.01 * t * (t + 1) / 2,
                        "episode_final_reward": (0.45 + episode) if t == 9 else None,
                        "account_value": 1e6 + 100 * step,
                        "policy_loss": 1 / (step + 1),
                        "value_loss": 2 / (step + 1),
                        "is_episode_end": t == 9,
                    }
                )
        rewards.log_many(run.run_id, steps)
        agents.complete(
            run.run_id, {"final_sharpe_ratio": 1.0 + i, "final_total_return": 0.1 * (i + 1)}
        )
        AgentCheckpointRepository(db).save_checkpoint(
            run.run_id, b"agent-bytes", "raw", {"mean_reward": 1.0}, episode_number=4
        )
        RLTrialRepository(db).log(
            run.run_id,
            {
                "trial_number": 0,
                "agent_type": agent_type,
                "hyperparameters": {"gamma": 0.99},
                "mean_reward": 1.5,
            },
        )
        out["agents"].append(run.run_id)
    return out
