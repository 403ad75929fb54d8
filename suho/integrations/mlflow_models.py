"""Registered MLflow versions that MLflow can load and serve.

The mirror used to register the raw checkpoint file (``.ubj`` / ``.txt`` /
``.cbm``), which ``mlflow.pyfunc.load_model`` cannot open. A supervised checkpoint
in a data-only format is now logged as an MLflow model: a pyfunc from code
(:mod:`suho.integrations.mlflow_pyfunc`, nothing pickled), the native model file,
the feature list, and a signature (every feature a double, in model order; MLflow
checks names and types of its input against it). ``mlflow.pyfunc.load_model(
'models:/<name>@production').predict(df)`` then returns what ``suho predict`` writes.

Agents and code formats keep the raw file (an agent's pyfunc would need its market
state, not a feature row).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from repositories.serialization import CODE_FORMATS, FILE_EXTENSIONS
from repositories.tracking import AnyTracking, RunKind

MODEL_DIR = "mlflow_models"
"""Artifact folder of the MLflow models, one sub-folder per checkpoint id."""


def can_log_model(kind: RunKind, info: Any) -> bool:
    return kind is RunKind.SUPERVISED and info.format not in CODE_FORMATS


def log_model(client: Any, mlrun: Any, tracking: AnyTracking, info: Any) -> str:
    """Log the checkpoint as an MLflow model under the run; returns its artifact URI
    (the ``source`` of a model version). Logged once per checkpoint."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    path = f"{MODEL_DIR}/{info.checkpoint_id}"
    run_id = mlrun.info.run_id
    if any(Path(f.path).name == "MLmodel" for f in client.list_artifacts(run_id, path)):
        return f"{mlrun.info.artifact_uri}/{path}"
    run: Any = tracking.get(info.run_id)  # a supervised run (can_log_model)
    features = [str(f) for f in run.features_used]
    task = str(getattr(run.task_type, "value", run.task_type))
    outputs: list[ColSpec | TensorSpec] = [
        ColSpec("long", "prediction"),
        ColSpec("double", "probability"),
    ]
    if task != "classification":
        outputs = [ColSpec("double", "prediction")]
    inputs: list[ColSpec | TensorSpec] = [ColSpec("double", f) for f in features]
    signature = ModelSignature(
        inputs=Schema(inputs),
        outputs=Schema(outputs),
    )
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / f"model.{FILE_EXTENSIONS[info.format]}"
        model_file.write_bytes(tracking.load_checkpoint(info.checkpoint_id))  # sha256 checked
        meta = Path(tmp) / "suho.json"
        meta.write_text(
            json.dumps(
                {
                    "features": features,
                    "task": task,
                    "model_type": str(getattr(run.model_type, "value", run.model_type)),
                    "format": info.format.value,
                    "checkpoint_id": str(info.checkpoint_id),
                    "run_id": str(info.run_id),
                }
            )
        )
        target = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            str(target),
            python_model=str(Path(__file__).with_name("mlflow_pyfunc.py")),
            artifacts={"model": str(model_file), "suho": str(meta)},
            signature=signature,
        )
        client.log_artifacts(run_id, str(target), path)
    return f"{mlrun.info.artifact_uri}/{path}"


__all__ = ["MODEL_DIR", "can_log_model", "log_model"]
