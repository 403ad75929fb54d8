"""``suho.load_model`` for an agent: it acts as :class:`DeployedAgent` does, on raw
states and on ``ml_features`` rows (the stored observation scaling applied)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import suho
from repositories.errors import InvalidInputError
from repositories.features import FeatureTable
from repositories.tracking import RunKind, RunTrackingService
from suho_models.db import Database, migrations
from trainers.data.synth import generate_ml_features
from trainers.rl import RLConfig
from trainers.rl.deploy import load_deployed_agent
from trainers.rl.trainer import RLTrainer, RLTrainingResult

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
SYMBOLS = ("EURUSD", "XAUUSD")


@pytest.fixture(scope="module")
def agent_db(embedded_dir: Any) -> Iterator[Database]:
    url = f"clickhouse+chdb:///{embedded_dir}/infer_rl_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(url)
    db = Database(url)
    FeatureTable(db).write(generate_ml_features(SYMBOLS, periods=200, start=START, seed=3))
    yield db
    db.close()


@pytest.fixture(scope="module")
def trained(agent_db: Database) -> RLTrainingResult:
    config = RLConfig.model_validate(
        {
            "agent": "ppo",
            "timesteps": 160,
            "env": "fast",
            "agent_params": {"n_steps": 64, "batch_size": 32, "n_epochs": 2, "net_arch": "tiny"},
            "run_name": f"infer-ppo-{uuid.uuid4().hex[:6]}",
        }
    )
    result = RLTrainer(config, agent_db).run()
    RunTrackingService(agent_db, RunKind.RL).deploy(result.checkpoint_id, "production")
    return result


def trade_rows(db: Database, run: Any) -> pd.DataFrame:
    return FeatureTable(db).read(
        ["time", "symbol", *FeatureTable(db).schema()], run.trade_start, run.trade_end
    )


def test_agent_acts_as_the_deployed_agent(agent_db: Database, trained: RLTrainingResult) -> None:
    model = suho.load_model("ppo", db=agent_db)
    assert model.kind == RunKind.RL
    assert model.checkpoint_id == trained.checkpoint_id
    assert suho.load_model(str(trained.run.run_id), db=agent_db).checkpoint_id == (
        trained.checkpoint_id
    )
    # On ml_features rows of the trade period: the run's own evaluation, action for action.
    rows = trade_rows(agent_db, trained.run)
    acted = model.act_on_features(rows.sample(frac=1.0, random_state=0))  # any row order
    expected = np.asarray(trained.evaluation.actions, dtype=np.float64)
    np.testing.assert_array_equal(acted["action"].to_numpy().reshape(expected.shape), expected)
    assert list(acted["symbol"].unique()) == sorted(SYMBOLS)
    assert np.abs(expected).max() > 0

    # On raw FinRL states: DeployedAgent.predict exactly.
    deployed = load_deployed_agent(agent_db, "ppo")
    market = deployed.load_market(agent_db)
    env = deployed.make_env(market.trade, market)
    env.reset()
    states = []
    for action in expected[:5]:
        states.append(np.asarray(env.unwrapped.state, dtype=np.float64))
        env.step(action)
    states_array = np.stack(states)
    np.testing.assert_array_equal(model.act(states_array), deployed.predict(states_array))


def test_agent_bad_input_is_refused(agent_db: Database, trained: RLTrainingResult) -> None:
    model = suho.load_model("ppo", db=agent_db)
    rows = trade_rows(agent_db, trained.run)
    with pytest.raises(InvalidInputError, match="missing feature column 'close'"):
        model.act_on_features(rows.drop(columns=["close"]))
    nan = rows.copy()
    nan.loc[3, "close"] = np.nan
    with pytest.raises(InvalidInputError, match="column 'close' has NaN or infinite values"):
        model.act_on_features(nan)
    with pytest.raises(InvalidInputError, match="no row for XAUUSD at"):
        model.act_on_features(rows.drop(index=rows.index[rows["symbol"] == "XAUUSD"][2]))
    with pytest.raises(InvalidInputError, match="no rows"):
        model.act_on_features(rows.iloc[:0])
    with pytest.raises(InvalidInputError, match="state: expected FinRL's raw state"):
        model.act(np.zeros((2, 3)))
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        model.act(np.full((1, 3), np.nan))


def test_cli_predict_writes_the_agents_actions(
    agent_db: Database, trained: RLTrainingResult, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from typer.testing import CliRunner

    from repositories.predictions import PredictionRepository
    from suho.cli import app

    monkeypatch.setenv("SUHO_DATABASE_URL", agent_db.url.render_as_string(hide_password=False))
    run = trained.run
    window = ["--from", run.trade_start.isoformat(), "--to", run.trade_end.isoformat()]
    out = CliRunner().invoke(app, ["predict", "--model", "ppo", *window, "--quiet"])
    assert out.exit_code == 0, out.output
    stored = PredictionRepository(agent_db).frame(trained.checkpoint_id)
    expected = np.asarray(trained.evaluation.actions, dtype=np.float64)
    np.testing.assert_array_equal(stored["prediction"].to_numpy().reshape(expected.shape), expected)
    assert stored["probability"].isna().all()


def test_serve_act_equals_the_deployed_agent(agent_db: Database, trained: RLTrainingResult) -> None:
    from fastapi.testclient import TestClient

    from suho.inference.serve import ModelHolder, create_serving_app

    client = TestClient(create_serving_app(ModelHolder(agent_db, "ppo")))
    assert client.get("/model").json()["checkpoint_id"] == str(trained.checkpoint_id)
    rows = trade_rows(agent_db, trained.run)
    for column in rows.select_dtypes(include="datetimetz").columns:
        rows[column] = rows[column].map(lambda t: t.isoformat())
    records = rows.to_dict(orient="records")  # floats exactly (to_json rounds them)
    body = client.post("/act", json={"records": records}).json()
    expected = np.asarray(trained.evaluation.actions, dtype=np.float64)
    actions = np.asarray([a["action"] for a in body["actions"]])
    np.testing.assert_array_equal(actions.reshape(expected.shape), expected)

    deployed = load_deployed_agent(agent_db, "ppo")
    market = deployed.load_market(agent_db)
    env = deployed.make_env(market.trade, market)
    env.reset()
    state = np.asarray(env.unwrapped.state, dtype=np.float64)
    raw = client.post("/act", json={"states": [state.tolist()]}).json()
    np.testing.assert_array_equal(np.asarray(raw["actions"]), deployed.predict(state[None, :]))
    bad = client.post("/act", json={"states": [[1.0, 2.0]]})
    assert bad.status_code == 422 and "raw state" in bad.json()["detail"]
    wrong = client.post("/predict", json={"records": [{"x": 1.0}]})
    assert wrong.status_code == 422 and "this is an agent" in wrong.json()["detail"]


def test_mlflow_pyfunc_acts_as_the_deployed_agent(
    agent_db: Database, trained: RLTrainingResult, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registered version of a deployed agent is an MLflow model: FinRL raw states
    in (its signature), the actions of ``suho.load_model(...).act`` out."""
    import mlflow
    from mlflow import MlflowClient

    from suho.integrations.mlflow import MlflowExporter

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(uri).search_experiments()
    # Through the environment, which monkeypatch restores (see test_inference.py).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    exporter = MlflowExporter(agent_db, uri, artifact_location=str(tmp_path / "artifacts"))
    exporter.export(trained.run.run_id)
    exporter.export(trained.run.run_id)  # again: no second model, no second version
    (registered,) = MlflowClient(uri).search_registered_models()
    assert len(MlflowClient(uri).search_model_versions(f"name = '{registered.name}'")) == 1
    loaded = mlflow.pyfunc.load_model(f"models:/{registered.name}@production")
    names = loaded.metadata.get_input_schema().input_names()
    outputs = loaded.metadata.get_output_schema().input_names()
    assert outputs == [f"action_{t}" for t in trained.run.tickers]

    # Raw states the trained agent met on its trade period, one per row.
    deployed = load_deployed_agent(agent_db, "ppo")
    market = deployed.load_market(agent_db)
    env = deployed.make_env(market.trade, market)
    env.reset()
    states = []
    for action in np.asarray(trained.evaluation.actions, dtype=np.float64)[:8]:
        states.append(np.asarray(env.unwrapped.state, dtype=np.float64))
        env.step(action)
    states_array = np.stack(states)
    assert names == [f"state_{i}" for i in range(states_array.shape[1])]
    frame = pd.DataFrame(states_array, columns=names)
    acted = loaded.predict(frame)
    suho_actions = suho.load_model("ppo", db=agent_db).act(states_array)
    np.testing.assert_array_equal(acted.to_numpy(), np.asarray(suho_actions, dtype=np.float64))
    np.testing.assert_array_equal(acted.to_numpy(), deployed.predict(states_array))
    with pytest.raises(Exception, match="state_0"):
        loaded.predict(frame.drop(columns=["state_0"]))

    # A model from code (nothing pickled) with the agent's data-only sb3_state bytes.
    flavor = loaded.metadata.flavors["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    where = mlflow.artifacts.download_artifacts(
        f"models:/{registered.name}@production", dst_path=str(tmp_path / "dl")
    )
    files = sorted(p.name for p in Path(where).rglob("*") if p.is_file())
    assert "model.pt" in files, files  # the sb3_state checkpoint, weights-only torch
    assert not [f for f in files if f.endswith((".pkl", ".joblib", ".zip"))], files
