"""Create the eight training tables.

Revision ID: 0001_training_tables
Revises:
Create Date: 2026-11-27

Frozen: engines, ORDER BY, PARTITION BY and TTL are written out literally, as
they shipped, so no later change to suho_models/base.py (where the reasoning
lives) can alter what this revision creates. Changes are ALTERs in later
revisions; tests/test_schema_contract.py compares the models with the result.

- runs, checkpoints and trials: ReplacingMergeTree with a version column, one
  current row per key read with FINAL;
- training_metrics and reward_history: ReplacingMergeTree on the natural key,
  monthly partitions, TTL on recorded_at (reward_history spares episode-end rows).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from clickhouse_sqlalchemy import engines
from clickhouse_sqlalchemy import types as ch

revision: str = "0001_training_tables"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_checkpoints",
        sa.Column("checkpoint_id", ch.UUID(), nullable=False, comment="Checkpoint identifier"),
        sa.Column("run_id", ch.UUID(), nullable=False, comment="Run that produced the agent"),
        sa.Column(
            "agent_type",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="ppo, a2c, ddpg, sac or td3",
        ),
        sa.Column(
            "episode_number", ch.UInt32(), nullable=False, comment="Episodes completed when saved"
        ),
        sa.Column(
            "timestep", ch.UInt64(), nullable=False, comment="Environment steps taken when saved"
        ),
        sa.Column(
            "agent_format",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="Serialization, sb3_zip for Stable-Baselines3",
        ),
        sa.Column(
            "agent_binary",
            ch.String(),
            nullable=False,
            comment="Base64 agent bytes when stored inline",
            clickhouse_codec="ZSTD(3)",
        ),
        sa.Column(
            "replay_buffer_uri",
            ch.String(),
            nullable=False,
            comment="Object-store URI of the replay buffer, off-policy resume",
        ),
        sa.Column("size_bytes", ch.UInt64(), nullable=False, comment="Size of the raw agent bytes"),
        sa.Column(
            "sha256",
            ch.String(),
            nullable=False,
            comment="SHA-256 of the raw agent bytes, checked before loading",
        ),
        sa.Column(
            "storage", ch.LowCardinality(ch.String()), nullable=False, comment="inline, local or s3"
        ),
        sa.Column(
            "storage_uri", ch.String(), nullable=False, comment="Object-store URI when not inline"
        ),
        sa.Column(
            "mean_reward",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Mean episode reward at the checkpoint",
        ),
        sa.Column(
            "sharpe_ratio",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Sharpe ratio at the checkpoint",
        ),
        sa.Column(
            "metrics_json",
            ch.String(),
            nullable=False,
            comment="All metrics at the checkpoint as JSON",
        ),
        sa.Column(
            "deployment_status",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="not_deployed, staging, production or archived",
        ),
        sa.Column(
            "deployed_at",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="When it last entered staging or production",
        ),
        sa.Column(
            "created_at",
            ch.DateTime64(3, "UTC"),
            nullable=False,
            comment="When the checkpoint was saved",
        ),
        sa.Column(
            "updated_at",
            ch.DateTime64(6, "UTC"),
            nullable=False,
            comment="Row version: the newest row per checkpoint is current",
        ),
        engines.ReplacingMergeTree(version="updated_at", order_by=("run_id", "checkpoint_id")),
        comment="Saved RL agents (policy and value networks), inline or object store",
    )
    op.create_table(
        "agent_training_runs",
        sa.Column("run_id", ch.UUID(), nullable=False, comment="Run identifier"),
        sa.Column("run_name", ch.String(), nullable=False, comment="Human-readable run name"),
        sa.Column(
            "agent_type",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="ppo, a2c, ddpg, sac or td3",
        ),
        sa.Column(
            "status",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="pending, running, completed, failed or cancelled",
        ),
        sa.Column(
            "state_dim",
            ch.UInt32(),
            nullable=False,
            comment="Observation size as FinRL computes it",
        ),
        sa.Column(
            "action_dim", ch.UInt32(), nullable=False, comment="Action size (one per ticker)"
        ),
        sa.Column(
            "reward_function_type",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="Reward shaping applied to the environment",
        ),
        sa.Column(
            "tickers",
            ch.Array(ch.String()),
            nullable=False,
            comment="Symbols traded by the environment",
        ),
        sa.Column(
            "initial_amount", ch.Float64(), nullable=False, comment="Starting cash of the portfolio"
        ),
        sa.Column(
            "buy_cost_pct",
            ch.Float64(),
            nullable=False,
            comment="Transaction cost of a buy, as a fraction",
        ),
        sa.Column(
            "sell_cost_pct",
            ch.Float64(),
            nullable=False,
            comment="Transaction cost of a sell, as a fraction",
        ),
        sa.Column(
            "env_config_json",
            ch.String(),
            nullable=False,
            comment="Full environment configuration as JSON",
        ),
        sa.Column(
            "train_start",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="First timestamp of the training period",
        ),
        sa.Column(
            "train_end",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="Last timestamp of the training period",
        ),
        sa.Column(
            "trade_start",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="First timestamp of the held-out trade period",
        ),
        sa.Column(
            "trade_end",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="Last timestamp of the held-out trade period",
        ),
        sa.Column(
            "total_timesteps",
            ch.UInt64(),
            nullable=False,
            comment="Environment steps taken in training",
        ),
        sa.Column(
            "total_episodes", ch.UInt32(), nullable=False, comment="Episodes completed in training"
        ),
        sa.Column(
            "final_mean_reward",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Mean step reward on the trade period",
        ),
        sa.Column(
            "final_sharpe_ratio",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Annualized Sharpe on the trade period (rf=0)",
        ),
        sa.Column(
            "final_total_return",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Total return on the trade period",
        ),
        sa.Column(
            "final_max_drawdown",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Maximum drawdown on the trade period",
        ),
        sa.Column(
            "final_annual_volatility",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Annualized volatility on the trade period",
        ),
        sa.Column(
            "final_sortino_ratio",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Annualized Sortino on the trade period",
        ),
        sa.Column(
            "final_calmar_ratio",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Calmar ratio on the trade period",
        ),
        sa.Column(
            "config_json",
            ch.String(),
            nullable=False,
            comment="Full trainer configuration as JSON, for reproduction and resume",
        ),
        sa.Column(
            "started_at",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="When training started",
        ),
        sa.Column(
            "completed_at",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="When the run reached a terminal status",
        ),
        sa.Column(
            "duration_seconds",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Wall time from start to terminal status",
        ),
        sa.Column(
            "error_message",
            ch.String(),
            nullable=False,
            comment="Error of a failed run, empty otherwise",
        ),
        sa.Column(
            "git_commit_hash",
            ch.String(),
            nullable=False,
            comment="Commit of the code that trained, empty outside git",
        ),
        sa.Column(
            "created_at",
            ch.DateTime64(3, "UTC"),
            nullable=False,
            comment="When the run was created",
        ),
        sa.Column(
            "updated_at",
            ch.DateTime64(6, "UTC"),
            nullable=False,
            comment="Row version: the newest row per run_id is current",
        ),
        engines.ReplacingMergeTree(version="updated_at", order_by=("run_id",)),
        comment="RL agent experiment tracking: one current row per run_id",
    )
    op.create_table(
        "hyperparameters_log",
        sa.Column("trial_id", ch.UUID(), nullable=False, comment="Trial identifier"),
        sa.Column("run_id", ch.UUID(), nullable=False, comment="Run that owns the study"),
        sa.Column("study_name", ch.String(), nullable=False, comment="Optuna study name"),
        sa.Column(
            "trial_number",
            ch.UInt32(),
            nullable=False,
            comment="Trial number within the study, from 0",
        ),
        sa.Column(
            "hyperparameters", ch.String(), nullable=False, comment="Parameters as a JSON object"
        ),
        sa.Column(
            "objective_value",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Objective value, NULL for pruned/failed trials",
        ),
        sa.Column(
            "scores",
            ch.Array(ch.Float64()),
            nullable=False,
            comment="Per-fold cross-validation scores",
        ),
        sa.Column(
            "tuning_method",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="optuna, grid_search or random_search",
        ),
        sa.Column(
            "state",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="complete, pruned or failed",
        ),
        sa.Column(
            "duration_seconds", ch.Float64(), nullable=False, comment="Wall time of the trial"
        ),
        sa.Column(
            "recorded_at",
            ch.DateTime64(3, "UTC"),
            nullable=False,
            comment="When the trial finished",
        ),
        engines.ReplacingMergeTree(version="recorded_at", order_by=("run_id", "trial_number")),
        comment="Hyperparameter tuning trials of supervised runs, kept forever",
    )
    op.create_table(
        "model_checkpoints",
        sa.Column("checkpoint_id", ch.UUID(), nullable=False, comment="Checkpoint identifier"),
        sa.Column("run_id", ch.UUID(), nullable=False, comment="Run that produced the model"),
        sa.Column(
            "model_name",
            ch.String(),
            nullable=False,
            comment="Deployment name: one production model per name",
        ),
        sa.Column(
            "model_type", ch.LowCardinality(ch.String()), nullable=False, comment="Model library"
        ),
        sa.Column(
            "iteration",
            ch.UInt32(),
            nullable=False,
            comment="Boosting iteration / epoch of the checkpoint",
        ),
        sa.Column(
            "checkpoint_kind",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="intermediate, best or final",
        ),
        sa.Column(
            "model_format",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="Serialization: native format, joblib, pickle or onnx",
        ),
        sa.Column(
            "model_binary",
            ch.String(),
            nullable=False,
            comment="Base64 model bytes when stored inline",
            clickhouse_codec="ZSTD(3)",
        ),
        sa.Column("size_bytes", ch.UInt64(), nullable=False, comment="Size of the raw model bytes"),
        sa.Column(
            "sha256",
            ch.String(),
            nullable=False,
            comment="SHA-256 of the raw model bytes, checked before loading",
        ),
        sa.Column(
            "storage", ch.LowCardinality(ch.String()), nullable=False, comment="inline, local or s3"
        ),
        sa.Column(
            "storage_uri", ch.String(), nullable=False, comment="Object-store URI when not inline"
        ),
        sa.Column(
            "train_loss",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Training loss at the checkpoint",
        ),
        sa.Column(
            "val_loss",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Validation loss at the checkpoint",
        ),
        sa.Column(
            "val_accuracy",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Validation accuracy at the checkpoint",
        ),
        sa.Column(
            "metrics_json",
            ch.String(),
            nullable=False,
            comment="All metrics at the checkpoint as JSON",
        ),
        sa.Column(
            "deployment_status",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="not_deployed, staging, production or archived",
        ),
        sa.Column(
            "deployed_at",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="When it last entered staging or production",
        ),
        sa.Column(
            "created_at",
            ch.DateTime64(3, "UTC"),
            nullable=False,
            comment="When the checkpoint was saved",
        ),
        sa.Column(
            "updated_at",
            ch.DateTime64(6, "UTC"),
            nullable=False,
            comment="Row version: the newest row per checkpoint is current",
        ),
        engines.ReplacingMergeTree(version="updated_at", order_by=("run_id", "checkpoint_id")),
        comment="Saved supervised model binaries (base64 inline, or object-store URI)",
    )
    op.create_table(
        "reward_history",
        sa.Column("run_id", ch.UUID(), nullable=False, comment="Run the step belongs to"),
        sa.Column("episode_number", ch.UInt32(), nullable=False, comment="Episode, from 1"),
        sa.Column(
            "timestep_number",
            ch.UInt64(),
            nullable=False,
            comment="Global environment step, from 1",
            clickhouse_codec="Delta, ZSTD(1)",
        ),
        sa.Column("step_reward", ch.Float64(), nullable=False, comment="Reward of this step"),
        sa.Column(
            "episode_cumulative_reward",
            ch.Float64(),
            nullable=False,
            comment="Sum of rewards in the episode so far",
        ),
        sa.Column(
            "episode_final_reward",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Episode total, set on its last step",
        ),
        sa.Column(
            "sharpe_ratio",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Episode Sharpe of the account value, last step only",
        ),
        sa.Column(
            "account_value",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Portfolio value after the step",
        ),
        sa.Column(
            "policy_loss",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Latest policy (actor) loss from the learner",
        ),
        sa.Column(
            "value_loss",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Latest value (critic) loss from the learner",
        ),
        sa.Column(
            "is_episode_end", ch.UInt8(), nullable=False, comment="1 on the last step of an episode"
        ),
        sa.Column(
            "recorded_at",
            ch.DateTime64(3, "UTC"),
            nullable=False,
            comment="When it was logged: drives TTL and row version",
        ),
        engines.ReplacingMergeTree(
            version="recorded_at",
            partition_by=sa.text("toYYYYMM(recorded_at)"),
            order_by=("run_id", "episode_number", "timestep_number"),
            ttl=sa.text("recorded_at + toIntervalMonth(6) DELETE WHERE NOT (is_episode_end = 1)"),
        ),
        comment="RL rewards per step; episode-end summary rows never expire",
    )
    op.create_table(
        "rl_hyperparameters",
        sa.Column("trial_id", ch.UUID(), nullable=False, comment="Trial identifier"),
        sa.Column("run_id", ch.UUID(), nullable=False, comment="Run that owns the study"),
        sa.Column("study_name", ch.String(), nullable=False, comment="Optuna study name"),
        sa.Column(
            "trial_number",
            ch.UInt32(),
            nullable=False,
            comment="Trial number within the study, from 0",
        ),
        sa.Column(
            "agent_type",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="ppo, a2c, ddpg, sac or td3",
        ),
        sa.Column(
            "learning_rate",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Optimizer learning rate",
        ),
        sa.Column("gamma", ch.Nullable(ch.Float64()), nullable=True, comment="Discount factor"),
        sa.Column(
            "clip_range",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="PPO clip range, NULL for other algorithms",
        ),
        sa.Column(
            "batch_size",
            ch.Nullable(ch.UInt32()),
            nullable=True,
            comment="Minibatch size, NULL for A2C",
        ),
        sa.Column(
            "n_steps",
            ch.Nullable(ch.UInt32()),
            nullable=True,
            comment="Rollout length, on-policy algorithms only",
        ),
        sa.Column(
            "ent_coef",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Entropy coefficient, PPO and A2C only",
        ),
        sa.Column(
            "tau",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Target-network soft update, off-policy only",
        ),
        sa.Column(
            "hyperparameters",
            ch.String(),
            nullable=False,
            comment="All parameters as a JSON object",
        ),
        sa.Column(
            "mean_reward",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Mean evaluation reward, the objective",
        ),
        sa.Column(
            "sharpe_ratio",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Sharpe ratio of the evaluation",
        ),
        sa.Column(
            "total_timesteps", ch.UInt64(), nullable=False, comment="Steps trained in the trial"
        ),
        sa.Column(
            "total_episodes", ch.UInt32(), nullable=False, comment="Episodes completed in the trial"
        ),
        sa.Column(
            "state",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="complete, pruned or failed",
        ),
        sa.Column(
            "duration_seconds", ch.Float64(), nullable=False, comment="Wall time of the trial"
        ),
        sa.Column(
            "recorded_at",
            ch.DateTime64(3, "UTC"),
            nullable=False,
            comment="When the trial finished",
        ),
        engines.ReplacingMergeTree(version="recorded_at", order_by=("run_id", "trial_number")),
        comment="RL hyperparameter tuning trials, kept forever",
    )
    op.create_table(
        "training_metrics",
        sa.Column("run_id", ch.UUID(), nullable=False, comment="Run the metric belongs to"),
        sa.Column(
            "iteration_number",
            ch.UInt32(),
            nullable=False,
            comment="Boosting iteration / epoch, from 1",
            clickhouse_codec="Delta, ZSTD(1)",
        ),
        sa.Column(
            "train_loss",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Loss on the training data (NaN/inf kept)",
        ),
        sa.Column(
            "val_loss",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Loss on the validation data",
        ),
        sa.Column(
            "train_accuracy",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Accuracy on the training data",
        ),
        sa.Column(
            "val_accuracy",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Accuracy on the validation data",
        ),
        sa.Column(
            "learning_rate",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Learning rate in effect",
        ),
        sa.Column(
            "gradient_norm",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Gradient norm, NULL where the library has none",
        ),
        sa.Column(
            "iteration_duration_ms",
            ch.Float64(),
            nullable=False,
            comment="Wall time of the iteration in milliseconds",
        ),
        sa.Column(
            "recorded_at",
            ch.DateTime64(3, "UTC"),
            nullable=False,
            comment="When it was logged: drives TTL and row version",
        ),
        engines.ReplacingMergeTree(
            version="recorded_at",
            partition_by=sa.text("toYYYYMM(recorded_at)"),
            order_by=("run_id", "iteration_number"),
            ttl=sa.text("recorded_at + toIntervalMonth(6)"),
        ),
        comment="Per-iteration training metrics, detailed rows expire by TTL",
    )
    op.create_table(
        "training_runs",
        sa.Column("run_id", ch.UUID(), nullable=False, comment="Run identifier"),
        sa.Column("run_name", ch.String(), nullable=False, comment="Human-readable run name"),
        sa.Column(
            "model_type",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="Model library: xgboost, lightgbm, catboost, ...",
        ),
        sa.Column(
            "task_type",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="classification or regression",
        ),
        sa.Column(
            "status",
            ch.LowCardinality(ch.String()),
            nullable=False,
            comment="pending, running, completed, failed or cancelled",
        ),
        sa.Column(
            "target_variable", ch.String(), nullable=False, comment="Target column of ml_features"
        ),
        sa.Column(
            "features_used",
            ch.Array(ch.String()),
            nullable=False,
            comment="Feature columns after selection, in model order",
        ),
        sa.Column(
            "train_start",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="First timestamp of the training split",
        ),
        sa.Column(
            "train_end",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="Last timestamp of the training split",
        ),
        sa.Column(
            "val_start",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="First timestamp of the validation split",
        ),
        sa.Column(
            "val_end",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="Last timestamp of the validation split",
        ),
        sa.Column(
            "test_start",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="First timestamp of the test split",
        ),
        sa.Column(
            "test_end",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="Last timestamp of the test split",
        ),
        sa.Column(
            "train_ratio",
            ch.Float64(),
            nullable=False,
            comment="Share of timestamps in the training split",
        ),
        sa.Column(
            "val_ratio",
            ch.Float64(),
            nullable=False,
            comment="Share of timestamps in the validation split",
        ),
        sa.Column(
            "test_ratio",
            ch.Float64(),
            nullable=False,
            comment="Share of timestamps in the test split",
        ),
        sa.Column("train_rows", ch.UInt64(), nullable=False, comment="Rows in the training split"),
        sa.Column("val_rows", ch.UInt64(), nullable=False, comment="Rows in the validation split"),
        sa.Column("test_rows", ch.UInt64(), nullable=False, comment="Rows in the test split"),
        sa.Column(
            "final_train_loss",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Loss on the training split at the end",
        ),
        sa.Column(
            "final_val_loss",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Loss on the validation split at the end",
        ),
        sa.Column(
            "final_test_loss",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Loss on the test split at the end",
        ),
        sa.Column(
            "final_train_accuracy",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Accuracy on the training split",
        ),
        sa.Column(
            "final_val_accuracy",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Accuracy on the validation split",
        ),
        sa.Column(
            "final_test_accuracy",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Accuracy on the test split",
        ),
        sa.Column(
            "final_f1_score",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="F1 on the test split (classification)",
        ),
        sa.Column(
            "final_auc_score",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="ROC AUC on the test split (classification)",
        ),
        sa.Column(
            "final_precision",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Precision on the test split (classification)",
        ),
        sa.Column(
            "final_recall",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Recall on the test split (classification)",
        ),
        sa.Column(
            "final_rmse",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="RMSE on the test split (regression)",
        ),
        sa.Column(
            "final_mae",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="MAE on the test split (regression)",
        ),
        sa.Column(
            "final_r2",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="R squared on the test split (regression)",
        ),
        sa.Column(
            "final_direction_accuracy",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Sign hit rate on the test split (regression)",
        ),
        sa.Column(
            "config_json",
            ch.String(),
            nullable=False,
            comment="Full trainer configuration as JSON, for reproduction and resume",
        ),
        sa.Column(
            "started_at",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="When training started",
        ),
        sa.Column(
            "completed_at",
            ch.Nullable(ch.DateTime64(3, "UTC")),
            nullable=True,
            comment="When the run reached a terminal status",
        ),
        sa.Column(
            "duration_seconds",
            ch.Nullable(ch.Float64()),
            nullable=True,
            comment="Wall time from start to terminal status",
        ),
        sa.Column(
            "error_message",
            ch.String(),
            nullable=False,
            comment="Error of a failed run, empty otherwise",
        ),
        sa.Column(
            "git_commit_hash",
            ch.String(),
            nullable=False,
            comment="Commit of the code that trained, empty outside git",
        ),
        sa.Column(
            "created_at",
            ch.DateTime64(3, "UTC"),
            nullable=False,
            comment="When the run was created",
        ),
        sa.Column(
            "updated_at",
            ch.DateTime64(6, "UTC"),
            nullable=False,
            comment="Row version: the newest row per run_id is current",
        ),
        engines.ReplacingMergeTree(version="updated_at", order_by=("run_id",)),
        comment="Supervised ML experiment tracking: one current row per run_id",
    )


def downgrade() -> None:
    op.drop_table("training_runs")
    op.drop_table("training_metrics")
    op.drop_table("rl_hyperparameters")
    op.drop_table("reward_history")
    op.drop_table("model_checkpoints")
    op.drop_table("hyperparameters_log")
    op.drop_table("agent_training_runs")
    op.drop_table("agent_checkpoints")
