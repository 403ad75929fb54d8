"""No row logged through the repositories is dropped without an error (issue 17, §3).

The loggers and ``log_many`` refuse a bad value in the call, naming the field and
the value, and keep everything stored; the README's Python example, run as written,
stores what it says.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from repositories.batch_writer import InvalidRowError
from repositories.runs import AgentRunRepository, TrainingRunRepository
from repositories.series import RewardHistoryRepository, TrainingMetricRepository
from suho_models.db import Database

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_logger_example_stores_what_it_logs(db: Database) -> None:
    """The README block with ``TrainingRunRepository`` and ``logger``, run as written
    against a fresh database (``db`` is the one the README's first block opens)."""
    blocks = [b for b in _readme_python_blocks() if "TrainingRunRepository" in b and "logger" in b]
    assert len(blocks) == 1, "the README's repository example moved; update this test"
    namespace: dict[str, object] = {"db": db}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    run = namespace["run"]
    logged = len(re.findall(r"\blog\.log\(", blocks[0]))
    assert logged >= 1
    assert TrainingMetricRepository(db).count(run.run_id) == logged  # type: ignore[attr-defined]
    stored = TrainingRunRepository(db).get(run.run_id)  # type: ignore[attr-defined]
    assert stored.status.value == "completed"


@pytest.fixture
def run_id(db: Database) -> uuid.UUID:
    runs = TrainingRunRepository(db)
    return runs.create({"run_name": "r", "model_type": "xgboost", "target_variable": "t"}).run_id


@pytest.fixture
def agent_run_id(db: Database) -> uuid.UUID:
    return AgentRunRepository(db).create({"run_name": "a", "agent_type": "ppo"}).run_id


def test_metric_logger_refuses_bad_values_and_keeps_the_rest(
    db: Database, run_id: uuid.UUID
) -> None:
    repo = TrainingMetricRepository(db)
    with repo.logger(run_id) as log:
        log.log(1, train_loss=0.69, val_loss=0.70)
        for iteration, values, field, shown in [
            (2**32, {}, "iteration_number", "4294967296"),
            (2, {"train_loss": "abc"}, "train_loss", "'abc'"),
            (2, {"gradient_nrom": 1.0}, "gradient_nrom", "1.0"),
        ]:
            with pytest.raises(InvalidRowError, match=f"{field}.*{re.escape(shown)}"):
                log.log(iteration, **values)
        log.log(2, train_loss=0.5)
    assert [p.iteration_number for p in repo.learning_curve(run_id)] == [1, 2]


def test_log_many_is_all_or_nothing(db: Database, run_id: uuid.UUID) -> None:
    repo = TrainingMetricRepository(db)
    with pytest.raises(InvalidRowError, match=r"iteration_number.*1099511627776.*index 1"):
        repo.log_many(run_id, [{"iteration_number": 1}, {"iteration_number": 2**40}])
    assert repo.count(run_id) == 0
    assert repo.log_many(run_id, [{"iteration_number": 1}, {"iteration_number": 2}]) == 2
    assert repo.count(run_id) == 2


def test_reward_logger_refuses_bad_values_and_keeps_the_rest(
    db: Database, agent_run_id: uuid.UUID
) -> None:
    repo = RewardHistoryRepository(db)
    step = {"step_reward": 1.0, "episode_cumulative_reward": 1.0}
    with repo.logger(agent_run_id) as log:
        log.log(1, 1, **step)
        with pytest.raises(InvalidRowError, match="timestep_number.*18446744073709551616"):
            log.log(1, 2**64, **step)
        with pytest.raises(InvalidRowError, match="step_reward.*None"):
            log.log(1, 2, episode_cumulative_reward=1.0)
        log.log(1, 2, **step, is_episode_end=True)
    with pytest.raises(InvalidRowError, match="episode_number.*4294967296"):
        repo.log_many(agent_run_id, [{"episode_number": 2**32, "timestep_number": 3, **step}])
    assert [(p.timestep_number, p.is_episode_end) for p in repo.steps(agent_run_id)] == [
        (1, False),
        (2, True),
    ]
