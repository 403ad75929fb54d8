"""BatchWriter against the real engine (embedded and local server), no mocks.

Failures are real too: a ``Database`` on a closed port refuses every insert, and
the local server is stopped and restarted under a writer.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from repositories.batch_writer import (
    REWARD_HISTORY_SCHEMA,
    TRAINING_METRICS_SCHEMA,
    BatchWriter,
    InvalidRowError,
    RowsNotStoredError,
    RowsRejectedError,
    reward_history_writer,
    training_metrics_writer,
)
from suho_models.db import Database, migrations
from suho_models.db.server import LocalServer, free_port

ROOT = Path(__file__).resolve().parents[1]
NEVER = 3600.0  # max_seconds that never fires within a test


def _count(db: Database, run_id: uuid.UUID, *, final: bool = True) -> int:
    return db.scalar(
        f"SELECT count() FROM training_metrics {'FINAL' if final else ''} WHERE run_id = %(r)s",
        {"r": str(run_id)},
    )


def _writer(db: Database, tmp_path: Path, **kwargs: object) -> BatchWriter:
    kwargs.setdefault("spool_dir", tmp_path / "spool")
    kwargs.setdefault("max_seconds", NEVER)
    return training_metrics_writer(db, **kwargs)


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _spool_files(path: Path) -> list[Path]:
    """Spool files on disk, any layout (segments open or closed, legacy files)."""
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.suffix in (".seg", ".open", ".arrow"))


def _spooled_rows(path: Path) -> int:
    from repositories.spool import SpoolDir

    return sum(rows for _, rows in SpoolDir(path).leftovers())


def _spooled_table(path: Path) -> pa.Table:
    """Every row in the spool, in replay order."""
    from repositories.spool import SpoolDir

    spool = SpoolDir(path)
    groups = [g for f, _ in spool.leftovers() for g in spool.read(f) or ()]
    return pa.concat_tables(g.table for g in groups)


# --------------------------------------------------------------------------- schemas
@pytest.mark.parametrize(
    ("schema", "table"),
    [(TRAINING_METRICS_SCHEMA, "training_metrics"), (REWARD_HISTORY_SCHEMA, "reward_history")],
)
def test_schemas_follow_the_tables(db: Database, schema: pa.Schema, table: str) -> None:
    columns = db.execute(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
        "AND table = %(t)s ORDER BY position",
        {"t": table},
    )
    assert schema.names == [name for name, _ in columns]
    for field, (_, ch_type) in zip(schema, columns, strict=True):
        assert field.nullable == ch_type.startswith("Nullable("), field.name


# --------------------------------------------------------------------------- flush triggers
def test_flushes_when_max_rows_is_reached(db: Database, tmp_path: Path) -> None:
    run = uuid.uuid4()
    w = _writer(db, tmp_path, max_rows=100)
    try:
        for i in range(250):
            w.log(run_id=run, iteration_number=i, train_loss=0.1, iteration_duration_ms=1.0)
        # Two full batches went in from the logging thread; 50 rows wait.
        assert _count(db, run) == 200
        assert (w.flush_count, w.rows_flushed, w.pending_rows) == (2, 200, 50)
    finally:
        w.close()
    assert _count(db, run) == 250
    assert (w.rows_logged, w.rows_flushed, w.pending_rows) == (250, 250, 0)


def test_flushes_after_max_seconds_without_more_rows(db: Database, tmp_path: Path) -> None:
    run = uuid.uuid4()
    w = _writer(db, tmp_path, max_rows=1_000_000, max_seconds=0.2)
    try:
        for i in range(10):
            w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
        assert _wait_for(lambda: _count(db, run) == 10, timeout=10)
        # The insert lands a moment before the writer books it: wait for that too.
        assert _wait_for(lambda: w.pending_rows == 0, timeout=10)
        assert w.flush_count >= 1
    finally:
        w.close()


def test_flush_close_and_context_exit_write_everything(db: Database, tmp_path: Path) -> None:
    run = uuid.uuid4()
    w = _writer(db, tmp_path)
    w.log(run_id=run, iteration_number=1, iteration_duration_ms=1.0)
    assert _count(db, run) == 0
    assert w.flush() is True
    assert _count(db, run) == 1

    w.log(run_id=run, iteration_number=2, iteration_duration_ms=1.0)
    assert w.close() is True
    assert _count(db, run) == 2
    assert w.close() is True  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        w.log(run_id=run, iteration_number=3, iteration_duration_ms=1.0)

    with _writer(db, tmp_path) as w2:
        w2.log(run_id=run, iteration_number=3, iteration_duration_ms=1.0)
        w2.log_row((run, 4, None, None, None, None, None, None, 1.0, None))
    assert _count(db, run) == 4
    assert not _spool_files(tmp_path / "spool")


# --------------------------------------------------------------------------- values
def test_nan_inf_and_null_round_trip(db: Database, tmp_path: Path) -> None:
    run = uuid.uuid4()
    nan, inf = float("nan"), float("inf")
    explicit = datetime(2026, 11, 1, 12, 30, 15, 123000, tzinfo=UTC)
    before = datetime.now(UTC) - timedelta(seconds=1)
    with _writer(db, tmp_path) as w:
        # log(): NaN/inf kept, None and missing Nullable columns are NULL.
        w.log(
            run_id=run,
            iteration_number=1,
            train_loss=nan,
            val_loss=inf,
            train_accuracy=-inf,
            val_accuracy=None,
            gradient_norm=0.0,
            iteration_duration_ms=nan,
        )
        # log_row(): same in schema order, with an explicit recorded_at.
        w.log_row((str(run), 2, nan, None, inf, None, None, -inf, 2.5, explicit))
        # log_columns(): numpy NaN, a pandas Series (NaN must not become NULL), a scalar run id.
        w.log_columns(
            {
                "run_id": run,
                "iteration_number": np.array([3, 4], dtype=np.int64),
                "train_loss": np.array([nan, -inf]),
                "val_loss": pd.Series([nan, 1.5]),
                "train_accuracy": [None, inf],
                "learning_rate": pd.Series([None, 2.0], dtype="Float64"),  # pd.NA is NULL
                "iteration_duration_ms": 3.0,
            }
        )
    after = datetime.now(UTC) + timedelta(seconds=1)
    rows = db.execute(
        "SELECT iteration_number, train_loss, val_loss, train_accuracy, val_accuracy, "
        "learning_rate, gradient_norm, iteration_duration_ms, recorded_at "
        "FROM training_metrics FINAL WHERE run_id = %(r)s ORDER BY iteration_number",
        {"r": str(run)},
    )
    got = {r[0]: tuple(r[1:]) for r in rows}
    assert sorted(got) == [1, 2, 3, 4]

    def same(a: object, b: object) -> bool:
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
            return math.isnan(b)
        return a == b

    expected = {
        1: (nan, inf, -inf, None, None, 0.0, nan),
        2: (nan, None, inf, None, None, -inf, 2.5),
        3: (nan, nan, None, None, None, None, 3.0),
        4: (-inf, 1.5, inf, None, 2.0, None, 3.0),
    }
    for it, values in expected.items():
        assert all(same(e, g) for e, g in zip(values, got[it][:7], strict=True)), (it, got[it])
    stamps = {it: got[it][7].astimezone(UTC) for it in got}
    assert stamps[2] == explicit  # given: kept, to the millisecond
    for it in (1, 3, 4):  # not given: now
        assert before <= stamps[it] <= after


def test_reward_history_types(db: Database, tmp_path: Path) -> None:
    run = uuid.uuid4()
    big = 2**40 + 7  # UInt64 beyond 32 bits
    with reward_history_writer(db, spool_dir=tmp_path / "spool", max_seconds=NEVER) as w:
        w.log(
            run_id=run,
            episode_number=1,
            timestep_number=big,
            step_reward=-0.5,
            episode_cumulative_reward=-0.5,
            is_episode_end=0,
        )
        w.log_columns(
            {
                "run_id": str(run),
                "episode_number": 1,
                "timestep_number": np.array([big + 1, big + 2], dtype=np.uint64),
                "step_reward": [1.0, float("nan")],
                "episode_cumulative_reward": [0.5, float("nan")],
                "episode_final_reward": [None, 0.5],
                "is_episode_end": np.array([0, 1], dtype=np.uint8),
            }
        )
    rows = db.execute(
        "SELECT timestep_number, is_episode_end, episode_final_reward FROM reward_history FINAL "
        "WHERE run_id = %(r)s ORDER BY timestep_number",
        {"r": str(run)},
    )
    assert [tuple(r) for r in rows] == [(big, 0, None), (big + 1, 0, None), (big + 2, 1, 0.5)]


_BIG_DATE = datetime(2500, 1, 1, tzinfo=UTC)
# (table, row given by name, field the error must name, repr of the value it must quote)
_BAD_ROWS = [
    # out-of-range integers, one per integer column kind
    ("m", {"iteration_number": 2**32}, "iteration_number", "4294967296"),
    ("m", {"iteration_number": -1}, "iteration_number", "-1"),
    ("r", {"episode_number": 2**32}, "episode_number", "4294967296"),
    ("r", {"timestep_number": 2**64}, "timestep_number", "18446744073709551616"),
    ("r", {"timestep_number": -5}, "timestep_number", "-5"),
    ("r", {"is_episode_end": 256}, "is_episode_end", "256"),
    # non-numeric and unrepresentable floats
    ("m", {"train_loss": "abc"}, "train_loss", "'abc'"),
    ("m", {"val_loss": "0.5"}, "val_loss", "'0.5'"),
    ("m", {"learning_rate": 10**400}, "learning_rate", "1000000"),
    ("m", {"iteration_duration_ms": b"1"}, "iteration_duration_ms", "b'1'"),
    ("r", {"step_reward": [1.0]}, "step_reward", "[1.0]"),
    # wrong types
    ("m", {"iteration_number": 1.5}, "iteration_number", "1.5"),
    ("m", {"iteration_number": "3"}, "iteration_number", "'3'"),
    ("m", {"iteration_number": True}, "iteration_number", "True"),
    ("m", {"run_id": "not-a-uuid"}, "run_id", "'not-a-uuid'"),
    ("m", {"run_id": 12345}, "run_id", "12345"),
    ("m", {"recorded_at": "2026-01-01"}, "recorded_at", "'2026-01-01'"),
    ("m", {"recorded_at": _BIG_DATE}, "recorded_at", "2500"),
    # unknown columns
    ("m", {"trian_loss": 0.1}, "trian_loss", "0.1"),
    # missing required values
    ("m", {"run_id": None}, "run_id", "None"),
    ("r", {"step_reward": None}, "step_reward", "None"),
]


def _good_row(kind: str, run: uuid.UUID, i: int) -> dict[str, object]:
    if kind == "m":
        return {"run_id": run, "iteration_number": i, "train_loss": 0.5}
    return {
        "run_id": run,
        "episode_number": 1,
        "timestep_number": i,
        "step_reward": 1.0,
        "episode_cumulative_reward": float(i),
    }


def test_every_kind_of_bad_value_is_refused_at_log_time(db: Database, tmp_path: Path) -> None:
    """Each bad value raises in the call that logs it, naming the field and the value;
    rows stored before, and rows queued before, are all kept."""
    run = uuid.uuid4()
    writers = {
        "m": _writer(db, tmp_path, spool_dir=tmp_path / "m"),
        "r": reward_history_writer(db, spool_dir=tmp_path / "r", max_seconds=NEVER),
    }
    try:
        for w in writers.values():
            kind = "m" if w is writers["m"] else "r"
            w.log(**_good_row(kind, run, 0))
            assert w.flush() is True  # stored before the bad calls
            w.log(**_good_row(kind, run, 1))  # queued before them
        for kind, bad, field, value in _BAD_ROWS:
            w = writers[kind]
            row = {**_good_row(kind, run, 2), **bad}
            if row.get(field, 0) is None:
                del row[field]  # "missing" means not given at all
            with pytest.raises(InvalidRowError) as by_name:
                w.log(**row)
            message = str(by_name.value)
            assert field in message and value in message, (bad, message)
            if field in w.schema.names:
                values = [{**_good_row(kind, run, 2), **bad}.get(n) for n in w.schema.names]
                with pytest.raises(InvalidRowError) as by_position:
                    w.log_row(values)
                message = str(by_position.value)
                assert field in message and value in message, (bad, message)
            assert w.pending_rows == 1, (bad, w.pending_rows)  # the refused row is not queued
        with pytest.raises(InvalidRowError, match="10 values"):
            writers["m"].log_row((run, 1, 0.1))
        for w in writers.values():
            assert w.close() is True
            assert (w.rows_logged, w.rows_flushed, w.rows_rejected) == (2, 2, 0)
    finally:
        for w in writers.values():
            w.close()
    assert _count(db, run) == 2
    assert (
        db.scalar("SELECT count() FROM reward_history FINAL WHERE run_id = %(r)s", {"r": str(run)})
        == 2
    )


def test_log_columns_refuses_a_bad_batch_as_a_whole(db: Database, tmp_path: Path) -> None:
    run = uuid.uuid4()
    with _writer(db, tmp_path) as w:
        w.log_columns({"run_id": run, "iteration_number": [1, 2]})
        cases = [
            ({"iteration_number": [3, 2**40]}, "iteration_number", "1099511627776", "index 1"),
            ({"iteration_number": np.array([3, -1])}, "iteration_number", "-1", "index 1"),
            ({"iteration_number": [3, 4], "train_loss": [0.1, "abc"]}, "train_loss", "'abc'", "1"),
            ({"iteration_number": [3, 4], "run_id": [run, None]}, "run_id", "None", "index 1"),
            ({"iteration_number": [3, 4], "run_id": None}, "run_id", "None", ""),
            ({"iteration_number": [3, 4], "nope": [1, 2]}, "nope", "[1, 2]", ""),
        ]
        for bad, field, value, where in cases:
            columns = {"run_id": run, **bad}
            with pytest.raises(InvalidRowError) as raised:
                w.log_columns(columns)
            message = str(raised.value)
            assert field in message and value in message and where in message, (bad, message)
            assert w.pending_rows == 2
    assert (w.rows_logged, w.rows_flushed) == (2, 2)
    assert _count(db, run) == 2


def test_columns_with_a_default_may_be_left_out(db: Database, tmp_path: Path) -> None:
    run = uuid.uuid4()
    before = datetime.now(UTC) - timedelta(seconds=1)
    with _writer(db, tmp_path) as w:
        w.log(run_id=run, iteration_number=1, train_loss=0.69, val_loss=0.70)
        w.log(run_id=run, iteration_number=2, iteration_duration_ms=None)  # None: the default
        w.log_row((run, 3, None, None, None, None, None, None, None, None))
        w.log_columns({"run_id": run, "iteration_number": [4, 5]})
    rows = db.execute(
        "SELECT iteration_number, iteration_duration_ms, recorded_at FROM training_metrics "
        "FINAL WHERE run_id = %(r)s ORDER BY iteration_number",
        {"r": str(run)},
    )
    assert [(r[0], r[1]) for r in rows] == [(i, 0.0) for i in range(1, 6)]
    assert all(r[2].astimezone(UTC) >= before for r in rows)
    with reward_history_writer(db, spool_dir=tmp_path / "r", max_seconds=NEVER) as r:
        r.log(
            run_id=run,
            episode_number=1,
            timestep_number=1,
            step_reward=0.5,
            episode_cumulative_reward=0.5,
        )
    assert (
        db.scalar(
            "SELECT is_episode_end FROM reward_history FINAL WHERE run_id = %(r)s", {"r": str(run)}
        )
        == 0
    )


def test_a_row_rejected_at_sealing_is_reported_not_dropped_silently(
    db: Database, tmp_path: Path
) -> None:
    """The safety net behind the checks: a value that reached the buffer unchecked (put
    there directly here) and cannot be converted makes close() raise, after the good
    rows were stored; the writer says so in its counters and repr."""
    run = uuid.uuid4()
    w = _writer(db, tmp_path)
    w.log(run_id=run, iteration_number=1)
    with w._lock:  # bypass log()'s checks, as a bug in them would
        for column, value in zip(w._columns, (run, 2, object()), strict=False):
            column.append(value)
        for column in w._columns[3:]:
            column.append(None)
    w.log(run_id=run, iteration_number=3)
    with pytest.raises(RowsRejectedError, match=r"rejected 1 row.*train_loss|object"):
        w.close()
    assert w.rows_rejected == 1 and "rejected=1" in repr(w)
    with pytest.raises(RowsRejectedError):
        w.close()  # every later close says so too
    assert _count(db, run) == 2


# --------------------------------------------------------------------------- threads, keys
def test_threads_logging_concurrently_lose_and_duplicate_nothing(
    db: Database, tmp_path: Path
) -> None:
    run = uuid.uuid4()
    threads_n, per_thread = 8, 3_000
    w = _writer(db, tmp_path, max_rows=500, max_seconds=0.05)
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            base = t * per_thread
            if t % 3 == 0:
                for i in range(base, base + per_thread):
                    w.log(
                        run_id=run,
                        iteration_number=i,
                        train_loss=float(t),
                        iteration_duration_ms=1.0,
                    )
            elif t % 3 == 1:
                for i in range(base, base + per_thread):
                    w.log_row((run, i, float(t), None, None, None, None, None, 1.0, None))
            else:
                for start in range(base, base + per_thread, 250):
                    w.log_columns(
                        {
                            "run_id": run,
                            "iteration_number": np.arange(start, start + 250),
                            "train_loss": float(t),
                            "iteration_duration_ms": 1.0,
                        }
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert w.close() is True
    assert not errors
    total = threads_n * per_thread
    assert (w.rows_logged, w.rows_flushed, w.pending_rows) == (total, total, 0)
    assert _count(db, run, final=False) == total  # nothing inserted twice
    checks = db.execute(
        "SELECT uniqExact(iteration_number), min(iteration_number), max(iteration_number), "
        "countIf(toUInt32(train_loss) != intDiv(iteration_number, %(p)s)) "
        "FROM training_metrics WHERE run_id = %(r)s",
        {"r": str(run), "p": per_thread},
    )[0]
    assert tuple(checks) == (total, 0, total - 1, 0)


def test_relogging_a_key_is_one_row_for_readers(db: Database, tmp_path: Path) -> None:
    run = uuid.uuid4()
    with _writer(db, tmp_path) as w:
        w.log(run_id=run, iteration_number=7, train_loss=1.0, iteration_duration_ms=1.0)
        w.flush()
        time.sleep(0.01)  # a later recorded_at: the newer row is the version readers see
        w.log(run_id=run, iteration_number=7, train_loss=2.0, iteration_duration_ms=1.0)
        # Same key twice within one batch: the later one wins there too.
        w.log(run_id=run, iteration_number=8, train_loss=1.0, iteration_duration_ms=1.0)
        w.log(run_id=run, iteration_number=8, train_loss=3.0, iteration_duration_ms=1.0)
    assert _count(db, run) == 2
    rows = db.execute(
        "SELECT iteration_number, train_loss FROM training_metrics FINAL "
        "WHERE run_id = %(r)s ORDER BY iteration_number",
        {"r": str(run)},
    )
    assert [tuple(r) for r in rows] == [(7, 2.0), (8, 3.0)]


# --------------------------------------------------------------------------- failures
def _unreachable_database() -> Database:
    """A native URL on a port nobody listens on: every insert fails for real."""
    return Database(f"clickhouse+native://127.0.0.1:{free_port()}/nowhere")


def test_failed_inserts_keep_rows_spool_them_and_replay_exactly_once(
    db: Database, tmp_path: Path
) -> None:
    run = uuid.uuid4()
    spool = tmp_path / "spool"
    spool.mkdir()
    stale_tmp = spool / ".00000000000000000001-1-000001-5r.arrow.999999999.tmp"
    stale_tmp.write_bytes(b"half a file from a crashed writer")

    down = _unreachable_database()
    w = BatchWriter(
        down,
        "training_metrics",
        TRAINING_METRICS_SCHEMA,
        max_rows=100,
        max_buffered_rows=300,
        max_seconds=NEVER,
        spool_dir=spool,
        retry_initial=0.05,
        retry_max=0.2,
    )
    try:
        for i in range(1_000):
            w.log(run_id=run, iteration_number=i, train_loss=i / 10, iteration_duration_ms=1.0)
        assert w.flush() is False
        assert w.last_error is not None
        assert (w.rows_logged, w.rows_flushed, w.pending_rows) == (1_000, 0, 1_000)
        # Write-ahead: every batch whose insert failed is on disk, none only in memory,
        # and the 10 batches share one spool file (appended to while the server is down).
        assert w.pending_rows == w.spooled_rows
        assert w.memory_rows == 0
        assert w.spooled_files == len(_spool_files(spool)) == 1
        # The background thread keeps probing the server; no file per retry.
        probed = w._probe_at
        assert _wait_for(lambda: w._probe_at > probed, timeout=5)
        for i in range(1_000, 1_100):
            w.log(run_id=run, iteration_number=i, train_loss=i / 10, iteration_duration_ms=1.0)
        assert w.flush() is False
        assert len(_spool_files(spool)) == 1
    finally:
        assert w.close(timeout=0.2) is False
        down.close()
    assert not stale_tmp.exists()  # its writer is gone: the partial file was dropped
    assert len(_spool_files(spool)) == 1
    assert _spooled_rows(spool) == 1_100
    # Records are whole Arrow batches in writing order: together they are the log.
    spooled = _spooled_table(spool)
    assert spooled.column("iteration_number").to_pylist() == list(range(1_100))
    assert _count(db, run, final=False) == 0

    # A new writer on a working database replays the leftovers by itself (its
    # background thread, no flush() needed), then writes its own rows.
    with _writer(db, tmp_path, spool_dir=spool) as again:
        assert _wait_for(lambda: again.spooled_files == 0, timeout=10)
        assert _count(db, run, final=False) == 1_100
        again.log(run_id=run, iteration_number=1_100, iteration_duration_ms=1.0)
    assert again.rows_flushed == 1_101
    assert not _spool_files(spool)
    assert _count(db, run, final=False) == 1_101  # each row inserted exactly once
    assert _count(db, run) == 1_101
    assert db.scalar(
        "SELECT sum(train_loss) FROM training_metrics FINAL WHERE run_id = %(r)s",
        {"r": str(run)},
    ) == pytest.approx(sum(i / 10 for i in range(1_100)))


def test_a_batch_that_partly_landed_is_counted_once(db: Database, tmp_path: Path) -> None:
    """Rows that landed without the batch's token (not the writer's retry, which is
    deduplicated): readers (FINAL) still see each key once."""
    run = uuid.uuid4()
    with _writer(db, tmp_path) as w:
        for i in range(100):
            w.log(run_id=run, iteration_number=i, train_loss=float(i), iteration_duration_ms=1.0)
        w._seal()
        batch = w._batches[0].table
        db.insert_arrow("training_metrics", batch.slice(0, 60))  # "landed before the error"
    assert _count(db, run, final=False) == 160
    assert _count(db, run) == 100


def lose_acknowledgements(
    monkeypatch: pytest.MonkeyPatch,
    db: Database,
    times: int = 1,
    meanwhile: Callable[[], None] | None = None,
) -> list[str | None]:
    """Make ``db.insert_arrow`` raise ``times`` times *after* the real INSERT stored
    its rows, as a timeout that ate the server's answer does; ``meanwhile`` runs
    before each raise (rows logged while the INSERT was in flight). Returns the
    tokens of every INSERT sent."""
    real = db.insert_arrow
    tokens: list[str | None] = []
    left = [times]

    def insert_arrow(table: str, data: pa.Table, *, dedup_token: str | None = None) -> None:
        tokens.append(dedup_token)
        real(table, data, dedup_token=dedup_token)
        if left[0]:
            left[0] -= 1
            if meanwhile is not None:
                meanwhile()
            raise ConnectionError("the INSERT landed, its acknowledgement was lost")

    monkeypatch.setattr(db, "insert_arrow", insert_arrow)
    return tokens


def test_an_insert_whose_acknowledgement_was_lost_is_stored_once(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry carries the first attempt's token, so the raw rows (no FINAL) are
    there once: on the old writer (no token, no dedup window) they were there twice."""
    run = uuid.uuid4()
    tokens = lose_acknowledgements(monkeypatch, db)
    w = _writer(db, tmp_path, retry_initial=0.05, retry_max=0.2)
    for i in range(500):
        w.log(run_id=run, iteration_number=i, train_loss=float(i), iteration_duration_ms=1.0)
    assert w.flush() is False  # "failed": the batch went to the spool with its token
    assert w.spooled_files == 1
    assert w.close(timeout=10) is True
    assert _count(db, run, final=False) == 500
    assert _count(db, run) == 500
    assert len(tokens) == 2 and tokens[0] == tokens[1] and tokens[0]
    assert not _spool_files(tmp_path / "spool")


def test_an_attempted_group_is_retried_as_it_was(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches never attempted go as one INSERT; once attempted, that group is fixed.
    Rows logged while its INSERT was in flight are not merged into its retry (a new
    group under a new token would store the first attempt's rows a second time)."""
    run = uuid.uuid4()
    w = _writer(db, tmp_path, retry_initial=0.05, retry_max=0.2)

    def log_chunk(lo: int, hi: int) -> None:
        w.log_columns(
            {
                "run_id": run,
                "iteration_number": np.arange(lo, hi, dtype=np.uint32),
                "iteration_duration_ms": 1.0,
            }
        )

    tokens = lose_acknowledgements(monkeypatch, db, meanwhile=lambda: log_chunk(300, 400))
    for lo in range(0, 300, 100):
        log_chunk(lo, lo + 100)  # three batches, none attempted yet
    assert w.flush() is False
    # The attempted group, and the batch logged meanwhile: two records of one file.
    assert (w.spooled_files, w.spooled_rows) == (1, 400)
    assert w.close(timeout=10) is True
    assert _count(db, run, final=False) == 400
    assert _count(db, run) == 400
    first, retry, meanwhile = tokens
    assert first == retry != meanwhile
    assert w.flush_count == 2


def test_coalesced_batches_are_one_insert(db: Database, tmp_path: Path) -> None:
    run = uuid.uuid4()
    with _writer(db, tmp_path) as w:
        for lo in range(0, 1_000, 100):
            w.log_columns(
                {
                    "run_id": run,
                    "iteration_number": np.arange(lo, lo + 100, dtype=np.uint32),
                    "iteration_duration_ms": 1.0,
                }
            )
        assert w.flush() is True
    assert w.flush_count == 1
    assert _count(db, run, final=False) == 1_000


def test_a_spool_file_replayed_twice_is_stored_once(db: Database, tmp_path: Path) -> None:
    """A crash after a spool file's INSERT, before its deletion: the next writer
    replays it again, under the token written in the file."""
    run = uuid.uuid4()
    spool = tmp_path / "spool"
    down = _unreachable_database()
    w = _writer(down, tmp_path, max_rows=100, retry_max=0.2)
    try:
        for i in range(250):
            w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
        assert w.close(timeout=0.2) is False
    finally:
        down.close()
    files = _spool_files(spool)
    assert len(files) == 1  # 3 batches, the first attempted: 2 INSERTs on replay
    saved = {f.name: f.read_bytes() for f in files}
    with _writer(db, tmp_path) as first:
        assert first.flush() is True
    assert not _spool_files(spool)
    for name, data in saved.items():  # as if the process died before removing them
        (spool / name).write_bytes(data)
    with _writer(db, tmp_path) as second:
        assert second.flush() is True
    assert second.rows_flushed == 250  # replayed: the server dropped them as duplicates
    assert _count(db, run, final=False) == 250
    assert _count(db, run) == 250


def test_spool_files_keep_each_batch_and_its_token(tmp_path: Path) -> None:
    from repositories.spool import DEDUP_TOKEN_KEY, SpoolDir

    spool = SpoolDir(tmp_path / "spool")
    table = pa.table({"x": pa.array([3, 1, 2], pa.int64())}).replace_schema_metadata({b"k": b"v"})
    path = spool.write(table, "store:t:abc")
    (back,) = spool.read(path) or ()
    assert back.token == "store:t:abc"
    assert back.table.equals(table, check_metadata=True)  # rows, order, metadata: as sealed
    legacy = tmp_path / "spool" / "00000000000000000001-1-000001-3r.arrow"
    with pa.OSFile(str(legacy), "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
        out.write_table(table)  # written before tokens were, one batch per file
    (old,) = spool.read(legacy) or ()
    assert old.token is None and old.key == legacy.name
    assert DEDUP_TOKEN_KEY not in (old.table.schema.metadata or {})
    assert [p.name for p, _ in spool.leftovers()] == [legacy.name, path.name]


def test_a_torn_spool_record_is_ignored_and_the_rest_replayed(tmp_path: Path) -> None:
    """A crash in the middle of an append leaves a torn last record: it was never
    acknowledged, so reading keeps the whole records before it and drops it."""
    from repositories.spool import SpoolDir

    spool = SpoolDir(tmp_path / "spool")
    table = pa.table({"x": pa.array(range(10), pa.int64())})
    spool.append(table, "t:0", attempted=True)
    spool.append(table, "t:1", attempted=False)
    spool.append(table, "t:2", attempted=False)
    path = spool._open
    assert path is not None
    whole = path.stat().st_size
    spool.append(table, "t:3", attempted=True)
    os.truncate(path, whole + 40)  # the 4th record cut short
    groups = spool.read(path) or []
    # The attempted batch alone under its token; the two never attempted as one INSERT.
    assert [(g.token, g.table.num_rows) for g in groups] == [("t:0", 10), (None, 20)]
    assert groups[1].key.endswith(":1-2")


_DIES_WITH_AN_OPEN_SEGMENT = """
import os, sys
import pyarrow as pa
from repositories.spool import SpoolDir
spool = SpoolDir(sys.argv[1])
spool.append(pa.table({"x": pa.array(range(7), pa.int64())}), "t:dead", attempted=True)
os._exit(0)  # no close: the segment stays .open, its lock dies with the process
"""


def test_an_open_segment_is_adopted_once_its_writer_is_gone_whatever_its_pid(
    tmp_path: Path,
) -> None:
    """The segment's lock, not its pid, says whether its writer lives: a restarted
    container process often has the dead one's pid (here: this test's own)."""
    from repositories.spool import SpoolDir

    folder = tmp_path / "spool"
    _python(_DIES_WITH_AN_OPEN_SEGMENT, str(folder))
    (dead,) = folder.glob("*.open")
    ns, _pid, rest = dead.name.split("-", 2)
    same_pid = dead.rename(folder / f"{ns}-{os.getpid()}-{rest}")
    live = SpoolDir(folder)
    live.append(pa.table({"x": pa.array([1], pa.int64())}), "t:live", attempted=True)
    assert live._open is not None and live._open.exists()
    # Only the abandoned segment is a leftover; the live writer's is still written to.
    assert SpoolDir(folder).leftovers() == [(same_pid, 7)]
    assert live.close_segment() is not None
    assert sorted(rows for _, rows in SpoolDir(folder).leftovers()) == [1, 7]


def test_a_writer_that_can_neither_insert_nor_spool_raises_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 28's smallest reproduction: close() returned False and said "0 rows not
    inserted" while 1,000 rows were pending; they vanished at exit."""
    down = _unreachable_database()
    w = training_metrics_writer(down, spool_dir=Path("/dev/null/spool"))
    run = uuid.uuid4()
    try:
        for i in range(1_000):
            w.log(run_id=run, iteration_number=i, train_loss=0.1)
        with pytest.raises(RowsNotStoredError, match=r"1,000 row\(s\)") as raised:
            w.close(timeout=2)
    finally:
        down.close()
    err = raised.value
    assert (err.rows, err.table) == (1_000, "training_metrics")
    assert "/dev/null/spool" in str(err) and "Not a directory" in str(err)
    assert (w.pending_rows, w.memory_rows, w.spooled_rows) == (1_000, 1_000, 0)
    closing = [r.getMessage() for r in caplog.records if "closed with" in r.getMessage()]
    assert closing and "1000 row(s) not inserted" in closing[-1]
    assert "1000 held only in memory" in closing[-1]
    with pytest.raises(RowsNotStoredError):  # closing again does not make them kept
        w.close()


def test_an_outage_spools_many_small_batches_into_one_file(tmp_path: Path) -> None:
    """Issue 28: an outage wrote 152 spool files for 25,683 rows (one per batch). Time-
    based seals, log_columns batches and flushes now append to one segment."""
    down = _unreachable_database()
    spool = tmp_path / "spool"
    w = _writer(
        down, tmp_path, spool_dir=spool, max_seconds=0.05, retry_initial=0.05, retry_max=0.1
    )
    run = uuid.uuid4()
    try:
        for lo in range(0, 6_000, 100):
            w.log_columns(
                {
                    "run_id": run,
                    "iteration_number": np.arange(lo, lo + 100, dtype=np.uint32),
                    "iteration_duration_ms": 1.0,
                }
            )
            if lo % 1_000 == 0:
                w.flush()
            time.sleep(0.01)
        assert w.close(timeout=0.2) is False
    finally:
        down.close()
    assert len(_spool_files(spool)) == 1
    assert _spooled_table(spool).column("iteration_number").to_pylist() == list(range(6_000))


def test_rows_not_kept_are_reported_even_when_the_block_raised(tmp_path: Path) -> None:
    """A with-block that raised: the count of rows not kept still reaches the caller
    (the block's exception is the cause), so a trainer's run records it."""
    down = _unreachable_database()
    run = uuid.uuid4()
    try:
        with (
            pytest.raises(RowsNotStoredError, match="the block had raised ValueError") as raised,
            _writer(down, tmp_path, spool_dir=Path("/dev/null/spool")) as w,
        ):
            for i in range(10):
                w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
            raise ValueError("training diverged")
    finally:
        down.close()
    assert raised.value.rows == 10
    assert isinstance(raised.value.__cause__, ValueError)


def test_back_pressure_bounds_memory_and_lifts_when_rows_can_be_kept(tmp_path: Path) -> None:
    """Neither inserts nor spooling work: past max_buffered_rows log() blocks up to
    block_seconds, then raises and refuses rows; memory stays bounded. Once the spool
    is writable again the rows go there and log() accepts rows again."""
    blocker = tmp_path / "spool"
    blocker.write_text("a file where the spool folder should be")
    down = _unreachable_database()
    w = _writer(
        down,
        tmp_path,
        spool_dir=blocker / "training_metrics",
        max_rows=100,
        max_buffered_rows=500,
        block_seconds=0.3,
        retry_initial=0.05,
        retry_max=0.1,
    )
    run = uuid.uuid4()
    try:
        logged = 0
        with pytest.raises(RowsNotStoredError, match="refuses rows") as raised:
            for i in range(100_000):
                w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
                logged += 1
        assert 500 < raised.value.rows <= 600
        assert w.memory_rows == w.rows_logged == logged + 1  # the last row was kept
        with pytest.raises(RowsNotStoredError, match="row refused"):
            w.log(run_id=run, iteration_number=10**6, iteration_duration_ms=1.0)
        with pytest.raises(RowsNotStoredError, match="row refused"):
            w.log_columns({"run_id": run, "iteration_number": [10**6 + 1]})
        assert w.rows_logged == logged + 1  # refused rows are not kept

        blocker.unlink()  # room again: the background thread spools the rows
        assert _wait_for(lambda: w.memory_rows == 0, timeout=10)
        w.log(run_id=run, iteration_number=logged + 1, iteration_duration_ms=1.0)
        assert w.close(timeout=0.2) is False  # all spooled, none lost: no exception
    finally:
        down.close()
    assert _spooled_rows(blocker / "training_metrics") == logged + 2


# --------------------------------------------------------------------------- process exit
_CHILD_LOG = """
import sys, uuid
from repositories.batch_writer import training_metrics_writer
from suho_models.db import Database, migrations
url, run, spool = sys.argv[1], uuid.UUID(sys.argv[2]), sys.argv[3]
migrations.upgrade(url)
w = training_metrics_writer(Database(url), spool_dir=spool, max_seconds=3600)
for i in range(1234):
    w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
# no close(): the atexit hook must flush
"""

_CHILD_COUNT = """
import sys
from suho_models.db import Database
db = Database(sys.argv[1])
print(db.scalar("SELECT count() FROM training_metrics FINAL WHERE run_id = %(r)s",
                {"r": sys.argv[2]}))
"""


def _python(code: str, *args: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def test_unclosed_writer_flushes_at_interpreter_exit(
    backend: str, url: str, tmp_path: Path
) -> None:
    run = uuid.uuid4()
    spool = str(tmp_path / "spool")
    if backend == "embedded":
        # A chDB directory belongs to one process, and a process opens one path:
        # the writer and the reader each get a process of their own.
        url = f"clickhouse+chdb:///{tmp_path}/child-chdb/suho_analytics"
    _python(_CHILD_LOG, url, str(run), spool)
    assert _python(_CHILD_COUNT, url, str(run)).strip() == "1234"
    assert not _spool_files(Path(spool))


# --------------------------------------------------------------------------- server restart
@pytest.mark.slow
@pytest.mark.server
def test_rows_survive_a_server_restart_exactly_once(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "server").start()
    url = server.native_url("suho_analytics")
    run = uuid.uuid4()
    try:
        migrations.upgrade(url)
        db = Database(url)
        w = _writer(db, tmp_path, max_rows=200, retry_initial=0.05, retry_max=0.5)
        for i in range(500):
            w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
        assert w.rows_flushed == 400

        assert server.stop() == 0
        for i in range(500, 1_000):  # inserts fail now; rows are kept
            w.log(run_id=run, iteration_number=i, iteration_duration_ms=1.0)
        assert w.flush() is False
        assert w.last_error is not None
        assert w.pending_rows == 600

        server = LocalServer(
            server.path, tcp_port=server.tcp_port, http_port=server.http_port
        ).start()
        assert w.close(timeout=30) is True
        db.close()
        fresh = Database(url)  # a new pool: no connection from before the restart
        try:
            assert _count(fresh, run, final=False) == 1_000
            assert _count(fresh, run) == 1_000
        finally:
            fresh.close()
    finally:
        server.stop()
