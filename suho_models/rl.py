"""The four reinforcement-learning (FinRL) tables (seed tables 5-8)."""

from __future__ import annotations

import uuid

from clickhouse_sqlalchemy import types

from suho_models.base import (
    RUNS_LAYOUT,
    UUID,
    Base,
    Float64,
    Label,
    NullableFloat,
    NullableTimestamp,
    NullableUInt32,
    Str,
    StrList,
    Timestamp,
    UInt8,
    UInt32,
    UInt64,
    Version,
    column,
    current_row_engine,
    detailed_series_engine,
    retention_ttl,
    run_id_bloom,
)


class AgentTrainingRun(Base):
    """One RL experiment; a new row per status change, read FINAL."""

    __tablename__ = "agent_training_runs"
    __table_args__ = (
        current_row_engine(**RUNS_LAYOUT),
        run_id_bloom(),
        {"comment": "RL agent experiment tracking: one current row per run_id"},
    )

    run_id = column(UUID, "Run identifier", primary_key=True, default=uuid.uuid4)
    run_name = column(Str, "Human-readable run name")
    agent_type = column(Label, "ppo, a2c, ddpg, sac or td3")
    status = column(Label, "pending, running, completed, failed or cancelled")
    state_dim = column(UInt32, "Observation size as FinRL computes it")
    action_dim = column(UInt32, "Action size (one per ticker)")
    reward_function_type = column(Label, "Reward shaping applied to the environment")
    tickers = column(StrList, "Symbols traded by the environment")
    initial_amount = column(Float64, "Starting cash of the portfolio")
    buy_cost_pct = column(Float64, "Transaction cost of a buy, as a fraction")
    sell_cost_pct = column(Float64, "Transaction cost of a sell, as a fraction")
    env_config_json = column(Str, "Full environment configuration as JSON")
    train_start = column(NullableTimestamp, "First timestamp of the training period")
    train_end = column(NullableTimestamp, "Last timestamp of the training period")
    trade_start = column(NullableTimestamp, "First timestamp of the held-out trade period")
    trade_end = column(NullableTimestamp, "Last timestamp of the held-out trade period")
    total_timesteps = column(UInt64, "Environment steps taken in training")
    total_episodes = column(UInt32, "Episodes completed in training")
    final_mean_reward = column(NullableFloat, "Mean step reward on the trade period")
    final_sharpe_ratio = column(NullableFloat, "Annualized Sharpe on the trade period (rf=0)")
    final_total_return = column(NullableFloat, "Total return on the trade period")
    final_max_drawdown = column(NullableFloat, "Maximum drawdown on the trade period")
    final_annual_volatility = column(NullableFloat, "Annualized volatility on the trade period")
    final_sortino_ratio = column(NullableFloat, "Annualized Sortino on the trade period")
    final_calmar_ratio = column(NullableFloat, "Calmar ratio on the trade period")
    config_json = column(Str, "Full trainer configuration as JSON, for reproduction and resume")
    started_at = column(NullableTimestamp, "When training started")
    completed_at = column(NullableTimestamp, "When the run reached a terminal status")
    duration_seconds = column(NullableFloat, "Wall time from start to terminal status")
    error_message = column(Str, "Error of a failed run, empty otherwise")
    git_commit_hash = column(Str, "Commit of the code that trained, empty outside git")
    created_at = column(Timestamp, "When the run was created")
    updated_at = column(Version, "Row version: the newest row per run_id is current")
    heartbeat_at = column(
        NullableTimestamp, "Last sign of life of the training process; stale while running: it died"
    )


class AgentCheckpoint(Base):
    """A saved agent; deployment changes are new rows, read FINAL."""

    __tablename__ = "agent_checkpoints"
    __table_args__ = (
        current_row_engine(order_by=("run_id", "checkpoint_id")),
        {"comment": "Saved RL agents (policy and value networks), inline or object store"},
    )

    checkpoint_id = column(UUID, "Checkpoint identifier", primary_key=True, default=uuid.uuid4)
    run_id = column(UUID, "Run that produced the agent")
    agent_type = column(Label, "ppo, a2c, ddpg, sac or td3")
    episode_number = column(UInt32, "Episodes completed when saved")
    timestep = column(UInt64, "Environment steps taken when saved")
    agent_format = column(Label, "Serialization, sb3_zip for Stable-Baselines3")
    agent_binary = column(Str, "Base64 agent bytes when stored inline", codec="LZ4")
    replay_buffer_uri = column(Str, "Object-store URI of the replay buffer, off-policy resume")
    size_bytes = column(UInt64, "Size of the raw agent bytes")
    sha256 = column(Str, "SHA-256 of the raw agent bytes, checked before loading")
    storage = column(Label, "inline, local or s3")
    storage_uri = column(Str, "Object-store URI when not inline")
    mean_reward = column(NullableFloat, "Mean episode reward at the checkpoint")
    sharpe_ratio = column(NullableFloat, "Sharpe ratio at the checkpoint")
    metrics_json = column(Str, "All metrics at the checkpoint as JSON")
    deployment_status = column(Label, "not_deployed, staging, production or archived")
    deployed_at = column(NullableTimestamp, "When it last entered staging or production")
    created_at = column(Timestamp, "When the checkpoint was saved")
    updated_at = column(Version, "Row version: the newest row per checkpoint is current")
    checkpoint_kind = column(Label, "intermediate, best or final")
    signature = column(
        Str, "HMAC-SHA256 of the raw bytes with the checkpoint key, empty if unsigned"
    )


ENV_INDEX_COMMENT = "Index of the parallel environment the step came from, from 0"


class RewardStep(Base):
    """Per-step rewards; the episode's last step doubles as its kept-forever summary."""

    __tablename__ = "reward_history"
    __table_args__ = (
        detailed_series_engine(
            order_by=("run_id", "episode_number", "timestep_number"),
            ttl=retention_ttl(keep_where="is_episode_end = 1"),
        ),
        {"comment": "RL rewards per step; episode-end summary rows never expire"},
    )

    run_id = column(UUID, "Run the step belongs to", primary_key=True)
    episode_number = column(UInt32, "Episode, from 1", primary_key=True)
    timestep_number = column(
        UInt64, "Global environment step, from 1", primary_key=True, codec="Delta, ZSTD(1)"
    )
    env_index = column(types.UInt16, ENV_INDEX_COMMENT, default=0)
    step_reward = column(Float64, "Reward of this step")
    episode_cumulative_reward = column(Float64, "Sum of rewards in the episode so far")
    episode_final_reward = column(NullableFloat, "Episode total, set on its last step")
    sharpe_ratio = column(NullableFloat, "Episode Sharpe of the account value, last step only")
    account_value = column(NullableFloat, "Portfolio value after the step")
    policy_loss = column(NullableFloat, "Latest policy (actor) loss from the learner")
    value_loss = column(NullableFloat, "Latest value (critic) loss from the learner")
    is_episode_end = column(UInt8, "1 on the last step of an episode")
    recorded_at = column(Timestamp, "When it was logged: drives TTL and row version")


class RLHyperparameterTrial(Base):
    """One RL tuning trial; re-logging a trial number replaces it."""

    __tablename__ = "rl_hyperparameters"
    __table_args__ = (
        current_row_engine(order_by=("run_id", "trial_number"), version="recorded_at"),
        {"comment": "RL hyperparameter tuning trials, kept forever"},
    )

    trial_id = column(UUID, "Trial identifier", default=uuid.uuid4)
    run_id = column(UUID, "Run that owns the study", primary_key=True)
    study_name = column(Str, "Optuna study name")
    trial_number = column(UInt32, "Trial number within the study, from 0", primary_key=True)
    agent_type = column(Label, "ppo, a2c, ddpg, sac or td3")
    learning_rate = column(NullableFloat, "Optimizer learning rate")
    gamma = column(NullableFloat, "Discount factor")
    clip_range = column(NullableFloat, "PPO clip range, NULL for other algorithms")
    batch_size = column(NullableUInt32, "Minibatch size, NULL for A2C")
    n_steps = column(NullableUInt32, "Rollout length, on-policy algorithms only")
    ent_coef = column(NullableFloat, "Entropy coefficient, PPO and A2C only")
    tau = column(NullableFloat, "Target-network soft update, off-policy only")
    hyperparameters = column(Str, "All parameters as a JSON object")
    mean_reward = column(NullableFloat, "Mean evaluation reward, the objective")
    sharpe_ratio = column(NullableFloat, "Sharpe ratio of the evaluation")
    total_timesteps = column(UInt64, "Steps trained in the trial")
    total_episodes = column(UInt32, "Episodes completed in the trial")
    state = column(Label, "complete, pruned or failed")
    duration_seconds = column(Float64, "Wall time of the trial")
    recorded_at = column(Timestamp, "When the trial finished")
    worker_host = column(Label, "Host of the tuning worker that ran the trial", default="")
    worker_pid = column(UInt32, "Process id of that worker", default=0)
