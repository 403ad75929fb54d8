"""XGBoost: trained with ``xgb.train`` and its ``TrainingCallback`` API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    import xgboost as xgb


class XGBoostBooster(Booster):
    model_type = ModelType.XGBOOST
    native_format = ModelFormat.XGBOOST_UBJSON
    formats = (
        ModelFormat.XGBOOST_UBJSON,
        ModelFormat.XGBOOST_JSON,
        ModelFormat.PICKLE,
        ModelFormat.JOBLIB,
    )
    thread_param = "nthread"

    def default_params(self, task: TaskType, seed: int) -> dict[str, Any]:
        return {
            "max_depth": 6,
            "eta": 0.1,
            "subsample": 0.9,
            "colsample_bytree": 0.9,
            "min_child_weight": 1.0,
            "seed": seed,
            "nthread": free_cores(),
        }

    def search_space(self, task: TaskType) -> dict[str, dict[str, Any]]:
        return {
            "max_depth": {"type": "int", "low": 3, "high": 10},
            "eta": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
            "subsample": {"type": "float", "low": 0.5, "high": 1.0},
            "colsample_bytree": {"type": "float", "low": 0.5, "high": 1.0},
            "min_child_weight": {"type": "float", "low": 1.0, "high": 20.0, "log": True},
            "lambda": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
            "alpha": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
        }

    @staticmethod
    def _objective(task: TaskType) -> dict[str, Any]:
        if task is TaskType.CLASSIFICATION:
            return {"objective": "binary:logistic", "eval_metric": ["logloss", "error"]}
        return {"objective": "reg:squarederror", "eval_metric": ["rmse"]}

    def pruning_callback(self, trial: Any, task: TaskType) -> Any:
        from optuna_integration import XGBoostPruningCallback

        metric = "logloss" if task is TaskType.CLASSIFICATION else "rmse"
        return XGBoostPruningCallback(trial, f"val-{metric}")

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
        import xgboost as xgb

        full = {**params, **self._objective(task)}
        dtrain, dval = xgb.DMatrix(X_train, label=y_train), xgb.DMatrix(X_val, label=y_val)
        callbacks: list[Any] = []
        # xgboost restarts its epoch count when continuing a model: offset it.
        offset = init_model.num_boosted_rounds() if init_model is not None else 0
        if on_iteration is not None:
            eta = float(full.get("eta", 0.3))
            callbacks.append(_xgb_logger(on_iteration, task, eta, offset))
        if snapshot_every and on_snapshot is not None:
            callbacks.append(_xgb_snapshot(snapshot_every, on_snapshot, offset))
        if pruning is not None:
            callbacks.append(pruning)
        return xgb.train(
            full,
            dtrain,
            num_boost_round=rounds,
            evals=[(dtrain, "train"), (dval, "val")],
            early_stopping_rounds=early_stopping,
            callbacks=callbacks,
            verbose_eval=False,
            xgb_model=init_model,
        )

    def predict(self, model: Any, X: np.ndarray, task: TaskType) -> np.ndarray:
        import xgboost as xgb

        best = getattr(model, "best_iteration", None)
        rng = (0, best + 1) if best is not None else (0, 0)
        predicted: np.ndarray = model.predict(xgb.DMatrix(X), iteration_range=rng)
        return predicted

    def n_iterations(self, model: Any) -> int:
        return int(model.num_boosted_rounds())

    def feature_importance(self, model: Any, names: list[str]) -> dict[str, float]:
        scores = model.get_score(importance_type="gain")
        return {name: float(scores.get(f"f{i}", 0.0)) for i, name in enumerate(names)}

    def _native_bytes(self, model: Any, fmt: ModelFormat) -> bytes:
        return bytes(model.save_raw("ubj" if fmt is ModelFormat.XGBOOST_UBJSON else "json"))

    def _from_native(self, data: bytes, fmt: ModelFormat, task: TaskType) -> Any:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        return booster


def _xgb_snapshot(every: int, on_snapshot: OnSnapshot, offset: int) -> Any:
    import xgboost as xgb

    class _Snapshot(xgb.callback.TrainingCallback):
        def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Any) -> bool:
            iteration = offset + epoch + 1
            if iteration % every == 0:
                on_snapshot(iteration, bytes(model.save_raw("ubj")))
            return False

    return _Snapshot()


def _xgb_logger(on_iteration: OnIteration, task: TaskType, eta: float, offset: int = 0) -> Any:
    import xgboost as xgb

    loss_key = "logloss" if task is TaskType.CLASSIFICATION else "rmse"
    has_error = task is TaskType.CLASSIFICATION

    class _Logger(xgb.callback.TrainingCallback):
        def before_training(self, model: xgb.Booster) -> xgb.Booster:
            self.clock = Clock()
            return model

        def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Any) -> bool:
            tr, va = evals_log.get("train", {}), evals_log.get("val", {})
            on_iteration(
                offset + epoch + 1,
                iteration_metrics(
                    tr[loss_key][-1] if loss_key in tr else None,
                    va[loss_key][-1] if loss_key in va else None,
                    tr["error"][-1] if has_error and "error" in tr else None,
                    va["error"][-1] if has_error and "error" in va else None,
                    eta,
                    self.clock.lap_ms(),
                ),
            )
            return False

    return _Logger()
