"""Sharded mode with per-node DDL on a real 2-node cluster (2 shards x 1 replica)."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pyarrow as pa
import pytest

from repositories.checkpoints import ModelCheckpointRepository
from repositories.object_store import LocalObjectStore
from repositories.queries import BEST_RL_AGENTS, COMPARE_MODEL_PERFORMANCE
from repositories.runs import AgentRunRepository, TrainingRunRepository
from repositories.series import TrainingMetricRepository
from repositories.trials import HyperparameterTrialRepository
from suho_models import TABLE_NAMES
from suho_models.db import Database, migrations
from suho_models.db.cluster import NodesDisagreeError
from suho_models.db.local_cluster import LocalCluster
from tests.cluster.conftest import fresh_cluster_database, node_db
from tests.test_batch_writer import _spool_files

pytestmark = pytest.mark.slow


def _local_counts(nodes: list[Database], table: str, where: str = "1") -> list[int]:
    return [int(n.scalar(f"SELECT count() FROM {table}_local WHERE {where}")) for n in nodes]


def test_every_node_has_local_and_distributed_tables_at_head(nodes: list[Database]) -> None:
    head = migrations.head_revision()
    for node in nodes:
        assert node.current_revision() == head
        for table in TABLE_NAMES:
            assert (
                node.scalar(
                    f"SELECT engine FROM system.tables WHERE database = "
                    f"currentDatabase() AND name = '{table}'"
                )
                == "Distributed"
            )
            local = node.scalar(f"SHOW CREATE TABLE {table}_local")
            assert "ReplacingMergeTree" in local
            assert "non_replicated_deduplication_window = 1000" in local
        # 0002's columns reached both the local and the Distributed tables.
        assert (
            node.scalar(
                "SELECT count() FROM system.columns WHERE database = "
                "currentDatabase() AND name = 'heartbeat_at'"
            )
            == 4
        )


def test_rerun_after_an_interrupted_upgrade_finishes_it(
    local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"c_{uuid.uuid4().hex[:10]}"
    first = local_cluster.nodes[0].native_url(name, http=False)
    migrations.upgrade(local_cluster.url(name), "0001_training_tables")
    # The upgrade to 0002 died after node 1: node 1 at 0002, node 2 still at 0001.
    monkeypatch.setenv("SUHO_CLICKHOUSE_NODES", first)
    migrations.upgrade(local_cluster.url(name), "head")
    monkeypatch.delenv("SUHO_CLICKHOUSE_NODES")
    a, b = (node_db(local_cluster, name, i) for i in range(2))
    try:
        assert (a.current_revision(), b.current_revision()) == (
            migrations.head_revision(),
            "0001_training_tables",
        )
        # Moving the cluster back to 0001 is ambiguous now: refused, naming both nodes.
        with pytest.raises(NodesDisagreeError, match="different revisions.*0001_training_tables"):
            migrations.downgrade(local_cluster.url(name), "0001_training_tables")
        migrations.upgrade(local_cluster.url(name), "head")  # re-run: each node from its own
        assert a.current_revision() == b.current_revision() == migrations.head_revision()
        migrations.upgrade(local_cluster.url(name), "head")  # idempotent
        migrations.downgrade(local_cluster.url(name), "base")
        assert [
            a.scalar(
                "SELECT count() FROM system.tables WHERE database = currentDatabase() "
                "AND name != 'alembic_version'"
            )
            for _ in (0,)
        ] == [0]
    finally:
        a.close()
        b.close()


def _supervised_run(runs: TrainingRunRepository, n: int, accuracy: float) -> uuid.UUID:
    run = runs.create(
        {
            "run_name": f"r{n}",
            "model_type": ("xgboost", "lightgbm")[n % 2],
            "target_variable": "target_direction",
        }
    )
    runs.start(run.run_id)
    runs.complete(
        run.run_id,
        {
            "final_test_accuracy": accuracy,
            "final_f1_score": accuracy / 2,
            "final_auc_score": accuracy,
            "final_val_loss": 1 - accuracy,
        },
    )
    return run.run_id


def test_runs_and_seed_queries_through_distributed(cdb: Database, nodes: list[Database]) -> None:
    runs = TrainingRunRepository(cdb)
    ids = [_supervised_run(runs, n, 0.5 + n / 100) for n in range(12)]
    # Every version of a run sits on one shard, and the runs spread over both.
    placed = {}
    for run_id in ids:
        counts = _local_counts(nodes, "training_runs", f"run_id = '{run_id}'")
        assert sorted(c > 0 for c in counts) == [False, True], counts  # one shard only
        placed[run_id] = counts.index(max(counts))
    assert set(placed.values()) == {0, 1}
    # FINAL through the Distributed table: one current row per run.
    assert runs.get(ids[0]).status.value == "completed"
    assert cdb.scalar("SELECT count() FROM training_runs") >= 12  # versions until merged
    assert cdb.scalar("SELECT count() FROM training_runs FINAL") == 12
    # The seed's query verbatim against the repository's FINAL variant.
    verbatim = cdb.execute_mappings(COMPARE_MODEL_PERFORMANCE)
    expected = [(f"r{n}", 0.5 + n / 100) for n in range(11, 1, -1)]
    assert [(r["run_name"], r["final_test_accuracy"]) for r in verbatim] == expected
    ours = runs.compare_model_performance()
    assert [(r["run_name"], r["final_test_accuracy"]) for r in ours] == expected
    agents = AgentRunRepository(cdb)
    agent = agents.create({"run_name": "a", "agent_type": "ppo"})
    agents.start(agent.run_id)
    agents.complete(
        agent.run_id,
        {"final_sharpe_ratio": 1.5, "final_total_return": 0.1, "final_max_drawdown": -0.05},
    )
    best = cdb.execute_mappings(BEST_RL_AGENTS)
    assert [r["run_name"] for r in best] == ["a"]
    assert [r["run_name"] for r in agents.best_agents()] == ["a"]


def test_metrics_checkpoints_trials_and_deletes(
    cdb: Database, nodes: list[Database], tmp_path
) -> None:
    runs = TrainingRunRepository(cdb)
    run_id = _supervised_run(runs, 1, 0.3)
    metrics = TrainingMetricRepository(cdb)
    with metrics.logger(run_id) as log:
        for i in range(1, 201):
            log.log(i, train_loss=1 / i, val_loss=2 / i, iteration_duration_ms=1.0)
    assert [p.iteration_number for p in metrics.learning_curve(run_id)] == list(range(1, 201))
    assert sorted(_local_counts(nodes, "training_metrics", f"run_id = '{run_id}'")) == [0, 200]
    # A lightweight DELETE (resume) is rejected by Distributed tables: sent per node.
    metrics.delete_after(run_id, 150)
    assert metrics.count(run_id) == 150
    models = ModelCheckpointRepository(cdb, LocalObjectStore(tmp_path / "o"), inline_max_bytes=64)
    small = models.save_checkpoint(run_id, b"tiny", "raw", {"val_loss": 0.3}, iteration=1)
    large = models.save_checkpoint(run_id, b"x" * 1000, "raw", {"val_loss": 0.2}, iteration=2)
    assert models.load_checkpoint(small.checkpoint_id) == b"tiny"
    assert models.load_checkpoint(large.checkpoint_id) == b"x" * 1000
    models.delete(small.checkpoint_id, force=True)
    assert [c.checkpoint_id for c in models.list(run_id)] == [large.checkpoint_id]
    trials = HyperparameterTrialRepository(cdb)
    for n in range(3):
        trials.log(
            run_id,
            {
                "trial_number": n,
                "hyperparameters": {"x": n},
                "objective_value": n / 10,
                "state": "complete",
            },
        )
    assert [t.trial_number for t in trials.best(run_id, n=1)] == [2]


def _batch(run_ids: list[uuid.UUID], iteration: int) -> pa.Table:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    return pa.table(
        {
            "run_id": pa.array([r.bytes for r in run_ids], pa.binary(16)),
            "iteration_number": pa.array([iteration] * len(run_ids), pa.uint32()),
            "train_loss": pa.array([1.0] * len(run_ids)),
            "iteration_duration_ms": pa.array([1.0] * len(run_ids)),
            "recorded_at": pa.array([now] * len(run_ids), pa.timestamp("ms", tz="UTC")),
        }
    )


def test_a_retried_batch_with_its_token_lands_once(cdb: Database) -> None:
    run_ids = [uuid.uuid4() for _ in range(50)]
    batch = _batch(run_ids, 1)
    cdb.insert_arrow("training_metrics", batch, dedup_token="batch-a")
    cdb.insert_arrow("training_metrics", batch, dedup_token="batch-a")  # the retry
    where = "run_id IN ({})".format(", ".join(f"'{r}'" for r in run_ids))
    assert cdb.scalar(f"SELECT count() FROM training_metrics WHERE {where}") == 50
    cdb.insert_arrow("training_metrics", batch, dedup_token="batch-b")  # another batch
    assert cdb.scalar(f"SELECT count() FROM training_metrics WHERE {where}") == 100


def test_node_stopped_mid_ingest_loses_and_doubles_nothing(
    local_cluster: LocalCluster, cdb: Database, nodes: list[Database]
) -> None:
    """Batches with one token each, retried until they succeed, while node 2 stops
    and restarts: every row lands exactly once (partly written batches included)."""
    run_ids = [uuid.uuid4() for _ in range(40)]
    failures = []
    stopped = threading.Event()

    def bounce() -> None:
        time.sleep(0.3)
        local_cluster.nodes[1].stop()
        stopped.set()
        time.sleep(1.0)
        local_cluster.nodes[1].start()

    bouncer = threading.Thread(target=bounce)
    bouncer.start()
    try:
        for iteration in range(1, 61):
            batch = _batch(run_ids, iteration)
            while True:
                try:
                    cdb.insert_arrow("training_metrics", batch, dedup_token=f"it-{iteration}")
                    break
                except Exception as exc:  # shard 2 down: retry the same batch, same token
                    failures.append(exc)
                    time.sleep(0.2)
            time.sleep(0.02)
    finally:
        bouncer.join()
    assert stopped.is_set() and failures, "node 2 never went down during the ingest"
    where = "run_id IN ({})".format(", ".join(f"'{r}'" for r in run_ids))
    rows = cdb.execute(
        f"SELECT run_id, iteration_number, count() c FROM training_metrics "
        f"WHERE {where} GROUP BY run_id, iteration_number"
    )
    assert len(rows) == 40 * 60  # nothing lost
    assert {c for _, _, c in rows} == {1}  # nothing doubled
    fresh = node_db(local_cluster, cdb.database_name, 1)
    try:
        assert fresh.scalar(f"SELECT count() FROM training_metrics_local WHERE {where}") > 0
    finally:
        fresh.close()


def test_cluster_status_shows_revisions_and_rows_by_shard(
    local_cluster: LocalCluster, cluster_database: str, cdb: Database
) -> None:
    from typer.testing import CliRunner

    from suho.cli import app

    _supervised_run(TrainingRunRepository(cdb), 3, 0.3)
    result = CliRunner().invoke(
        app,
        ["db", "cluster", "status"],
        env={"SUHO_DATABASE_URL": local_cluster.url(cluster_database), "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    for node in local_cluster.nodes:
        assert f"127.0.0.1:{node.tcp_port}" in result.output
    assert migrations.head_revision() in result.output
    assert "training_runs" in result.output


def test_a_fresh_database_migrates(local_cluster: LocalCluster) -> None:
    name = fresh_cluster_database(local_cluster)
    for i in range(2):
        db = node_db(local_cluster, name, i)
        try:
            assert db.current_revision() == migrations.head_revision()
        finally:
            db.close()


def test_cluster_status_and_migrations_with_a_node_down(
    local_cluster: LocalCluster, cluster_database: str
) -> None:
    from typer.testing import CliRunner

    from suho.cli import app
    from suho_models.db.cluster import ClusterError

    url = local_cluster.url(cluster_database)
    down = local_cluster.nodes[1]
    down.stop()
    try:
        result = CliRunner().invoke(
            app, ["db", "cluster", "status"], env={"SUHO_DATABASE_URL": url, "COLUMNS": "200"}
        )
        assert result.exit_code == 1
        assert migrations.head_revision() in result.output  # the node that answered
        with pytest.raises(ClusterError, match=f"node 127.0.0.1:{down.tcp_port} .* no node is"):
            migrations.upgrade(url)
    finally:
        down.start()
    migrations.upgrade(url)  # both up again: a no-op at head


def _one_run_per_shard(cdb: Database, nodes: list[Database]) -> list[uuid.UUID]:
    runs = TrainingRunRepository(cdb)
    by_shard: dict[int, uuid.UUID] = {}
    while len(by_shard) < 2:
        run_id = _supervised_run(runs, 0, 0.1)
        counts = _local_counts(nodes, "training_runs", f"run_id = '{run_id}'")
        by_shard.setdefault(counts.index(max(counts)), run_id)
    return [by_shard[0], by_shard[1]]


def _metric_counts(cdb: Database, nodes: list[Database], run_ids: list[uuid.UUID]) -> dict:
    """Rows per run through the Distributed table, raw and FINAL, and per shard."""
    where = "run_id IN ({})".format(", ".join(f"'{r}'" for r in run_ids))
    return {
        "raw": cdb.scalar(f"SELECT count() FROM training_metrics WHERE {where}"),
        "final": cdb.scalar(f"SELECT count() FROM training_metrics FINAL WHERE {where}"),
        "shards": _local_counts(nodes, "training_metrics", where),
    }


def test_batch_writer_spools_while_a_shard_is_down_and_replays(
    local_cluster: LocalCluster, cdb: Database, nodes: list[Database], tmp_path
) -> None:
    """The writer's guarantee through Distributed: a batch with rows for both shards
    fails while shard 2 is down (a synchronous insert may have written shard 1's
    part already), goes to the spool with its token, and is replayed once shard 2
    is back: every row is stored once, raw counts included."""
    from repositories.batch_writer import training_metrics_writer

    run_ids = _one_run_per_shard(cdb, nodes)
    spool = tmp_path / "spool"
    options = {"max_rows": 100, "max_seconds": 3600.0, "spool_dir": spool, "retry_max": 0.2}
    down = local_cluster.nodes[1]
    down.stop()
    try:
        writer = training_metrics_writer(cdb, **options)
        for i in range(1, 301):
            for run_id in run_ids:
                writer.log(run_id=run_id, iteration_number=i, iteration_duration_ms=1.0)
        assert writer.close(timeout=0.5) is False  # shard 2 refuses: spooled, not lost
        assert _spool_files(spool)
    finally:
        down.start()
    again = training_metrics_writer(cdb, **options)
    assert again.close(timeout=30) is True
    assert not _spool_files(spool)
    assert _metric_counts(cdb, nodes, run_ids) == {
        "raw": 600,
        "final": 600,
        "shards": [300, 300],
    }
    metrics = TrainingMetricRepository(cdb)
    for run_id in run_ids:
        assert [p.iteration_number for p in metrics.learning_curve(run_id)] == list(range(1, 301))


def test_batch_writer_retry_after_a_lost_acknowledgement_lands_once(
    cdb: Database, nodes: list[Database], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first INSERT of a batch (three ``log_columns`` calls coalesced, rows for
    both shards) reached both shards but the writer saw an error, and more rows were
    logged meanwhile. The retry repeats that INSERT exactly, under its token, and
    each shard drops it. (The old writer spooled and replayed the three parts one by
    one: blocks the shards had never seen, so every row of them was stored twice.)"""
    import numpy as np

    from repositories.batch_writer import training_metrics_writer
    from tests.test_batch_writer import lose_acknowledgements

    run_ids = _one_run_per_shard(cdb, nodes)
    writer = training_metrics_writer(
        cdb, max_seconds=3600.0, spool_dir=tmp_path / "spool", retry_max=0.2
    )

    def log_chunk(lo: int, hi: int) -> None:
        for run_id in run_ids:
            writer.log_columns(
                {
                    "run_id": run_id,
                    "iteration_number": np.arange(lo, hi, dtype=np.uint32),
                    "iteration_duration_ms": 1.0,
                }
            )

    tokens = lose_acknowledgements(monkeypatch, cdb, meanwhile=lambda: log_chunk(150, 200))
    for lo in range(0, 150, 50):
        log_chunk(lo, lo + 50)
    assert writer.flush() is False
    assert writer.close(timeout=30) is True
    assert _metric_counts(cdb, nodes, run_ids) == {
        "raw": 400,
        "final": 400,
        "shards": [200, 200],
    }
    first, retry, *meanwhile = tokens  # the rows logged meanwhile: their own INSERT(s)
    assert first == retry and meanwhile and first not in meanwhile


def test_a_spool_file_replayed_twice_lands_once_on_the_cluster(
    cdb: Database, nodes: list[Database], tmp_path
) -> None:
    """A crash after a spool file's INSERT, before its deletion: the next writer
    replays the file again under the token in it, and no shard stores it twice."""
    from repositories.batch_writer import training_metrics_writer
    from tests.test_batch_writer import _unreachable_database

    run_ids = _one_run_per_shard(cdb, nodes)
    spool = tmp_path / "spool"
    options = {"max_rows": 100, "max_seconds": 3600.0, "spool_dir": spool, "retry_max": 0.2}
    nowhere = _unreachable_database()
    try:
        writer = training_metrics_writer(nowhere, **options)
        for i in range(1, 151):
            for run_id in run_ids:
                writer.log(run_id=run_id, iteration_number=i, iteration_duration_ms=1.0)
        assert writer.close(timeout=0.2) is False
    finally:
        nowhere.close()
    saved = {f.name: f.read_bytes() for f in _spool_files(spool)}
    assert len(saved) == 1  # the outage's batches coalesce into one segment file
    assert training_metrics_writer(cdb, **options).close(timeout=30) is True
    assert not _spool_files(spool)
    for name, data in saved.items():  # as if the process died before removing them
        (spool / name).write_bytes(data)
    again = training_metrics_writer(cdb, **options)
    assert again.close(timeout=30) is True
    assert again.rows_flushed == 300
    assert _metric_counts(cdb, nodes, run_ids) == {
        "raw": 300,
        "final": 300,
        "shards": [150, 150],
    }
