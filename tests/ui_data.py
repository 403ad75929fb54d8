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


SUPERVISED_FOLDS = [
    {"test_accuracy": 0.52, "baseline_majority_accuracy": 0.55,
     "baseline_last_move_accuracy": 0.50, "train_rows": 400.0, "test_rows": 200.0},
    {"test_accuracy": 0.58, "baseline_majority_accuracy": 0.53,
     "baseline_last_move_accuracy": 0.49, "train_rows": 600.0, "test_rows": 200.0},
    {"test_accuracy": 0.54, "baseline_majority_accuracy": 0.51,
     "baseline_last_move_accuracy": 0.52, "train_rows": 800.0, "test_rows": 200.0},
]  # fmt: skip
"""Walk-forward folds of :func:`out_of_sample_runs`' supervised run (as the trainer logs them)."""
AGENT_FOLDS = [
    {"sharpe_ratio": 0.30, "total_return": 0.02, "benchmark_sharpe_ratio": 1.10,
     "benchmark_total_return": 0.08, "trend_sharpe_ratio": 0.25, "trend_total_return": 0.01,
     "train_bars": 250.0, "test_bars": 120.0},
    {"sharpe_ratio": 0.70, "total_return": 0.05, "benchmark_sharpe_ratio": 0.90,
     "benchmark_total_return": 0.06, "trend_sharpe_ratio": 0.40, "trend_total_return": 0.03,
     "train_bars": 370.0, "test_bars": 120.0},
]  # fmt: skip
"""Walk-forward folds of :func:`out_of_sample_runs`' agent."""


def out_of_sample_runs(db: Database) -> dict[str, Any]:
    """A supervised run and an agent whose final checkpoints hold test figures beside
    the naive baselines' and a walk-forward summary, with their per-fold metrics, all
    written as the trainers write them (``log_folds``, ``summarise``), without training.
    LightGBM on GOOG and PPO on GOOG from issue 26: neither beat its baselines."""
    from repositories.kinds import RL, SUPERVISED
    from repositories.tracking import RunTrackingService
    from trainers.walk_forward import log_folds, summarise

    out: dict[str, Any] = {}
    supervised = RunTrackingService(db, SUPERVISED)
    run = supervised.create(
        {"run_name": "goog-lightgbm", "model_type": "lightgbm", "target_variable": "t",
         "task_type": "classification",
         "config_json": json.dumps({"walk_forward": {"folds": 3, "mode": "expanding"}})}
    )  # fmt: skip
    supervised.start(run.run_id)
    with supervised.metric_logger(run.run_id) as logger:
        log_folds(logger, SUPERVISED_FOLDS)
    supervised.save_checkpoint(
        run.run_id,
        b"model-bytes",
        ModelFormat.XGBOOST_UBJSON,
        {
            "test_accuracy": 0.511,
            "baseline_majority_accuracy": 0.538,
            "baseline_majority_class": 1.0,
            "baseline_last_move_accuracy": 0.497,
            **summarise(SUPERVISED_FOLDS),
        },
        iteration=5,
        kind=CheckpointKind.FINAL,
    )
    supervised.complete(run.run_id, {"final_test_accuracy": 0.511})
    out["supervised"] = run.run_id

    agents = RunTrackingService(db, RL)
    agent = agents.create(
        {"run_name": "goog-ppo", "agent_type": "ppo", "tickers": ["GOOG"],
         "config_json": json.dumps({"walk_forward": {"folds": 2, "mode": "rolling"}})}
    )  # fmt: skip
    agents.start(agent.run_id)
    with agents.metric_logger(agent.run_id) as logger:
        log_folds(logger, AGENT_FOLDS)
    agents.save_checkpoint(
        agent.run_id,
        b"agent-bytes",
        "raw",
        {
            "sharpe_ratio": 0.47,
            "total_return": 0.09,
            "benchmark_sharpe_ratio": 1.04,
            "benchmark_total_return": 0.21,
            "trend_sharpe_ratio": 0.2,
            "trend_total_return": 0.04,
            "trend_window": 50.0,
            "eval_moving_steps": 12.0,
            **summarise(AGENT_FOLDS),
        },
        episode_number=4,
        kind=CheckpointKind.FINAL,
    )
    agents.complete(agent.run_id, {"final_sharpe_ratio": 0.47})
    out["agent"] = agent.run_id
    return out
