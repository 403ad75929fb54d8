"""Tests for suho_models.db.server: a real ClickHouse server from the embedded engine.

No mocks: every test marked ``server`` starts the real chDB engine in a
subprocess on free loopback ports and talks to it with clickhouse-driver
(native TCP) and clickhouse-connect (HTTP).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import clickhouse_connect
import pyarrow as pa
import pytest
import sqlalchemy as sa
from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException

from repositories.runs import TrainingRunRepository
from repositories.series import TrainingMetricRepository
from suho_models.db import Database, migrations, native_dbapi
from suho_models.db.server import (
    LocalServer,
    ServerError,
    free_port,
    is_loopback,
    local_server_password,
    password_file,
    serve,
)
from suho_models.db.server.auth import AuthServer, ensure_password_file
from suho_models.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]


def _driver(srv: LocalServer, password: str | None = None) -> Client:
    """A plain clickhouse-driver client; with the server's password unless one is given."""
    return Client(srv.client_host, port=srv.tcp_port, password=_pw(srv, password))


def _http(srv: LocalServer, password: str | None = None):
    return clickhouse_connect.get_client(
        host=srv.client_host, port=srv.http_port, password=_pw(srv, password)
    )


def _pw(srv: LocalServer, password: str | None) -> str:
    chosen = srv.password if password is None else password
    assert chosen is not None
    return chosen


def _create_and_fill(client: Client, rows: int) -> None:
    now = datetime.now(UTC)
    client.execute("CREATE DATABASE IF NOT EXISTS suho_analytics")
    client.execute(
        "CREATE TABLE IF NOT EXISTS suho_analytics.t "
        "(id UInt32, name String, ts DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY id"
    )
    client.execute(
        "INSERT INTO suho_analytics.t (id, name, ts) VALUES",
        [(i, f"row-{i}", now) for i in range(rows)],
        types_check=True,
    )


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"server pid {proc.pid} did not stop within {timeout}s")


# --------------------------------------------------------------------------- no server


def test_is_loopback() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com", ""):
        assert not is_loopback(host), host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "db.example.com"])
def test_serve_refuses_non_loopback_without_password(tmp_path: Path, host: str) -> None:
    with pytest.raises(ValueError, match="without a password"):
        serve(tmp_path / "db", tcp_port=free_port(), http_port=free_port(), host=host)
    assert not (tmp_path / "db").exists()  # refused before touching anything


def test_serve_rejects_bad_ports(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must differ"):
        serve(tmp_path, tcp_port=9123, http_port=9123)
    with pytest.raises(ValueError, match="1..65535"):
        serve(tmp_path, tcp_port=0, http_port=9123)


def test_cli_refuses_non_loopback_without_password(tmp_path: Path) -> None:
    """`suho db serve` is the one command line; the engine process takes no options."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SUHO_DATA_DIR": str(tmp_path)}
    env.pop("SUHO_SERVER_PASSWORD", None)
    args = ["db", "serve", "--host", "0.0.0.0", "--tcp-port", "19999", "--http-port", "18999"]
    proc = subprocess.run(
        [sys.executable, "-c", "from suho.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "refusing to listen on '0.0.0.0' without a password" in proc.stderr
    assert not (tmp_path / "clickhouse").exists()  # refused before touching anything


def test_urls_without_starting(tmp_path: Path) -> None:
    srv = LocalServer(tmp_path, tcp_port=19001, http_port=18124)
    generated = srv.password  # loopback without a password: the data folder's, made once
    assert generated and (tmp_path / "server" / "password").read_text().strip() == generated
    assert srv.native_url() == (
        f"clickhouse+native://default:{generated}@127.0.0.1:19001/suho_analytics?http_port=18124"
    )
    assert srv.native_url("other", http=False) == (
        f"clickhouse+native://default:{generated}@127.0.0.1:19001/other"
    )
    assert srv.http_url() == "http://127.0.0.1:18124"
    srv = LocalServer(tmp_path, tcp_port=19001, http_port=18124, password="p@ss/w:rd")
    assert srv.native_url(http=False) == (
        "clickhouse+native://default:p%40ss%2Fw%3Ard@127.0.0.1:19001/suho_analytics"
    )
    auto = LocalServer(tmp_path)
    assert auto.tcp_port != auto.http_port
    assert auto.pid is None and auto.returncode is None
    assert auto.password == generated  # the same file


def test_password_file_is_private_and_reused(tmp_path: Path) -> None:
    first = ensure_password_file(tmp_path)
    file = password_file(tmp_path)
    assert file.stat().st_mode & 0o777 == 0o600
    assert len(first) >= 32
    assert ensure_password_file(tmp_path) == first
    assert ensure_password_file(tmp_path / "elsewhere") != first
    file.chmod(0o644)  # others could have read it: refused, not used
    with pytest.raises(PermissionError, match=r"readable by other users \(mode 644\)"):
        ensure_password_file(tmp_path)
    file.chmod(0o600)
    file.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        ensure_password_file(tmp_path)


def test_local_server_password_only_for_the_live_server_on_that_port(tmp_path: Path) -> None:
    password = ensure_password_file(tmp_path)
    file = password_file(tmp_path)
    assert local_server_password("127.0.0.1", 9000, file) is None  # no ready.json: not serving
    ready = file.parent / "ready.json"
    ready.write_text(json.dumps({"pid": os.getpid(), "tcp_port": 9000, "http_port": 8123}))
    assert local_server_password("127.0.0.1", 9000, file) == password
    assert local_server_password("localhost", 8123, file) == password
    assert local_server_password("127.0.0.1", 9001, file) is None  # another server's port
    assert local_server_password("10.0.0.5", 9000, file) is None  # never beyond loopback
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True).stdout.strip()  # fmt: skip
    ready.write_text(json.dumps({"pid": int(dead), "tcp_port": 9000, "http_port": 8123}))
    assert local_server_password("127.0.0.1", 9000, file) is None  # stale: server is gone


def test_auth_server_allows_password_and_one_empty_login_until_sealed() -> None:
    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    auth = AuthServer("pw:1")
    path = urllib.parse.urlsplit(auth.uri).path
    try:
        assert auth.allowed(path, basic("default", "pw:1"))
        assert not auth.allowed(path, basic("default", "wrong"))
        assert not auth.allowed(path, basic("other", "pw:1"))
        assert not auth.allowed("/not-the-token", basic("default", ""))
        assert auth.allowed(path, basic("default", ""))  # the engine's own login
        assert not auth.allowed(path, basic("default", ""))  # only once
        sealed = AuthServer("pw")
        sealed.seal()  # the engine seals before it opens its ports
        assert not sealed.allowed(urllib.parse.urlsplit(sealed.uri).path, basic("default", ""))
    finally:
        auth.close()


# --------------------------------------------------------------------------- real server


@pytest.mark.server
def test_roundtrip_driver_writes_connect_reads(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "db") as srv:
        with urllib.request.urlopen(f"{srv.http_url()}/ping", timeout=5) as resp:
            assert resp.read() == b"Ok.\n"
        driver = _driver(srv)
        assert driver.execute("SELECT version()")[0][0].startswith("26.")
        _create_and_fill(driver, 1000)

        http = _http(srv)
        result = http.query("SELECT count(), min(id), max(id), any(name) FROM suho_analytics.t")
        assert result.result_rows[0][:3] == (1000, 0, 999)
        rows = http.query("SELECT id, name FROM suho_analytics.t WHERE id < 3 ORDER BY id")
        assert rows.result_rows == [(0, "row-0"), (1, "row-1"), (2, "row-2")]
        # The data lives under the given path, the generated config in path/server.
        assert (tmp_path / "db" / "server" / "config.xml").is_file()
        assert (tmp_path / "db" / "store").is_dir()
    assert srv.returncode == 0


@pytest.mark.server
def test_sigterm_stops_cleanly_and_data_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with LocalServer(path) as srv:
        driver = _driver(srv)
        _create_and_fill(driver, 500)
        driver.disconnect()
        assert srv.ready_path.is_file()
        proc = srv._proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        assert _wait_exit(proc) == 0
        assert "ClickHouse server stopped" in srv.stderr_tail()
        assert not srv.ready_path.exists()
    # The data directory is released: a new server (new ports) opens it.
    with LocalServer(path) as again:
        assert _driver(again).execute("SELECT count() FROM suho_analytics.t") == [(500,)]
        assert _http(again).command("SELECT sum(id) FROM suho_analytics.t") == sum(range(500))


@pytest.mark.server
def test_sigint_also_stops(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "db") as srv:
        proc = srv._proc
        assert proc is not None
        proc.send_signal(signal.SIGINT)
        assert _wait_exit(proc) == 0
        assert "received SIGINT; stopping" in srv.stderr_tail()
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{srv.http_url()}/ping", timeout=2)


@pytest.mark.server
def test_stop_cancels_a_running_client_query_and_exits_cleanly(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "db") as srv:
        outcome: list[BaseException] = []

        def endless() -> None:
            try:
                _driver(srv).execute(
                    "SELECT count() FROM system.numbers WHERE sleepEachRow(0.01) = 0 "
                    "SETTINGS max_block_size = 10"
                )
            except BaseException as exc:  # expected: cancelled by the stop
                outcome.append(exc)

        worker = threading.Thread(target=endless)
        worker.start()
        time.sleep(0.5)
        started = time.monotonic()
        assert srv.stop() == 0  # not the engine's forced exit (status 1)
        assert time.monotonic() - started < 15
        worker.join(timeout=10)
        assert outcome and "cancelled" in str(outcome[0]).lower()


@pytest.mark.server
def test_password_required(tmp_path: Path) -> None:
    pw = "s3cret pass:word"
    with LocalServer(tmp_path / "db", password=pw) as srv:
        # /ping never needs credentials.
        with urllib.request.urlopen(f"{srv.http_url()}/ping", timeout=5) as resp:
            assert resp.read() == b"Ok.\n"
        with pytest.raises(ServerException, match="Authentication failed"):
            _driver(srv, "").execute("SELECT 1")
        with pytest.raises(ServerException, match="Authentication failed"):
            _driver(srv, "wrong").execute("SELECT 1")
        with pytest.raises(Exception, match="Authentication failed"):
            _http(srv, "").query("SELECT 1")
        assert _driver(srv, pw).execute("SELECT currentUser()") == [("default",)]
        assert _http(srv, pw).command("SELECT 40 + 2") == 42
        assert "default:s3cret%20pass%3Aword@" in srv.native_url()
        # The password is in no file the server wrote, and not on its command line.
        for name in ("config.xml", "users.xml"):
            assert pw not in (srv.path / "server" / name).read_text()
        cmdline = Path(f"/proc/{srv.pid}/cmdline").read_bytes().decode()
        assert pw not in cmdline
    assert srv.returncode == 0  # the stop's KILL QUERY authenticated itself


@pytest.mark.slow
@pytest.mark.server
def test_without_a_given_password_clients_need_the_generated_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clickhouse"
    with LocalServer(path) as srv:
        generated = srv.password
        assert generated
        file = path / "server" / "password"
        assert file.stat().st_mode & 0o777 == 0o600
        assert file.read_text().strip() == generated
        # Any other local user (no password, or a wrong one) is refused, over TCP and HTTP.
        with pytest.raises(ServerException, match="Authentication failed"):
            _driver(srv, "").execute("SELECT 1")
        with pytest.raises(Exception, match="Authentication failed"):
            _http(srv, "").query("SELECT 1")
        bare = f"clickhouse+native://127.0.0.1:{srv.tcp_port}/default"
        with (
            Database(bare) as stranger,  # our settings name no file of this server
            pytest.raises(sa.exc.DatabaseError, match=r"Code: 516\. DB::Exception: default: "),
        ):
            stranger.scalar("SELECT 1")
        # Our own clients: the URL carries the password (native reads, Arrow over HTTP).
        with Database(srv.native_url("default")) as db:
            assert db.scalar("SELECT currentUser()") == "default"
            assert db.query_arrow("SELECT 42 AS x").column("x").to_pylist() == [42]
        # A URL without one takes it from the file of the server we started there.
        monkeypatch.setenv("SUHO_DATA_DIR", str(tmp_path))  # its embedded path is `path`
        get_settings.cache_clear()
        with Database(f"{bare}?http_port={srv.http_port}") as db:
            assert db.url.password == generated
            assert db.scalar("SELECT 1") == 1
            assert db.query_arrow("SELECT 7 AS x").column("x").to_pylist() == [7]
            assert generated not in db.safe_url
        monkeypatch.setenv("SUHO_SERVER_PASSWORD", "not-the-password")  # wins over the file
        get_settings.cache_clear()
        with Database(bare) as db, pytest.raises(sa.exc.DatabaseError, match="Authentication"):
            db.scalar("SELECT 1")
        monkeypatch.delenv("SUHO_SERVER_PASSWORD")
        get_settings.cache_clear()
    assert srv.returncode == 0
    assert Database(bare).url.password is None  # stopped: the password goes nowhere
    with LocalServer(path) as again:  # a second start reuses the file
        assert again.password == generated
        assert _driver(again, generated).execute("SELECT 1") == [(1,)]


def test_a_bad_query_says_what_clickhouse_said(db: Database) -> None:
    """The first line (what the CLI prints) has ClickHouse's message, on both backends."""
    with pytest.raises(sa.exc.DatabaseError) as caught:
        db.execute("SELECT no_such_column FROM training_runs")
    first = str(caught.value).splitlines()[0]
    assert "Code: 47. DB::Exception: Unknown expression identifier `no_such_column`" in first
    assert first.endswith("(UNKNOWN_IDENTIFIER)")
    assert "Stack trace" not in str(caught.value)


def test_columnar_calls_to_the_server_say_what_clickhouse_said(local_server: LocalServer) -> None:
    with Database(local_server.native_url("default", http=False)) as db:
        with pytest.raises(native_dbapi.DatabaseError) as caught:
            db.insert_arrow("no_such_table", pa.table({"x": [1]}))
        assert re.fullmatch(
            r"Code: 60\. DB::Exception: .*no_such_table.* \(UNKNOWN_TABLE\)", str(caught.value)
        )
        assert caught.value.code == 60
        with pytest.raises(
            native_dbapi.DatabaseError, match=r"^Code: 47\. DB::Exception: Unknown "
        ):
            db.query_arrow("SELECT no_such_column")


@pytest.mark.server
def test_two_concurrent_clients(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "db") as srv:
        _driver(srv).execute(
            "CREATE TABLE default.c (worker UInt8, i UInt32) "
            "ENGINE = MergeTree ORDER BY (worker, i)"
        )
        errors: list[BaseException] = []
        seen: dict[int, list[int]] = {0: [], 1: []}

        def work(worker: int) -> None:
            try:
                # One native, one HTTP client; each writes and reads its own rows.
                if worker == 0:
                    client = _driver(srv)
                    for i in range(25):
                        client.execute("INSERT INTO default.c VALUES", [(worker, i)])
                        n = client.execute(
                            "SELECT count() FROM default.c WHERE worker = %(w)s", {"w": worker}
                        )[0][0]
                        seen[worker].append(n)
                else:
                    client = _http(srv)
                    for i in range(25):
                        client.insert("default.c", [(worker, i)], column_names=["worker", "i"])
                        n = client.command(f"SELECT count() FROM default.c WHERE worker = {worker}")
                        seen[worker].append(n)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        # Each client reads its own writes, in order.
        assert seen == {0: list(range(1, 26)), 1: list(range(1, 26))}
        assert _http(srv).command("SELECT count() FROM default.c") == 50


@pytest.mark.server
def test_second_server_on_same_path_fails_clearly(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "db") as srv:
        other = LocalServer(tmp_path / "db", start_timeout=20)
        with pytest.raises(ServerError, match="in use by another"):
            other.start()
        assert other.returncode == 1
        assert _driver(srv).execute("SELECT 1") == [(1,)]  # the first one is unharmed


@pytest.mark.server
def test_port_in_use_fails_clearly(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "a") as first:
        clash = LocalServer(tmp_path / "b", tcp_port=first.tcp_port)
        with pytest.raises(ServerError, match=f"port {first.tcp_port} .* already in use"):
            clash.start()


# --------------------------------------------------------------------------- Arrow over HTTP
def test_arrow_reads_over_http_equal_the_native_drivers(local_server: LocalServer) -> None:
    """With ``http_port`` in the URL, Arrow comes from ClickHouse over HTTP; the values
    are the same as the native driver's (the path without it)."""
    name = f"arrow_{uuid.uuid4().hex[:8]}"
    url = local_server.native_url(name)
    migrations.upgrade(url)  # the dialect keeps http_port away from clickhouse-driver
    with Database(url) as db, Database(local_server.native_url(name, http=False)) as native:
        assert (db.http_port, native.http_port) == (local_server.http_port, None)
        run_id = (
            TrainingRunRepository(db)
            .create({"run_name": "r", "model_type": "xgboost", "target_variable": "t"})
            .run_id
        )
        points = [
            {"iteration_number": i, "train_loss": 1 / i, "val_accuracy": None if i % 2 else 0.5}
            for i in range(1, 51)
        ]
        TrainingMetricRepository(db).log_many(run_id, points)
        over_http = TrainingMetricRepository(db).learning_curve_arrow(run_id)
        through_driver = TrainingMetricRepository(native).learning_curve_arrow(run_id)
        assert db._http is not None and native._http is None  # which path each took
    assert over_http.column_names == through_driver.column_names
    assert over_http.num_rows == 50
    for name in over_http.column_names:
        assert over_http.column(name).to_pylist() == through_driver.column(name).to_pylist(), name


@pytest.mark.parametrize("value", ["abc", "0", "70000", "80.5"])
def test_bad_http_port_is_refused(value: str) -> None:
    with pytest.raises(
        ValueError, match=rf"http_port: expected a port number 1-65535 \(got '{value}'\)"
    ):
        Database(f"clickhouse+native://127.0.0.1:9000/x?http_port={value}")


def test_http_port_on_an_embedded_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="http_port: only server URLs take it"):
        Database(f"clickhouse+chdb:///{tmp_path}/db?http_port=8123")
