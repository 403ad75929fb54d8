"""A trainer whose series rows can be neither inserted nor spooled ends its run
``failed``, with the count of rows not kept in ``error_message``; it no longer
completes with rows silently missing.

The faults are real: the series table is renamed away in the engine (every INSERT
fails with UNKNOWN_TABLE while the runs table works), and a file sits where the
spool folder should be (NotADirectoryError)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from repositories.batch_writer import RowsNotStoredError
from repositories.features import FeatureTable
from repositories.runs import AgentRunRepository, TrainingRunRepository
from suho_models.db import Database, migrations
from suho_models.enums import RunStatus
from suho_models.settings import get_settings
from tests.test_rl_trainer import config as rl_config
from tests.test_rl_trainer import write_features as write_rl_features
from tests.test_supervised_trainer import START
from tests.test_supervised_trainer import config as supervised_config
from trainers.data.synth import generate_ml_features
from trainers.rl.trainer import RLTrainer
from trainers.supervised.trainer import SupervisedTrainer


@pytest.fixture
def store(embedded_dir: Path) -> Iterator[Database]:
    url = f"clickhouse+chdb:///{embedded_dir}/lost_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(url)
    db = Database(url)
    yield db
    db.close()


def _break_series(db: Database, table: str) -> None:
    db.execute(f"RENAME TABLE {table} TO {table}_away")
    spool_root = get_settings().data_dir / "spool"
    spool_root.parent.mkdir(parents=True, exist_ok=True)
    spool_root.write_text("a file where the spool folder should be")


def _count(message: str) -> int:
    found = re.search(r"([\d,]+) row\(s\) were logged but not kept", message)
    assert found, message
    return int(found.group(1).replace(",", ""))


@pytest.mark.slow
def test_supervised_run_fails_with_the_count_of_metric_rows_not_kept(store: Database) -> None:
    frame = generate_ml_features(("EURUSD", "XAUUSD"), periods=300, start=START, seed=7)
    FeatureTable(store).write(frame)
    _break_series(store, "training_metrics")
    cfg = supervised_config(
        model_type="xgboost", rounds=25, run_name=f"lost-{uuid.uuid4().hex[:6]}"
    )
    with pytest.raises(RowsNotStoredError) as raised:
        SupervisedTrainer(cfg, store).run()
    assert raised.value.rows == 25  # one row per boosting round
    (run,) = TrainingRunRepository(store).list(name_like=cfg.run_name)
    assert run.status is RunStatus.FAILED
    assert "RowsNotStoredError" in run.error_message
    assert _count(run.error_message) == 25


@pytest.mark.slow
def test_rl_run_fails_with_the_count_of_reward_rows_not_kept(store: Database) -> None:
    write_rl_features(store)
    _break_series(store, "reward_history")
    cfg = rl_config("a2c", timesteps=200)
    with pytest.raises(RowsNotStoredError) as raised:
        RLTrainer(cfg, store).run()
    assert raised.value.rows == 200  # one row per env-step
    (run,) = AgentRunRepository(store).list(name_like=cfg.run_name)
    assert run.status is RunStatus.FAILED
    assert "RowsNotStoredError" in run.error_message
    assert _count(run.error_message) == 200
