"""Tests for trainers.data: synthetic ml_features, FeatureSpec, chronological splits, CV."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from trainers.data import (
    FEATURE_COLUMNS,
    OHLCV_COLUMNS,
    TARGET_COLUMNS,
    WARMUP_PERIODS,
    FeatureSpec,
    FeatureSpecError,
    chronological_split,
    compute_features,
    feature_columns,
    generate_ml_features,
    simulate_ohlcv,
    time_series_cv,
)

START = datetime(2024, 1, 1, tzinfo=UTC)
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return generate_ml_features(start=START)


# --------------------------------------------------------------------------- synth


def test_columns_shape_and_dtypes(table: pd.DataFrame) -> None:
    assert len(FEATURE_COLUMNS) == 110
    assert len(set(FEATURE_COLUMNS)) == 110
    assert feature_columns() == list(FEATURE_COLUMNS)
    expected = ["time", "symbol", *OHLCV_COLUMNS, *FEATURE_COLUMNS, *TARGET_COLUMNS]
    assert list(table.columns) == expected
    assert len(table) == 4 * (2000 - WARMUP_PERIODS - 1) == 7600
    assert str(table["time"].dt.tz) == "UTC"
    assert table["symbol"].map(type).eq(str).all()
    for col in [*OHLCV_COLUMNS, *FEATURE_COLUMNS, "target_return"]:
        assert table[col].dtype == np.float64, col
    assert table["target_direction"].dtype == np.uint8
    numeric = table[[*OHLCV_COLUMNS, *FEATURE_COLUMNS, *TARGET_COLUMNS]].to_numpy(np.float64)
    assert np.isfinite(numeric).all()


def test_sorted_by_time_symbol_and_rectangular(table: pd.DataFrame) -> None:
    keys = table[["time", "symbol"]]
    assert keys.equals(keys.sort_values(["time", "symbol"]).reset_index(drop=True))
    assert not keys.duplicated().any()
    assert table.groupby("time").size().eq(4).all()
    assert sorted(table["symbol"].unique()) == list(SYMBOLS)
    assert table["time"].iloc[0] == pd.Timestamp(START) + WARMUP_PERIODS * pd.Timedelta("1h")
    # the last simulated bar (start + 1999h) has no next bar, so the last kept one is 1998h
    assert table["time"].iloc[-1] == pd.Timestamp(START) + 1998 * pd.Timedelta("1h")


def test_same_seed_same_frame_other_seed_other_frame() -> None:
    a = generate_ml_features(start=START, periods=400, seed=7)
    b = generate_ml_features(start=START, periods=400, seed=7)
    c = generate_ml_features(start=START, periods=400, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert a.shape == c.shape
    assert not np.allclose(a["close"], c["close"])
    assert not np.allclose(a["rsi_14"], c["rsi_14"])


def test_symbol_streams_independent_of_the_other_symbols(table: pd.DataFrame) -> None:
    alone = generate_ml_features(symbols=["GBPUSD"], start=START)
    in_panel = table[table["symbol"] == "GBPUSD"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, in_panel)
    reordered = generate_ml_features(symbols=list(reversed(SYMBOLS)), start=START)
    pd.testing.assert_frame_equal(reordered, table)


def test_default_start_is_recent_and_utc() -> None:
    df = generate_ml_features(symbols=["EURUSD"], periods=300)
    today = pd.Timestamp.now(tz="UTC").floor("D")
    assert str(df["time"].dt.tz) == "UTC"
    # last simulated bar is today 00:00 minus 1h, and it is dropped (no target)
    assert df["time"].max() <= today - pd.Timedelta("2h")
    assert df["time"].min() >= today - pd.Timedelta(hours=300) - pd.Timedelta("1D")


def test_naive_and_non_utc_start_are_interpreted_as_utc() -> None:
    naive = generate_ml_features(symbols=["EURUSD"], periods=200, start=datetime(2024, 1, 1))
    berlin = pd.Timestamp("2024-01-01 01:00", tz="Europe/Berlin")
    shifted = generate_ml_features(symbols=["EURUSD"], periods=200, start=berlin)
    pd.testing.assert_frame_equal(naive, shifted)
    assert naive["time"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC") + timedelta(hours=99)


def test_ohlc_consistency_and_positive_volume(table: pd.DataFrame) -> None:
    o, h, lo, c, v = (table[col] for col in OHLCV_COLUMNS)
    assert (h >= np.maximum(o, c)).all()
    assert (lo <= np.minimum(o, c)).all()
    assert (lo > 0).all()
    assert (v > 0).all()
    assert (h > lo).all()


def test_prices_look_like_their_market(table: pd.DataFrame) -> None:
    last = table.groupby("symbol")["close"].median()
    assert 0.8 < last["EURUSD"] < 1.4
    assert 100 < last["USDJPY"] < 200
    assert 1000 < last["XAUUSD"] < 3500
    # volatility clustering: |returns| are positively autocorrelated
    r = table[table["symbol"] == "XAUUSD"]["ret_1"].abs()
    assert r.autocorr(lag=1) > 0.05


def test_bounded_oscillators(table: pd.DataFrame) -> None:
    for col in ["rsi_6", "rsi_14", "rsi_28", "stoch_k_14", "stoch_d_28", "mfi_14"]:
        assert table[col].between(0, 100).all(), col
    for col in ["williams_r_14", "williams_r_28"]:
        assert table[col].between(-100, 0).all(), col
    assert table["rsi_14"].std() > 5  # not a constant
    for col in ["hour_sin", "hour_cos", "dow_sin", "dow_cos"]:
        assert table[col].between(-1, 1).all(), col
    assert (table["bb_upper_20"] >= table["bb_lower_20"]).all()
    assert (table["atr_14"] > 0).all()


def test_some_features_match_a_plain_pandas_reference(table: pd.DataFrame) -> None:
    raw = simulate_ohlcv(start=START)
    g = raw.groupby("symbol")["close"]
    ref = pd.DataFrame(
        {
            "time": raw["time"],
            "symbol": raw["symbol"],
            "sma_20": g.transform(lambda s: s.rolling(20).mean()),
            "ret_24": g.transform(lambda s: s.pct_change(24)),
            "mom_10": g.transform(lambda s: s.diff(10)),
        }
    )
    merged = table[["time", "symbol", "sma_20", "ret_24", "mom_10", "hour_sin"]].merge(
        ref, on=["time", "symbol"], suffixes=("", "_ref")
    )
    assert len(merged) == len(table)
    for col in ["sma_20", "ret_24", "mom_10"]:
        np.testing.assert_allclose(merged[col], merged[f"{col}_ref"], rtol=1e-9, err_msg=col)
    hours = merged["time"].dt.hour
    np.testing.assert_allclose(merged["hour_sin"], np.sin(2 * np.pi * hours / 24), atol=1e-12)


def test_generated_features_equal_compute_features_on_the_raw_bars(table: pd.DataFrame) -> None:
    raw = simulate_ohlcv(start=START)
    feats = pd.concat([raw[["time", "symbol"]], compute_features(raw)], axis=1)
    merged = table[["time", "symbol"]].merge(feats, on=["time", "symbol"], how="left")
    pd.testing.assert_frame_equal(
        merged[list(FEATURE_COLUMNS)], table[list(FEATURE_COLUMNS)], check_exact=True
    )


def test_compute_features_is_order_and_panel_shape_independent() -> None:
    raw = simulate_ohlcv(start=START, periods=300)
    base = compute_features(raw)
    shuffled = raw.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(compute_features(shuffled).loc[raw.index], base)
    # ragged panel: drop GBPUSD's first 50 bars; other symbols must be unaffected
    ragged = raw.drop(raw.index[(raw["symbol"] == "GBPUSD")][:50])
    out = compute_features(ragged)
    others = ragged["symbol"] != "GBPUSD"
    pd.testing.assert_frame_equal(out[others], base.loc[ragged.index[others]])


def test_no_look_ahead_in_features() -> None:
    raw = simulate_ohlcv(start=START, periods=600, seed=3)
    cutoff = raw["time"].iloc[0] + pd.Timedelta(hours=400)
    future = raw["time"] > cutoff
    rng = np.random.default_rng(0)
    shock = np.exp(rng.normal(0.0, 0.05, future.sum()))
    perturbed = raw.copy()
    for col in ["open", "high", "low", "close"]:
        perturbed.loc[future, col] = raw.loc[future, col] * shock
    perturbed.loc[future, "volume"] = raw.loc[future, "volume"] * rng.uniform(0.2, 5, future.sum())

    before, after = compute_features(raw), compute_features(perturbed)
    past = ~future
    pd.testing.assert_frame_equal(before[past], after[past], check_exact=True)
    # sanity: the perturbation does reach features after the cutoff
    assert not np.allclose(before.loc[future, "ret_1"], after.loc[future, "ret_1"])


def test_targets_are_the_next_bar() -> None:
    df = generate_ml_features(start=START, periods=500, seed=11)
    raw = simulate_ohlcv(start=START, periods=500, seed=11)
    nxt = raw.assign(next_close=raw.groupby("symbol")["close"].shift(-1))
    merged = df.merge(nxt[["time", "symbol", "next_close"]], on=["time", "symbol"])
    assert len(merged) == len(df)
    np.testing.assert_allclose(merged["target_return"], merged["next_close"] / merged["close"] - 1)
    # within the frame too: next row of the same symbol (all but each symbol's last row)
    by_sym = df.groupby("symbol")["close"]
    expected = by_sym.shift(-1) / df["close"] - 1
    has_next = expected.notna()
    assert has_next.sum() == len(df) - 4
    np.testing.assert_allclose(df.loc[has_next, "target_return"], expected[has_next])
    assert (df["target_direction"] == (df["target_return"] > 0)).all()
    assert 0.4 < df["target_direction"].mean() < 0.6


def test_features_ignore_the_very_next_bar() -> None:
    raw = simulate_ohlcv(symbols=["EURUSD"], start=START, periods=300)
    t = raw["time"].iloc[200]
    moved = raw.copy()
    nxt = moved["time"] == t + pd.Timedelta("1h")
    moved.loc[nxt, ["open", "high", "low", "close"]] *= 1.01
    same = raw["time"] <= t
    pd.testing.assert_frame_equal(compute_features(raw)[same], compute_features(moved)[same])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"periods": WARMUP_PERIODS + 1}, "too short"),
        ({"symbols": ["EURUSD", "EURUSD"]}, "unique"),
        ({"symbols": []}, "non-empty"),
        ({"symbols": "EURUSD"}, "sequence"),
    ],
)
def test_generator_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        generate_ml_features(start=START, **kwargs)


def test_unknown_symbols_and_other_frequencies() -> None:
    df = generate_ml_features(symbols=["ACME", "ZZZ"], periods=300, freq="15min", start=START)
    assert len(df) == 2 * (300 - WARMUP_PERIODS - 1)
    assert df.drop_duplicates("time")["time"].diff().dropna().eq(pd.Timedelta("15min")).all()
    assert np.isfinite(df[list(FEATURE_COLUMNS)].to_numpy()).all()


def test_default_generation_is_fast() -> None:
    generate_ml_features(start=START)  # warm caches/imports
    t0 = time.perf_counter()
    generate_ml_features(start=START)
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.slow
def test_200k_rows_generation() -> None:
    symbols = [f"SYM{i}" for i in range(8)]
    t0 = time.perf_counter()
    df = generate_ml_features(symbols=symbols, periods=25_000 + WARMUP_PERIODS + 1, start=START)
    elapsed = time.perf_counter() - t0
    assert df.shape == (200_000, 2 + 5 + 110 + 2)
    assert elapsed < 10.0


# --------------------------------------------------------------------------- spec


def test_default_spec_resolves_the_synthetic_table(table: pd.DataFrame) -> None:
    resolved = FeatureSpec().resolve(table)
    assert resolved.features == list(FEATURE_COLUMNS)
    assert resolved.targets == list(TARGET_COLUMNS)
    assert (resolved.time, resolved.symbol) == ("time", "symbol")
    assert not set(resolved.features) & {*OHLCV_COLUMNS, "time", "symbol", *TARGET_COLUMNS}
    assert resolved.columns == ["time", "symbol", *FEATURE_COLUMNS, *TARGET_COLUMNS]
    assert FeatureSpec().validate_frame(table) == resolved


def test_spec_resolves_a_clickhouse_schema(table: pd.DataFrame) -> None:
    schema = {
        "time": "DateTime64(3, 'UTC')",
        "symbol": "LowCardinality(String)",
        **{c: "Float64" for c in OHLCV_COLUMNS},
        **{c: "Nullable(Float64)" for c in FEATURE_COLUMNS},
        "target_direction": "UInt8",
        "target_return": "Float64",
    }
    assert FeatureSpec().resolve(schema) == FeatureSpec().resolve(table)
    pairs = list(schema.items())
    assert FeatureSpec().resolve(pairs).features == list(FEATURE_COLUMNS)
    with pytest.raises(FeatureSpecError, match=r"'regime'.*String"):
        FeatureSpec().resolve({**schema, "regime": "LowCardinality(String)"})


def test_only_one_target_keeps_the_other_target_out_of_features(table: pd.DataFrame) -> None:
    resolved = FeatureSpec(target_columns=["target_direction"]).resolve(table)
    assert resolved.targets == ["target_direction"]
    assert "target_return" not in resolved.features
    assert len(resolved.features) == 110


def test_include_exclude_globs(table: pd.DataFrame) -> None:
    spec = FeatureSpec(include=["rsi_*", "macd*"], exclude=["macd_signal*", "rsi_6"])
    assert spec.resolve(table).features == [
        "rsi_14",
        "rsi_28",
        "macd",
        "macd_hist",
        "macd_norm",
        "macd_hist_norm",
    ]


def test_include_pattern_matching_nothing_is_named(table: pd.DataFrame) -> None:
    with pytest.raises(FeatureSpecError, match=r"include pattern 'adx_\*' matched no column"):
        FeatureSpec(include=["rsi_*", "adx_*"]).resolve(table)
    with pytest.raises(FeatureSpecError, match="'close'.*reserved.*feature_columns"):
        FeatureSpec(include=["close"]).resolve(table)


def test_explicit_features_may_name_price_columns(table: pd.DataFrame) -> None:
    resolved = FeatureSpec(feature_columns=["close", "rsi_14", "volume"]).resolve(table)
    assert resolved.features == ["close", "rsi_14", "volume"]


@pytest.mark.parametrize(
    ("spec", "column"),
    [
        (FeatureSpec(feature_columns=["rsi_14", "rsi_99"]), "rsi_99"),
        (FeatureSpec(time_column="ts"), "ts"),
        (FeatureSpec(symbol_column="ticker"), "ticker"),
        (FeatureSpec(target_columns=["target_5"]), "target_5"),
    ],
)
def test_missing_column_is_named(table: pd.DataFrame, spec: FeatureSpec, column: str) -> None:
    with pytest.raises(FeatureSpecError, match=f"column '{column}' not found") as err:
        spec.resolve(table)
    assert isinstance(err.value, ValueError)


def test_missing_column_suggests_a_close_name(table: pd.DataFrame) -> None:
    with pytest.raises(FeatureSpecError, match="did you mean 'rsi_14'"):
        FeatureSpec(feature_columns=["rsi14"]).resolve(table)


def test_non_numeric_feature_is_named_with_its_dtype(table: pd.DataFrame) -> None:
    df = table.head(50).assign(source="synthetic", seen_at=table["time"].head(50))
    with pytest.raises(
        FeatureSpecError, match=r"'source' \(dtype str\).*'seen_at' \(dtype datetime64"
    ):
        FeatureSpec().resolve(df)
    assert FeatureSpec(exclude=["source", "seen_at"]).resolve(df).features == list(FEATURE_COLUMNS)
    with pytest.raises(FeatureSpecError, match="'symbol'"):
        FeatureSpec(feature_columns=["rsi_14", "symbol"]).resolve(df)


def test_non_numeric_target_is_named(table: pd.DataFrame) -> None:
    df = table.head(10).assign(target_direction="up")
    with pytest.raises(FeatureSpecError, match="target column is not numeric: 'target_direction'"):
        FeatureSpec().resolve(df)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"feature_columns": ["rsi_14"], "include": ["rsi_*"]}, "not both"),
        ({"feature_columns": ["rsi_14", "target_return"]}, "both targets and features"),
        ({"feature_columns": ["rsi_14", "rsi_14"]}, "more than once"),
        ({"target_columns": ["time"]}, "also a target"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_inconsistent_spec_is_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureSpec(**kwargs)


def test_validate_frame_catches_bad_contents(table: pd.DataFrame) -> None:
    spec = FeatureSpec()
    small = table.head(40).copy()

    dup = pd.concat([small, small.iloc[[3]]])
    with pytest.raises(FeatureSpecError, match="duplicate"):
        spec.validate_frame(dup)

    nan_target = small.copy()
    nan_target.loc[5, "target_return"] = np.nan
    with pytest.raises(FeatureSpecError, match="'target_return' has 1 nulls"):
        spec.validate_frame(nan_target)

    inf_feature = small.copy()
    inf_feature.loc[7, "cci_14"] = np.inf
    with pytest.raises(FeatureSpecError, match=r"infinite values: \['cci_14'\]"):
        spec.validate_frame(inf_feature)

    text_time = small.assign(time=small["time"].astype(str))
    with pytest.raises(FeatureSpecError, match="'time' must be datetime"):
        spec.validate_frame(text_time)

    nan_feature = small.copy()
    nan_feature.loc[2, "rsi_14"] = np.nan  # allowed: boosting libraries handle NaN
    assert spec.validate_frame(nan_feature).features == list(FEATURE_COLUMNS)


# --------------------------------------------------------------------------- split


def test_chronological_split_has_no_overlap_and_right_counts(table: pd.DataFrame) -> None:
    split = chronological_split(table, "time")
    n_times = table["time"].nunique()
    assert n_times == 1900
    assert [split.train_info.timestamps, split.val_info.timestamps, split.test_info.timestamps] == [
        1330,
        285,
        285,
    ]
    assert [len(split.train), len(split.val), len(split.test)] == [4 * 1330, 4 * 285, 4 * 285]
    assert split.train["time"].max() < split.val["time"].min()
    assert split.val["time"].max() < split.test["time"].min()
    parts = {"train": split.train, "val": split.val, "test": split.test}
    for name, part in parts.items():
        info = split.info[name]
        assert (info.start, info.end) == (part["time"].min(), part["time"].max())
        assert info.rows == len(part)
        assert part.groupby("time").size().eq(4).all()  # all symbols of a time together
    union = pd.concat(parts.values())
    assert sorted(union.index) == list(table.index)
    assert split.ratios == (0.7, 0.15, 0.15)
    summary = split.summary()
    assert summary["val"]["rows"] == 1140
    assert summary["test"]["end"] == table["time"].max().isoformat()


def test_chronological_split_sorts_shuffled_input(table: pd.DataFrame) -> None:
    shuffled = table.sample(frac=1.0, random_state=1)
    a, b = chronological_split(table), chronological_split(shuffled)
    for x, y in [(a.train, b.train), (a.val, b.val), (a.test, b.test)]:
        assert x["time"].is_monotonic_increasing and y["time"].is_monotonic_increasing
        assert sorted(x.index) == sorted(y.index)


def test_split_counts_round_to_the_nearest_timestamp() -> None:
    df = pd.DataFrame({"time": pd.date_range(START, periods=10, freq="D"), "x": range(10)})
    split = chronological_split(df, "time", (0.5, 0.3, 0.2))
    assert [len(split.train), len(split.val), len(split.test)] == [5, 3, 2]
    assert split.train["x"].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("ratios", "named"),
    [
        ((0.7, 0.2, 0.2), "sum to 1.1"),
        ((0.8, -0.1, 0.3), "val=-0.1"),
        ((0.7, 0.3, 0.0), "test=0.0"),
        ((0.5, 0.5), "got 2"),
        ((0.6, float("nan"), 0.4), "val=nan"),
    ],
)
def test_bad_ratios_are_named(table: pd.DataFrame, ratios: tuple, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"ratios {ratios!r}")) as err:
        chronological_split(table, "time", ratios)
    assert named in str(err.value)


def test_ratios_within_tolerance_are_accepted(table: pd.DataFrame) -> None:
    split = chronological_split(table, "time", (0.6, 0.2, 0.2 + 5e-10))
    assert split.train_info.timestamps == 1140


def test_split_needs_enough_timestamps_and_the_time_column() -> None:
    df = pd.DataFrame({"time": pd.date_range(START, periods=2, freq="h"), "x": [1, 2]})
    with pytest.raises(ValueError, match="too few"):
        chronological_split(df)
    with pytest.raises(ValueError, match="'ts'"):
        chronological_split(df, "ts")


# --------------------------------------------------------------------------- CV


def test_cv_on_a_row_count_matches_time_series_split() -> None:
    folds = time_series_cv(12, n_splits=3)
    expected = [(range(0, 3), range(3, 6)), (range(0, 6), range(6, 9)), (range(0, 9), range(9, 12))]
    assert len(folds) == 3
    for (train, val), (exp_train, exp_val) in zip(folds, expected, strict=True):
        assert train.tolist() == list(exp_train)
        assert val.tolist() == list(exp_val)
    # a remainder goes to the first training window; gap trims the end of each train window
    folds = time_series_cv(14, n_splits=3, gap=2)
    assert [f[0].tolist() for f in folds] == [[0, 1, 2], [0, 1, 2, 3, 4, 5], list(range(9))]
    assert [f[1].tolist() for f in folds] == [[5, 6, 7], [8, 9, 10], [11, 12, 13]]


@pytest.mark.parametrize("gap", [0, 5])
def test_cv_on_panel_times_is_expanding_gapped_and_leak_free(table: pd.DataFrame, gap: int) -> None:
    times = table["time"].sample(frac=1.0, random_state=2).reset_index(drop=True)
    uniq = np.sort(times.unique())
    folds = time_series_cv(times, n_splits=5, gap=gap)
    assert len(folds) == 5
    fold_size = len(uniq) // 6
    prev_train: set[int] = set()
    prev_val_max = None
    for train, val in folds:
        assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
        assert not set(train) & set(val)
        train_t, val_t = times[train], times[val]
        assert train_t.max() < val_t.min()
        # exactly `gap` timestamps lie strictly between the train and validation windows
        between = ((uniq > train_t.max()) & (uniq < val_t.min())).sum()
        assert between == gap
        assert val_t.nunique() == fold_size
        assert len(val) == 4 * fold_size  # every symbol of each validation time
        assert len(train) == 4 * train_t.nunique()
        assert prev_train < set(train)  # strictly expanding
        if prev_val_max is not None:
            assert val_t.min() > prev_val_max
        prev_train, prev_val_max = set(train), val_t.max()
    assert prev_val_max == uniq[-1]


def test_cv_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="too few"):
        time_series_cv(10, n_splits=3, gap=6)
    with pytest.raises(ValueError, match="n_splits"):
        time_series_cv(10, n_splits=1)
    with pytest.raises(ValueError, match="gap"):
        time_series_cv(10, n_splits=2, gap=-1)
    with pytest.raises(TypeError, match="frame"):
        time_series_cv(pd.DataFrame({"time": [1, 2, 3]}))
