"""Loading a trained run back: its model (verified checkpoint) and its test split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from repositories.errors import NotFoundError
from repositories.kinds import SUPERVISED
from repositories.tracking import RunTrackingService
from suho_models.db import Database
from suho_models.enums import TaskType
from trainers.data.source import load_features
from trainers.data.split import chronological_split
from trainers.supervised.boosters import Booster, booster_for
from trainers.supervised.config import SupervisedConfig


@dataclass
class LoadedRun:
    config: SupervisedConfig
    task: TaskType
    features: list[str]
    booster: Booster
    model: Any


def load_run_model(db: Database, run_id: Any) -> LoadedRun:
    """The run's final model (checksum-verified), as a live model."""
    tracking = RunTrackingService(db, SUPERVISED)
    run = tracking.get(run_id)
    chosen = tracking.final_checkpoint(run.run_id)
    if chosen is None:
        raise NotFoundError(f"run {run_id} has no checkpoint")
    booster = booster_for(run.model_type)
    model = booster.from_bytes(
        tracking.load_checkpoint(chosen.checkpoint_id), chosen.format, run.task_type
    )
    config = SupervisedConfig.model_validate_json(run.config_json)
    return LoadedRun(config, run.task_type, list(run.features_used), booster, model)


IMPORTANCE_PREFIX = "feature_importance/"
"""Where ``suho.autolog`` logs a model's feature importance (``run_metrics`` keys)."""


def is_trainer_run(run: Any) -> bool:
    """Whether the run was made by :class:`SupervisedTrainer` (a booster of ours and a
    config it can rebuild its data from), not by the client on someone's own code."""
    from pydantic import ValidationError

    from trainers.supervised.boosters import BOOSTERS

    if str(getattr(run.model_type, "value", run.model_type)) not in {m.value for m in BOOSTERS}:
        return False
    try:
        SupervisedConfig.model_validate_json(run.config_json or "{}")
    except ValidationError:
        return False
    return bool(run.features_used)


def run_feature_importance(db: Database, run_id: Any) -> dict[str, float] | None:
    """Feature importance of a run's model: what autolog logged, else the trainer's
    model read back; None when the run has neither (a client run that logged none)."""
    tracking = RunTrackingService(db, SUPERVISED)
    run = tracking.get(run_id)
    logged = {
        k.key[len(IMPORTANCE_PREFIX) :]: k.last_value
        for k in tracking.metric_keys(run.run_id)
        if k.key.startswith(IMPORTANCE_PREFIX)
    }
    if logged:
        return logged
    from trainers.supervised.boosters import BOOSTERS

    if str(getattr(run.model_type, "value", run.model_type)) not in {m.value for m in BOOSTERS}:
        return None
    loaded = load_run_model(db, run.run_id)  # no checkpoint, or not a model: refused
    return loaded.booster.feature_importance(loaded.model, loaded.features)


def test_split_predictions(db: Database, loaded: LoadedRun) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, prediction) on the run's test split, rebuilt from its stored config."""
    config = loaded.config
    frame, roles = load_features(
        config.source, config.features, db, config.start, config.end, config.symbols
    )
    split = chronological_split(frame, roles.time, config.split_ratios)
    X = split.test[loaded.features].to_numpy(dtype=float)
    y = split.test[config.target].to_numpy()
    return y, loaded.booster.predict(loaded.model, X, loaded.task)


test_split_predictions.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
