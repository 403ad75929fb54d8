"""A wall clock that jumps (NTP step, a VM resumed): seals run on the monotonic clock,
``recorded_at`` and spool names on the wall clock. Rows logged across jumps, backwards
and forwards, through inserts and through the spool, are stored exactly once."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path

import pytest

import repositories.batch_writer as batch_writer
import repositories.spool as spool_module
from repositories.batch_writer import training_metrics_writer
from repositories.spool import SpoolDir
from suho_models.db import Database
from suho_models.db.server import free_port

JUMPS = [dt.timedelta(0), dt.timedelta(days=-3), dt.timedelta(hours=5), dt.timedelta(days=-30)]


def _stored(db: Database, run: uuid.UUID) -> tuple[int, int, int]:
    q = "SELECT count(), uniqExact(iteration_number) FROM training_metrics {} WHERE run_id = %(r)s"
    raw, distinct = db.execute(q.format(""), {"r": str(run)})[0]
    final = db.scalar(
        "SELECT count() FROM training_metrics FINAL WHERE run_id = %(r)s", {"r": str(run)}
    )
    return int(raw), int(distinct), int(final)


@pytest.fixture
def jumping_clock(monkeypatch: pytest.MonkeyPatch) -> list[dt.timedelta]:
    """The writer's and the spool's wall clocks, offset by ``offset[0]``."""
    offset = [dt.timedelta(0)]
    real_now, real_ns = batch_writer._utc_now, time.time_ns
    monkeypatch.setattr(batch_writer, "_utc_now", lambda: real_now() + offset[0])
    monkeypatch.setattr(
        spool_module.time,
        "time_ns",
        lambda: real_ns() + offset[0] // dt.timedelta(microseconds=1) * 1000,
    )
    return offset


def test_rows_logged_across_clock_jumps_are_stored_once(
    db: Database, tmp_path: Path, jumping_clock: list[dt.timedelta]
) -> None:
    run = uuid.uuid4()
    with training_metrics_writer(db, spool_dir=tmp_path / "spool", max_rows=250) as w:
        for step, jump in enumerate(JUMPS):
            jumping_clock[0] = jump
            for i in range(step * 1_000, (step + 1) * 1_000):
                w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
    assert _stored(db, run) == (4_000, 4_000, 4_000)


def test_spooled_rows_across_clock_jumps_replay_once(
    db: Database, tmp_path: Path, jumping_clock: list[dt.timedelta]
) -> None:
    """Spool files named while the clock stepped back still sort in writing order and
    replay exactly once."""
    run, spool = uuid.uuid4(), tmp_path / "spool"
    down = Database(f"clickhouse+native://127.0.0.1:{free_port()}/nowhere")
    try:
        w = training_metrics_writer(
            down, spool_dir=spool, max_rows=250, spool_segment_rows=500, max_seconds=3600
        )
        for step, jump in enumerate(JUMPS):
            jumping_clock[0] = jump
            for i in range(step * 1_000, (step + 1) * 1_000):
                w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
            assert w.flush() is False
        assert w.close(timeout=0.2) is False
    finally:
        down.close()
    files = SpoolDir(spool).leftovers()
    assert len(files) >= 4 and sum(rows for _, rows in files) == 4_000
    reader = SpoolDir(spool)
    order = [
        n
        for f, _ in files
        for g in reader.read(f) or ()
        for n in g.table.column("iteration_number").to_pylist()
    ]
    assert order == list(range(4_000))  # writing order, though the clock went back
    with training_metrics_writer(db, spool_dir=spool) as again:
        assert again.flush() is True
    assert _stored(db, run) == (4_000, 4_000, 4_000)
