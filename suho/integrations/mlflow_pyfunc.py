"""The MLflow pyfunc of a suho supervised model (logged as code, never pickled).

MLflow loads this file by path (models from code) next to two artifacts: the
library's native model file (data-only: XGBoost UBJSON/JSON, LightGBM text,
CatBoost cbm) and ``suho.json`` (features in model order, task, format). Prediction
goes through suho's own booster adapter, so it equals ``suho.load_model(...)``'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from suho_models.enums import ModelFormat, TaskType


class SuhoBoosterModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """``predict(df)`` -> a frame of ``prediction`` (class 0/1 or value) and, for a
    classifier, ``probability`` of class 1, one row per input row."""

    def load_context(self, context: Any) -> None:
        from trainers.supervised.boosters import booster_for

        meta = json.loads(Path(context.artifacts["suho"]).read_text())
        self.features: list[str] = list(meta["features"])
        self.task = TaskType(meta["task"])
        self.booster = booster_for(meta["model_type"])
        data = Path(context.artifacts["model"]).read_bytes()
        self.model = self.booster.from_bytes(data, ModelFormat(meta["format"]), self.task)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        X = pd.DataFrame(model_input)[self.features].to_numpy(dtype=np.float64)
        scores = np.asarray(self.booster.predict(self.model, X, self.task), dtype=np.float64)
        if self.task is TaskType.CLASSIFICATION:
            return pd.DataFrame(
                {"prediction": (scores >= 0.5).astype(np.int64), "probability": scores}
            )
        return pd.DataFrame({"prediction": scores})


mlflow.models.set_model(SuhoBoosterModel())
