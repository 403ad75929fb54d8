"""``suho.load_model``: a deployed model predicts what its trainer predicted on the
test split, from named columns in any order; bad input is refused naming it."""

from __future__ import annotations

import datetime as dt
import difflib
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import suho
from repositories.errors import InvalidInputError, NotFoundError
from repositories.features import FeatureTable
from repositories.predictions import PredictionRepository
from repositories.tracking import RunKind, RunTrackingService
from suho.cli import app
from suho_models.db import Database, migrations
from suho_models.enums import TaskType
from trainers.data.synth import generate_ml_features
from trainers.supervised.config import SupervisedConfig
from trainers.supervised.trainer import SupervisedTrainer, TrainingResult

START = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=400)
MODEL_TYPES = ("xgboost", "lightgbm", "catboost")


@pytest.fixture(scope="module")
def store_url(embedded_dir: Any) -> str:
    return f"clickhouse+chdb:///{embedded_dir}/infer_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def features_db(store_url: str) -> Iterator[Database]:
    migrations.upgrade(store_url)
    db = Database(store_url)
    FeatureTable(db).write(generate_ml_features(("EURUSD", "XAUUSD"), periods=400, start=START))
    yield db
    db.close()


def train(db: Database, model_type: str, **kw: Any) -> TrainingResult:
    config = {
        "model_type": model_type,
        "rounds": 15,
        "early_stopping": None,
        "progress": False,
        "cv_folds": 2,
        "selection": {"top_k": 8},
        "model_name": f"direction-{model_type}",
        **kw,
    }
    return SupervisedTrainer(SupervisedConfig.model_validate(config), db).run()


@pytest.fixture(scope="module")
def trained(features_db: Database) -> dict[str, TrainingResult]:
    results = {m: train(features_db, m) for m in MODEL_TYPES}
    tracking = RunTrackingService(features_db, RunKind.SUPERVISED)
    for result in results.values():
        tracking.deploy(result.checkpoint_id, "production")
    return results


def expected(result: TrainingResult) -> tuple[pd.DataFrame, np.ndarray]:
    """The test split's rows and the trainer's own predictions for them."""
    assert result.split is not None
    test = result.split.test
    X = test[result.features].to_numpy(dtype=float)
    return test, result.booster.predict(result.model, X, TaskType.CLASSIFICATION)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_load_model_predicts_what_the_trainer_did(
    features_db: Database, trained: dict[str, TrainingResult], model_type: str
) -> None:
    result = trained[model_type]
    rows, proba = expected(result)
    by_name = suho.load_model(f"direction-{model_type}", db=features_db)
    by_run = suho.load_model(str(result.run.run_id), db=features_db)
    for model in (by_name, by_run):
        assert model.checkpoint_id == result.checkpoint_id
        assert model.features == result.features
        # Extra columns ignored, order restored: a shuffled frame with everything in it.
        shuffled = rows[list(reversed(rows.columns))]
        np.testing.assert_array_equal(model.predict_proba(shuffled), proba)
        np.testing.assert_array_equal(model.predict(shuffled), (proba >= 0.5).astype(int))
        np.testing.assert_array_equal(
            model.predict_proba(pa.Table.from_pandas(rows, preserve_index=False)), proba
        )
        records = rows[result.features].to_dict(orient="records")
        np.testing.assert_allclose(model.predict_proba(records[:5]), proba[:5], rtol=0, atol=0)
    assert 0 < proba.min() < proba.max() < 1  # a real model, not a constant


def _has_near_sibling(feature: str, columns: Any) -> bool:
    typo_ratio = difflib.SequenceMatcher(None, feature, feature + "x").ratio()
    return any(
        difflib.SequenceMatcher(None, feature, c).ratio() >= typo_ratio
        for c in columns
        if c != feature
    )


def test_bad_input_is_refused_naming_it(
    features_db: Database, trained: dict[str, TrainingResult]
) -> None:
    result = trained["xgboost"]
    rows, _ = expected(result)
    model = suho.load_model("direction-xgboost", db=features_db)
    first = result.features[0]
    with pytest.raises(InvalidInputError, match=f"missing feature column '{first}'"):
        model.predict(rows.drop(columns=[first]))
    # A typo with no nearer column already in the frame (``atr_7x`` is as near to
    # ``natr_7``), so the hint has one right answer.
    typo = next(f for f in result.features if not _has_near_sibling(f, rows.columns))
    misspelt = rows.rename(columns={typo: typo + "x"})
    with pytest.raises(InvalidInputError, match=f"did you mean '{typo}x'"):
        model.predict(misspelt)
    wrong = rows.assign(**{first: rows[first].astype(str)})
    with pytest.raises(InvalidInputError, match=f"'{first}' \\((str|object)\\) must be numeric"):
        model.predict(wrong)
    with pytest.raises(InvalidInputError, match="no rows"):
        model.predict(rows.iloc[:0])
    inf = rows.assign(**{first: np.inf})
    with pytest.raises(InvalidInputError, match=f"column '{first}' has infinite values"):
        model.predict(inf)
    # NaN is "missing" to a booster, as in training: accepted.
    assert len(model.predict(rows.assign(**{first: np.nan}))) == len(rows)


@pytest.mark.parametrize(
    "data",
    [
        [{"a": 1.5, "b": 2, "c": None}, {"b": True, "a": -0.0, "c": 3.0, "extra": "x"}],
        [{"a": 1.0, "b": 2.0}, {"a": 1.0, "c": 4.0, "b": 0}],  # 'c' missing in one row: NaN
        {"c": [1, None], "b": [False, 2.5], "a": [0.5, 1e300]},
        [{"a": 1.0, "b": "2", "c": 3.0}],  # a string: refused naming 'b'
        [{"a": 1.0, "c": 3.0}],  # 'b' missing everywhere
        {"a": [1.0], "b": [2.0], "c": [3.0, 4.0]},  # unequal columns
        {"a": [], "b": [], "c": []},  # no rows
        [{"a": 2**70, "b": 1.0, "c": float("inf")}],  # a huge int; inf refused
    ],
)
def test_json_rows_skip_the_frame_with_the_same_matrix_and_refusals(data: Any) -> None:
    """Records and columns of plain numbers (a JSON body) go straight to the matrix
    (the DataFrame costs most of a one-row request): same numbers, same refusals."""
    from suho.inference.signature import FeatureSignature

    for signature in (FeatureSignature(("a", "b", "c")), FeatureSignature(("c", "a", "b"), False)):

        def outcome(route: Any) -> Any:
            try:
                return route(data)
            except InvalidInputError as exc:
                return str(exc)

        plain = outcome(signature.matrix)
        framed = outcome(lambda d, s=signature: s.matrix(s.check(d)))  # the DataFrame route
        if isinstance(framed, str):
            assert plain == framed
        else:
            np.testing.assert_array_equal(plain, framed)


def test_unknown_name_stage_and_run_are_refused(
    features_db: Database, trained: dict[str, TrainingResult]
) -> None:
    with pytest.raises(NotFoundError, match="no model or agent named 'nope' has a checkpoint"):
        suho.load_model("nope", db=features_db)
    with pytest.raises(NotFoundError, match="in staging \\(it has one in production\\)"):
        suho.load_model("direction-lightgbm", stage="staging", db=features_db)
    with pytest.raises(InvalidInputError, match="stage: expected one of staging, production"):
        suho.load_model("direction-lightgbm", stage="prod", db=features_db)
    with pytest.raises(NotFoundError, match="no supervised or RL run"):
        suho.load_model(str(uuid.uuid4()), db=features_db)


def test_code_formats_are_not_loaded(features_db: Database) -> None:
    result = train(features_db, "xgboost", model_format="pickle", model_name="pickled")
    RunTrackingService(features_db, RunKind.SUPERVISED).deploy(result.checkpoint_id, "production")
    with pytest.raises(InvalidInputError, match="pickle runs code when loaded"):
        suho.load_model("pickled", db=features_db)


# --------------------------------------------------------------------------- suho predict
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_cli_predict_writes_the_trainers_predictions(
    features_db: Database,
    store_url: str,
    trained: dict[str, TrainingResult],
    model_type: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    monkeypatch.setenv("SUHO_DATABASE_URL", store_url)
    result = trained[model_type]
    rows, proba = expected(result)
    run = result.run
    window = ["--from", run.test_start.isoformat(), "--to", run.test_end.isoformat()]
    args = ["predict", "--model", f"direction-{model_type}", *window, "--quiet"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert f"{len(rows):,} predictions by checkpoint {result.checkpoint_id}" in out.output
    predictions = PredictionRepository(features_db)
    stored = predictions.frame(result.checkpoint_id)
    want = pd.DataFrame(
        {"symbol": rows["symbol"].astype(str), "timestamp": rows["time"], "p": proba}
    ).merge(stored, on=["symbol", "timestamp"], how="outer", validate="1:1")
    np.testing.assert_array_equal(want["probability"].to_numpy(), want["p"].to_numpy())
    np.testing.assert_array_equal(want["prediction"].to_numpy(), (want["p"] >= 0.5) * 1.0)
    assert set(stored["run_id"].map(str)) == {str(run.run_id)}

    # A re-run replaces its rows: still one per (checkpoint, symbol, time).
    assert CliRunner().invoke(app, args).exit_code == 0
    assert predictions.count(result.checkpoint_id) == len(rows)

    # To a file instead: the same predictions, each naming its checkpoint.
    path = tmp_path / "out.parquet"
    assert CliRunner().invoke(app, [*args, "-o", str(path)]).exit_code == 0
    written = pd.read_parquet(path)
    assert set(written["checkpoint_id"]) == {str(result.checkpoint_id)}
    np.testing.assert_array_equal(np.sort(written["probability"]), np.sort(proba))


def test_cli_predict_refuses_bad_input_and_writes_nothing(
    features_db: Database,
    store_url: str,
    trained: dict[str, TrainingResult],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    monkeypatch.setenv("SUHO_DATABASE_URL", store_url)
    result = trained["lightgbm"]
    rows, _ = expected(result)
    repo = PredictionRepository(features_db)
    before = repo.count(result.checkpoint_id)
    bad_file = tmp_path / "rows.parquet"
    rows.drop(columns=[result.features[0]]).to_parquet(bad_file)
    wrong_type = tmp_path / "typed.parquet"
    rows.assign(**{result.features[1]: "x"}).to_parquet(wrong_type)
    thin = f"thin_{uuid.uuid4().hex[:6]}"  # a feature table lacking a feature
    FeatureTable(features_db, thin).write(rows.drop(columns=[result.features[2]]))
    cases = {
        ("--model", "nope"): "no model or agent named 'nope'",
        ("--model", "direction-lightgbm", "--stage", "staging"): "in staging",
        ("--model", "direction-lightgbm", "--source", str(bad_file)): (
            f"missing feature column '{result.features[0]}'"
        ),
        ("--model", "direction-lightgbm", "--source", str(wrong_type)): "must be numeric",
        ("--model", "direction-lightgbm", "--source", thin): (
            f"missing feature column '{result.features[2]}'"
        ),
        ("--model", "direction-lightgbm", "--from", "2099-01-01"): "no rows to predict",
        ("--model", "direction-lightgbm", "--source", "no_such_table"): "does not exist",
    }
    for args, message in cases.items():
        out = CliRunner().invoke(app, ["predict", *args, "--quiet"])
        assert out.exit_code != 0, args
        assert message in str(out.exception), (args, out.exception)
    assert repo.count(result.checkpoint_id) == before


def test_prediction_writes_split_by_partition_and_rerun_is_idempotent(
    features_db: Database,
) -> None:
    """150 months in one write: two INSERTs of at most 100 partitions; a second write
    of the same keys replaces the first."""
    repo = PredictionRepository(features_db)
    checkpoint, run = uuid.uuid4(), uuid.uuid4()
    times = pd.date_range("2010-01-01", periods=150, freq="MS", tz="UTC")
    frame = pd.DataFrame(
        {"symbol": "EURUSD", "timestamp": times, "prediction": 1.0, "probability": 0.75}
    )
    assert repo.write(checkpoint, run, frame) == 150
    assert repo.write(checkpoint, run, frame.assign(prediction=0.0)) == 150
    stored = repo.frame(checkpoint)
    assert len(stored) == 150 and (stored["prediction"] == 0.0).all()
    assert set(stored["checkpoint_id"]) == {checkpoint}
    with pytest.raises(InvalidInputError, match="prediction at row 1 is nan"):
        repo.write(uuid.uuid4(), run, frame.assign(prediction=[1.0, np.nan] + [1.0] * 148))


# --------------------------------------------------------------------------- suho serve
def serving_client(db: Database, ref: str, **options: Any) -> Any:
    from fastapi.testclient import TestClient

    from suho.inference.serve import ModelHolder, create_serving_app

    return TestClient(create_serving_app(ModelHolder(db, ref), **options))


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_serve_predicts_what_the_trainer_did(
    features_db: Database, trained: dict[str, TrainingResult], model_type: str
) -> None:
    result = trained[model_type]
    rows, proba = expected(result)
    client = serving_client(features_db, f"direction-{model_type}")
    info = client.get("/model").json()
    assert info["checkpoint_id"] == str(result.checkpoint_id)
    assert info["features"] == result.features
    assert client.get("/health").json()["checkpoint_id"] == str(result.checkpoint_id)
    records = rows[list(reversed(result.features))].to_dict(orient="records")  # any key order
    body = client.post("/predict", json={"records": records}).json()
    assert body["checkpoint_id"] == str(result.checkpoint_id)
    np.testing.assert_array_equal(np.asarray(body["probability"]), proba)
    np.testing.assert_array_equal(body["prediction"], (proba >= 0.5).astype(int))
    columns = {f: rows[f].tolist() for f in result.features}
    by_columns = client.post("/predict", json={"columns": columns}).json()
    np.testing.assert_array_equal(np.asarray(by_columns["probability"]), proba)
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_serve_refuses_bad_requests_with_422_naming_the_field(
    features_db: Database, trained: dict[str, TrainingResult]
) -> None:
    result = trained["catboost"]
    rows, _ = expected(result)
    first = result.features[0]
    client = serving_client(features_db, "direction-catboost")
    record = {f: float(rows[f].iloc[0]) for f in result.features}

    def error(response: Any) -> str:
        assert response.status_code == 422, response.text
        return str(response.json()["detail"])

    malformed = client.post(
        "/predict", content=b'{"records": [', headers={"content-type": "application/json"}
    )
    assert "JSON decode error" in error(malformed)
    typed = error(client.post("/predict", json={"records": [{**record, first: "high"}]}))
    assert f"'records', 0, '{first}'" in typed and "valid number" in typed
    missing = {k: v for k, v in record.items() if k != first}
    assert f"missing feature column '{first}'" in error(
        client.post("/predict", json={"records": [missing]})
    )
    assert "exactly one of records or columns" in error(client.post("/predict", json={}))
    assert "at least 1 item" in error(client.post("/predict", json={"records": []}))
    assert "this is a supervised model" in error(client.post("/act", json={"states": [[1.0]]}))


def test_serve_beyond_loopback_needs_the_token(features_db: Database, trained: Any) -> None:
    from suho.ui.security import serving_options

    with pytest.raises(InvalidInputError, match="is not loopback: set a token"):
        serving_options("0.0.0.0", True, None)
    secret = "s3cret-token-of-24-chars"
    options = serving_options("0.0.0.0", True, secret)
    client = serving_client(
        features_db,
        "direction-xgboost",
        token=options.token,
        allowed_hosts=options.allowed_hosts,
    )
    assert client.get("/health").status_code == 401
    ok = client.get("/health", headers={"Authorization": f"Bearer {secret}"})
    assert ok.status_code == 200
    loopback = serving_options("127.0.0.1", True, None)
    local = serving_client(features_db, "direction-xgboost", allowed_hosts=loopback.allowed_hosts)
    assert local.get("/health").status_code == 400  # Host: testserver is not loopback
    assert local.get("/health", headers={"host": "127.0.0.1"}).status_code == 200


def test_hot_swap_under_load_fails_no_request(
    features_db: Database, trained: dict[str, TrainingResult]
) -> None:
    """A real server, a client loop, and a new deploy: the loop sees the new
    checkpoint and no error."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    from suho.inference.serve import ModelHolder, create_serving_app

    old = train(features_db, "xgboost", model_name="swapped", seed=1)
    new = train(features_db, "xgboost", model_name="swapped", seed=2, rounds=20)
    tracking = RunTrackingService(features_db, RunKind.SUPERVISED)
    tracking.deploy(old.checkpoint_id, "production")
    rows, new_proba = expected(new)
    records = rows[new.features].to_dict(orient="records")

    holder = ModelHolder(features_db, "swapped", poll_seconds=0.2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_serving_app(holder), host="127.0.0.1", port=port, log_level="error")
    )
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    holder.start()
    seen: list[str] = []
    errors: list[str] = []
    last_body: dict[str, Any] = {}
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post("/predict", json={"records": records})
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    continue
                body = response.json()
                seen.append(body["checkpoint_id"])
                last_body.update(body)

    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        client_thread = threading.Thread(target=loop, daemon=True)
        client_thread.start()
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        tracking.deploy(new.checkpoint_id, "production")
        while str(new.checkpoint_id) not in seen[-1:] and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        client_thread.join(timeout=30)
    finally:
        stop.set()
        holder.stop()
        server.should_exit = True
        serving.join(timeout=30)
    assert errors == []
    assert seen[0] == str(old.checkpoint_id) and seen[-1] == str(new.checkpoint_id)
    assert set(seen) == {str(old.checkpoint_id), str(new.checkpoint_id)}
    assert holder.swaps == 1
    np.testing.assert_array_equal(np.asarray(last_body["probability"]), new_proba)


def test_a_poll_swaps_only_when_the_serving_checkpoint_leaves_the_stage(
    features_db: Database,
) -> None:
    """A poll reads whether the serving checkpoint is still in the stage; a deploy
    moves it out, and only then is the stage looked up and the new one loaded. A stage
    that empties keeps the last model serving."""
    from suho.inference.serve import ModelHolder

    first = train(features_db, "xgboost", model_name="polled", seed=3)
    second = train(features_db, "xgboost", model_name="polled", seed=4)
    tracking = RunTrackingService(features_db, RunKind.SUPERVISED)
    tracking.deploy(first.checkpoint_id, "production")
    holder = ModelHolder(features_db, "polled")
    assert holder.check() is False and holder.swaps == 0
    tracking.deploy(second.checkpoint_id, "production")
    assert holder.check() is True and holder.model.checkpoint_id == second.checkpoint_id
    assert holder.check() is False
    tracking.deploy(second.checkpoint_id, "staging")  # production is empty now
    assert holder.check() is False and holder.model.checkpoint_id == second.checkpoint_id
    tracking.deploy(first.checkpoint_id, "production")
    assert holder.check() is True and holder.model.checkpoint_id == first.checkpoint_id
    assert holder.swaps == 2


# --------------------------------------------------------------------------- MLflow
def test_mlflow_pyfunc_predicts_what_suho_does(
    features_db: Database,
    trained: dict[str, TrainingResult],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow
    from mlflow import MlflowClient

    from suho.integrations.mlflow import MlflowExporter

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(uri).search_experiments()
    exporter = MlflowExporter(features_db, uri, artifact_location=str(tmp_path / "artifacts"))
    # Through the environment, which monkeypatch restores: ``mlflow.set_registry_uri``
    # also exports MLFLOW_REGISTRY_URI and ``set_registry_uri(None)`` leaves it set.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    for model_type, result in trained.items():
        exporter.export(result.run.run_id)
        exporter.export(result.run.run_id)  # again: no second model, no second version
        rows, proba = expected(result)
        name = f"suho-direction-{model_type}"
        versions = MlflowClient(uri).search_model_versions(f"name = '{name}'")
        assert len(versions) == 1
        loaded = mlflow.pyfunc.load_model(f"models:/{name}@production")
        inputs = loaded.metadata.get_input_schema().input_names()
        assert inputs == result.features
        out = loaded.predict(rows[result.features])
        np.testing.assert_array_equal(out["probability"].to_numpy(), proba)
        suho_model = suho.load_model(f"direction-{model_type}", db=features_db)
        np.testing.assert_array_equal(out["prediction"].to_numpy(), suho_model.predict(rows))
        with pytest.raises(Exception, match=result.features[0]):
            loaded.predict(rows[result.features].drop(columns=[result.features[0]]))
