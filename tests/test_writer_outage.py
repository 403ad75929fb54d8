"""The batch writer through a real server outage (issue 17, §4): a writer killed
with SIGKILL while the server is down loses nothing it had sealed, and rows reach
the server within seconds of its return, however long the backoff had grown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from repositories.batch_writer import training_metrics_writer
from repositories.spool import SpoolDir
from suho_models.db import Database, migrations
from suho_models.db.server import LocalServer

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.server]

_CHILD = """
import sys, uuid
from repositories.batch_writer import training_metrics_writer
from suho_models.db import Database

url, run, spool = sys.argv[1], uuid.UUID(sys.argv[2]), sys.argv[3]
w = training_metrics_writer(
    Database(url), spool_dir=spool, max_seconds=3600, retry_initial=0.05, retry_max=0.2
)

def log(lo, hi):
    for i in range(lo, hi):
        w.log(run_id=run, iteration_number=i, train_loss=i / 10, iteration_duration_ms=1.0)

log(0, 500)
assert w.flush()
print("inserted 500", flush=True)
sys.stdin.readline()  # the server is down now
log(500, 1500)
assert not w.flush()  # seals the batch; its insert fails
print("sealed 1500", flush=True)
log(1500, 1700)  # not sealed: the rows a kill may lose
print("unsealed 200", flush=True)
sys.stdin.readline()  # killed while waiting here
"""


def _restart(server: LocalServer) -> LocalServer:
    return LocalServer(server.path, tcp_port=server.tcp_port, http_port=server.http_port).start()


def _stats(url: str, run: uuid.UUID) -> tuple[int, int, int, int]:
    """(rows, rows under FINAL, distinct iterations, max iteration), from a fresh pool."""
    db = Database(url)
    try:
        row = db.execute(
            "SELECT count(), uniqExact(iteration_number), max(iteration_number) "
            "FROM training_metrics WHERE run_id = %(r)s",
            {"r": str(run)},
        )[0]
        final = db.scalar(
            "SELECT count() FROM training_metrics FINAL WHERE run_id = %(r)s", {"r": str(run)}
        )
        return int(row[0]), int(final), int(row[1]), int(row[2])
    finally:
        db.close()


def test_kill_9_during_an_outage_loses_nothing_that_was_sealed(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "server").start()
    url = server.native_url("suho_analytics")
    run, spool = uuid.uuid4(), tmp_path / "spool"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    child = None
    try:
        migrations.upgrade(url)
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_CHILD), url, str(run), str(spool)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "inserted 500"
        assert server.stop() == 0
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "sealed 1500"
        assert child.stdout.readline().strip() == "unsealed 200"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL

        # The sealed batch is on disk, left by the dead writer in its open segment.
        left = SpoolDir(spool).leftovers()
        assert [(p.suffix, rows) for p, rows in left] == [(".open", 1_000)]

        server = _restart(server)
        db = Database(url)
        try:
            with training_metrics_writer(db, spool_dir=spool, max_seconds=3600) as again:
                assert again.flush() is True  # replays the leftovers
        finally:
            db.close()
        # Every row logged before the last seal is stored, exactly once: no row twice
        # even without FINAL, and none of the unsealed ones half-kept.
        assert _stats(url, run) == (1_500, 1_500, 1_500, 1_499)
        assert not list(spool.iterdir())
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        server.stop()


def test_rows_arrive_within_seconds_of_the_servers_return(tmp_path: Path) -> None:
    """With a backoff grown to 16 s, rows still arrive soon after the server is back:
    the writer probes it between the backoff steps."""
    server = LocalServer(tmp_path / "server").start()
    url = server.native_url("suho_analytics")
    run = uuid.uuid4()
    db = None
    try:
        migrations.upgrade(url)
        db = Database(url)
        w = training_metrics_writer(
            db, spool_dir=tmp_path / "spool", max_seconds=0.2, retry_initial=8.0, retry_max=30.0
        )
        w.log(run_id=run, iteration_number=0, iteration_duration_ms=1.0)
        assert w.flush() is True
        assert server.stop() == 0
        for i in range(1, 100):
            w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
        # The time-based flush fails: the next retry is 8 s away, and while the
        # server stays unreachable no INSERT is tried at all, only the probe.
        deadline = time.monotonic() + 30
        while not (w._failures and w._down) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert w._failures == 1 and w._down
        assert w.spooled_rows == 99  # write-ahead: on disk while the server is down
        time.sleep(2.5)  # probes fail meanwhile; still one spool file
        assert w._failures == 1 and w.spooled_files == 1

        server = _restart(server)
        back = time.monotonic()
        while w.pending_rows and time.monotonic() - back < 10:
            time.sleep(0.1)
        arrived_after = time.monotonic() - back
        assert w.pending_rows == 0, f"rows still pending {arrived_after:.1f}s after the return"
        assert w.close() is True
        db.close()
        db = None
        assert _stats(url, run)[1] == 100
    finally:
        if db is not None:
            db.close()
        server.stop()
