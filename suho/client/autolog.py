"""``suho.autolog()``: XGBoost, LightGBM, CatBoost and Stable-Baselines3 runs
tracked with one call, and no other change to the training code.

Each library's training entry point is wrapped once (``xgboost.train`` and the
sklearn wrappers that call it, ``lightgbm.train`` likewise, ``CatBoost._fit`` under
every CatBoost estimator, SB3's on- and off-policy ``learn``) to add a callback of the
library's own callback API. The wrapper uses the active run, or opens one for the
call and closes it after (as MLflow's autolog does). What is logged:

* the parameters (into the run's config, so filterable);
* every iteration's metrics under the library's own names (``validation_0-logloss``
  for XGBoost, ``valid_0-binary_logloss`` for LightGBM, ``validation-Logloss`` for
  CatBoost, SB3's logger keys such as ``rollout/ep_rew_mean``), at step = iteration
  (SB3: the timestep);
* the final model (:meth:`suho.Run.log_model`) and its feature importance
  (``feature_importance/<feature>`` at the last step).

Libraries that are not installed are skipped.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from suho.client import run as client

log = logging.getLogger(__name__)

_patched: dict[tuple[Any, str], Any] = {}
_settings = {"log_models": True}


def autolog(*, log_models: bool = True, disable: bool = False) -> list[str]:
    """Track XGBoost, LightGBM, CatBoost and SB3 training from now on; returns the
    libraries that were found. ``disable=True`` undoes it."""
    if disable:
        for (owner, name), original in _patched.items():
            setattr(owner, name, original)
        _patched.clear()
        return []
    _settings["log_models"] = log_models
    found = []
    for library, patch in (
        ("xgboost", _patch_xgboost),
        ("lightgbm", _patch_lightgbm),
        ("catboost", _patch_catboost),
        ("stable_baselines3", _patch_sb3),
    ):
        try:
            module = importlib.import_module(library)
        except ImportError:
            continue
        patch(module)
        found.append(library)
    return found


def _wrap(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    if (owner, name) in _patched:
        return
    original = getattr(owner, name)
    _patched[(owner, name)] = original
    setattr(owner, name, make(original))


def _train_wrapper(
    library: str,
    default_rounds: int,
    callback_for: Callable[[client.Run], Any],
    importance: Callable[[Any], dict[str, float]],
) -> Callable[[Any], Any]:
    """How a library's ``train(params, ..., num_boost_round, callbacks)`` is wrapped:
    the call's run gets the parameters, the library's callback, the model and its
    feature importance (XGBoost and LightGBM share the shape)."""

    def make(original: Any) -> Any:
        signature = inspect.signature(original)

        @functools.wraps(original)
        def train(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            params = dict(bound.arguments.get("params") or {})
            params.setdefault(
                "num_boost_round", bound.arguments.get("num_boost_round", default_rounds)
            )
            with _run_for(library, params) as (run, _):
                callbacks = list(bound.arguments.get("callbacks") or [])
                bound.arguments["callbacks"] = [*callbacks, callback_for(run)]
                booster = original(*bound.args, **bound.kwargs)
                _finish_model(run, booster, importance(booster))
                return booster

        return train

    return make


@contextmanager
def _run_for(library: str, params: Mapping[str, Any]) -> Iterator[tuple[client.Run, bool]]:
    """The active run (its config extended by ``params``), or a new one for this call."""
    run = client.active_run()
    if run is not None:
        run.update_config({k: v for k, v in params.items() if k not in run.config})
        yield run, False
        return
    name = _type_name(library, params)
    if library == "stable_baselines3":
        run = client.init(kind="rl", config=dict(params), agent_type=name)
    else:
        run = client.init(config=dict(params), model_type=name)
    with run:
        yield run, True


def _type_name(library: str, params: Mapping[str, Any]) -> str:
    if library == "stable_baselines3":
        return str(params.get("algorithm", "sb3")).lower()
    return library


# --------------------------------------------------------------------------- XGBoost
def _patch_xgboost(xgboost: Any) -> None:
    import xgboost.sklearn
    import xgboost.training

    class XGBoostCallback(xgboost.callback.TrainingCallback):  # type: ignore[misc]
        """Logs every iteration's evaluation results under XGBoost's names."""

        def __init__(self, run: client.Run) -> None:
            self.run = run

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            values = {
                f"{data}-{metric}": series[-1]
                for data, metrics in evals_log.items()
                for metric, series in metrics.items()
                if series
            }
            if values:
                self.run.log(_scalars(values), step=epoch)
            return False

    make = _train_wrapper("xgboost", 10, XGBoostCallback, _xgboost_importance)
    original = xgboost.training.train
    for owner in (xgboost, xgboost.training, xgboost.sklearn):
        if getattr(owner, "train", None) is original or (owner, "train") in _patched:
            _wrap(owner, "train", make)


def _xgboost_importance(booster: Any) -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in booster.get_score(importance_type="gain").items()}
    except Exception:  # noqa: BLE001 - importance is a bonus, never a failure
        return {}


# --------------------------------------------------------------------------- LightGBM
def _patch_lightgbm(lightgbm: Any) -> None:
    import lightgbm.engine
    import lightgbm.sklearn

    def callback_for(run: client.Run) -> Any:
        def record(env: Any) -> None:
            values = {
                f"{data}-{metric}": result
                for data, metric, result, *_ in env.evaluation_result_list or []
            }
            if values:
                run.log(_scalars(values), step=env.iteration - env.begin_iteration)

        record.order = 30  # type: ignore[attr-defined]  # after LightGBM's own
        return record

    def importance(booster: Any) -> dict[str, float]:
        gains = booster.feature_importance(importance_type="gain")
        return dict(zip(booster.feature_name(), map(float, gains), strict=True))

    make = _train_wrapper("lightgbm", 100, callback_for, importance)
    original = lightgbm.engine.train
    for owner in (lightgbm, lightgbm.engine, lightgbm.sklearn):
        if getattr(owner, "train", None) is original:
            _wrap(owner, "train", make)


# --------------------------------------------------------------------------- CatBoost
def _patch_catboost(catboost: Any) -> None:
    class CatBoostCallback:
        """Logs every iteration's metrics under CatBoost's names."""

        def __init__(self, run: client.Run) -> None:
            self.run = run

        def after_iteration(self, info: Any) -> bool:
            values = {
                f"{data}-{metric}": series[-1]
                for data, metrics in (info.metrics or {}).items()
                for metric, series in metrics.items()
                if series
            }
            if values:
                self.run.log(_scalars(values), step=info.iteration - 1)
            return True

    def make(original: Any) -> Any:
        signature = inspect.signature(original)

        @functools.wraps(original)
        def _fit(self: Any, *args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(self, *args, **kwargs)
            params = {k: v for k, v in self.get_params().items() if _plain(v)}
            with _run_for("catboost", params) as (run, _):
                callbacks = list(bound.arguments.get("callbacks") or [])
                bound.arguments["callbacks"] = [*callbacks, CatBoostCallback(run)]
                result = original(*bound.args, **bound.kwargs)
                names = list(self.feature_names_ or [])
                importance = dict(
                    zip(names, map(float, self.get_feature_importance()), strict=True)
                )
                _finish_model(run, self, importance)
                return result

        return _fit

    _wrap(catboost.CatBoost, "_fit", make)


# --------------------------------------------------------------------------- SB3
def _sb3_callback_class() -> type:
    from stable_baselines3.common.callbacks import BaseCallback

    class SuhoCallback(BaseCallback):
        """Stable-Baselines3 callback: every value SB3's logger dumps (``rollout/*``,
        ``train/*``, ``time/*``) logged at the timestep it was dumped, the final
        agent stored as ``sb3_state``. Uses the active run, or opens one for the
        ``learn`` call (``agent_type`` = the algorithm's name)."""

        def __init__(self, run: client.Run | None = None, *, log_model: bool = True) -> None:
            super().__init__()
            self.run = run
            self.log_model = log_model
            self._own_run = False

        def _on_training_start(self) -> None:
            if self.run is None:
                self.run = client.active_run()
            if self.run is None:
                params = {"algorithm": type(self.model).__name__, **_sb3_params(self.model)}
                self.run = client.init(
                    kind="rl", agent_type=type(self.model).__name__.lower(), config=params
                )
                self._own_run = True
            logger = self.model.logger
            dump = logger.dump
            run = self.run

            def dumping(step: int = 0) -> None:
                values = {k: v for k, v in logger.name_to_value.items() if _number(v)}
                if values:
                    run.log(_scalars(values), step=int(step))
                dump(step)

            logger.dump = dumping  # type: ignore[method-assign]

        def _on_step(self) -> bool:
            return True

        def _on_training_end(self) -> None:
            run = self.run
            if run is None:
                return
            if self.log_model and _settings["log_models"]:
                run.log_model(self.model, step=int(self.model.num_timesteps))
            if self._own_run:
                run.finish()

    return SuhoCallback


def _sb3_params(model: Any) -> dict[str, Any]:
    names = ("learning_rate", "gamma", "n_steps", "batch_size", "n_epochs", "ent_coef", "seed")
    return {n: getattr(model, n) for n in names if _plain(getattr(model, n, None))}


def _patch_sb3(sb3: Any) -> None:
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    def make(original: Any) -> Any:
        signature = inspect.signature(original)

        @functools.wraps(original)
        def learn(self: Any, *args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(self, *args, **kwargs)
            given = bound.arguments.get("callback")
            ours = _suho_callback()()
            if given is None:
                bound.arguments["callback"] = ours
            elif isinstance(given, list):
                bound.arguments["callback"] = [*given, ours]
            else:
                bound.arguments["callback"] = CallbackList([given, ours])
            return original(*bound.args, **bound.kwargs)

        return learn

    # Every algorithm's learn ends in one of these two (PPO.learn calls super().learn).
    _wrap(OnPolicyAlgorithm, "learn", make)
    _wrap(OffPolicyAlgorithm, "learn", make)


# --------------------------------------------------------------------------- shared
def _finish_model(run: client.Run, model: Any, importance: Mapping[str, float]) -> None:
    from trainers.supervised.inference import IMPORTANCE_PREFIX  # the UI and reports read it

    step = run.step
    if importance:
        run.log({f"{IMPORTANCE_PREFIX}{k}": v for k, v in importance.items()}, step=step)
    if _settings["log_models"]:
        run.log_model(model, step=step)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) or hasattr(value, "item")


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """Plain floats (XGBoost's cv gives (mean, std) pairs: the mean)."""
    return {k: float(v[0] if isinstance(v, tuple) else v) for k, v in values.items()}


_callback_class: list[type] = []


def _suho_callback() -> type:
    if not _callback_class:
        _callback_class.append(_sb3_callback_class())
    return _callback_class[0]


def __getattr__(name: str) -> Any:
    """``SuhoCallback`` is made on first use: importing SB3 takes seconds."""
    if name == "SuhoCallback":
        return _suho_callback()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
