"""Revision 0010 on the 2-node cluster: the rebuild keeps every row version on its
shard, and reads through the Distributed tables return what the old layout did."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from suho_models.db import Database, migrations
from suho_models.db.local_cluster import LocalCluster
from tests.cluster.conftest import CLUSTER_ENV, node_db
from tests.test_runs_layout import BEFORE, METRICS, assert_same_reads, write_random_runs

pytestmark = pytest.mark.slow
LOCAL = tuple(f"{t}_local" for t in METRICS)


def _cluster_database(cluster: LocalCluster, revision: str) -> tuple[str, list[Database]]:
    name = f"c_{uuid.uuid4().hex[:10]}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in CLUSTER_ENV.items():
            mp.setenv(key, value)
        migrations.upgrade(cluster.url(name), revision)
    return name, [node_db(cluster, name, i) for i in range(len(cluster.nodes))]


def _stored(nodes: list[Database]) -> list[dict[str, list[str]]]:
    return [{t: sorted(map(repr, n.execute(f"SELECT * FROM {t}"))) for t in LOCAL} for n in nodes]


@pytest.fixture
def databases(local_cluster: LocalCluster) -> Iterator[list[tuple[str, list[Database]]]]:
    made: list[tuple[str, list[Database]]] = []
    yield made
    for name, nodes in made:
        for node in nodes:
            node.execute(f"DROP DATABASE IF EXISTS {name} SYNC")
            node.close()


def test_reads_through_distributed_tables_are_the_same_in_both_layouts(
    local_cluster: LocalCluster, databases: list[tuple[str, list[Database]]]
) -> None:
    entries = []
    for revision in (BEFORE, "head"):
        name, nodes = _cluster_database(local_cluster, revision)
        databases.append((name, nodes))
        entry = Database(local_cluster.url(name))
        write_random_runs(entry, seed=5, nodes=nodes)
        assert all(int(n.scalar("SELECT count() FROM training_runs_local")) for n in nodes)
        entries.append(entry)
    try:
        assert_same_reads(*entries)
    finally:
        for entry in entries:
            entry.close()


def test_the_rebuild_keeps_every_version_on_its_shard(
    local_cluster: LocalCluster, databases: list[tuple[str, list[Database]]]
) -> None:
    name, nodes = _cluster_database(local_cluster, BEFORE)
    databases.append((name, nodes))
    entry = Database(local_cluster.url(name))
    try:
        write_random_runs(entry, seed=6, runs=30, deletes=False, nodes=nodes)
        before = _stored(nodes)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in CLUSTER_ENV.items():
                mp.setenv(key, value)
            migrations.upgrade(local_cluster.url(name))
        assert _stored(nodes) == before  # every version, on the same node
        for node in nodes:
            keys = dict(
                node.execute(
                    "SELECT name, sorting_key FROM system.tables "
                    "WHERE database = currentDatabase() AND match(name, 'runs_local')"
                )
            )
            assert keys == {t: "created_at, run_id" for t in LOCAL}  # no table left behind
    finally:
        entry.close()
