"""XGBoost, LightGBM and CatBoost behind one small interface.

Each adapter trains with the library's own callback API, which reports every
iteration to ``on_iteration(iteration, metrics)``: train/val loss, accuracy
where it applies (1 - error rate), the learning rate and the iteration's wall
time. ``gradient_norm`` is always None: gradient-boosted trees have no single
parameter gradient whose norm would mean anything.

Libraries are imported inside the adapters, so importing this module is cheap.
"""

from __future__ import annotations

import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from repositories.errors import InvalidInputError
from repositories.serialization import (
    OBJECT_FORMATS,
    CorruptCheckpointError,
    dumps_object,
    loads_object,
    require_trusted,
)
from suho_models.enums import ModelFormat, ModelType, TaskType

OnIteration = Callable[[int, dict[str, float | None]], None]
"""Called once per boosting iteration, numbered from 1."""
OnSnapshot = Callable[[int, bytes], None]
"""Receives (iteration, model bytes in the native format) for a recovery checkpoint."""


def free_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's count: a
    library with more threads than free cores can run many times slower."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        return max(1, os.cpu_count() or 1)


class _Clock:
    """Wall time between consecutive iterations, in milliseconds."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def lap_ms(self) -> float:
        now = time.perf_counter()
        elapsed, self.last = (now - self.last) * 1000.0, now
        return elapsed


def _metrics(
    train_loss: float | None,
    val_loss: float | None,
    train_error: float | None,
    val_error: float | None,
    learning_rate: float | None,
    duration_ms: float,
) -> dict[str, float | None]:
    return {
        "train_loss": train_loss,
        "val_loss": val_loss,
        "train_accuracy": None if train_error is None else 1.0 - train_error,
        "val_accuracy": None if val_error is None else 1.0 - val_error,
        "learning_rate": learning_rate,
        "gradient_norm": None,
        "iteration_duration_ms": duration_ms,
    }


class Booster(ABC):
    """What the trainer needs from a gradient-boosting library."""

    model_type: ModelType
    native_format: ModelFormat
    formats: tuple[ModelFormat, ...]
    thread_param: str
    """The library's name of its thread-count parameter."""

    @abstractmethod
    def default_params(self, task: TaskType, seed: int) -> dict[str, Any]: ...

    @abstractmethod
    def search_space(self, task: TaskType) -> dict[str, dict[str, Any]]:
        """Optuna search space per parameter, as data (overridable from the config)."""

    @abstractmethod
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
        """Train ``rounds`` more iterations (after ``init_model``'s, if given).

        Every ``snapshot_every`` iterations (counted over the whole model, so a
        resumed run keeps the cadence), ``on_snapshot(iteration, native_bytes)``
        receives the model so far, for recovery checkpoints.
        """

    @abstractmethod
    def predict(self, model: Any, X: np.ndarray, task: TaskType) -> np.ndarray:
        """Probability of class 1 (classification) or the predicted value."""

    @abstractmethod
    def n_iterations(self, model: Any) -> int: ...

    @abstractmethod
    def feature_importance(self, model: Any, names: list[str]) -> dict[str, float]: ...

    @abstractmethod
    def _native_bytes(self, model: Any, fmt: ModelFormat) -> bytes: ...

    @abstractmethod
    def _from_native(self, data: bytes, fmt: ModelFormat, task: TaskType) -> Any: ...

    def pruning_callback(self, trial: Any, task: TaskType) -> Any:
        return None

    def to_bytes(self, model: Any, fmt: ModelFormat | None = None) -> bytes:
        fmt = fmt or self.native_format
        if fmt not in self.formats:
            raise ValueError(f"model_format: {self.model_type} cannot save as {fmt.value!r}")
        if fmt in OBJECT_FORMATS:
            return dumps_object(model, fmt)
        return self._native_bytes(model, fmt)

    def from_bytes(self, data: bytes, fmt: ModelFormat, task: TaskType) -> Any:
        """A model from checkpoint bytes. pickle and joblib run code, so they load only
        from what the checkpoint store's ``load_checkpoint`` returned for a signed
        row; for every format, bytes whose row format is not ``fmt`` are refused."""
        fmt = ModelFormat(fmt)
        if fmt not in self.formats:  # e.g. raw bytes: no model library may parse them
            allowed = ", ".join(f.value for f in self.formats)
            raise InvalidInputError(
                f"checkpoint format: {fmt.value!r} is not a {self.model_type.value} model "
                f"(expected one of {allowed})"
            )
        if fmt in OBJECT_FORMATS:
            return loads_object(data, fmt)
        trusted = require_trusted(data, fmt)
        try:
            return self._from_native(trusted, fmt, task)
        except Exception as exc:  # each library raises its own error for bad bytes
            raise CorruptCheckpointError(
                f"checkpoint bytes do not load as {fmt.value}: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            ) from exc


# --------------------------------------------------------------------------- XGBoost
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
        X_train,
        y_train,
        X_val,
        y_val,
        *,
        task,
        params,
        rounds,
        early_stopping,
        on_iteration=None,
        pruning=None,
        init_model=None,
        snapshot_every=None,
        on_snapshot=None,
    ):
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

    def predict(self, model, X, task):
        import xgboost as xgb

        best = getattr(model, "best_iteration", None)
        rng = (0, best + 1) if best is not None else (0, 0)
        return model.predict(xgb.DMatrix(X), iteration_range=rng)

    def n_iterations(self, model):
        return int(model.num_boosted_rounds())

    def feature_importance(self, model, names):
        scores = model.get_score(importance_type="gain")
        return {name: float(scores.get(f"f{i}", 0.0)) for i, name in enumerate(names)}

    def _native_bytes(self, model, fmt):
        return bytes(model.save_raw("ubj" if fmt is ModelFormat.XGBOOST_UBJSON else "json"))

    def _from_native(self, data, fmt, task):
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        return booster


def _xgb_snapshot(every: int, on_snapshot: OnSnapshot, offset: int) -> Any:
    import xgboost as xgb

    class _Snapshot(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):
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
        def before_training(self, model):
            self.clock = _Clock()
            return model

        def after_iteration(self, model, epoch, evals_log):
            tr, va = evals_log.get("train", {}), evals_log.get("val", {})
            on_iteration(
                offset + epoch + 1,
                _metrics(
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


# --------------------------------------------------------------------------- LightGBM
class LightGBMBooster(Booster):
    model_type = ModelType.LIGHTGBM
    native_format = ModelFormat.LIGHTGBM_TEXT
    formats = (ModelFormat.LIGHTGBM_TEXT, ModelFormat.PICKLE, ModelFormat.JOBLIB)
    thread_param = "num_threads"

    def default_params(self, task, seed):
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

    def search_space(self, task):
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
    def _objective(task):
        if task is TaskType.CLASSIFICATION:
            return {"objective": "binary", "metric": ["binary_logloss", "binary_error"]}
        return {"objective": "regression", "metric": ["rmse"]}

    def pruning_callback(self, trial, task):
        from optuna_integration import LightGBMPruningCallback

        metric = "binary_logloss" if task is TaskType.CLASSIFICATION else "rmse"
        return LightGBMPruningCallback(trial, metric, valid_name="val")

    def fit(
        self,
        X_train,
        y_train,
        X_val,
        y_val,
        *,
        task,
        params,
        rounds,
        early_stopping,
        on_iteration=None,
        pruning=None,
        init_model=None,
        snapshot_every=None,
        on_snapshot=None,
    ):
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

    def predict(self, model, X, task):
        best = model.best_iteration or None
        return model.predict(X, num_iteration=best)

    def n_iterations(self, model):
        return int(model.current_iteration())

    def feature_importance(self, model, names):
        gains = model.feature_importance(importance_type="gain")
        return {name: float(g) for name, g in zip(names, gains, strict=True)}

    def _native_bytes(self, model, fmt):
        return model.model_to_string().encode()

    def _from_native(self, data, fmt, task):
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
    clock = _Clock()

    def callback(env: Any) -> None:
        values = {(name, metric): value for name, metric, value, *_ in env.evaluation_result_list}
        on_iteration(
            env.iteration + 1,
            _metrics(
                values.get(("train", loss)),
                values.get(("val", loss)),
                values.get(("train", "binary_error")),
                values.get(("val", "binary_error")),
                learning_rate,
                clock.lap_ms(),
            ),
        )

    callback.order = 5  # type: ignore[attr-defined]  (before early stopping, order 30)
    return callback


# --------------------------------------------------------------------------- CatBoost
class CatBoostBooster(Booster):
    model_type = ModelType.CATBOOST
    native_format = ModelFormat.CATBOOST_CBM
    formats = (ModelFormat.CATBOOST_CBM, ModelFormat.ONNX, ModelFormat.PICKLE, ModelFormat.JOBLIB)
    thread_param = "thread_count"

    def default_params(self, task, seed):
        return {
            "depth": 6,
            "learning_rate": 0.1,
            "l2_leaf_reg": 3.0,
            "random_seed": seed,
            "thread_count": free_cores(),
        }

    def search_space(self, task):
        return {
            "depth": {"type": "int", "low": 4, "high": 10},
            "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
            "l2_leaf_reg": {"type": "float", "low": 1.0, "high": 10.0, "log": True},
            "bagging_temperature": {"type": "float", "low": 0.0, "high": 1.0},
            "random_strength": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
        }

    @staticmethod
    def _loss(task):
        return "Logloss" if task is TaskType.CLASSIFICATION else "RMSE"

    def pruning_callback(self, trial, task):
        from optuna_integration import CatBoostPruningCallback

        return CatBoostPruningCallback(trial, self._loss(task))

    def _model(self, task, params, rounds):
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
        X_train,
        y_train,
        X_val,
        y_val,
        *,
        task,
        params,
        rounds,
        early_stopping,
        on_iteration=None,
        pruning=None,
        init_model=None,
        snapshot_every=None,
        on_snapshot=None,
    ):
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
        offset,
    ):
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

    def predict(self, model, X, task):
        if task is TaskType.CLASSIFICATION:
            return model.predict_proba(X)[:, 1]
        return model.predict(X)

    def n_iterations(self, model):
        return int(model.tree_count_)

    def feature_importance(self, model, names):
        return {n: float(v) for n, v in zip(names, model.get_feature_importance(), strict=True)}

    def _native_bytes(self, model, fmt):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model")
            model.save_model(path, format="onnx" if fmt is ModelFormat.ONNX else "cbm")
            with open(path, "rb") as f:
                return f.read()

    def _from_native(self, data, fmt, task):
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
        self.clock = _Clock()

    def after_iteration(self, info: Any) -> bool:
        learn = info.metrics.get("learn", {})
        val = info.metrics.get("validation", {})

        def last(d: dict, key: str) -> float | None:
            values = d.get(key)
            return float(values[-1]) if values else None

        def error(d: dict) -> float | None:
            acc = last(d, "Accuracy")
            return None if acc is None else 1.0 - acc

        self.on_iteration(
            self.offset + info.iteration,
            _metrics(
                last(learn, self.loss),
                last(val, self.loss),
                error(learn),
                error(val),
                self.learning_rate,
                self.clock.lap_ms(),
            ),
        )
        return True


BOOSTERS: dict[ModelType, type[Booster]] = {
    ModelType.XGBOOST: XGBoostBooster,
    ModelType.LIGHTGBM: LightGBMBooster,
    ModelType.CATBOOST: CatBoostBooster,
}


def booster_for(model_type: ModelType | str) -> Booster:
    try:
        return BOOSTERS[ModelType(model_type)]()
    except (KeyError, ValueError):
        known = ", ".join(m.value for m in BOOSTERS)
        raise ValueError(f"model_type: unsupported {model_type!r} (known: {known})") from None
