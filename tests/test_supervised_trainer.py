"""End-to-end supervised training on small synthetic data (embedded engine).

The repositories' contract suite already runs on both backends; here the
trainers run on the embedded default, as the demo does.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from repositories.checkpoints import ModelCheckpointRepository
from repositories.features import FeatureTable
from repositories.runs import TrainingRunRepository
from repositories.series import TrainingMetricRepository
from repositories.trials import HyperparameterTrialRepository
from suho_models.db import Database, migrations
from suho_models.enums import CheckpointKind, ModelFormat, RunStatus, TaskType
from trainers.data.spec import FeatureSpecError
from trainers.data.synth import generate_ml_features
from trainers.supervised.boosters import booster_for
from trainers.supervised.config import SupervisedConfig
from trainers.supervised.trainer import SupervisedTrainer, evaluate

START = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=700)


@pytest.fixture(scope="module")
def features_db(embedded_dir) -> Iterator[Database]:
    # chDB opens one data directory per process: use the session's.
    url = f"clickhouse+chdb:///{embedded_dir}/sup_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(url)
    db = Database(url)
    frame = generate_ml_features(("EURUSD", "XAUUSD"), periods=700, start=START, seed=7)
    FeatureTable(db).write(frame)
    yield db
    db.close()


def config(**kw: object) -> SupervisedConfig:
    base = {
        "rounds": 25,
        "early_stopping": None,
        "progress": False,
        "cv_folds": 2,
        "selection": {"top_k": 20},
    }
    base.update(kw)
    return SupervisedConfig.model_validate(base)


@pytest.mark.parametrize("model_type", ["xgboost", "lightgbm", "catboost"])
@pytest.mark.parametrize("trials", [0, 2])
def test_train_tracks_everything(features_db: Database, model_type: str, trials: int) -> None:
    db = features_db
    result = SupervisedTrainer(config(model_type=model_type, tuning={"trials": trials}), db).run()
    run = TrainingRunRepository(db).get(result.run.run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.task_type is TaskType.CLASSIFICATION
    assert run.features_used == result.features and len(run.features_used) == 20
    assert run.train_rows + run.val_rows + run.test_rows == 2 * (700 - 100)
    assert run.train_end < run.val_start <= run.val_end < run.test_start
    assert run.duration_seconds and run.duration_seconds > 0

    # One metric row per boosting iteration, in order.
    curve = TrainingMetricRepository(db).learning_curve(run.run_id)
    assert [p.iteration_number for p in curve] == list(range(1, 26))
    assert all(p.train_loss is not None and p.val_accuracy is not None for p in curve)

    # Final metrics equal an independent recomputation on the test split.
    split = result.split
    X_test = split.test[result.features].to_numpy(dtype=float)
    y_test = split.test["target_direction"].to_numpy()
    checkpoints = ModelCheckpointRepository(db)
    (info,) = checkpoints.list(run.run_id)
    loaded = result.booster.from_bytes(
        checkpoints.load_checkpoint(info.checkpoint_id), info.format, TaskType.CLASSIFICATION
    )
    recomputed = evaluate(
        TaskType.CLASSIFICATION,
        y_test,
        result.booster.predict(loaded, X_test, TaskType.CLASSIFICATION),
    )
    assert run.final_test_accuracy == pytest.approx(recomputed["accuracy"], abs=1e-12)
    assert run.final_f1_score == pytest.approx(recomputed["f1"], abs=1e-12)
    assert run.final_auc_score == pytest.approx(recomputed["auc"], abs=1e-12)
    assert run.final_test_loss == pytest.approx(recomputed["loss"], rel=1e-9)
    assert info.format is result.booster.native_format
    assert info.kind is CheckpointKind.FINAL  # one vocabulary with RL (was "best")

    trials_logged = HyperparameterTrialRepository(db).list(run.run_id)
    assert len(trials_logged) == trials
    for trial in trials_logged:
        assert trial.state.value in ("complete", "pruned")
        if trial.state.value == "complete":
            assert len(trial.scores) == 2 and trial.objective_value == pytest.approx(
                float(np.mean(trial.scores))
            )


def test_regression_target(features_db: Database) -> None:
    result = SupervisedTrainer(
        config(model_type="lightgbm", target="target_return"), features_db
    ).run()
    run = result.run
    assert run.task_type is TaskType.REGRESSION
    assert run.final_rmse is not None and run.final_direction_accuracy is not None
    assert run.final_test_accuracy is None


@pytest.mark.parametrize("fmt", [ModelFormat.PICKLE, ModelFormat.XGBOOST_JSON])
def test_checkpoint_round_trip_predicts_identically(features_db: Database, fmt) -> None:
    result = SupervisedTrainer(config(model_type="xgboost", model_format=fmt), features_db).run()
    repo = ModelCheckpointRepository(features_db)
    data = repo.load_checkpoint(result.checkpoint_id)
    loaded = result.booster.from_bytes(data, fmt, TaskType.CLASSIFICATION)
    X = result.split.test[result.features].to_numpy(dtype=float)
    task = TaskType.CLASSIFICATION
    np.testing.assert_array_equal(
        result.booster.predict(result.model, X, task), result.booster.predict(loaded, X, task)
    )


def test_failure_leaves_a_failed_run(features_db: Database) -> None:
    runs = TrainingRunRepository(features_db)
    before = {r.run_id for r in runs.list(limit=None)}
    bad = config(
        model_type="lightgbm",
        features={"feature_columns": ["no_such_feature"], "target_columns": ["target_direction"]},
    )
    with pytest.raises(FeatureSpecError, match="no_such_feature"):
        SupervisedTrainer(bad, features_db).run()
    (failed,) = [r for r in runs.list(limit=None) if r.run_id not in before]
    assert failed.status is RunStatus.FAILED
    assert "no_such_feature" in failed.error_message


def test_interrupt_leaves_a_cancelled_run(features_db: Database) -> None:
    runs = TrainingRunRepository(features_db)
    before = {r.run_id for r in runs.list(limit=None)}
    trainer = SupervisedTrainer(config(model_type="xgboost"), features_db)
    original = trainer.booster.fit

    def interrupted(*args, **kwargs):
        kwargs["on_iteration"] = lambda i, m: (_ for _ in ()).throw(KeyboardInterrupt)
        return original(*args, **kwargs)

    trainer.booster.fit = interrupted  # a real Ctrl-C arrives inside the boosting loop
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    (run,) = [r for r in runs.list(limit=None) if r.run_id not in before]
    assert run.status is RunStatus.CANCELLED


def test_unsupported_model_type_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="model_type"):
        booster_for("prophet")


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_config_file_sections_merge_with_overrides(tmp_path, suffix: str) -> None:
    """``--tune N`` over a file's tuning section keeps its other tuning settings."""
    path = tmp_path / f"run{suffix}"
    if suffix == ".yaml":
        path.write_text("rounds: 7\ntuning:\n  trials: 3\n  timeout_seconds: 60\n")
    else:
        path.write_text("rounds = 7\n[tuning]\ntrials = 3\ntimeout_seconds = 60\n")
    config = SupervisedConfig.from_file(path, tuning={"trials": 5}, seed=1)
    assert (config.rounds, config.seed) == (7, 1)
    assert (config.tuning.trials, config.tuning.timeout_seconds) == (5, 60)
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(ValueError, match=r"expected .toml, .yaml or .yml \(got 'run.json'\)"):
        SupervisedConfig.from_file(tmp_path / "run.json")


def test_parquet_source_and_yaml_config(features_db: Database, tmp_path) -> None:
    frame = generate_ml_features(("EURUSD",), periods=500, start=START, seed=11)
    frame.to_parquet(tmp_path / "features.parquet")
    (tmp_path / "run.yaml").write_text(
        "model_type: lightgbm\nrounds: 12\nearly_stopping: null\nprogress: false\n"
        f"source: {tmp_path / 'features.parquet'}\n"
        "features:\n  include: ['rsi_*', 'macd*']\n"
    )
    config = SupervisedConfig.from_file(tmp_path / "run.yaml", cv_folds=2)
    result = SupervisedTrainer(config, features_db).run()
    assert result.run.train_rows + result.run.val_rows + result.run.test_rows == 400
    assert all(f.startswith(("rsi_", "macd")) for f in result.run.features_used)
    assert result.run.status is RunStatus.COMPLETED
    with pytest.raises(FileNotFoundError, match="no_such.parquet"):
        SupervisedTrainer(
            config.model_copy(update={"source": str(tmp_path / "no_such.parquet")}), features_db
        ).run()
