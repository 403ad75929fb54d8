"""Writes of any length: one INSERT touches at most 100 partitions (ClickHouse refuses
more with TOO_MANY_PARTS), so long histories are split, on both backends."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from repositories.batch_writer import training_metrics_writer
from repositories.features import FeatureTable
from suho_models.db import Database
from suho_models.db.partitions import month_numbers, monthly_column, split_by_partition


def daily_bars(years: int, symbols: tuple[str, ...] = ("GOOG", "EURUSD")) -> pd.DataFrame:
    times = pd.date_range("2000-01-03", periods=years * 365, freq="D", tz="UTC")
    return pd.DataFrame(
        {
            "time": np.repeat(times, len(symbols)),
            "symbol": np.tile(np.array(symbols, dtype=object), len(times)),
            "close": np.arange(len(times) * len(symbols), dtype=np.float64),
        }
    )


def test_split_keeps_every_row_and_at_most_100_months_per_chunk() -> None:
    frame = daily_bars(21)
    shuffled = frame.sample(frac=1.0, random_state=0)
    for source in (frame, shuffled):  # time-ordered input is sliced, shuffled is gathered
        data = pa.Table.from_pandas(source, preserve_index=False)
        chunks = split_by_partition(data, "time")
        assert len(chunks) == 3  # 252 months
        assert sum(c.num_rows for c in chunks) == len(frame)
        months = [set(month_numbers(c.column("time")).tolist()) for c in chunks]
        assert all(len(m) <= 100 for m in months)
        assert set().union(*months) == set(month_numbers(data.column("time")).tolist())
        assert all(max(a) < min(b) for a, b in zip(months, months[1:], strict=False))
        joined = pa.concat_tables(chunks).to_pandas()
        assert sorted(joined["close"]) == sorted(source["close"])


def test_months_are_counted_in_the_column_time_zone() -> None:
    stamp = pa.array([pd.Timestamp("2020-01-31 23:30", tz="UTC")])
    assert month_numbers(stamp).tolist() == [2020 * 12]
    assert month_numbers(stamp, "Asia/Tokyo").tolist() == [2020 * 12 + 1]
    assert monthly_column("toYYYYMM(recorded_at)") == "recorded_at"
    assert monthly_column("toYYYYMM(`time`)") == "time"
    assert monthly_column("toYYYYMMDD(time)") is None
    assert monthly_column("") is None


def test_twenty_years_of_daily_bars_go_in_one_write(db: Database) -> None:
    frame = daily_bars(21)
    table = FeatureTable(db, f"feat_{uuid.uuid4().hex[:8]}")
    assert table.write(frame) == len(frame)
    assert table.count() == len(frame)
    span = db.execute(
        f"SELECT uniqExact(toYYYYMM(time)), min(time), max(time) FROM `{table.table}`"
    )[0]
    assert span[0] == 252
    assert pd.Timestamp(span[1]).tz_localize(None) == frame["time"].min().tz_localize(None)
    # The same rows again: one row per (symbol, time) still.
    table.write(frame)
    assert table.count() == len(frame)


def test_a_failed_first_write_leaves_no_table_behind(db: Database) -> None:
    table = FeatureTable(db, f"feat_{uuid.uuid4().hex[:8]}")
    bad = daily_bars(1)
    bad["note"] = [1 if i % 2 else "x" for i in range(len(bad))]  # not one Arrow type
    with pytest.raises(pa.ArrowException):
        table.write(bad)
    assert not table.exists()


def test_a_failed_write_into_an_existing_table_keeps_it(db: Database) -> None:
    table = FeatureTable(db, f"feat_{uuid.uuid4().hex[:8]}")
    table.write(daily_bars(1))
    bad = daily_bars(1)
    bad["close"] = ["x"] * len(bad)
    with pytest.raises(Exception, match="close|String|Float64|convert|type"):
        table.write(bad)
    assert table.count() == len(daily_bars(1))


def test_training_metrics_spanning_ten_years_go_in_one_flush(db: Database, tmp_path: Path) -> None:
    """The batch writer's INSERTs are split too (recorded_at is the partition key)."""
    run = uuid.uuid4()
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1)
    stamps = [start + dt.timedelta(days=30 * i) for i in range(130)]  # > 100 months
    with training_metrics_writer(db, spool_dir=tmp_path / "spool", max_seconds=3600.0) as w:
        w.log_columns(
            {
                "run_id": run,
                "iteration_number": np.arange(len(stamps), dtype=np.int64),
                "train_loss": np.linspace(1.0, 0.1, len(stamps)),
                "recorded_at": stamps,
            }
        )
    assert w.pending_rows == 0
    got = db.scalar(
        "SELECT count() FROM training_metrics FINAL WHERE run_id = %(r)s", {"r": str(run)}
    )
    assert got == len(stamps)


def test_constant_columns_reach_every_row_of_a_split_write(db: Database) -> None:
    """The run's ids and the version time given once (a literal on the embedded engine,
    repeated columns over a server) land on every row, exactly, across 150 months."""
    from repositories.arrow_schema import UUID_ARROW_TYPE

    checkpoint, run = uuid.uuid4(), uuid.uuid4()
    version = dt.datetime(2026, 12, 7, 21, 30, 15, 123456, tzinfo=dt.UTC)
    times = pd.date_range("2010-01-01", periods=150, freq="MS", tz="UTC")
    data = pa.table(
        {
            "symbol": pa.array(["EURUSD", "GOOG"] * 75),
            "timestamp": pa.array(times).cast(pa.timestamp("ms", tz="UTC")),
            "prediction": pa.array(np.arange(150, dtype=np.float64)),
            "probability": pa.array([None, 0.25] * 75, pa.float64()),
        }
    )
    constants = {
        "checkpoint_id": pa.scalar(checkpoint.bytes, UUID_ARROW_TYPE),
        "run_id": pa.scalar(run.bytes, UUID_ARROW_TYPE),
        "created_at": pa.scalar(version, pa.timestamp("us", tz="UTC")),
    }
    db.insert_arrow("model_predictions", data, constants=constants)
    rows = db.execute(
        "SELECT toString(checkpoint_id), toString(run_id), created_at, symbol, timestamp, "
        "prediction, probability FROM model_predictions ORDER BY timestamp"
    )
    assert len(rows) == 150
    assert {(r[0], r[1], r[2]) for r in rows} == {(str(checkpoint), str(run), version)}
    assert [r[4] for r in rows] == list(times.to_pydatetime())
    assert [r[5] for r in rows] == list(range(150))
    assert [r[6] for r in rows[:2]] == [None, 0.25] and rows[1][3] == "GOOG"

    with pytest.raises(ValueError, match="constant column 'symbol' is also a column"):
        db.insert_arrow("model_predictions", data, constants={"symbol": pa.scalar("X")})
    with pytest.raises(ValueError, match="constant column 'nope': the table has no such"):
        db.insert_arrow("model_predictions", data, constants={"nope": pa.scalar(1)})
