"""End-to-end RL training on small synthetic data (embedded engine; the SIGKILL
resume test runs the trainer in a subprocess against the local server).

The feature table has 100 usable hourly bars per symbol: 80 train days (one
episode is 80 steps, the last a FinRL no-op) and 20 held-out trade days.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from repositories.checkpoints import AgentCheckpointRepository
from repositories.errors import InvalidTransitionError
from repositories.features import FeatureTable
from repositories.runs import AgentRunRepository
from repositories.series import RewardHistoryRepository
from repositories.tracking import RunKind, RunTrackingService
from repositories.trials import RLTrialRepository
from suho_models.db import Database, migrations
from suho_models.enums import (
    AgentType,
    CheckpointKind,
    DeploymentStatus,
    RewardFunctionType,
    RunStatus,
    TrialState,
)
from trainers.data.spec import FeatureSpecError
from trainers.data.synth import generate_ml_features
from trainers.rl import RLConfig
from trainers.rl import trainer as trainer_module
from trainers.rl.callbacks import RewardHistoryCallback
from trainers.rl.deploy import load_deployed_agent
from trainers.rl.environment import make_env
from trainers.rl.evaluation import evaluate_agent
from trainers.rl.metrics import episode_sharpe, performance_metrics
from trainers.rl.report import trade_equity_curves
from trainers.rl.trainer import RLTrainer

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
SYMBOLS = ("EURUSD", "XAUUSD")
TRAIN_DAYS = 80
TRADE_DAYS = 20
STATE_DIM = 1 + 2 + 8 * 2  # scaled: cash, position per ticker, 8 indicators each (no prices)

SMALL_PARAMS: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 2, "net_arch": "tiny"},
    "a2c": {"n_steps": 8, "net_arch": "tiny"},
    "sac": {"learning_starts": 40, "batch_size": 32, "net_arch": "small", "train_freq": 2},
    "td3": {"learning_starts": 40, "batch_size": 32, "net_arch": "small", "train_freq": 2},
    "ddpg": {"learning_starts": 40, "batch_size": 32, "net_arch": "small", "train_freq": 2},
}


def write_features(db: Database) -> None:
    frame = generate_ml_features(SYMBOLS, periods=200, start=START, seed=3)
    FeatureTable(db).write(frame)


@pytest.fixture(scope="module")
def features_db(embedded_dir: Path) -> Iterator[Database]:
    # chDB opens one data directory per process: use the session's.
    url = f"clickhouse+chdb:///{embedded_dir}/rl_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(url)
    db = Database(url)
    write_features(db)
    yield db
    db.close()


def config(agent: str = "ppo", **kw: Any) -> RLConfig:
    base: dict[str, Any] = {
        "agent": agent,
        "timesteps": 400,
        "checkpoint_every_episodes": 2,
        "agent_params": SMALL_PARAMS[agent],
        "run_name": f"test-{agent}-{uuid.uuid4().hex[:6]}",
    }
    base.update(kw)
    return RLConfig.model_validate(base)


def episode_of(step: int, n_envs: int = 1) -> int:
    """The episode number of global env-step ``step`` (1-based) with ``n_envs`` envs."""
    batch, index = divmod(step - 1, n_envs)
    return batch // TRAIN_DAYS * n_envs + index + 1


def check_reward_history(
    db: Database, run_id: uuid.UUID, total_timesteps: int, n_envs: int = 1
) -> list[Any]:
    """Exactly one row per env-step 1..T, numbered into TRAIN_DAYS-step episodes."""
    history = RewardHistoryRepository(db)
    steps = history.steps(run_id)
    assert history.count(run_id) == len(steps) == total_timesteps
    assert [s.timestep_number for s in steps] == list(range(1, total_timesteps + 1))
    for s in steps:
        batch, index = divmod(s.timestep_number - 1, n_envs)
        assert s.env_index == index
        assert s.episode_number == episode_of(s.timestep_number, n_envs)
        assert s.is_episode_end == ((batch + 1) % TRAIN_DAYS == 0)
    return steps


# --------------------------------------------------------------------------- training
@pytest.mark.slow
@pytest.mark.parametrize("agent", ["ppo", "a2c", "sac", "td3", "ddpg"])
def test_train_tracks_everything(features_db: Database, agent: str) -> None:
    db = features_db
    off_policy = agent in ("sac", "td3", "ddpg")
    # Off-policy runs keep one checkpoint: the pruned one's replay buffer must go too.
    keep = 1 if off_policy else 3
    result = RLTrainer(config(agent, keep_checkpoints=keep), db).run()
    run = AgentRunRepository(db).get(result.run.run_id)
    assert run.status is RunStatus.COMPLETED and run.agent_type is AgentType(agent)
    assert (run.state_dim, run.action_dim) == (STATE_DIM, 2)
    assert run.tickers == list(SYMBOLS)
    assert run.reward_function_type is RewardFunctionType.LOG_RETURN  # the default
    assert run.train_end < run.trade_start <= run.trade_end
    env_config = json.loads(run.env_config_json)
    assert env_config["observation_space"] == STATE_DIM and env_config["train_days"] == TRAIN_DAYS
    assert env_config["state_space"] == 1 + 2 * 2 + 8 * 2  # FinRL's state, before scaling
    assert (env_config["env"], env_config["n_envs"], env_config["sizing"]) == (
        "fast",
        1,
        "notional",
    )
    assert env_config["reward"] == "log_return" and env_config["reward_params"] == {"scaling": 100}
    assert len(env_config["observation_scaling"]["tech_mean"]) == 8 * 2
    assert run.duration_seconds and run.duration_seconds > 0

    # reward_history: rows equal the steps taken, episodes counted right.
    T = run.total_timesteps
    assert T >= 400 and result.model.num_timesteps == T  # PPO/A2C round up to rollouts
    steps = check_reward_history(db, run.run_id, T)
    assert run.total_episodes == T // TRAIN_DAYS
    for episode in range(1, run.total_episodes + 1):
        rows = [s for s in steps if s.episode_number == episode]
        assert np.allclose(
            np.cumsum([s.step_reward for s in rows]), [s.episode_cumulative_reward for s in rows]
        )
        end = rows[-1]
        assert end.episode_final_reward == pytest.approx(end.episode_cumulative_reward)
        # The episode's account values: the start, then one per trading step (the last
        # row is FinRL's no-op, same value).
        values = [run.initial_amount] + [s.account_value for s in rows[:-1]]
        assert rows[-1].account_value == rows[-2].account_value
        # annualised as the run's bars (recorded: hourly bars, every day of the week)
        sharpe = episode_sharpe(values, json.loads(run.config_json)["periods_per_year"])
        assert (end.sharpe_ratio is None and math.isnan(sharpe)) or end.sharpe_ratio == (
            pytest.approx(sharpe)
        )
    assert any(s.policy_loss is not None and s.value_loss is not None for s in steps)
    assert steps[0].policy_loss is None  # no update before the first step

    # Checkpoints every 2 episodes (the last `keep` kept), then the final agent.
    store = AgentCheckpointRepository(db).store
    checkpoints = AgentCheckpointRepository(db).list(run.run_id)
    intermediate = [c for c in checkpoints if c.kind is CheckpointKind.INTERMEDIATE]
    episodes = [4] if off_policy else [2, 4]
    assert [c.episode_number for c in intermediate] == episodes
    assert [c.timestep for c in intermediate] == [e * TRAIN_DAYS for e in episodes]
    curve = RewardHistoryRepository(db).reward_curve(run.run_id)
    assert intermediate[-1].mean_reward == pytest.approx(
        np.mean([e.episode_final_reward for e in curve[2:4]])
    )
    for c in intermediate:
        assert bool(c.replay_buffer_uri) == off_policy
        if c.replay_buffer_uri:
            assert AgentCheckpointRepository(db).load_replay_buffer(c.checkpoint_id)
    if off_policy:  # only the kept checkpoint's buffer is left in the store
        buffers = store.root / "agent_replay_buffers" / str(run.run_id)
        assert [p.name for p in buffers.iterdir()] == [
            c.replay_buffer_uri.rsplit("/", 1)[-1] for c in intermediate
        ]
    (final,) = [c for c in checkpoints if c.kind is CheckpointKind.FINAL]
    assert {(c.format.value, c.signature) for c in checkpoints} == {("sb3_state", "")}
    assert (final.episode_number, final.timestep) == (run.total_episodes, T)
    assert final.checkpoint_id == result.checkpoint_id
    assert result.checkpoints == [c.checkpoint_id for c in intermediate]

    # Final metrics: the evaluation's, recomputable from its equity curve, and the same
    # again from the stored final agent.
    evaluation = result.evaluation
    assert len(evaluation.equity) == TRADE_DAYS and len(evaluation.rewards) == TRADE_DAYS - 1
    assert list(evaluation.equity.columns) == [
        "date",
        "account_value",
        "buy_and_hold",
        "trend_rule",
    ]
    assert evaluation.equity["buy_and_hold"].notna().all()
    assert evaluation.account_values[0] == run.initial_amount
    per_year = json.loads(run.config_json)["periods_per_year"]
    recomputed = performance_metrics(evaluation.account_values, evaluation.rewards, per_year)
    assert_final_equal(run, recomputed.final_columns())
    assert final.mean_reward == pytest.approx(recomputed.mean_reward, nan_ok=True)
    repo = AgentCheckpointRepository(db)
    from trainers.rl.agents import load_model

    loaded = load_model(agent, repo.load_checkpoint(final.checkpoint_id))
    again = evaluate_agent(loaded, result.market.trade, result.market, result_config(run))
    assert_final_equal(run, again.metrics.final_columns())
    np.testing.assert_array_equal(again.account_values, evaluation.account_values)


def result_config(run: Any) -> RLConfig:
    return RLConfig.model_validate_json(run.config_json)


def assert_final_equal(run: Any, final: dict[str, float | None]) -> None:
    for name, value in final.items():
        stored = getattr(run, name)
        if value is None:
            assert stored is None, name
        else:
            assert stored == pytest.approx(value, rel=1e-12, abs=1e-15), name


@pytest.mark.slow
@pytest.mark.parametrize("env", ["fast", "finrl"])
def test_parallel_envs_log_every_env_step_once(features_db: Database, env: str) -> None:
    """4 envs: one row per env-step, global step numbers 1..T in env order, every env's
    episode numbered per run, every episode end counted toward checkpoints."""
    n = 4
    params = {"n_steps": 16, "batch_size": 32, "n_epochs": 1, "net_arch": "tiny"}
    cfg = config("ppo", n_envs=n, env=env, timesteps=2 * TRAIN_DAYS * n, agent_params=params)
    result = RLTrainer(cfg.model_copy(update={"checkpoint_every_episodes": 4}), features_db).run()
    run = AgentRunRepository(features_db).get(result.run.run_id)
    T = run.total_timesteps
    steps_per_env = T // n
    assert run.total_episodes == 2 * n and steps_per_env == 2 * TRAIN_DAYS
    assert json.loads(run.env_config_json)["n_envs"] == n
    history = RewardHistoryRepository(features_db)
    steps = history.steps(run.run_id)
    assert history.count(run.run_id) == len(steps) == T
    assert [s.timestep_number for s in steps] == list(range(1, T + 1))
    for s in steps:
        batch, index = divmod(s.timestep_number - 1, n)
        assert s.env_index == index
        assert s.episode_number == batch // TRAIN_DAYS * n + index + 1
        assert s.is_episode_end == ((batch + 1) % TRAIN_DAYS == 0)
    ends = [s for s in steps if s.is_episode_end]
    assert sorted(s.episode_number for s in ends) == list(range(1, 2 * n + 1))
    checkpoints = AgentCheckpointRepository(features_db).list(run.run_id, kind="intermediate")
    assert [c.episode_number for c in checkpoints] == [4, 8]


@pytest.mark.parametrize("reward", list(RewardFunctionType))
def test_reward_function_is_recorded(features_db: Database, reward: RewardFunctionType) -> None:
    result = RLTrainer(
        config("a2c", timesteps=TRAIN_DAYS, reward=reward, drawdown_penalty=0.2), features_db
    ).run()
    run = result.run
    assert run.reward_function_type is reward and run.total_episodes == 1
    env_config = json.loads(run.env_config_json)
    assert env_config["reward"] == reward.value
    expected = {
        RewardFunctionType.PORTFOLIO_VALUE_CHANGE: {"scaling": 1e-4},
        RewardFunctionType.LOG_RETURN: {"scaling": 100.0},
        RewardFunctionType.DIFFERENTIAL_SHARPE: {"eta": 0.01},
        RewardFunctionType.DRAWDOWN_PENALIZED: {"penalty": 0.2},
    }[reward]
    assert env_config["reward_params"] == expected
    env = make_env(result.market.train, result.market, result_config(run))
    assert env.reward_type is reward


def test_progress_bar_does_not_change_the_run(
    features_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = RLTrainer(config("a2c", timesteps=TRAIN_DAYS, seed=11), features_db).run()
    shown = RLTrainer(
        config("a2c", timesteps=TRAIN_DAYS, seed=11), features_db, progress=True
    ).run()
    assert shown.run.total_timesteps == quiet.run.total_timesteps == TRAIN_DAYS
    assert shown.run.final_total_return == quiet.run.final_total_return


# --------------------------------------------------------------------------- tuning
@pytest.mark.slow
@pytest.mark.parametrize("agent", ["ppo", "td3"])
def test_tuning_logs_every_trial(features_db: Database, agent: str) -> None:
    small_space = {
        "ppo": {
            "n_steps": {"type": "categorical", "choices": [32, 64]},
            "batch_size": {"type": "categorical", "choices": [32]},
            "n_epochs": {"type": "categorical", "choices": [1, 2]},
            "net_arch": {"type": "categorical", "choices": ["tiny"]},
        },
        "td3": {
            "batch_size": {"type": "categorical", "choices": [16, 32]},
            "train_freq": {"type": "categorical", "choices": [4, 8]},
            "net_arch": {"type": "categorical", "choices": ["small"]},
        },
    }[agent]
    trials = 3 if agent == "ppo" else 2
    cfg = config(
        agent,
        timesteps=TRAIN_DAYS,
        checkpoint_every_episodes=100,
        agent_params={"learning_starts": 20} if agent == "td3" else {},
        tuning={
            "trials": trials,
            "timesteps": 120,
            "evaluations": 2,
            "search_space": small_space,
        },
    )
    result = RLTrainer(cfg, features_db).run()
    run = result.run
    assert run.status is RunStatus.COMPLETED
    logged = RLTrialRepository(features_db).list(run.run_id)
    assert [t.trial_number for t in logged] == list(range(trials))
    for trial in logged:
        params = json.loads(trial.hyperparameters)
        assert trial.agent_type is AgentType(agent) and trial.study_name == str(run.run_id)
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert 1 - 0.03 <= trial.gamma <= 1 - 1e-4 and trial.gamma == params["gamma"]
        assert 1e-5 <= trial.learning_rate <= 2e-3
        assert trial.total_timesteps >= 60 and trial.total_episodes >= 1
        if agent == "ppo":
            assert trial.n_steps in (32, 64) and trial.batch_size == 32 and trial.tau is None
            assert 0 < params["gae_lambda"] < 1 and trial.clip_range in (0.1, 0.2, 0.3, 0.4)
        else:
            assert params["gradient_steps"] == params["train_freq"] and trial.tau is not None
            assert trial.n_steps is None and trial.clip_range is None
        if trial.state is TrialState.COMPLETE:
            assert trial.mean_reward is not None
    best = RLTrialRepository(features_db).best(run.run_id, n=1)[0]
    stored = result_config(run)
    assert stored.tuned_params == result.params == json.loads(best.hyperparameters)


class _Killed(BaseException):
    """Stands in for SIGKILL: Optuna neither catches it nor closes the trial."""


@pytest.mark.slow
def test_killed_study_resumes_without_rerunning_or_relogging_trials(
    features_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainers.rl import tuning

    cfg = config(
        "ppo",
        timesteps=TRAIN_DAYS,
        checkpoint_every_episodes=100,
        tuning={
            "trials": 4,
            "timesteps": 64,
            "evaluations": 1,
            "pruning": False,
            "search_space": {
                "n_steps": {"type": "categorical", "choices": [32]},
                "batch_size": {"type": "categorical", "choices": [32]},
                "n_epochs": {"type": "categorical", "choices": [1]},
                "net_arch": {"type": "categorical", "choices": ["tiny"]},
            },
        },
    )
    real_build = tuning.build_model
    built: list[int] = []

    def dying_build(*args: Any, **kwargs: Any) -> Any:
        built.append(kwargs["seed"])
        if len(built) == 3:  # trial 2 starts, then the process "dies"
            raise _Killed
        return real_build(*args, **kwargs)

    monkeypatch.setattr(tuning, "build_model", dying_build)
    with pytest.raises(_Killed):
        RLTrainer(cfg, features_db).run()
    (run,) = AgentRunRepository(features_db).list(name_like=cfg.run_name)
    trials = RLTrialRepository(features_db)
    assert [t.trial_number for t in trials.list(run.run_id)] == [0, 1]

    monkeypatch.setattr(tuning, "build_model", real_build)
    resumed = RLTrainer(RLConfig(resume=run.run_id), features_db).run()
    assert resumed.run.status is RunStatus.COMPLETED
    logged = trials.list(run.run_id)
    assert [t.trial_number for t in logged] == [0, 1, 2, 3]  # 0-1 kept, 3 run on resume
    assert logged[2].state is TrialState.FAILED  # left running by the dead process
    assert [t.state for t in logged if t.trial_number != 2] == [TrialState.COMPLETE] * 3
    physical = features_db.scalar(
        "SELECT count() FROM rl_hyperparameters WHERE run_id = %(r)s", {"r": run.run_id}
    )
    assert physical == 4  # no trial logged twice
    assert result_config(resumed.run).tuned_params == resumed.params


@pytest.mark.slow
def test_resumed_ppo_takes_exactly_the_planned_total(
    features_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PPO learns in rollouts of 64 steps: 400 asked is 448 taken. A run that crashes
    after its checkpoint at step 160 resumes with rollouts starting there; it still ends
    at 448, the uninterrupted run's total (not 416 or 480)."""
    from trainers.rl.trainer import planned_timesteps

    db = features_db
    straight = RLTrainer(config("ppo"), db).run()
    assert straight.run.total_timesteps == 448 == planned_timesteps(straight.model, 400)

    original = RewardHistoryCallback._on_step

    def crashing(self: RewardHistoryCallback) -> bool:
        keep_going = original(self)
        if self.model.num_timesteps == 2 * TRAIN_DAYS + 30:
            raise RuntimeError("simulated crash")
        return keep_going

    monkeypatch.setattr(RewardHistoryCallback, "_on_step", crashing)
    cfg = config("ppo")
    with pytest.raises(RuntimeError, match="simulated crash"):
        RLTrainer(cfg, db).run()
    monkeypatch.setattr(RewardHistoryCallback, "_on_step", original)
    (run,) = AgentRunRepository(db).list(name_like=cfg.run_name)
    resumed = RLTrainer(RLConfig(resume=run.run_id), db).run()
    assert resumed.resumed_from.timestep == 2 * TRAIN_DAYS
    assert resumed.run.total_timesteps == resumed.model.num_timesteps == 448
    check_reward_history(db, run.run_id, 448)


# --------------------------------------------------------------------------- lifecycle
def test_failure_marks_the_run_failed(features_db: Database) -> None:
    cfg = config("a2c", indicators=["rsi_14", "no_such_feature"])
    with pytest.raises(FeatureSpecError):
        RLTrainer(cfg, features_db).run()
    (run,) = AgentRunRepository(features_db).list(name_like=cfg.run_name)
    assert run.status is RunStatus.FAILED and "no_such_feature" in run.error_message


def test_ctrl_c_marks_the_run_cancelled(
    features_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "evaluate_agent", interrupted)
    cfg = config("a2c", timesteps=TRAIN_DAYS)
    with pytest.raises(KeyboardInterrupt):
        RLTrainer(cfg, features_db).run()
    (run,) = AgentRunRepository(features_db).list(name_like=cfg.run_name)
    assert run.status is RunStatus.CANCELLED
    assert RewardHistoryRepository(features_db).count(run.run_id) == TRAIN_DAYS  # flushed


@pytest.mark.slow
def test_resume_after_a_crash_continues_exactly(
    features_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SAC crashes 40 steps after its checkpoint at step 160; the resumed run restores the
    replay buffer, replaces steps 161..200 and numbers on."""
    db = features_db
    crash_at = 2 * TRAIN_DAYS + 40
    original = RewardHistoryCallback._on_step

    def crashing(self: RewardHistoryCallback) -> bool:
        keep_going = original(self)
        if self.model.num_timesteps == crash_at:
            raise RuntimeError("simulated crash")
        return keep_going

    monkeypatch.setattr(RewardHistoryCallback, "_on_step", crashing)
    cfg = config("sac", timesteps=5 * TRAIN_DAYS)
    with pytest.raises(RuntimeError, match="simulated crash"):
        RLTrainer(cfg, db).run()
    monkeypatch.setattr(RewardHistoryCallback, "_on_step", original)
    (run,) = AgentRunRepository(db).list(name_like=cfg.run_name)
    assert run.status is RunStatus.FAILED
    history = RewardHistoryRepository(db)
    assert history.last_step(run.run_id) == (3, crash_at)  # rows past the checkpoint
    crashed_at = dt.datetime.now(dt.UTC)

    restored: list[int] = []
    real_restore = trainer_module.restore_replay_buffer

    def spy(model: Any, data: bytes) -> None:
        restored.append(len(data))
        real_restore(model, data)
        assert model.replay_buffer.size() > 0

    monkeypatch.setattr(trainer_module, "restore_replay_buffer", spy)
    time.sleep(0.01)
    result = RLTrainer(RLConfig(resume=run.run_id), db).run()
    assert restored, "the replay buffer was not restored"
    assert result.resumed_from is not None and result.resumed_from.timestep == 2 * TRAIN_DAYS
    done = AgentRunRepository(db).get(run.run_id)
    assert done.status is RunStatus.COMPLETED
    assert (done.total_timesteps, done.total_episodes) == (5 * TRAIN_DAYS, 5)
    steps = check_reward_history(db, run.run_id, 5 * TRAIN_DAYS)
    for s in steps:  # steps after the checkpoint were logged again by the resumed process
        assert (s.recorded_at > crashed_at) == (s.timestep_number > 2 * TRAIN_DAYS)
    checkpoints = AgentCheckpointRepository(db).list(run.run_id, kind="intermediate")
    assert [c.episode_number for c in checkpoints] == [2, 4]

    with pytest.raises(InvalidTransitionError):
        RLTrainer(RLConfig(resume=run.run_id), db).run()


CHILD = """
import sys
import time

from suho_models.db import Database
from trainers.rl import RLConfig
from trainers.rl.callbacks import RewardHistoryCallback
from trainers.rl.trainer import RLTrainer

url, name = sys.argv[1], sys.argv[2]
flush_at, hang_at, n_envs = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
original = RewardHistoryCallback._on_step


def on_step(self):
    result = original(self)
    step = self.model.num_timesteps
    if step == flush_at:
        self.drain()  # the callback's buffered rows to the writer,
        self.rewards.flush()  # and these rows past the checkpoint to the table
    if step == hang_at:  # the rows after flush_at stay in memory: lost with the process
        print("HANGING", flush=True)
        time.sleep(600)
    return result


RewardHistoryCallback._on_step = on_step
config = RLConfig(
    agent="ppo",
    timesteps=1_000_000,
    checkpoint_every_episodes=3,
    n_envs=n_envs,
    run_name=name,
    agent_params={"n_steps": 64, "batch_size": 32, "n_epochs": 2, "net_arch": "tiny"},
)
RLTrainer(config, Database(url)).run()
"""


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.parametrize("n_envs", [1, 3])
def test_resume_after_sigkill_keeps_reward_history_exact(local_server: Any, n_envs: int) -> None:
    """A training subprocess is SIGKILLed mid-run, 48 env-steps after its checkpoint at
    episode 3 (30 of them stored, 18 only in memory); the resumed run leaves exactly one
    row per env-step of the final trajectory. With 3 envs, their first episodes end
    together at env-step 240: the checkpoint is at episode 3 there too."""
    url = local_server.native_url(f"rl_{uuid.uuid4().hex[:8]}")
    migrations.upgrade(url)
    db = Database(url)
    try:
        write_features(db)
        name = f"sigkill-{uuid.uuid4().hex[:6]}"
        checkpoint_step = 3 * TRAIN_DAYS
        flush_at, hang_at = checkpoint_step + 30, checkpoint_step + 48
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, name, str(flush_at), str(hang_at), str(n_envs)],
            cwd=Path(__file__).resolve().parents[1],
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            line = child.stdout.readline() if child.stdout else ""
            assert line.strip() == "HANGING", child.stderr.read() if child.stderr else ""
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        killed_at = dt.datetime.now(dt.UTC)
        assert child.returncode == -signal.SIGKILL

        runs = AgentRunRepository(db)
        (run,) = runs.list(name_like=name)
        assert run.status is RunStatus.RUNNING  # nobody could mark it
        history = RewardHistoryRepository(db)
        assert history.last_step(run.run_id) == (episode_of(flush_at, n_envs), flush_at)
        latest = AgentCheckpointRepository(db).latest(run.run_id)
        assert (latest.episode_number, latest.timestep) == (3, checkpoint_step)

        time.sleep(0.01)
        resumed = RLTrainer(RLConfig(resume=run.run_id, timesteps=6 * TRAIN_DAYS), db).run()
        done = runs.get(run.run_id)
        assert done.status is RunStatus.COMPLETED
        T = done.total_timesteps
        assert json.loads(done.env_config_json)["n_envs"] == n_envs
        assert T >= 6 * TRAIN_DAYS and T % (64 * n_envs) == 0  # whole rollouts
        assert done.total_episodes == T // n_envs // TRAIN_DAYS * n_envs
        assert resumed.model.num_timesteps == T
        steps = check_reward_history(db, run.run_id, T, n_envs)
        for s in steps:
            assert (s.recorded_at > killed_at) == (s.timestep_number > checkpoint_step)
        assert len([s for s in steps if s.is_episode_end]) == done.total_episodes
        checkpoints = AgentCheckpointRepository(db).list(run.run_id, kind="intermediate")
        assert [c.episode_number for c in checkpoints] == [3, 6]
        assert json.loads(done.config_json)["timesteps"] == 6 * TRAIN_DAYS
    finally:
        db.close()


# --------------------------------------------------------------------------- deploy
@pytest.mark.slow
def test_deploy_best_agent_and_load_it_back(embedded_dir: Path) -> None:
    url = f"clickhouse+chdb:///{embedded_dir}/rl_deploy_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(url)
    db = Database(url)
    try:
        write_features(db)
        first = RLTrainer(config("td3", timesteps=2 * TRAIN_DAYS), db).run()
        assert first.run.final_sharpe_ratio is not None
        tracking = RunTrackingService(db, RunKind.RL)
        deployed = tracking.deploy_best(type="td3")  # default: final_sharpe_ratio
        assert deployed.checkpoint_id == first.checkpoint_id
        assert deployed.deployment_status is DeploymentStatus.PRODUCTION

        second = RLTrainer(config("td3", timesteps=3 * TRAIN_DAYS, seed=7), db).run()
        deployed = tracking.deploy_best(by="total_timesteps", type="td3")
        assert deployed.checkpoint_id == second.checkpoint_id
        repo = AgentCheckpointRepository(db)
        assert repo.get(first.checkpoint_id).deployment_status is DeploymentStatus.ARCHIVED

        # The report's equity curves: recomputed from the stored run, the same as trained.
        agent_curve, benchmark = trade_equity_curves(db, second.run.run_id)
        np.testing.assert_array_equal(agent_curve, second.equity_curve["account_value"])
        np.testing.assert_array_equal(benchmark, second.equity_curve["buy_and_hold"])

        agent = load_deployed_agent(db, "td3")
        assert agent.info.checkpoint_id == second.checkpoint_id
        env = make_env(second.market.trade, second.market, result_config(second.run))
        obs, _ = env.reset()
        for _ in range(5):
            expected, _ = second.model.predict(obs, deterministic=True)
            actual, _ = agent.model.predict(obs, deterministic=True)
            np.testing.assert_array_equal(actual, expected)
            obs, *_ = env.step(expected)
    finally:
        db.close()


@pytest.mark.slow
def test_deployed_agent_acts_identically_after_reload(features_db: Database) -> None:
    """The reloaded agent sees the stored scaling: on a market read back from the
    database (nothing fitted in memory), it takes the trained model's actions exactly,
    through its own env and through FinRL's raw state."""
    db = features_db
    trained = RLTrainer(config("ppo", timesteps=2 * TRAIN_DAYS, env="fast"), db).run()
    AgentCheckpointRepository(db).deploy(trained.checkpoint_id, "production")
    expected = trained.evaluation.actions

    agent = load_deployed_agent(db, "ppo")
    assert agent.info.checkpoint_id == trained.checkpoint_id
    assert agent.scaling == trained.market.extra["observation_scaling"]
    market = agent.load_market(db)
    env = agent.make_env(market.trade, market)
    obs, _ = env.reset()
    actions, raw_actions = [], []
    while True:
        action, _ = agent.model.predict(obs, deterministic=True)
        actions.append(action)
        raw_actions.append(agent.predict(np.asarray(env.unwrapped.state)))
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    np.testing.assert_array_equal(np.asarray(actions), expected)
    np.testing.assert_array_equal(np.asarray(raw_actions), expected)
    assert np.abs(expected).max() > 0  # the agent acts: a constant 0 would prove nothing
    with pytest.raises(ValueError, match="state: expected FinRL's raw state of 21 values"):
        agent.predict(obs)  # an already scaled observation is refused, not scaled twice


# --------------------------------------------------------------------------- config
def test_cli_options_and_resume_overrides() -> None:
    cfg = RLConfig.from_cli_options(
        {"agent": "sac", "timesteps": 500, "reward": None, "tune": 3, "resume": None}
    )
    assert cfg.agent is AgentType.SAC and cfg.tuning.trials == 3
    assert cfg.reward is RewardFunctionType.LOG_RETURN  # None: not given, the default
    stored = RLConfig(agent="td3", timesteps=1000, seed=5)
    run_id = uuid.uuid4()
    resumed = RLConfig(resume=run_id, timesteps=2000, agent="ppo").for_resume(stored)
    assert (resumed.agent, resumed.timesteps, resumed.seed) == (AgentType.TD3, 2000, 5)
    assert resumed.resume == run_id
    with pytest.raises(ValueError):
        RLConfig(indicators=["rsi_14", "rsi_14"])
    with pytest.raises(ValueError, match=r"keep_checkpoints\n.*greater than or equal to 1"):
        RLConfig(keep_checkpoints=0)
    kept = RLConfig(resume=run_id, keep_checkpoints=1).for_resume(stored)
    assert kept.keep_checkpoints == 1  # a resumed run may change how many it keeps
