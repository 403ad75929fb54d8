"""Against a real ClickHouse cluster, where ``SUHO_TEST_CLUSTER_URL`` names one.

What chDB cannot run (ON CLUSTER through the DDL worker, active Replicated
replicas) runs here. Run it as (README, "Running on a ClickHouse cluster")::

    SUHO_TEST_CLUSTER_URL='clickhouse+native://user:pass@node1:9000/default' \\
    SUHO_TEST_CLUSTER_NAME=my_cluster SUHO_TEST_CLUSTER_TOPOLOGY=both \\
    .venv/bin/python -m pytest tests/cluster/test_real_cluster.py

It migrates a fresh database up and down (``ON CLUSTER``, or per node with
``SUHO_TEST_CLUSTER_DDL=per_node``), tracks runs, checks the seed queries and a
deduplicated retry, and drops the database on every node.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pyarrow as pa
import pytest
from sqlalchemy.engine import make_url

from repositories.queries import COMPARE_MODEL_PERFORMANCE
from repositories.runs import TrainingRunRepository
from suho_models.db import Database, migrations
from suho_models.db import cluster as cluster_mode

# Read at import: the suite's fixtures clear every SUHO_* variable for each test.
URL = os.environ.get("SUHO_TEST_CLUSTER_URL")
CLUSTER_ENV = {
    "SUHO_CLICKHOUSE_CLUSTER": os.environ.get("SUHO_TEST_CLUSTER_NAME", "suho"),
    "SUHO_CLICKHOUSE_TOPOLOGY": os.environ.get("SUHO_TEST_CLUSTER_TOPOLOGY", "both"),
    "SUHO_CLICKHOUSE_DDL": os.environ.get("SUHO_TEST_CLUSTER_DDL", "on_cluster"),
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(URL is None, reason="SUHO_TEST_CLUSTER_URL names no cluster"),
]


def test_real_cluster_migrates_tracks_and_deduplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    assert URL is not None
    for key, value in CLUSTER_ENV.items():
        monkeypatch.setenv(key, value)
    settings = cluster_mode.cluster_settings()
    url = make_url(URL).set(database=f"suho_test_{uuid.uuid4().hex[:8]}").render_as_string(False)
    migrations.upgrade(url)
    db = Database(url)
    try:
        for node in cluster_mode.status(url, settings):
            assert node.error is None and node.revision == migrations.head_revision()
        runs = TrainingRunRepository(db)
        run = runs.create({"run_name": "real", "model_type": "xgboost", "target_variable": "t"})
        runs.start(run.run_id)
        runs.complete(run.run_id, {"final_test_accuracy": 0.7})
        assert runs.get(run.run_id).status.value == "completed"
        assert [r["run_name"] for r in db.execute_mappings(COMPARE_MODEL_PERFORMANCE)] == ["real"]
        batch = pa.table({
            "run_id": pa.array([run.run_id.bytes] * 100, pa.binary(16)),
            "iteration_number": pa.array(range(1, 101), pa.uint32()),
            "iteration_duration_ms": pa.array([1.0] * 100),
            "recorded_at": pa.array([dt.datetime.now(dt.UTC)] * 100, pa.timestamp("ms", "UTC")),
        })  # fmt: skip
        db.insert_arrow("training_metrics", batch, dedup_token="real-1")
        db.insert_arrow("training_metrics", batch, dedup_token="real-1")
        assert db.scalar("SELECT count() FROM training_metrics") == 100
        migrations.downgrade(url, "base")
    finally:
        db.close()
        engine_url = make_url(url)
        name = engine_url.database
        on_cluster = f" ON CLUSTER `{settings.cluster}`" if settings.on_cluster else ""
        targets = (
            [engine_url]
            if settings.on_cluster
            else [make_url(n.url) for n in cluster_mode.nodes(url, settings)]
        )
        for target in targets:
            admin = Database(target.set(database="default"))
            try:
                admin.execute(f"DROP DATABASE IF EXISTS `{name}`{on_cluster} SYNC")
            finally:
                admin.close()
