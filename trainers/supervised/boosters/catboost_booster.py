"""CatBoost: its callbacks cannot see the model, so snapshots train in chunks."""

from __future__ import annotations

import os
import tempfile
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


class CatBoostBooster(Booster):
    model_type = ModelType.CATBOOST
    native_format = ModelFormat.CATBOOST_CBM
    formats = (ModelFormat.CATBOOST_CBM, ModelFormat.ONNX, ModelFormat.PICKLE, ModelFormat.JOBLIB)
    thread_param = "thread_count"

    def default_params(self, task: TaskType, seed: int) -> dict[str, Any]:
        return {
            "depth": 6,
            "learning_rate": 0.1,
            "l2_leaf_reg": 3.0,
            "random_seed": seed,
            "thread_count": free_cores(),
        }

    def search_space(self, task: TaskType) -> dict[str, dict[str, Any]]:
        return {
            "depth": {"type": "int", "low": 4, "high": 10},
            "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
            "l2_leaf_reg": {"type": "float", "low": 1.0, "high": 10.0, "log": True},
            "bagging_temperature": {"type": "float", "low": 0.0, "high": 1.0},
            "random_strength": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
        }

    @staticmethod
    def _loss(task: TaskType) -> str:
        return "Logloss" if task is TaskType.CLASSIFICATION else "RMSE"

    def pruning_callback(self, trial: Any, task: TaskType) -> Any:
        from optuna_integration import CatBoostPruningCallback

        return CatBoostPruningCallback(trial, self._loss(task))

    def _model(self, task: TaskType, params: dict[str, Any], rounds: int) -> Any:
        from catboost import CatBoostClassifier, CatBoostRegressor

        cls = CatBoostClassifier if task is TaskType.CLASSIFICATION else CatBoostRegressor
        extra = {"custom_metric": ["Accuracy"]} if task is TaskType.CLASSIFICATION else {}
        return cls(
            iterations=rounds,
            loss_function=self._loss(task),
            eval_metric=self._loss(task),
            verbose=False,
            allow_writing_files=False,
            **extra,
            **params,
        )

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
        if not (snapshot_every and on_snapshot is not None):
            return self._fit_once(
                X_train,
                y_train,
                X_val,
                y_val,
                task,
                params,
                rounds,
                early_stopping,
                on_iteration,
                pruning,
                init_model,
                0,
            )
        # CatBoost's callbacks cannot see the model, so train in chunks that end on
        # the snapshot cadence and continue each from the last (init_model).
        model = init_model
        done = self.n_iterations(init_model) if init_model is not None else 0
        target = done + rounds
        while done < target:
            chunk = min(snapshot_every - done % snapshot_every, target - done)
            model = self._fit_once(
                X_train,
                y_train,
                X_val,
                y_val,
                task,
                params,
                chunk,
                early_stopping,
                on_iteration,
                pruning,
                model,
                done,
            )
            grown = self.n_iterations(model) - done
            done += grown
            data = self._native_bytes(model, ModelFormat.CATBOOST_CBM)
            if done % snapshot_every == 0:
                on_snapshot(done, data)
            if grown < chunk:  # early stopping ended training
                break
            # Continue from the saved model, exactly as a resume would (continuing
            # from the in-memory object of a continued model added extra trees).
            model = self._from_native(data, ModelFormat.CATBOOST_CBM, task)
        return model

    def _fit_once(
        self,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        task: TaskType,
        params: dict[str, Any],
        rounds: int,
        early_stopping: int | None,
        on_iteration: OnIteration | None,
        pruning: Any | None,
        init_model: Any | None,
        offset: int,
    ) -> Any:
        model = self._model(task, params, rounds)
        callbacks: list[Any] = []
        if on_iteration is not None:
            callbacks.append(
                _CatBoostLogger(on_iteration, task, float(params.get("learning_rate", 0.1)), offset)
            )
        if pruning is not None:
            callbacks.append(pruning)
        model.fit(
            X_train,
            y_train,
            eval_set=(X_val, y_val),
            early_stopping_rounds=early_stopping,
            callbacks=callbacks or None,
            init_model=init_model,
            use_best_model=bool(early_stopping),
        )
        if pruning is not None:
            pruning.check_pruned()
        return model

    def predict(self, model: Any, X: np.ndarray, task: TaskType) -> np.ndarray:
        if task is TaskType.CLASSIFICATION:
            return np.asarray(model.predict_proba(X)[:, 1])
        return np.asarray(model.predict(X))

    def n_iterations(self, model: Any) -> int:
        return int(model.tree_count_)

    def feature_importance(self, model: Any, names: list[str]) -> dict[str, float]:
        return {n: float(v) for n, v in zip(names, model.get_feature_importance(), strict=True)}

    def _native_bytes(self, model: Any, fmt: ModelFormat) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model")
            model.save_model(path, format="onnx" if fmt is ModelFormat.ONNX else "cbm")
            with open(path, "rb") as f:
                return f.read()

    def _from_native(self, data: bytes, fmt: ModelFormat, task: TaskType) -> Any:
        if fmt is ModelFormat.ONNX:
            raise ValueError("ONNX checkpoints are for inference runtimes; load the cbm one here")
        model = self._model(task, {}, 1)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.cbm")
            with open(path, "wb") as f:
                f.write(data)
            model.load_model(path)
        return model


class _CatBoostLogger:
    def __init__(
        self, on_iteration: OnIteration, task: TaskType, learning_rate: float, offset: int = 0
    ) -> None:
        self.on_iteration = on_iteration
        self.offset = offset
        self.loss = "Logloss" if task is TaskType.CLASSIFICATION else "RMSE"
        self.learning_rate = learning_rate
        self.clock = Clock()

    def after_iteration(self, info: Any) -> bool:
        learn = info.metrics.get("learn", {})
        val = info.metrics.get("validation", {})

        def last(d: dict[str, Any], key: str) -> float | None:
            values = d.get(key)
            return float(values[-1]) if values else None

        def error(d: dict[str, Any]) -> float | None:
            acc = last(d, "Accuracy")
            return None if acc is None else 1.0 - acc

        self.on_iteration(
            self.offset + info.iteration,
            iteration_metrics(
                last(learn, self.loss),
                last(val, self.loss),
                error(learn),
                error(val),
                self.learning_rate,
                self.clock.lap_ms(),
            ),
        )
        return True
