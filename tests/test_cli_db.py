"""`suho db` through the CLI runner, and cross-client reads through the local server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException
from typer.testing import CliRunner

from repositories.runs import TrainingRunRepository
from suho.cli import app
from suho_models.db import Database, migrations
from suho_models.db.server import free_port
from suho_models.settings import get_settings

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


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
    password = local_server.password
    native = Client("127.0.0.1", port=local_server.tcp_port, database=name, password=password)
    rows = native.execute("SELECT run_id, run_name FROM training_runs FINAL")
    assert rows == [(run.run_id, "cross-client")]
    http = clickhouse_connect.get_client(
        host="127.0.0.1", port=local_server.http_port, database=name, password=password
    )
    assert http.query("SELECT run_name, model_type FROM training_runs FINAL").result_rows == [
        ("cross-client", "catboost")
    ]


@pytest.mark.slow
@pytest.mark.server
def test_serve_without_a_password_generates_one_and_refuses_clients_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SUHO_DATA_DIR": str(tmp_path)}
    env.pop("SUHO_SERVER_PASSWORD", None)
    env["PYTHONUNBUFFERED"] = "1"
    tcp, http = free_port(), free_port()
    while http == tcp:
        http = free_port()
    args = ["db", "serve", "--tcp-port", str(tcp), "--http-port", str(http)]
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from suho.cli import main; main()", *args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
    try:
        assert proc.stdout is not None
        printed = next(line for line in proc.stdout if line.startswith("SUHO_DATABASE_URL="))
        url = printed.strip().removeprefix("SUHO_DATABASE_URL=")
        file = tmp_path / "clickhouse" / "server" / "password"
        password = file.read_text().strip()
        assert file.stat().st_mode & 0o777 == 0o600
        assert url == (
            f"clickhouse+native://default:{password}@127.0.0.1:{tcp}/suho_analytics"
            f"?http_port={http}"
        )
        _wait_serving(tmp_path / "clickhouse", http, proc)

        with Database(url.replace("/suho_analytics?", "/default?")) as db:  # the printed URL
            assert db.scalar("SELECT currentUser()") == "default"
            assert db.query_arrow("SELECT 1 AS x").num_rows == 1
        with pytest.raises(ServerException, match="Authentication failed"):
            Client("127.0.0.1", port=tcp).execute("SELECT 1")
        # Our clients on the same data folder need no password in the URL.
        monkeypatch.setenv("SUHO_DATA_DIR", str(tmp_path))
        get_settings.cache_clear()
        with Database(f"clickhouse+native://127.0.0.1:{tcp}/default") as db:
            assert db.scalar("SELECT 1") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def _wait_serving(path: Path, http_port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "suho db serve exited"
        try:
            ready = json.loads((path / "server" / "ready.json").read_text())
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/ping", timeout=1):
                if ready["pid"] != proc.pid:
                    raise OSError("another process's ready file")
                return
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    pytest.fail("suho db serve did not become ready within 60 s")
