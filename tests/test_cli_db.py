"""`suho db` through the CLI runner, and cross-client reads through the local server."""

from __future__ import annotations

import uuid

import clickhouse_connect
import pytest
from clickhouse_driver import Client
from typer.testing import CliRunner

from repositories.runs import TrainingRunRepository
from suho.cli import app
from suho_models.db import Database, migrations
from suho_models.settings import get_settings

runner = CliRunner()


@pytest.fixture
def embedded_url(embedded_dir, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"clickhouse+chdb:///{embedded_dir}/cli_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("SUHO_DATABASE_URL", url)
    get_settings.cache_clear()
    return url


def test_db_commands_round_trip(embedded_url: str) -> None:
    result = runner.invoke(app, ["db", "current"])
    assert result.exit_code == 0 and "none" in result.output and "suho db upgrade" in result.output
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert migrations.head_revision() in result.output
    result = runner.invoke(app, ["db", "status"])
    assert result.exit_code == 0, result.output
    for table in ("training_runs", "reward_history", "rl_hyperparameters"):
        assert table in result.output
    result = runner.invoke(app, ["db", "history"])
    assert "base -> 0001_training_tables" in result.output
    result = runner.invoke(app, ["db", "downgrade", "base"])
    assert result.exit_code == 0 and "base" in result.output
    assert migrations.current(embedded_url) is None


def test_status_behind_head_is_a_clear_error(embedded_url: str) -> None:
    result = runner.invoke(app, ["db", "status"])
    assert result.exit_code != 0
    assert "suho db upgrade" in str(result.exception)


def test_serve_refuses_public_host_without_password() -> None:
    result = runner.invoke(app, ["db", "serve", "--host", "0.0.0.0", "--tcp-port", "19000"])
    assert result.exit_code != 0
    assert "password" in str(result.exception)


def test_driver_and_connect_read_a_row_written_through_sqlalchemy(local_server) -> None:
    name = f"x_{uuid.uuid4().hex[:10]}"
    url = local_server.native_url(name)
    migrations.upgrade(url)
    db = Database(url)
    try:
        run = TrainingRunRepository(db).create(
            {"run_name": "cross-client", "model_type": "catboost", "target_variable": "t"}
        )
    finally:
        db.close()
    native = Client("127.0.0.1", port=local_server.tcp_port, database=name)
    rows = native.execute("SELECT run_id, run_name FROM training_runs FINAL")
    assert rows == [(run.run_id, "cross-client")]
    http = clickhouse_connect.get_client(
        host="127.0.0.1", port=local_server.http_port, database=name
    )
    assert http.query("SELECT run_name, model_type FROM training_runs FINAL").result_rows == [
        ("cross-client", "catboost")
    ]
