"""Replicated and ON CLUSTER DDL: rendered for every revision, parsed by the engine,
and the replicated tables CREATEd on a node whose Keeper is ``testkeeper``.

clickhouse-local (chDB) never starts the DDL worker or the interserver port, so
ON CLUSTER cannot run here and Replicated tables stay read-only; the real-cluster
test (``SUHO_TEST_CLUSTER_URL``, test_real_cluster.py) covers running them.
"""

from __future__ import annotations

import re
import uuid

import pytest

import suho_models
from suho_models.db import Database
from suho_models.db.cluster import (
    ClusterError,
    ClusterSettings,
    Renderer,
    compile_migrations,
    format_check,
)
from suho_models.db.dialect import NativeDialect
from suho_models.db.local_cluster import LocalCluster

pytestmark = pytest.mark.slow


@pytest.fixture
def node(local_cluster: LocalCluster):
    db = Database(local_cluster.nodes[0].native_url("default"))
    try:
        yield db
    finally:
        db.close()


@pytest.mark.parametrize("topology", ["replicated", "sharded", "both"])
def test_on_cluster_ddl_of_every_revision_parses(node: Database, topology: str) -> None:
    settings = ClusterSettings(cluster="suho", topology=topology, ddl="on_cluster")
    statements = compile_migrations(settings)
    formatted = format_check(node, statements)  # raises on a syntax error
    assert len(formatted) == len(statements) > 20
    # Every statement runs ON CLUSTER but the copies of a rebuild (0010), which read
    # every shard once and write each row back to its own shard.
    copies = [f for f in formatted if f.startswith("INSERT INTO")]
    assert all(" ON CLUSTER suho" in f for f in formatted if f not in copies), [
        f for f in formatted if "ON CLUSTER" not in f and f not in copies
    ]
    assert len(copies) == 4, copies  # two tables, upgrade and downgrade
    for copy in copies:
        if topology == "replicated":  # one replica takes the rows, the others fetch them
            assert re.match(r"INSERT INTO \w+_runs__0010 .*SELECT \* FROM \w+_runs", copy), copy
        else:
            assert re.match(
                r"INSERT INTO FUNCTION cluster\('suho', 'suho_analytics', '\w+_runs_local__0010', "
                r"cityHash64\(run_id\)\) .*SELECT \* FROM cluster\('suho', 'suho_analytics', "
                r"'\w+_runs_local'\)",
                copy,
            ), copy
    creates = [f for f in formatted if f.startswith("CREATE TABLE")]
    version = next(f for f in creates if "alembic_version" in f)
    assert "ReplicatedMergeTree('/clickhouse/tables/all/{database}/alembic_version'" in version
    for table in suho_models.TABLE_NAMES:
        if topology == "replicated":
            (ddl,) = [f for f in creates if re.search(rf"TABLE IF NOT EXISTS {table} ", f)]
            assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/" in ddl
        else:
            (dist,) = [f for f in creates if re.search(rf"TABLE IF NOT EXISTS {table} ", f)]
            assert (
                f"Distributed('suho', 'suho_analytics', '{table}_local', cityHash64(run_id))"
                in (dist)
            )
            (local,) = [f for f in creates if f"EXISTS {table}_local " in f]
            replicated = "ReplicatedReplacingMergeTree(" in local
            assert replicated == (topology == "both")
            assert ("non_replicated_deduplication_window" in local) == (not replicated)
    # 0002's column changes reach the local and the Distributed tables; its backfill
    # (a mutation) only the tables that hold rows.
    alters = [f for f in formatted if "checkpoint_kind" in f and f.startswith("ALTER")]
    if topology == "replicated":
        assert all("ALTER TABLE agent_checkpoints ON" in f for f in alters)
    else:
        updates = [f for f in alters if "(UPDATE " in f]
        assert updates and all("agent_checkpoints_local ON CLUSTER" in f for f in updates)
        assert any(
            f.startswith("ALTER TABLE agent_checkpoints ON CLUSTER suho (ADD COLUMN")
            for f in alters
        )


@pytest.mark.parametrize("topology", ["replicated", "both"])
def test_replicated_tables_create_on_a_testkeeper_node(node: Database, topology: str) -> None:
    """Engine arguments, macros, version columns, TTL and partitioning against the
    real engine (CREATE without ON CLUSTER, as per-node DDL sends it)."""
    database = f"r_{uuid.uuid4().hex[:8]}"
    node.execute(f"CREATE DATABASE {database}")
    settings = ClusterSettings(cluster="suho", topology=topology, ddl="per_node")
    renderer = Renderer(settings, database, NativeDialect())
    try:
        for table in suho_models.metadata.sorted_tables:
            for sql in renderer.create_table(table):
                node.execute(
                    sql.replace(
                        "CREATE TABLE IF NOT EXISTS `",
                        f"CREATE TABLE IF NOT EXISTS `{database}`.`",
                        1,
                    ).replace(" AS `", f" AS `{database}`.`", 1)
                )
        local = "_local" if topology == "both" else ""
        shown = node.scalar(f"SHOW CREATE TABLE {database}.reward_history{local}")
        # The server expanded {database}/{table} at CREATE, and {shard}/{replica} from
        # this node's macros (shard 1, replica r1): the replica registered in Keeper.
        assert (
            "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/"
            f"{database}/reward_history{local}', '{{replica}}', recorded_at)" in shown
        ), shown
        replica = node.execute(
            f"SELECT zookeeper_path, replica_name FROM system.replicas "
            f"WHERE database = '{database}' AND table = 'reward_history{local}'"
        )
        assert replica == [(f"/clickhouse/tables/1/{database}/reward_history{local}", "r1")]
        assert "PARTITION BY toYYYYMM(recorded_at)" in shown
        assert "ORDER BY (run_id, episode_number, timestep_number)" in shown
        assert "TTL recorded_at + toIntervalMonth(6) WHERE NOT (is_episode_end = 1)" in shown
        engines = dict(
            node.execute(f"SELECT name, engine FROM system.tables WHERE database = '{database}'")
        )
        assert {engines[t + local] for t in suho_models.TABLE_NAMES} == {
            "ReplicatedReplacingMergeTree"
        }
        versions = node.scalar(
            f"SELECT engine_full FROM system.tables WHERE database = '{database}' "
            f"AND name = 'training_runs{local}'"
        )
        assert "'{replica}', updated_at) ORDER BY (created_at, run_id)" in versions
    finally:
        node.execute(f"DROP DATABASE IF EXISTS {database} SYNC")


def test_statements_cluster_mode_cannot_render_are_refused() -> None:
    renderer = Renderer(
        ClusterSettings(cluster="suho", topology="sharded", ddl="per_node"), "db", NativeDialect()
    )
    with pytest.raises(ClusterError, match="once per node"):
        renderer.statement("INSERT INTO training_runs SELECT * FROM training_runs")
    with pytest.raises(ClusterError, match="split it"):
        renderer.statement("ALTER TABLE training_runs ADD COLUMN x UInt8, MODIFY TTL created_at")
    with pytest.raises(ClusterError, match="op.create_table"):
        renderer.statement("CREATE TABLE training_runs (x UInt8) ENGINE = Memory")
    assert renderer.statement("OPTIMIZE TABLE training_metrics FINAL") == [
        "OPTIMIZE TABLE `training_metrics_local` FINAL"
    ]
    assert renderer.statement("ALTER TABLE x MODIFY TTL a") == ["ALTER TABLE x MODIFY TTL a"]
    with pytest.raises(ValueError, match="SUHO_CLICKHOUSE_CLUSTER"):
        ClusterSettings(cluster="bad name;")


def test_a_revisions_dedup_window_becomes_the_clusters_own() -> None:
    renderer = Renderer(
        ClusterSettings(cluster="suho", topology="sharded", ddl="per_node", dedup_window=77),
        "db",
        NativeDialect(),
    )
    window = "non_replicated_deduplication_window"
    assert renderer.statement(f"ALTER TABLE training_metrics MODIFY SETTING {window} = 1000") == [
        f"ALTER TABLE `training_metrics_local` MODIFY SETTING {window} = 77"
    ]
    assert renderer.statement(f"ALTER TABLE reward_history RESET SETTING {window}") == [
        f"ALTER TABLE `reward_history_local` MODIFY SETTING {window} = 77"
    ]
