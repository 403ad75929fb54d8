"""LightGBM: trained with ``lgb.train`` and its callback functions."""

from __future__ import annotations

from typing import Any

import numpy as np

from suho_models.enums import ModelFormat, ModelType, TaskType
from trainers.supervised.boosters.base import (
    Booster,
    Clock,
    OnIteration,
    OnSnapshot,
    free_cores,
    iteration_metrics,
)


class LightGBMBooster(Booster):
    model_type = ModelType.LIGHTGBM
    native_format = ModelFormat.LIGHTGBM_TEXT
    formats = (ModelFormat.LIGHTGBM_TEXT, ModelFormat.PICKLE, ModelFormat.JOBLIB)
    thread_param = "num_threads"

    def default_params(self, task: TaskType, seed: int) -> dict[str, Any]:
        return {
            "num_leaves": 31,
            "learning_rate": 0.1,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.9,
            "bagging_freq": 1,
            "min_data_in_leaf": 20,
            "seed": seed,
            "num_threads": free_cores(),
            "verbosity": -1,
            "deterministic": True,
            # Datasets are reused across Optuna trials with different params.
            "feature_pre_filter": False,
        }

    def search_space(self, task: TaskType) -> dict[str, dict[str, Any]]:
        return {
            "num_leaves": {"type": "int", "low": 15, "high": 255, "log": True},
            "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
            "feature_fraction": {"type": "float", "low": 0.5, "high": 1.0},
            "bagging_fraction": {"type": "float", "low": 0.5, "high": 1.0},
            "min_data_in_leaf": {"type": "int", "low": 10, "high": 200, "log": True},
            "lambda_l1": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
            "lambda_l2": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
        }

    @staticmethod
    def _objective(task: TaskType) -> dict[str, Any]:
        if task is TaskType.CLASSIFICATION:
            return {"objective": "binary", "metric": ["binary_logloss", "binary_error"]}
        return {"objective": "regression", "metric": ["rmse"]}

    def pruning_callback(self, trial: Any, task: TaskType) -> Any:
        from optuna_integration import LightGBMPruningCallback

        metric = "binary_logloss" if task is TaskType.CLASSIFICATION else "rmse"
        return LightGBMPruningCallback(trial, metric, valid_name="val")

    def fit(
        self,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        *,
        task: TaskType,
        params: dict[str, Any],
        rounds: int,
        early_stopping: int | None,
        on_iteration: OnIteration | None = None,
        pruning: Any | None = None,
        init_model: Any | None = None,
        snapshot_every: int | None = None,
        on_snapshot: OnSnapshot | None = None,
    ) -> Any:
        import lightgbm as lgb

        full = {**params, **self._objective(task)}
        dtrain = lgb.Dataset(X_train, label=y_train, params={"feature_pre_filter": False})
        dval = lgb.Dataset(X_val, label=y_val, reference=dtrain)
        callbacks: list[Any] = []
        if on_iteration is not None:
            callbacks.append(_lgb_logger(on_iteration, task, float(full.get("learning_rate", 0.1))))
        if snapshot_every and on_snapshot is not None:
            callbacks.append(_lgb_snapshot(snapshot_every, on_snapshot))
        if pruning is not None:
            callbacks.append(pruning)
        if early_stopping:
            callbacks.append(lgb.early_stopping(early_stopping, verbose=False))
        return lgb.train(
            full,
            dtrain,
            num_boost_round=rounds,
            valid_sets=[dtrain, dval],
            valid_names=["train", "val"],
            callbacks=callbacks,
            init_model=init_model,
        )

    def predict(self, model: Any, X: np.ndarray, task: TaskType) -> np.ndarray:
        best = model.best_iteration or None
        return np.asarray(model.predict(X, num_iteration=best))

    def n_iterations(self, model: Any) -> int:
        return int(model.current_iteration())

    def feature_importance(self, model: Any, names: list[str]) -> dict[str, float]:
        gains = model.feature_importance(importance_type="gain")
        return {name: float(g) for name, g in zip(names, gains, strict=True)}

    def _native_bytes(self, model: Any, fmt: ModelFormat) -> bytes:
        return str(model.model_to_string()).encode()

    def _from_native(self, data: bytes, fmt: ModelFormat, task: TaskType) -> Any:
        import lightgbm as lgb

        return lgb.Booster(model_str=data.decode())


def _lgb_snapshot(every: int, on_snapshot: OnSnapshot) -> Any:
    def callback(env: Any) -> None:
        if (env.iteration + 1) % every == 0:
            on_snapshot(env.iteration + 1, env.model.model_to_string().encode())

    callback.order = 6  # type: ignore[attr-defined]
    return callback


def _lgb_logger(on_iteration: OnIteration, task: TaskType, learning_rate: float) -> Any:
    loss = "binary_logloss" if task is TaskType.CLASSIFICATION else "rmse"
    clock = Clock()

    def callback(env: Any) -> None:
        values = {(name, metric): value for name, metric, value, *_ in env.evaluation_result_list}
        on_iteration(
            env.iteration + 1,
            iteration_metrics(
                values.get(("train", loss)),
                values.get(("val", loss)),
                values.get(("train", "binary_error")),
                values.get(("val", "binary_error")),
                learning_rate,
                clock.lap_ms(),
            ),
        )

    callback.order = 5  # type: ignore[attr-defined]  # before early stopping (order 30)
    return callback
