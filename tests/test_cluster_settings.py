"""Cluster mode is off unless SUHO_CLICKHOUSE_CLUSTER is set: the migrations then
render exactly the single-node schema (no cluster suite needed to see that)."""

from __future__ import annotations

import io

import pytest
from alembic import command

from suho_models.db import migrations
from suho_models.db.cluster import ClusterSettings


def _offline_sql(url: str) -> str:
    config = migrations.alembic_config(url)
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    return config.output_buffer.getvalue()


def test_unset_cluster_renders_the_single_node_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not ClusterSettings().enabled
    sql = _offline_sql("clickhouse+native://localhost/suho_analytics")
    assert "CREATE TABLE training_runs (" in sql
    assert "ENGINE = ReplacingMergeTree(updated_at)" in sql
    for cluster_only in ("ON CLUSTER", "Distributed", "Replicated", "_local"):
        assert cluster_only not in sql
    # Single-node tables get a dedup window only on the series tables (revisions 0004, 0007).
    windowed = {line.split()[2] for line in sql.splitlines() if "deduplication_window" in line}
    assert windowed == {"training_metrics", "reward_history", "run_metrics"}
    monkeypatch.setenv("SUHO_CLICKHOUSE_CLUSTER", "prod")
    clustered = _offline_sql("clickhouse+native://localhost/suho_analytics")
    assert "CREATE TABLE IF NOT EXISTS `training_runs` ON CLUSTER `prod` AS" in clustered


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("SUHO_CLICKHOUSE_CLUSTER", "a b", "SUHO_CLICKHOUSE_CLUSTER"),
        ("SUHO_CLICKHOUSE_TOPOLOGY", "ring", "topology"),
        ("SUHO_CLICKHOUSE_DDL", "sometimes", "ddl"),
        ("SUHO_CLICKHOUSE_DEDUP_WINDOW", "0", "dedup_window"),
    ],
)
def test_bad_cluster_settings_name_the_field(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValueError, match=needle):
        ClusterSettings()


def test_cluster_mode_on_the_embedded_store_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from suho_models.db.cluster import ClusterError

    monkeypatch.setenv("SUHO_CLICKHOUSE_CLUSTER", "prod")
    with pytest.raises(ClusterError, match="needs a server URL"):
        migrations.upgrade(f"clickhouse+chdb:///{tmp_path}/store/suho_analytics")
