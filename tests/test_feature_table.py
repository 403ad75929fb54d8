"""Contract tests of the feature table reader, on both backends: our own table and
tables an upstream pipeline made with other engines and keys."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pandas as pd
import pytest

from repositories.errors import InvalidInputError
from repositories.features import FeatureTable
from suho_models.base import engine_merges_versions, sorting_key_names
from suho_models.db import Database

START = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).replace(
    hour=0, minute=0, second=0, microsecond=0
)


def frame(values: float = 1.0) -> pd.DataFrame:
    times = [START + dt.timedelta(hours=h) for h in range(6)]
    return pd.DataFrame(
        {
            "time": [t for t in times for _ in ("EURUSD", "XAUUSD")],
            "symbol": ["EURUSD", "XAUUSD"] * len(times),
            "f1": [values * i for i in range(2 * len(times))],
        }
    )


def user_table(db: Database, engine: str, order_by: str) -> FeatureTable:
    name = f"feat_{uuid.uuid4().hex[:8]}"
    db.execute(
        f"CREATE TABLE `{name}` (time DateTime64(3, 'UTC'), symbol String, f1 Float64) "
        f"ENGINE = {engine} ORDER BY ({order_by})"
    )
    table = FeatureTable(db, name)
    table.write(frame())
    return table


def clauses(table: FeatureTable, **filters: object) -> tuple[bool, str, str]:
    """(FINAL?, PREWHERE conditions, WHERE conditions) of the SQL ``read`` sends."""
    sql, params = table.read_sql(["f1"], **filters)  # type: ignore[arg-type]
    assert params == {}  # the values are in the SQL
    sql = " ".join(sql.split()).replace(f'"{table.table}".', "").replace('"', "")
    prewhere = re.search(r" PREWHERE (.*?)(?: WHERE | ORDER BY )", sql)
    where = re.search(r"(?<!PRE)WHERE (.*?) ORDER BY ", sql)
    return (
        " FINAL " in sql,
        prewhere.group(1) if prewhere else "",
        where.group(1) if where else "",
    )


def test_engine_and_key_helpers() -> None:
    assert engine_merges_versions("ReplacingMergeTree")
    assert engine_merges_versions("ReplicatedCollapsingMergeTree")
    assert not engine_merges_versions("MergeTree")
    assert not engine_merges_versions("ReplicatedMergeTree")
    assert not engine_merges_versions("View")
    assert sorting_key_names("symbol, time") == {"symbol", "time"}
    assert sorting_key_names("`symbol`, toDate(time)") == {"symbol"}
    assert sorting_key_names("") == frozenset()


def test_own_table_reads_each_row_once_filtering_keys_before_final(db: Database) -> None:
    table = FeatureTable(db, f"feat_{uuid.uuid4().hex[:8]}")
    table.write(frame(1.0))
    table.write(frame(2.0))  # the same (symbol, time) keys again: the newer rows win
    end = START + dt.timedelta(hours=2)
    got = table.read(["time", "symbol", "f1"], start=START, end=end, symbols=["XAUUSD"])
    assert list(got["symbol"]) == ["XAUUSD"] * 3
    assert list(got["time"]) == [pd.Timestamp(START + dt.timedelta(hours=h)) for h in range(3)]
    assert list(got["f1"]) == [2.0, 6.0, 10.0]
    assert table.count() == 12  # as read: the second write replaced the first
    final, prewhere, where = clauses(table, start=START, end=end, symbols=["XAUUSD"])
    assert final
    assert prewhere == (
        f"time >= '{START:%Y-%m-%d %H:%M:%S.%f}' AND time <= '{end:%Y-%m-%d %H:%M:%S.%f}' "
        "AND symbol IN ('XAUUSD')"
    )
    assert where == ""


def test_plain_merge_tree_is_read_without_final(db: Database) -> None:
    """A plain MergeTree rejects FINAL (ILLEGAL_FINAL): an upstream table must still read."""
    table = user_table(db, "MergeTree", "time")
    got = table.read(["symbol", "f1"], symbols=["EURUSD"])
    assert list(got["f1"]) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert clauses(table, symbols=["EURUSD"]) == (False, "", "symbol IN ('EURUSD')")


def test_other_keys_move_only_their_own_columns_before_final(db: Database) -> None:
    table = user_table(db, "ReplacingMergeTree", "time, symbol")
    since = f"time >= '{START:%Y-%m-%d %H:%M:%S.%f}'"
    assert clauses(table, start=START, symbols=["EURUSD"]) == (
        True,
        f"{since} AND symbol IN ('EURUSD')",
        "",
    )
    # Versions of a row share (symbol, hour) but not necessarily `time`: the time
    # filter has to wait until FINAL has picked the newest version.
    other = user_table(db, "ReplacingMergeTree", "symbol, toStartOfHour(time)")
    assert clauses(other, start=START, symbols=["EURUSD"]) == (True, "symbol IN ('EURUSD')", since)
    assert list(other.read(["f1"], start=START, symbols=["EURUSD"])["f1"]) == [
        0.0, 2.0, 4.0, 6.0, 8.0, 10.0,
    ]  # fmt: skip


def test_missing_table_and_bad_names_are_named(db: Database) -> None:
    with pytest.raises(InvalidInputError, match="feature table 'nowhere' does not exist"):
        FeatureTable(db, "nowhere").read(["f1"])
    with pytest.raises(InvalidInputError, match=r"table: not a plain identifier \(got 'a;b'\)"):
        FeatureTable(db, "a;b")
    table = user_table(db, "MergeTree", "time")
    with pytest.raises(InvalidInputError, match=r"column: not a plain identifier \(got 'f1`'\)"):
        table.read(["f1`"])
    with pytest.raises(InvalidInputError, match=r"no column 'f2' \(has time, symbol, f1\)"):
        table.read(["f2"])
    with pytest.raises(InvalidInputError, match=r"no column 'ts' \(has time, symbol, f1\)"):
        FeatureTable(db, table.table, time_column="ts").read(["f1"])
