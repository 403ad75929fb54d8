"""Contract tests of the metrics, rewards and trials repositories, on both backends."""

from __future__ import annotations

import math
import uuid

import pytest
from sqlalchemy import event

from repositories.errors import InvalidInputError, NotFoundError
from repositories.runs import AgentRunRepository, TrainingRunRepository
from repositories.series import RewardHistoryRepository, TrainingMetricRepository
from repositories.trials import HyperparameterTrialRepository, RLTrialRepository
from suho_models.db import Database


@pytest.fixture
def run_id(db: Database) -> uuid.UUID:
    return (
        TrainingRunRepository(db)
        .create({"run_name": "r", "model_type": "lightgbm", "target_variable": "t"})
        .run_id
    )


@pytest.fixture
def agent_run_id(db: Database) -> uuid.UUID:
    return AgentRunRepository(db).create({"run_name": "a", "agent_type": "sac"}).run_id


def test_learning_curve_in_order_once_per_iteration(db: Database, run_id: uuid.UUID) -> None:
    repo = TrainingMetricRepository(db)
    with repo.logger(run_id) as log:
        for i in (3, 1, 2):
            log.log(i, train_loss=1.0 / i, val_loss=float("nan"), iteration_duration_ms=2.0)
    with repo.logger(run_id) as log:  # a resume re-logs iteration 3 with a new value
        log.log(3, train_loss=0.25, val_loss=float("inf"), iteration_duration_ms=2.0)
    curve = repo.learning_curve(run_id)
    assert [p.iteration_number for p in curve] == [1, 2, 3]
    assert [p.train_loss for p in curve] == [1.0, 0.5, 0.25]
    assert math.isnan(curve[0].val_loss) and curve[2].val_loss == math.inf
    assert curve[0].gradient_norm is None
    assert repo.count(run_id) == 3 and repo.last_iteration(run_id) == 3
    table = repo.learning_curve_arrow(run_id)
    assert table.column("iteration_number").to_pylist() == [1, 2, 3]


def test_metric_writes_are_checked(db: Database, run_id: uuid.UUID) -> None:
    repo = TrainingMetricRepository(db)
    with pytest.raises(NotFoundError):
        repo.logger(uuid.uuid4())
    with repo.logger(run_id) as log, pytest.raises(InvalidInputError, match="got -1"):
        log.log(-1, train_loss=1.0)
    with pytest.raises(InvalidInputError, match="iteration_number"):
        repo.log_many(run_id, [{"iteration_number": 1}, {"iteration_number": -2}])
    assert repo.count(run_id) == 0
    assert repo.last_iteration(run_id) is None
    assert repo.log_many(run_id, [{"iteration_number": 1, "train_loss": 0.3}]) == 1


def test_reward_curve_and_steps(db: Database, agent_run_id: uuid.UUID) -> None:
    repo = RewardHistoryRepository(db)
    step = 0
    with repo.logger(agent_run_id) as log:
        for episode in (1, 2):
            total = 0.0
            for k in range(3):
                step += 1
                total += k
                end = k == 2
                log.log(
                    episode,
                    step,
                    step_reward=float(k),
                    episode_cumulative_reward=total,
                    episode_final_reward=total if end else None,
                    sharpe_ratio=0.5 * episode if end else None,
                    is_episode_end=int(end),
                )
    curve = repo.reward_curve(agent_run_id)
    assert [(e.episode_number, e.timestep_number, e.episode_final_reward) for e in curve] == [
        (1, 3, 3.0),
        (2, 6, 3.0),
    ]
    assert [s.timestep_number for s in repo.steps(agent_run_id, episode_number=2)] == [4, 5, 6]
    assert repo.count(agent_run_id) == 6 and repo.last_step(agent_run_id) == (2, 6)
    with pytest.raises(NotFoundError):
        repo.logger(uuid.uuid4())


def test_reads_filter_keys_before_final_and_other_columns_after(
    db: Database, agent_run_id: uuid.UUID
) -> None:
    """A step first logged as an episode end and then re-logged as an ordinary step
    (a resume replaying it) must leave the reward curve: ``is_episode_end`` is not a
    key column, so it has to be filtered after FINAL picks the newest version."""
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    repo = RewardHistoryRepository(db)
    other = AgentRunRepository(db).create({"run_name": "b", "agent_type": "sac"}).run_id
    for run in (agent_run_id, other):
        with repo.logger(run) as log:
            log.log(
                1, 1, step_reward=1.0, episode_cumulative_reward=1.0,
                episode_final_reward=1.0, is_episode_end=1,
            )  # fmt: skip
    with repo.logger(agent_run_id) as log:
        log.log(1, 1, step_reward=2.0, episode_cumulative_reward=2.0, is_episode_end=0)

    assert repo.reward_curve(agent_run_id) == []
    sql = " ".join(seen[-1].split())
    assert "FROM reward_history FINAL PREWHERE reward_history.run_id =" in sql
    assert "WHERE reward_history.is_episode_end =" in sql.split("PREWHERE", 1)[1]
    assert [s.step_reward for s in repo.steps(agent_run_id, episode_number=1)] == [2.0]
    assert "PREWHERE reward_history.run_id = %(run_id_1)s AND reward_history.episode_number" in (
        " ".join(seen[-1].split())
    )
    assert repo.count(agent_run_id) == 1 and repo.count(other) == 1
    assert [e.episode_number for e in repo.reward_curve(other)] == [1]


def test_trials_best_and_relog(db: Database, run_id: uuid.UUID) -> None:
    repo = HyperparameterTrialRepository(db)
    for n, value, state in [
        (0, 0.6, "complete"),
        (1, 0.7, "complete"),
        (2, None, "pruned"),
        (3, 0.5, "complete"),
    ]:
        repo.log(
            run_id,
            {
                "trial_number": n,
                "hyperparameters": {"num_leaves": 31 + n},
                "objective_value": value,
                "state": state,
                "scores": [0.1, 0.2],
            },
        )
    repo.log(
        run_id, {"trial_number": 3, "hyperparameters": '{"num_leaves": 99}', "objective_value": 0.9}
    )  # a resumed study re-logs trial 3
    assert [t.trial_number for t in repo.list(run_id)] == [0, 1, 2, 3]
    assert [t.trial_number for t in repo.best(run_id, n=2)] == [3, 1]
    assert [t.trial_number for t in repo.best(run_id, n=1, direction="minimize")] == [0]
    assert repo.finished_numbers(run_id) == {0, 1, 2, 3}
    assert repo.list(run_id)[0].scores == [0.1, 0.2]


@pytest.mark.parametrize(
    ("trial", "needle"),
    [
        ({"trial_number": 0, "hyperparameters": "{bad json"}, "hyperparameters"),
        ({"trial_number": 0, "hyperparameters": "[1]"}, "JSON object"),
        ({"trial_number": -1, "hyperparameters": {}}, "trial_number"),
        ({"trial_number": 0, "hyperparameters": {}, "state": "exploded"}, "state"),
        ({"trial_number": 0, "hyperparameters": {}, "tuning_method": "vibes"}, "tuning_method"),
    ],
)
def test_bad_trials_are_refused(db: Database, run_id: uuid.UUID, trial, needle) -> None:
    repo = HyperparameterTrialRepository(db)
    with pytest.raises(InvalidInputError, match=needle):
        repo.log(run_id, trial)
    assert repo.list(run_id) == []


def test_rl_trial_columns_from_params(db: Database, agent_run_id: uuid.UUID) -> None:
    repo = RLTrialRepository(db)
    params = {
        "learning_rate": 3e-4,
        "gamma": 0.99,
        "batch_size": 256,
        "tau": 0.005,
        "net_arch": "medium",
        "train_freq": 4,
    }
    repo.log(
        agent_run_id,
        {
            "trial_number": 0,
            "agent_type": "sac",
            "hyperparameters": params,
            "mean_reward": 1.5,
            "sharpe_ratio": 0.7,
            "total_timesteps": 500,
        },
    )
    (trial,) = repo.list(agent_run_id)
    assert (trial.learning_rate, trial.gamma, trial.batch_size, trial.tau) == (
        3e-4,
        0.99,
        256,
        0.005,
    )
    assert trial.clip_range is None and trial.n_steps is None
    assert '"net_arch": "medium"' in trial.hyperparameters
    with pytest.raises(NotFoundError):
        repo.log(uuid.uuid4(), {"trial_number": 1, "agent_type": "sac", "hyperparameters": {}})
