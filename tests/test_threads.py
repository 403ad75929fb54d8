"""Boosting threads: the cores free to this process by default, ``threads`` when given
(issue 17, section 5: a hard-coded 2 threads on a busy 2-core machine ran 400 rounds
more than 10x slower than 1 thread)."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from repositories.features import FeatureTable
from repositories.runs import TrainingRunRepository
from suho_models.db import Database, migrations
from suho_models.enums import TaskType
from suho_models.settings import get_settings
from trainers.data.synth import generate_ml_features
from trainers.supervised.boosters import booster_for, free_cores
from trainers.supervised.config import SupervisedConfig
from trainers.supervised.trainer import SupervisedTrainer

MODELS = ("xgboost", "lightgbm", "catboost")
START = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=300)


def library_threads(model_type: str, model: Any) -> int:
    """The thread count the trained model itself records."""
    if model_type == "xgboost":
        return int(json.loads(model.save_config())["learner"]["generic_param"]["nthread"])
    if model_type == "lightgbm":
        return int(model.params["num_threads"])
    return int(model.get_params()["thread_count"])


@pytest.fixture(scope="module")
def features_url(embedded_dir) -> Iterator[str]:
    url = f"clickhouse+chdb:///{embedded_dir}/threads_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(url)
    with Database(url) as db:
        FeatureTable(db).write(
            generate_ml_features(("EURUSD", "XAUUSD"), periods=300, start=START, seed=3)
        )
    yield url


def test_free_cores_follows_the_cpu_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 3, 5})
    assert free_cores() == 3
    for model_type in MODELS:
        booster = booster_for(model_type)
        params = booster.default_params(TaskType.CLASSIFICATION, 1)
        assert params[booster.thread_param] == 3, model_type


@pytest.mark.parametrize("model_type", MODELS)
def test_threads_fills_the_libraries_parameter(model_type: str) -> None:
    key = booster_for(model_type).thread_param
    config = SupervisedConfig(model_type=model_type, threads=3, params={"seed": 1})
    assert config.params == {"seed": 1, key: 3}
    assert SupervisedConfig(model_type=model_type).params == {}  # default: free cores
    assert SupervisedConfig(model_type=model_type, threads=2, params={key: 2}).threads == 2
    with pytest.raises(ValidationError, match=f"threads=2 and params.{key}=1 disagree"):
        SupervisedConfig(model_type=model_type, threads=2, params={key: 1})
    with pytest.raises(ValidationError, match="threads"):
        SupervisedConfig(model_type=model_type, threads=0)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", MODELS)
def test_the_trained_model_uses_the_configured_threads(features_url: str, model_type: str) -> None:
    with Database(features_url) as db:
        for threads, expected in ((1, 1), (None, free_cores())):
            config = SupervisedConfig(
                model_type=model_type,
                rounds=3,
                early_stopping=None,
                cv_folds=2,
                progress=False,
                threads=threads,
                tuning={"trials": 1 if threads else 0},
            )
            result = SupervisedTrainer(config, db).run()
            key = booster_for(model_type).thread_param
            assert result.params[key] == expected
            assert library_threads(model_type, result.model) == expected


@pytest.mark.slow
def test_the_cli_threads_option_reaches_the_stored_config(
    features_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from suho.cli import app

    monkeypatch.setenv("SUHO_DATABASE_URL", features_url)
    get_settings.cache_clear()
    args = ["train", "supervised", "--model", "lightgbm", "--rounds", "3", "--cv", "2"]
    result = CliRunner().invoke(app, [*args, "--threads", "1", "--quiet", "--run-name", "t1"])
    assert result.exit_code == 0, result.output
    with Database(features_url) as db:
        (run,) = [r for r in TrainingRunRepository(db).list() if r.run_name == "t1"]
    stored = json.loads(run.config_json)
    assert stored["threads"] == 1 and stored["params"]["num_threads"] == 1
    refused = CliRunner().invoke(app, [*args, "--threads", "0"])
    assert refused.exit_code != 0 and "--threads" in refused.output
