"""``suho data import`` end to end on real OHLCV: the ``backtesting`` package's GOOG
(daily) and EURUSD (hourly) bars, read from the installed package at test time
(a test-only dependency, AGPL-3.0: its data files are read, never copied here)."""

from __future__ import annotations

import json
import uuid
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from repositories.features import FeatureTable
from suho.cli import app
from suho_models.db import Database
from suho_models.settings import get_settings
from trainers.data.importer import import_ohlcv
from trainers.data.indicators import FEATURE_COLUMNS, TARGET_COLUMNS, WARMUP_PERIODS
from trainers.data.ohlcv import OhlcvError
from trainers.data.synth import generate_ml_features

DATA = resources.files("backtesting") / "test"
GOOG = Path(str(DATA / "GOOG.csv"))
EURUSD = Path(str(DATA / "EURUSD.csv"))
BTCUSD = Path(str(DATA / "BTCUSD.csv"))

embedded = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


def raw(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def table_name() -> str:
    return f"feat_{uuid.uuid4().hex[:8]}"


def read_all(db: Database, table: str) -> pd.DataFrame:
    t = FeatureTable(db, table)
    return t.read(list(t.schema())).sort_values(["symbol", "time"]).reset_index(drop=True)


def test_goog_daily_import_has_the_synth_columns_and_reimport_changes_nothing(
    db: Database,
) -> None:
    table = table_name()
    result = import_ohlcv(db, [GOOG], table=table)
    bars = len(raw(GOOG))
    assert result.written == {"GOOG": bars - WARMUP_PERIODS - 1}
    assert (result.bar_size.label, result.calendar, result.periods_per_year) == (
        "1d",
        "equities",
        252.0,
    )
    assert any("weekends" in w for w in result.warnings)  # gaps reported, not refused
    stored = FeatureTable(db, table)
    synth_columns = list(generate_ml_features(("EURUSD",), periods=200).columns)
    assert list(stored.schema()) == synth_columns
    assert stored.metadata()["bar_size"] == "1d"
    before = read_all(db, table)
    assert before["time"].is_monotonic_increasing and before["close"].iloc[0] > 0
    # The targets are the next bar's move, from the file's own closes.
    closes = raw(GOOG)["Close"].to_numpy()
    np.testing.assert_allclose(
        before["target_return"], closes[WARMUP_PERIODS + 1 :] / closes[WARMUP_PERIODS:-1] - 1
    )
    again = import_ohlcv(db, [GOOG], table=table)
    assert again.written == {"GOOG": 0} and again.already_stored == {"GOOG": bars - 1}
    pd.testing.assert_frame_equal(read_all(db, table), before)


@embedded
def test_incremental_append_matches_a_one_shot_import(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append, and an import in chunks, give the rows a one-shot import gives."""
    frame = raw(EURUSD)
    first = tmp_path / "EURUSD.csv"
    frame.iloc[:3000].to_csv(first, index=False)
    incremental = table_name()
    import_ohlcv(db, [first], table=incremental)
    step = import_ohlcv(db, [EURUSD], table=incremental)  # the full file: 2,000 new bars
    assert step.written == {"EURUSD": 2000}
    one_shot = table_name()
    import_ohlcv(db, [EURUSD], table=one_shot)
    monkeypatch.setattr("trainers.data.importer.CHUNK_BARS", 700)
    chunked = table_name()
    import_ohlcv(db, [EURUSD], table=chunked)
    b = read_all(db, one_shot)
    assert len(b) == len(frame) - WARMUP_PERIODS - 1
    for a in (read_all(db, incremental), read_all(db, chunked)):
        pd.testing.assert_series_equal(a["time"], b["time"])
        for column in (*FEATURE_COLUMNS, *TARGET_COLUMNS):
            np.testing.assert_allclose(a[column], b[column], rtol=1e-6, atol=1e-9, err_msg=column)


@embedded
def test_spellings_time_zones_and_a_symbol_column(db: Database, tmp_path: Path) -> None:
    upper = {"Open": "OPEN", "High": "HIGH", "Low": "LOW", "Close": "CLOSE", "Volume": "VOL"}
    goog = raw(GOOG).rename(columns={"Unnamed: 0": "Date", **upper})
    goog["Date"] = goog["Date"] + " 16:00:00-05:00"  # New York close, with its offset
    goog["TICKER"] = "GOOG"
    fx = raw(EURUSD).rename(columns={"Unnamed: 0": "Date", **upper})
    fx["TICKER"] = "EURUSD"
    both = tmp_path / "bars.parquet"
    pd.concat([goog, fx]).to_parquet(both)  # a non-range index travels along
    with pytest.raises(OhlcvError, match=r"mixed bar sizes .*1h: EURUSD; 1d: GOOG"):
        import_ohlcv(db, [both], table=table_name())
    table = table_name()
    import_ohlcv(db, [both], symbol="GOOG", table=table)
    got = read_all(db, table)
    assert got["time"].iloc[0] == pd.Timestamp(
        f"{raw(GOOG).iloc[WARMUP_PERIODS, 0]} 21:00", tz="UTC"
    )
    adjusted = raw(GOOG)
    adjusted["Adj Close"] = adjusted["Close"] / 2  # a 2:1 split adjustment
    split = tmp_path / "SPLIT.csv"
    adjusted.to_csv(split, index=False)
    result = import_ohlcv(db, [split], table=(table := table_name()))
    assert "adjusted" in " ".join(result.notes)
    got = read_all(db, table)
    row = adjusted.iloc[WARMUP_PERIODS]
    assert got.loc[0, ["open", "close"]].tolist() == pytest.approx(
        [row["Open"] / 2, row["Close"] / 2]
    )
    naive = tmp_path / "ny.csv"
    raw(GOOG).rename(columns={"Unnamed: 0": "datetime"}).assign(
        datetime=lambda f: f["datetime"] + " 16:00"
    ).to_csv(naive, index=False)
    ny = import_ohlcv(db, [naive], table=table_name(), timezone="America/New_York")
    assert ny.written == {"NY": len(raw(GOOG)) - WARMUP_PERIODS - 1}


def bad_frames() -> list[object]:
    base = raw(GOOG).iloc[:300].reset_index(drop=True)
    cases = []
    dup = pd.concat([base, base.iloc[[10, 20]]]).sort_values("Unnamed: 0", kind="stable")
    cases.append(("duplicate", dup, r"duplicate \(symbol, time\): 2 row\(s\), e\.g\. symbol="))
    cases.append(("unsorted", base.iloc[::-1], r"time not increasing \(unsorted\): 299 row"))
    nan = base.copy()
    nan.loc[[5, 7, 9], "Close"] = np.nan
    cases.append(("nan", nan, r"missing close \(NaN\): 3 row\(s\), e\.g\. .*2004-08-26"))
    zero = base.copy()
    zero.loc[3, "Open"] = 0.0
    zero.loc[4, "Low"] = -1.0
    cases.append(("zero", zero, r"(?s)open <= 0: 1 row.*low <= 0: 1 row"))
    inverted = base.copy()
    inverted.loc[8, ["High", "Low"]] = [90.0, 110.0]
    cases.append(("high<low", inverted, r"high < low: 1 row\(s\), e\.g\. .*high=90\.0, low=110\.0"))
    return [pytest.param(*case, id=case[0]) for case in cases]


@embedded
@pytest.mark.parametrize(("case", "frame", "message"), bad_frames())
def test_bad_bars_are_refused_with_counts_and_examples_and_nothing_is_written(
    db: Database, tmp_path: Path, case: str, frame: pd.DataFrame, message: str
) -> None:
    path = tmp_path / "GOOG.csv"
    frame.to_csv(path, index=False)
    table = table_name()
    with pytest.raises(OhlcvError, match=message):
        import_ohlcv(db, [path], table=table)
    assert not FeatureTable(db, table).exists()


@embedded
def test_a_missing_column_is_named(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    raw(GOOG).drop(columns=["High"]).to_csv(path, index=False)
    with pytest.raises(OhlcvError, match=r"x\.csv: no 'high' column \(has Unnamed: 0, Open"):
        import_ohlcv(db, [path], table=table_name())


@embedded
def test_bar_size_and_calendar_drive_bars_per_year(db: Database) -> None:
    hourly = import_ohlcv(db, [EURUSD], table=table_name())
    assert (hourly.bar_size.label, hourly.calendar, hourly.periods_per_year) == (
        "1h",
        "fx",
        260 * 24,
    )
    monthly = import_ohlcv(db, [BTCUSD], table=table_name())
    assert (monthly.bar_size.label, monthly.periods_per_year) == ("1mo", 12.0)
    assert monthly.written == {"BTCUSD": 156 - WARMUP_PERIODS - 1}
    crypto = import_ohlcv(db, [EURUSD], table=table_name(), calendar="crypto")
    assert crypto.periods_per_year == pytest.approx(365.25 * 24)


@embedded
def test_twenty_years_of_daily_bars_in_one_import(db: Database, tmp_path: Path) -> None:
    """GOOG's daily returns chained over 21 years of business days (252 months)."""
    goog = raw(GOOG)
    days = pd.bdate_range("2000-01-03", periods=21 * 261, tz="UTC")
    ratios = goog[["Open", "High", "Low", "Close"]].div(goog["Close"].shift(), axis=0).iloc[1:]
    cycle = np.resize(np.arange(len(ratios)), len(days))
    r = ratios.to_numpy()[cycle]
    close = 100.0 * np.cumprod(r[:, 3])
    previous = np.r_[100.0, close[:-1]]
    long = pd.DataFrame(
        {
            "Date": days,
            "Open": previous * r[:, 0],
            "High": previous * r[:, 1],
            "Low": previous * r[:, 2],
            "Close": close,
            "Volume": goog["Volume"].to_numpy()[1:][cycle],
        }
    )
    path = tmp_path / "LONG.parquet"
    long.to_parquet(path)
    table = table_name()
    result = import_ohlcv(db, [path], table=table)
    assert result.written == {"LONG": len(days) - WARMUP_PERIODS - 1}
    assert FeatureTable(db, table).count() == len(days) - WARMUP_PERIODS - 1


@embedded
def test_import_from_a_clickhouse_query(db: Database) -> None:
    bars = raw(GOOG).rename(columns={"Unnamed: 0": "time"})
    bars["time"] = pd.to_datetime(bars["time"], utc=True)
    bars["symbol"] = "GOOG"
    source = table_name()
    FeatureTable(db, source).write(bars)
    table = table_name()
    result = import_ohlcv(
        db, query=f"SELECT * FROM {source} WHERE time >= '2005-01-01'", table=table
    )
    kept = int((bars["time"] >= pd.Timestamp("2005-01-01", tz="UTC")).sum())
    assert result.written == {"GOOG": kept - WARMUP_PERIODS - 1}
    with pytest.raises(Exception, match="read-only|readonly|not allowed"):
        import_ohlcv(db, query=f"DROP TABLE {source}", table=table)
    assert FeatureTable(db, source).exists()


def test_cli_import_json_and_errors(embedded_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from suho_models.db import migrations

    url = f"clickhouse+chdb:///{embedded_dir}/imp_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(url)
    monkeypatch.setenv("SUHO_DATABASE_URL", url)
    get_settings.cache_clear()
    runner = CliRunner()
    result = runner.invoke(app, ["data", "import", str(EURUSD), "--table", "fx", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["bar_size"] == "1h" and report["written"] == {"EURUSD": 5000 - WARMUP_PERIODS - 1}
    mixed = runner.invoke(app, ["data", "import", str(EURUSD), str(GOOG), "--quiet"])
    assert mixed.exit_code == 1
    assert "mixed bar sizes" in mixed.output and "GOOG" in mixed.output
    wrong = runner.invoke(app, ["data", "import", str(GOOG), "--calendar", "moon"])
    assert wrong.exit_code != 0 and "moon" in wrong.output


@pytest.fixture
def imported_cli(embedded_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """A CLI on a fresh store holding GOOG (daily, ``goog``) and EURUSD (hourly, ``fx``)."""
    from suho_models.db import migrations

    url = f"clickhouse+chdb:///{embedded_dir}/trn_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(url)
    monkeypatch.setenv("SUHO_DATABASE_URL", url)
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    invoke("data", "import", str(GOOG), "--table", "goog", "--quiet")
    invoke("data", "import", str(EURUSD), "--table", "fx", "--quiet")
    return invoke


def test_supervised_trainer_on_imported_bars_with_one_target(imported_cli) -> None:
    """``--target target_direction`` needs no target_return; --exclude-features works."""
    out = imported_cli(
        "train", "supervised", "--model", "lightgbm", "--source", "goog", "--target",
        "target_direction", "--rounds", "10", "--tune", "0", "--quiet",
        "--exclude-features", "sma_*,ema_*,bb_upper_*,bb_lower_*",
    )  # fmt: skip
    assert "completed" in out
    run = json.loads(imported_cli("runs", "list", "--json"))[0]
    shown = json.loads(imported_cli("runs", "show", run["run_id"], "--json"))
    assert shown["target_variable"] == "target_direction"
    config = json.loads(shown["config_json"])  # the bar size recorded with the run too
    assert (config["bar_size"], config["calendar"]) == ("1d", "equities")
    assert "rsi_14" in shown["features_used"] and "sma_5" not in shown["features_used"]
    assert "majority class" in shown["baselines"] and "last move" in shown["baselines"]
    final = [c for c in shown["checkpoints"] if c["checkpoint_kind"] == "final"][0]
    assert 0 < final["metrics"]["baseline_majority_accuracy"] < 1


def test_rl_trainer_on_hourly_bars_annualises_by_the_hour(imported_cli) -> None:
    out = imported_cli(
        "train", "rl", "--agent", "ppo", "--timesteps", "256", "--source", "fx",
        "--indicators", "rsi_14,macd_norm,close_sma_20_ratio", "--quiet",
    )  # fmt: skip
    assert "completed" in out and "buy-and-hold" in out and "trend rule" in out
    run = json.loads(imported_cli("agents", "list", "--json"))[0]
    shown = json.loads(imported_cli("agents", "show", run["run_id"], "--json"))
    config = json.loads(shown["config_json"])
    assert config["periods_per_year"] == 260 * 24  # hourly FX, not 252 "days"
    assert config["indicators"] == ["rsi_14", "macd_norm", "close_sma_20_ratio"]
    assert "trend rule" in shown["baselines"] and "trend_sharpe_ratio" in shown
    assert ("warning" in shown) == (shown["eval_moving_steps"] == 0)
    imported_cli(
        "train", "rl", "--agent", "ppo", "--timesteps", "128", "--source", "goog",
        "--indicators", "rsi_14", "--periods-per-year", "250", "--quiet",
    )  # fmt: skip
    runs = json.loads(imported_cli("agents", "list", "--json"))
    given = json.loads(imported_cli("agents", "show", runs[0]["run_id"], "--json"))
    assert json.loads(given["config_json"])["periods_per_year"] == 250


def test_only_the_chosen_target_is_required() -> None:
    from trainers.supervised.config import SupervisedConfig

    direction = SupervisedConfig(target="target_direction")
    assert direction.features.target_columns == ["target_direction"]
    schema = {"time": "DateTime64(3)", "symbol": "String", "rsi_14": "Float64",
              "target_direction": "UInt8"}  # fmt: skip
    assert direction.features.resolve(schema).targets == ["target_direction"]


def test_walk_forward_on_real_daily_bars(imported_cli) -> None:
    """``--walk-forward 3``: three out-of-sample blocks after growing pasts, each fold's
    figures in the run's metrics, their mean and spread on the final checkpoint and in
    ``runs show`` with a plain verdict."""
    out = imported_cli(
        "train", "supervised", "--model", "xgboost", "--source", "goog", "--target",
        "target_direction", "--rounds", "15", "--tune", "0", "--quiet",
        "--walk-forward", "3",
    )  # fmt: skip
    assert "walk-forward (3 folds):" in out
    run_id = json.loads(imported_cli("runs", "list", "--json"))[0]["run_id"]
    shown = json.loads(imported_cli("runs", "show", run_id, "--json"))
    assert "Mean over folds" in shown["walk_forward"] and "majority class" in shown["walk_forward"]

    def series(key: str) -> list[tuple[int, float]]:
        body = json.loads(imported_cli("runs", "metrics", run_id, key, "--json"))
        return [(p["step"], p["value"]) for p in body]

    accuracy = series("walk_forward/test_accuracy")
    assert [s for s, _ in accuracy] == [1, 2, 3]
    train_rows = [v for _, v in series("walk_forward/train_rows")]
    test_rows = [v for _, v in series("walk_forward/test_rows")]
    assert train_rows[0] < train_rows[1] < train_rows[2]  # expanding: each fold's past grows
    assert train_rows[1] == train_rows[0] + test_rows[0]  # and takes in the block tested before
    final = [c for c in shown["checkpoints"] if c["checkpoint_kind"] == "final"][0]["metrics"]
    values = [v for _, v in accuracy]
    assert final["walk_forward_folds"] == 3
    assert final["walk_forward_test_accuracy_mean"] == pytest.approx(np.mean(values))
    assert final["walk_forward_test_accuracy_std"] == pytest.approx(np.std(values))
    assert 0.3 < final["walk_forward_baseline_majority_accuracy_mean"] < 0.7

    rolling = imported_cli(
        "train", "supervised", "--model", "lightgbm", "--source", "goog", "--rounds", "5",
        "--tune", "0", "--quiet", "--walk-forward", "3", "--walk-forward-mode", "rolling",
    )  # fmt: skip
    assert "walk-forward (3 folds)" in rolling
    run_id = json.loads(imported_cli("runs", "list", "--json"))[0]["run_id"]
    train_rows = [v for _, v in series("walk_forward/train_rows")]
    assert len(train_rows) == 3 and max(train_rows) - min(train_rows) <= 1  # a fixed window


def test_rl_walk_forward_on_real_hourly_bars(imported_cli) -> None:
    """An agent per fold, trained on the fold's past and evaluated on its block beside
    buy-and-hold and the trend rule; the mean and spread on the final checkpoint."""
    out = imported_cli(
        "train", "rl", "--agent", "a2c", "--timesteps", "200", "--source", "fx",
        "--indicators", "rsi_14,macd_norm", "--quiet", "--walk-forward", "2",
    )  # fmt: skip
    assert "walk-forward (2 folds):" in out and "Mean over folds" in out
    run_id = json.loads(imported_cli("agents", "list", "--json"))[0]["run_id"]
    shown = json.loads(imported_cli("agents", "show", run_id, "--json"))
    assert "buy-and-hold" in shown["walk_forward"]
    bars = json.loads(imported_cli("runs", "metrics", run_id, "walk_forward/test_bars", "--json"))
    sharpe = json.loads(
        imported_cli("runs", "metrics", run_id, "walk_forward/benchmark_sharpe_ratio", "--json")
    )
    assert [p["step"] for p in bars] == [1, 2] == [p["step"] for p in sharpe]
    assert all(p["value"] > 100 for p in bars)  # each block holds hundreds of hourly bars
    final = [c for c in shown["checkpoints"] if c["checkpoint_kind"] == "final"][0]["metrics"]
    assert final["walk_forward_folds"] == 2
    values = [p["value"] for p in sharpe]
    assert final["walk_forward_benchmark_sharpe_ratio_mean"] == pytest.approx(np.mean(values))
    assert values[0] != values[1]  # two different blocks of the market


def test_a_supervised_source_mixing_bar_sizes_is_refused_naming_the_symbols() -> None:
    from trainers.data.source import known_bars
    from trainers.data.spec import FeatureSpec

    hourly = pd.date_range("2024-01-01", periods=48, freq="h", tz="UTC")
    daily = pd.date_range("2024-01-01", periods=48, freq="D", tz="UTC")
    frame = pd.DataFrame(
        {
            "time": [*hourly, *daily],
            "symbol": ["EURUSD"] * 48 + ["GOOG"] * 48,
            "x": np.arange(96.0),
            "target_direction": np.arange(96) % 2,
        }
    )
    spec = FeatureSpec(target_columns=["target_direction"])
    roles = spec.resolve(frame)
    with pytest.raises(ValueError, match=r"mixed bar sizes in one source \(1h: EURUSD; 1d: GOOG\)"):
        known_bars("mixed.parquet", spec, None, frame, roles)
    one = known_bars("one.parquet", spec, None, frame[frame.symbol == "GOOG"], roles)
    assert one is not None and one.bar is not None and one.bar.label == "1d"
    irregular = frame.assign(time=pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        np.arange(96) * 7, unit="s"))  # fmt: skip
    assert known_bars("ticks.parquet", spec, None, irregular, roles) is None  # not bars
