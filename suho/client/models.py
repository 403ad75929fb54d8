"""``run.log_model``: a trained model as data-only checkpoint bytes, and back.

Every format here loads without running code from the bytes (unlike pickle or
SB3's zip): XGBoost UBJSON, LightGBM's model text, CatBoost's cbm, a PyTorch
``state_dict`` read with ``weights_only=True`` and SB3's ``sb3_state``. Libraries
are recognised by the object's class, never imported here unless the object is
one of theirs, so ``import suho`` stays light.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from repositories.errors import InvalidInputError
from suho_models.enums import ModelFormat

SUPPORTED = (
    "xgboost.Booster / XGBModel, lightgbm.Booster / LGBMModel, catboost.CatBoost, "
    "torch.nn.Module or a state_dict of tensors, stable_baselines3 algorithms"
)


@dataclass
class SavedModel:
    """A model as bytes, with the library it came from and what it was trained on."""

    data: bytes
    format: ModelFormat
    library: str
    feature_names: list[str] = field(default_factory=list)
    feature_types: list[str] = field(default_factory=list)


def _library(obj: Any) -> str:
    for cls in type(obj).__mro__:
        root = cls.__module__.split(".")[0]
        if root in ("xgboost", "lightgbm", "catboost", "torch", "stable_baselines3"):
            return root
    return ""


def to_bytes(model: Any) -> SavedModel:
    """The model's data-only bytes; InvalidInputError naming the type otherwise."""
    library = _library(model)
    if library == "xgboost":
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        return SavedModel(
            bytes(booster.save_raw(raw_format="ubj")),
            ModelFormat.XGBOOST_UBJSON,
            "xgboost",
            list(booster.feature_names or []),
            list(booster.feature_types or []),
        )
    if library == "lightgbm":
        booster = model.booster_ if hasattr(model, "booster_") else model
        return SavedModel(
            booster.model_to_string().encode(),
            ModelFormat.LIGHTGBM_TEXT,
            "lightgbm",
            list(booster.feature_name()),
        )
    if library == "catboost":
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.cbm")
            model.save_model(path, format="cbm")
            with open(path, "rb") as f:
                data = f.read()
        names = list(getattr(model, "feature_names_", None) or [])
        categorical = set(model.get_cat_feature_indices()) if names else set()
        types = ["categorical" if i in categorical else "numeric" for i in range(len(names))]
        return SavedModel(data, ModelFormat.CATBOOST_CBM, "catboost", names, types)
    if library == "stable_baselines3":
        from trainers.rl.agents import model_to_bytes

        _remember_build_of(model)
        return SavedModel(model_to_bytes(model), ModelFormat.SB3_STATE, "stable_baselines3")
    state = _state_dict(model)
    if state is not None:
        from repositories.serialization import dumps_tensors

        return SavedModel(dumps_tensors(state), ModelFormat.TORCH_STATE_DICT, "pytorch")
    raise InvalidInputError(
        f"log_model: cannot store a {type(model).__module__}.{type(model).__qualname__} "
        f"as data-only bytes; supported: {SUPPORTED}"
    )


def _state_dict(model: Any) -> dict[str, Any] | None:
    """A torch module's state_dict, or a dict that already is one (tensors only)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of the rl extra
        return None
    if isinstance(model, torch.nn.Module):
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tensors = isinstance(model, dict) and all(isinstance(v, torch.Tensor) for v in model.values())
    if tensors and model:
        return {str(k): v.detach().cpu() for k, v in model.items()}
    return None


def _remember_build_of(model: Any) -> None:
    """A model the user built has no ``suho_build``: record the algorithm and the
    hyperparameters ``sb3_state`` rebuilds it with (SB3's defaults otherwise)."""
    if getattr(model, "suho_build", None) is not None:
        return
    from suho_models.enums import AgentType

    try:
        agent = AgentType(type(model).__name__.lower())
    except ValueError:
        raise InvalidInputError(
            f"log_model: sb3_state stores {', '.join(AgentType)} agents "
            f"(got {type(model).__name__})"
        ) from None
    params: dict[str, Any] = {}
    for name in ("gamma", "n_steps", "batch_size", "n_epochs", "ent_coef", "gae_lambda"):
        value = getattr(model, name, None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            params[name] = value
    rate = getattr(model, "learning_rate", None)
    if isinstance(rate, int | float):
        params["learning_rate"] = rate
    timesteps = int(getattr(model, "_total_timesteps", 0) or 0)
    # What trainers.rl.agents.build_model records: sb3_state rebuilds the agent from it.
    model.suho_build = {"agent": agent.value, "params": params, "timesteps": timesteps}


def from_bytes(data: bytes, fmt: ModelFormat, *, agent_type: str = "ppo") -> Any:
    """The library object again (an SB3 model, a torch state_dict, a booster)."""
    if fmt is ModelFormat.XGBOOST_UBJSON or fmt is ModelFormat.XGBOOST_JSON:
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(bytearray(data))
        return booster
    if fmt is ModelFormat.LIGHTGBM_TEXT:
        import lightgbm

        return lightgbm.Booster(model_str=bytes(data).decode())
    if fmt is ModelFormat.CATBOOST_CBM:
        import catboost

        model = catboost.CatBoost()
        model.load_model(blob=bytes(data))
        return model
    if fmt is ModelFormat.TORCH_STATE_DICT:
        from repositories.serialization import loads_tensors

        return loads_tensors(bytes(data))
    if fmt is ModelFormat.SB3_STATE:
        from trainers.rl.agents import load_model

        return load_model(agent_type, data)
    raise InvalidInputError(f"load_model: {fmt.value} checkpoints are not loaded by the client")
