"""RL features with NaN values: FinRL needs every ticker on every day, so
such rows leave days out. Say so with the columns, the counts and what is kept, and
refuse when most days would go (issue 17, section 6: a run trained on 30 of 400
days without a word)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from suho_models.db import migrations
from suho_models.settings import get_settings
from trainers.data.synth import generate_ml_features
from trainers.rl.config import RLConfig
from trainers.rl.environment import load_market

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 400


def features_file(tmp_path: Path, gaps: dict[str, int]) -> str:
    """400 days of two tickers; ``gaps[column]`` rows of EURUSD, spread over the days,
    get NaN there (infinite values are refused earlier, by FeatureSpec)."""
    frame = generate_ml_features(("EURUSD", "XAUUSD"), periods=600, start=START, seed=5)
    frame = frame[frame["time"].isin(np.sort(frame["time"].unique())[:DAYS])]
    frame = frame.reset_index(drop=True)
    assert frame["time"].nunique() == DAYS and len(frame) == 2 * DAYS
    eurusd = frame.index[frame["symbol"] == "EURUSD"]
    for column, count in gaps.items():
        frame.loc[eurusd[np.linspace(0, DAYS - 1, count).astype(int)], column] = np.nan
    path = tmp_path / "features.parquet"
    frame.to_parquet(path)
    return str(path)


def test_clean_features_keep_every_day_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        market = load_market(RLConfig(source=features_file(tmp_path, {})), None)
    assert market.train_days + market.trade_days == DAYS
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_few_gaps_are_reported_with_columns_counts_and_rows_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = features_file(tmp_path, {"close_sma_50_ratio": 20, "rsi_28": 5})
    with caplog.at_level(logging.WARNING):
        market = load_market(RLConfig(source=source), None)
    kept_days = market.train_days + market.trade_days
    assert kept_days < DAYS
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "NaN values in close_sma_50_ratio (20), rsi_28 (5)" in warning
    assert (
        f"kept {2 * kept_days} of {2 * DAYS} rows and {kept_days} of {DAYS} time steps" in warning
    )


def test_mostly_gaps_are_refused(tmp_path: Path) -> None:
    source = features_file(tmp_path, {"close_sma_50_ratio": 370})
    with pytest.raises(
        ValueError, match=r"close_sma_50_ratio \(370\).*of 400 time steps.*max_dropped_days=50%"
    ):
        load_market(RLConfig(source=source), None)
    # The threshold is the user's to move.
    market = load_market(RLConfig(source=source, max_dropped_days=1.0), None)
    assert market.train_days + market.trade_days == DAYS - 370


def test_a_column_outside_the_state_does_not_count(tmp_path: Path) -> None:
    source = features_file(tmp_path, {"rsi_14": 370})  # not one of the default indicators
    market = load_market(RLConfig(source=source), None)
    assert market.train_days + market.trade_days == DAYS
    assert not pd.isna(market.train[market.indicators]).any().any()


@pytest.mark.slow
def test_the_cli_refuses_a_mostly_empty_source(
    tmp_path: Path, embedded_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from suho.cli import app

    url = f"clickhouse+chdb:///{embedded_dir}/gaps_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(url)
    monkeypatch.setenv("SUHO_DATABASE_URL", url)
    get_settings.cache_clear()
    source = features_file(tmp_path, {"close_sma_50_ratio": 370})
    result = CliRunner().invoke(app, ["train", "rl", "--source", source, "--timesteps", "64"])
    assert result.exit_code != 0
    assert "close_sma_50_ratio (370)" in str(result.exception)
    assert "of 400 time steps" in str(result.exception)
