"""Both trainers, a short run each, against the 2-node cluster in sharded mode:
they write through the Distributed tables and need no code of their own for it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from repositories.checkpoints import AgentCheckpointRepository, ModelCheckpointRepository
from repositories.features import FeatureTable
from repositories.runs import AgentRunRepository, TrainingRunRepository
from repositories.series import RewardHistoryRepository, TrainingMetricRepository
from suho_models.db import Database
from suho_models.db.local_cluster import LocalCluster
from suho_models.enums import RunStatus
from tests.cluster.conftest import node_db
from trainers.data.synth import generate_ml_features
from trainers.rl import RLConfig
from trainers.rl.trainer import RLTrainer
from trainers.supervised.config import SupervisedConfig
from trainers.supervised.trainer import SupervisedTrainer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def features(local_cluster: LocalCluster, cluster_database: str) -> Iterator[None]:
    db = Database(local_cluster.url(cluster_database))
    try:
        start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        FeatureTable(db).write(generate_ml_features(("EURUSD", "XAUUSD"), 200, start, seed=3))
    finally:
        db.close()
    yield


def _on_one_shard(cluster: LocalCluster, database: str, table: str, run_id: object) -> list[int]:
    counts = []
    for i in range(len(cluster.nodes)):
        db = node_db(cluster, database, i)
        try:
            counts.append(db.scalar(f"SELECT count() FROM {table}_local WHERE run_id = '{run_id}'"))
        finally:
            db.close()
    return counts


def test_supervised_run_on_the_cluster(
    features: None, cdb: Database, local_cluster: LocalCluster, cluster_database: str
) -> None:
    config = SupervisedConfig.model_validate(
        {"model_type": "xgboost", "rounds": 15, "early_stopping": None, "progress": False,
         "cv_folds": 2, "selection": {"top_k": 10}}
    )  # fmt: skip
    result = SupervisedTrainer(config, cdb).run()
    run = TrainingRunRepository(cdb).get(result.run.run_id)
    assert run.status is RunStatus.COMPLETED
    curve = TrainingMetricRepository(cdb).learning_curve(run.run_id)
    assert [p.iteration_number for p in curve] == list(range(1, 16))
    (info,) = ModelCheckpointRepository(cdb).list(run.run_id)
    assert ModelCheckpointRepository(cdb).load_checkpoint(info.checkpoint_id)
    counts = _on_one_shard(local_cluster, cluster_database, "training_metrics", run.run_id)
    assert sorted(counts) == [0, 15]


def test_rl_run_on_the_cluster(
    features: None, cdb: Database, local_cluster: LocalCluster, cluster_database: str
) -> None:
    config = RLConfig.model_validate(
        {"agent": "ppo", "timesteps": 320, "checkpoint_every_episodes": 2,
         "agent_params": {"n_steps": 64, "batch_size": 32, "n_epochs": 1, "net_arch": "tiny"},
         "run_name": "cluster-ppo"}
    )  # fmt: skip
    result = RLTrainer(config, cdb).run()
    run = AgentRunRepository(cdb).get(result.run.run_id)
    assert run.status is RunStatus.COMPLETED
    steps = RewardHistoryRepository(cdb).steps(run.run_id)
    assert [s.timestep_number for s in steps] == list(range(1, run.total_timesteps + 1))
    assert AgentCheckpointRepository(cdb).list(run.run_id)
    counts = _on_one_shard(local_cluster, cluster_database, "reward_history", run.run_id)
    assert sorted(counts) == [0, run.total_timesteps]


def test_suho_predict_writes_through_the_clusters_model_predictions(
    features: None,
    cdb: Database,
    local_cluster: LocalCluster,
    cluster_database: str,
) -> None:
    """Revision 0008 on the cluster: ``suho predict`` writes every row once through
    the Distributed table, all on the run's shard; a re-run replaces its rows."""
    from typer.testing import CliRunner

    from repositories.predictions import PredictionRepository
    from repositories.tracking import RunKind, RunTrackingService
    from suho.cli import app
    from suho_models.settings import get_settings

    config = SupervisedConfig.model_validate(
        {"model_type": "xgboost", "rounds": 10, "early_stopping": None, "progress": False,
         "cv_folds": 2, "selection": {"top_k": 10}, "model_name": "cluster-direction"}
    )  # fmt: skip
    result = SupervisedTrainer(config, cdb).run()
    RunTrackingService(cdb, RunKind.SUPERVISED).deploy(result.checkpoint_id, "production")
    expected = FeatureTable(cdb).count()
    env = {"SUHO_DATABASE_URL": local_cluster.url(cluster_database)}
    args = ["predict", "--model", "cluster-direction", "--quiet"]
    for _ in range(2):  # the second run replaces the first's rows
        get_settings.cache_clear()  # the trainer read them without the env
        out = CliRunner().invoke(app, args, env=env)
        assert out.exit_code == 0, out.output
        assert f"{expected:,} predictions by checkpoint {result.checkpoint_id}" in out.output
        assert PredictionRepository(cdb).count(result.checkpoint_id) == expected
    stored = PredictionRepository(cdb).frame(result.checkpoint_id)
    assert len(stored) == expected and set(stored["run_id"]) == {result.run.run_id}
    assert stored["probability"].between(0, 1).all()
    local = []
    for i in range(len(local_cluster.nodes)):
        node = node_db(local_cluster, cluster_database, i)
        try:
            local.append(
                node.scalar(
                    "SELECT count() FROM model_predictions_local FINAL "
                    f"WHERE checkpoint_id = '{result.checkpoint_id}'"
                )
            )
        finally:
            node.close()
    assert sorted(local) == [0, expected]  # every row once, on the run's shard
