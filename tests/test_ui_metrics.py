"""The UI's JSON for metrics of any name: keys of a run, one key's series."""

from __future__ import annotations

import math

from fastapi.testclient import TestClient

import suho
from suho.ui.app import create_app
from suho_models.db import Database


def test_keys_and_series_of_any_key(db: Database) -> None:
    with suho.init(kind="rl", agent_type="dqn", db=db) as run:
        for i in range(4):
            run.log({"loss/q": 1.0 / (i + 1), "weird": math.inf if i == 3 else 0.0})
    client = TestClient(create_app(db))
    keys = client.get(f"/api/runs/{run.run_id}/metric-keys").json()
    assert [k["key"] for k in keys["keys"]] == ["loss/q", "weird"]
    assert keys["keys"][1]["last_value"] is None  # inf: JSON has none
    series = client.get(f"/api/runs/{run.run_id}/metrics/loss/q").json()
    assert series["step"] == [0, 1, 2, 3] and series["value"] == [1.0, 0.5, 1 / 3, 0.25]
    assert client.get(f"/api/runs/{run.run_id}/metrics/none").json()["step"] == []
    missing = client.get("/api/runs/00000000-0000-0000-0000-000000000000/metric-keys")
    assert missing.status_code == 404
    bad = client.get(f"/api/runs/{run.run_id}/metrics/{'x' * 300}")
    assert bad.status_code == 422 and "at most 250 characters" in bad.json()["error"]


def test_client_runs_have_importance_and_a_report(db: Database, tmp_path) -> None:
    """A run of one's own XGBoost code: the UI's feature importance reads what autolog
    logged (not a 500), a run with none answers 404 saying why, and ``suho report``
    writes the figures the run's data allow, its metrics of any name included."""
    import numpy as np
    import xgboost as xgb

    from suho.report import write_report

    rng = np.random.default_rng(0)
    X = rng.random((300, 3))
    y = (X[:, 0] > 0.5).astype(int)
    suho.autolog()
    try:
        with suho.init(name="own-xgb", config={"eta": 0.3}, db=db) as run:
            data = xgb.DMatrix(X, label=y, feature_names=["signal", "noise_a", "noise_b"])
            xgb.train(
                {"eta": 0.3, "objective": "binary:logistic"}, data, 10, evals=[(data, "train")]
            )
    finally:
        suho.autolog(disable=True)
    with suho.init(name="plain", db=db) as plain:
        plain.log({"loss": 0.5})

    client = TestClient(create_app(db))
    ranked = client.get(f"/api/runs/{run.run_id}/feature-importance").json()["features"]
    assert ranked[0]["name"] == "signal"  # the only feature the target depends on
    missing = client.get(f"/api/runs/{plain.run_id}/feature-importance")
    assert missing.status_code == 404 and "none logged" in missing.json()["error"]

    page = write_report(db, run.run_id, tmp_path / "own.html").read_text()
    assert 'id="feature_importance"' in page and 'id="metrics"' in page
    assert 'id="confusion_matrix"' not in page  # its test split is not ours to rebuild
    assert 'id="metrics"' in write_report(db, plain.run_id, tmp_path / "plain.html").read_text()
