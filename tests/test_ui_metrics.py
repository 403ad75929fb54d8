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
