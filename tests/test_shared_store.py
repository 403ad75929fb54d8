"""The default store (no SUHO_DATABASE_URL) is shared by every process through a
background server that the first one starts (issue 24): processes at once, a
killed server, killed clients, two stores side by side, and the one-line errors.

Everything runs as real processes on the real engine; each test has its own
SUHO_DATA_DIR (conftest), and the conftest stops a server a test left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from suho_models.db import Database, migrations
from suho_models.db.server.config import READY_FILE_NAME
from suho_models.db.server.shared import stop_server
from suho_models.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.server]


def _env(data_dir: Path, idle: float = 20.0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUHO_")}
    env["SUHO_DATA_DIR"] = str(data_dir)
    env["SUHO_SERVER_IDLE_SECONDS"] = str(idle)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _suho(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "suho", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def _ready(data_dir: Path) -> dict[str, int]:
    text = (data_dir / "clickhouse" / "server" / READY_FILE_NAME).read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


UI_TOKEN = "shared-store-test-token-0123456789"


def _get(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {UI_TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read().decode()


def test_ui_training_cli_and_a_tuning_worker_at_once(tmp_path: Path) -> None:
    data = tmp_path / "suho"
    env = _env(data)
    assert _suho(env, "db", "upgrade").returncode == 0
    synth = _suho(env, "data", "synth", "--symbols", "EURUSD,XAUUSD", "--periods", "400")
    assert synth.returncode == 0, synth.stderr[-2000:]

    port = _free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "suho", "ui", "--port", str(port)],
        env={**env, "SUHO_UI_TOKEN": UI_TOKEN},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs: list[subprocess.Popen[str]] = [ui]
    try:
        deadline = time.monotonic() + 120
        while not _listening(port):
            assert ui.poll() is None, ui.stderr.read() if ui.stderr else ""
            assert time.monotonic() < deadline, "suho ui did not start"
            time.sleep(0.2)
        common = ["--model", "lightgbm", "--rounds", "20", "--quiet"]
        train = subprocess.Popen(
            [sys.executable, "-m", "suho", "train", "supervised", "--run-name", "shared-train"]
            + common,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        tune = subprocess.Popen(
            [sys.executable, "-m", "suho", "tune", "supervised", "--trials", "2"]
            + ["--workers", "2", "--run-name", "shared-tune"]
            + common,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs += [train, tune]
        listed = 0
        while train.poll() is None or tune.poll() is None:
            runs = _suho(env, "runs", "list", "--json", timeout=120)
            assert runs.returncode == 0, runs.stderr[-2000:]
            listed += 1
            status, _ = _get(f"http://127.0.0.1:{port}/api/runs")
            assert status == 200
            time.sleep(1.0)
        out_train, err_train = train.communicate()
        assert train.returncode == 0, err_train[-3000:]
        out_tune, err_tune = tune.communicate()
        assert tune.returncode == 0, err_tune[-3000:]
        assert listed >= 1
        status, body = _get(f"http://127.0.0.1:{port}/api/runs?status=completed")
        names = {r["run_name"] for r in json.loads(body)["rows"]}
        assert {"shared-train", "shared-tune"} <= names, names
        trials = _suho(env, "sql", "SELECT count() AS n FROM hyperparameters_log", "--json")
        assert trials.returncode == 0 and json.loads(trials.stdout)[0]["n"] == 2
        # One server served them all.
        assert ui.poll() is None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        stop_server(data / "clickhouse")


_WRITER = """
import sys, uuid
from repositories.batch_writer import training_metrics_writer
from suho_models.db import Database

run = uuid.UUID(sys.argv[1])
w = training_metrics_writer(Database(), max_seconds=3600, retry_initial=0.05, retry_max=0.2)

def log(lo, hi):
    for i in range(lo, hi):
        w.log(run_id=run, iteration_number=i, train_loss=i / 10, iteration_duration_ms=1.0)

log(0, 500)
assert w.flush()
print("inserted 500", flush=True)
sys.stdin.readline()  # the server was killed, and cannot start again yet
log(500, 1500)
assert not w.flush()  # seals the batch; its insert fails: on disk (spooled)
print("spooled", w.spooled_rows, flush=True)
sys.stdin.readline()  # the start lock is free again
deadline = __import__("time").monotonic() + 60
while w.pending_rows and __import__("time").monotonic() < deadline:
    w.flush()
    __import__("time").sleep(0.2)
print("pending", w.pending_rows, flush=True)
log(1500, 1700)  # not sealed: the rows a kill may lose
print("unsealed 200", flush=True)
sys.stdin.readline()  # killed while waiting here
"""


def test_kill_9_of_the_server_mid_run(tmp_path: Path) -> None:
    """The writer spools while the server is gone, a client starts it again, and
    every row logged before the last seal is stored exactly once."""
    from suho_models.db.server.shared import start_lock

    migrations.upgrade(get_settings().resolved_database_url())
    run = uuid.uuid4()
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_WRITER), str(run)],
        env=_env(get_settings().data_dir),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None and child.stdin is not None
    path = get_settings().embedded_path
    try:
        assert child.stdout.readline().strip() == "inserted 500"
        first = _ready(path.parent)["pid"]
        # Hold the start lock, as a slow starter would: the writer cannot revive the
        # server for now, so its sealed batch goes to the spool.
        with start_lock(path, timeout=5) as taken:
            assert taken
            os.kill(first, signal.SIGKILL)
            child.stdin.write("go\n")
            child.stdin.flush()
            line = child.stdout.readline().strip()
        assert line == "spooled 1000", line
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "pending 0"
        assert child.stdout.readline().strip() == "unsealed 200"
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        second = _ready(path.parent)["pid"]
        assert second != first  # the writer (a client) started it again

        db = Database()
        try:
            rows, final, distinct, top = db.execute(
                "SELECT count(), (SELECT count() FROM training_metrics FINAL "
                "WHERE run_id = %(r)s), uniqExact(iteration_number), max(iteration_number) "
                "FROM training_metrics WHERE run_id = %(r)s",
                {"r": str(run)},
            )[0]
        finally:
            db.close()
        assert (rows, final, distinct, top) == (1500, 1500, 1500, 1499)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


_CLIENT = """
from suho_models.db import Database
db = Database()
print(db.scalar("SELECT 1"), flush=True)
import time; time.sleep(600)
"""


def test_kill_9_of_every_client_then_the_server_stops_by_itself(tmp_path: Path) -> None:
    data = tmp_path / "suho"
    env = _env(data, idle=2.0)
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", _CLIENT], env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        for _ in range(2)
    ]
    try:
        for c in clients:
            assert c.stdout is not None and c.stdout.readline().strip() == "1"
        ready = _ready(data)
        assert ready["pid"] not in {c.pid for c in clients}  # a process of its own
        time.sleep(4)  # longer than the idle period: live clients keep it
        assert _listening(ready["tcp_port"]) and _listening(ready["http_port"])
        for c in clients:
            c.kill()
            c.wait(30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(ready["pid"], 0)
            except OSError:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the server did not stop by itself")
        assert not _listening(ready["tcp_port"]) and not _listening(ready["http_port"])
        assert not (data / "clickhouse" / "server" / READY_FILE_NAME).exists()
        # The next client starts it again, on the recorded ports.
        again = _suho(env, "db", "upgrade", timeout=120)
        assert again.returncode == 0, again.stderr
        # (its idle period is 2 s: read the recorded ports, not the live ready file)
        endpoint = json.loads((data / "clickhouse" / "server" / "endpoint.json").read_text())
        assert endpoint["tcp_port"] == ready["tcp_port"]
        log = (data / "clickhouse" / "server" / "server.log").read_text()
        assert log.count(f"tcp://127.0.0.1:{ready['tcp_port']} ") == 2  # started twice
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()
        stop_server(data / "clickhouse")


def test_two_stores_never_collide_and_are_private(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    try:
        for data, value in ((a, 1), (b, 2)):
            env = _env(data, idle=600)  # both still up when compared (stopped below)
            assert _suho(env, "db", "upgrade").returncode == 0
            out = _suho(env, "sql", f"SELECT {value} AS n", "--json")
            assert out.returncode == 0, out.stderr
        ra, rb = _ready(a), _ready(b)
        assert ra["pid"] != rb["pid"]
        assert {ra["tcp_port"], ra["http_port"]}.isdisjoint({rb["tcp_port"], rb["http_port"]})
        for data in (a, b):
            store = data / "clickhouse"
            assert (store.stat().st_mode & 0o777) == 0o700
            assert (store / "server" / "password").stat().st_mode & 0o777 == 0o600
    finally:
        stop_server(a / "clickhouse")
        stop_server(b / "clickhouse")


def test_an_embedded_store_in_use_is_one_clear_line(tmp_path: Path) -> None:
    """A clickhouse+chdb:// store that another process holds: one line naming it."""
    store = tmp_path / "chdb"
    url = f"clickhouse+chdb:///{store}/suho_analytics"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from suho_models.db import Database; "
            "db = Database(sys.argv[1]); print(db.scalar('SELECT 1'), flush=True); "
            "sys.stdin.readline()",
            url,
        ],
        env=_env(tmp_path / "unused"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "1"
        env = {**_env(tmp_path / "unused"), "SUHO_DATABASE_URL": url}
        out = _suho(env, "runs", "list")
        assert out.returncode == 1
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert f"pid {holder.pid}" in lines[0] and "in use" in lines[0]
        assert "unset SUHO_DATABASE_URL" in lines[0]
        assert "Cannot lock file" not in lines[0] and "BAD_ARGUMENTS" not in lines[0]
    finally:
        holder.kill()
        holder.wait()


def test_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **_env(tmp_path / "suho"),
        "SUHO_DATABASE_URL": f"clickhouse+native://default:x@127.0.0.1:{port}/suho_analytics",
    }
    out = _suho(env, "runs", "list")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert str(port) in lines[0]
