"""Processes killed with SIGKILL at random points: the local server under a writer
(then restarted), and a writer during an outage (then replayed by a new one). Rows
logged before the last seal are stored exactly once. The seed of each random
schedule is in the test's output."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from repositories.batch_writer import training_metrics_writer
from repositories.spool import SpoolDir
from suho_models.db import Database, migrations
from suho_models.db.server import LocalServer

ROOT = Path(__file__).resolve().parents[2]


def _stored(db: Database, run: uuid.UUID) -> tuple[int, int, int, int]:
    """(rows, distinct iterations, rows under FINAL, max iteration + 1)."""
    q = (
        "SELECT count(), uniqExact(iteration_number), max(iteration_number) + 1 "
        "FROM training_metrics {} WHERE run_id = %(r)s"
    )
    raw, distinct, top = db.execute(q.format(""), {"r": str(run)})[0]
    final = db.scalar(
        "SELECT count() FROM training_metrics FINAL WHERE run_id = %(r)s", {"r": str(run)}
    )
    return int(raw), int(distinct), int(final), int(top)


@pytest.mark.slow
@pytest.mark.server
def test_server_killed_at_random_points_and_restarted(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    server = LocalServer(tmp_path / "server").start()
    url = server.native_url("suho_analytics")
    run, stop, logged = uuid.uuid4(), threading.Event(), [0]
    db = None
    try:
        migrations.upgrade(url)
        db = Database(url)
        w = training_metrics_writer(
            db,
            spool_dir=tmp_path / "spool",
            max_rows=500,
            max_seconds=0.2,
            retry_initial=0.05,
            retry_max=0.3,
            probe_interval=0.2,
        )

        def log() -> None:
            while not stop.is_set():
                i = logged[0]
                for n in range(i, i + 50):
                    w.log(run_id=run, iteration_number=n, iteration_duration_ms=1.0)
                logged[0] = i + 50
                time.sleep(0.005)

        logger = threading.Thread(target=log)
        logger.start()
        try:
            for _ in range(2):
                time.sleep(rng.uniform(0.2, 1.5))
                pid = server.pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                server.stop()  # reaps it
                time.sleep(rng.uniform(0.0, 1.0))
                server.start()
            time.sleep(rng.uniform(0.2, 1.0))
        finally:
            stop.set()
            logger.join()
        assert w.close(timeout=60) is True, w.stats()
        raw, distinct, final, top = _stored(db, run)
        assert (distinct, final, top) == (logged[0],) * 3, (seed, raw)
        assert raw >= final
        assert not list((tmp_path / "spool").iterdir())
    finally:
        if db is not None:
            db.close()
        server.stop()


_WRITER = """
import sys, uuid
from repositories.batch_writer import training_metrics_writer
from suho_models.db import Database
from suho_models.db.server import free_port

run, spool = uuid.UUID(sys.argv[1]), sys.argv[2]
down = Database(f"clickhouse+native://127.0.0.1:{free_port()}/nowhere")
w = training_metrics_writer(down, spool_dir=spool, max_rows=10**6, max_seconds=3600,
                            retry_initial=0.05, retry_max=0.1)
i = 0
while True:
    for n in range(i, i + 250):
        w.log(run_id=run, iteration_number=n, iteration_duration_ms=1.0)
    i += 250
    w.flush()  # seals; the insert fails or is not tried: the batch is spooled
    print(f"sealed {i}", flush=True)
"""


@pytest.mark.parametrize("backend", ["embedded"])
def test_writer_killed_during_an_outage_then_replayed(db: Database, tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    run, spool = uuid.uuid4(), tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_WRITER), str(run), str(spool)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    assert child.stdout is not None
    sealed = 0
    try:
        target = rng.randrange(3, 12)
        while sealed < target * 250:
            sealed = int(child.stdout.readline().split()[1])
        time.sleep(rng.uniform(0.0, 0.05))  # maybe in the middle of an append
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
        for line in child.stdout:  # seals reported before the kill landed
            sealed = int(line.split()[1])
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    (left,) = SpoolDir(spool).leftovers()  # the dead writer's open segment
    assert left[1] >= sealed
    with training_metrics_writer(db, spool_dir=spool) as again:
        assert again.flush() is True
    raw, distinct, final, top = _stored(db, run)
    # Every row sealed before the kill, each once; rows after it are a whole batch or
    # none (a torn last record is dropped): always a gap-free prefix.
    assert raw == distinct == final == top >= sealed, seed
    assert top % 250 == 0
    assert not list(spool.iterdir())
