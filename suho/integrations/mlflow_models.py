"""Registered MLflow versions that MLflow can load and serve.

The mirror used to register the raw checkpoint file (``.ubj`` / ``.txt`` /
``.cbm``), which ``mlflow.pyfunc.load_model`` cannot open. A supervised checkpoint
in a data-only format is now logged as an MLflow model: a pyfunc from code
(:mod:`suho.integrations.mlflow_pyfunc`, nothing pickled), the native model file,
the feature list, and a signature (every feature a double, in model order; MLflow
checks names and types of its input against it). ``mlflow.pyfunc.load_model(
'models:/<name>@production').predict(df)`` then returns what ``suho predict`` writes.

An agent saved as ``sb3_state`` becomes a pyfunc too
(:mod:`suho.integrations.mlflow_agent_pyfunc`): FinRL raw states in (``state_0``
...), one action per ticker out (``action_<ticker>``), equal to ``suho.load_model(
...).act(states)``. Code formats (pickle, joblib, SB3's zip) keep the raw file: a
model MLflow loads must not run code on load.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from repositories.serialization import CODE_FORMATS, FILE_EXTENSIONS, CheckpointBytes
from repositories.tracking import AnyTracking, RunKind
from suho_models.enums import ModelFormat

MODEL_DIR = "mlflow_models"
"""Artifact folder of the MLflow models, one sub-folder per checkpoint id."""


def can_log_model(kind: RunKind, info: Any) -> bool:
    if kind is RunKind.RL:
        return bool(info.format is ModelFormat.SB3_STATE)
    return info.format not in CODE_FORMATS


def log_model(client: Any, mlrun: Any, tracking: AnyTracking, info: Any) -> str:
    """Log the checkpoint as an MLflow model under the run; returns its artifact URI
    (the ``source`` of a model version). Logged once per checkpoint."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema

    path = f"{MODEL_DIR}/{info.checkpoint_id}"
    run_id = mlrun.info.run_id
    if any(Path(f.path).name == "MLmodel" for f in client.list_artifacts(run_id, path)):
        return f"{mlrun.info.artifact_uri}/{path}"
    run: Any = tracking.get(info.run_id)
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / f"model.{FILE_EXTENSIONS[info.format]}"
        data = tracking.load_checkpoint(info.checkpoint_id)  # sha256 checked
        model_file.write_bytes(data)
        describe = _agent if tracking.kind is RunKind.RL else _booster
        meta, inputs, outputs, code = describe(run, info, data)
        meta |= {"checkpoint_id": str(info.checkpoint_id), "run_id": str(info.run_id)}
        (Path(tmp) / "suho.json").write_text(json.dumps(meta))
        target = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            str(target),
            python_model=str(Path(__file__).with_name(code)),
            artifacts={"model": str(model_file), "suho": str(Path(tmp) / "suho.json")},
            signature=ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs)),
        )
        client.log_artifacts(run_id, str(target), path)
    return f"{mlrun.info.artifact_uri}/{path}"


Columns = list[Any]
"""MLflow ``ColSpec`` s (MLflow is imported only when a model is logged)."""


def _booster(
    run: Any, info: Any, data: CheckpointBytes
) -> tuple[dict[str, Any], Columns, Columns, str]:
    """A booster's pyfunc: its features in, the class (and P(class 1)) or value out."""
    from mlflow.types import ColSpec

    features = [str(f) for f in run.features_used]
    task = str(getattr(run.task_type, "value", run.task_type))
    outputs: Columns = [ColSpec("long", "prediction"), ColSpec("double", "probability")]
    if task != "classification":
        outputs = [ColSpec("double", "prediction")]
    meta = {
        "features": features,
        "task": task,
        "model_type": str(getattr(run.model_type, "value", run.model_type)),
        "format": info.format.value,
    }
    return meta, [ColSpec("double", f) for f in features], outputs, "mlflow_pyfunc.py"


def _agent(
    run: Any, info: Any, data: CheckpointBytes
) -> tuple[dict[str, Any], Columns, Columns, str]:
    """An agent's pyfunc: FinRL raw states in, one action per ticker out. The state's
    width is the run's (its stored observation statistics, else the policy's input)."""
    from mlflow.types import ColSpec

    from trainers.rl.deploy import DeployedAgent

    agent = DeployedAgent.from_checkpoint(info, data, run)
    scaling = agent.scaling
    width = (
        1 + 2 * scaling.stock_dim + len(scaling.tech_mean)
        if scaling is not None
        else int(agent.model.observation_space.shape[0])
    )
    states = [f"state_{i}" for i in range(width)]
    actions = [f"action_{t}" for t in run.tickers]
    meta = {
        "kind": "rl",
        "agent_type": str(getattr(info.agent_type, "value", info.agent_type)),
        "config_json": run.config_json,
        "env_config_json": run.env_config_json,
        "states": states,
        "actions": actions,
    }
    inputs: Columns = [ColSpec("double", s) for s in states]
    outputs: Columns = [ColSpec("double", a) for a in actions]
    return meta, inputs, outputs, "mlflow_agent_pyfunc.py"


__all__ = ["MODEL_DIR", "can_log_model", "log_model"]
