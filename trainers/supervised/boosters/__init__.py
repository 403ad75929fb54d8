"""XGBoost, LightGBM and CatBoost behind one small interface.

Each adapter trains with the library's own callback API, which reports every
iteration to ``on_iteration(iteration, metrics)``: train/val loss, accuracy
where it applies (1 - error rate), the learning rate and the iteration's wall
time. ``gradient_norm`` is always None: gradient-boosted trees have no single
parameter gradient whose norm would mean anything.

Libraries are imported inside the adapters, so importing this package is cheap.
One module per library; :mod:`.base` holds the interface.
"""

from __future__ import annotations

from suho_models.enums import ModelType
from trainers.supervised.boosters.base import (
    Booster,
    OnIteration,
    OnSnapshot,
    free_cores,
)
from trainers.supervised.boosters.catboost_booster import CatBoostBooster
from trainers.supervised.boosters.lightgbm_booster import LightGBMBooster
from trainers.supervised.boosters.xgboost_booster import XGBoostBooster

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


__all__ = [
    "BOOSTERS",
    "Booster",
    "CatBoostBooster",
    "LightGBMBooster",
    "OnIteration",
    "OnSnapshot",
    "XGBoostBooster",
    "booster_for",
    "free_cores",
]
