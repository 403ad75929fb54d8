"""`suho demo --quick`, twice, end to end in a fresh data directory.

The demo runs as the CLI in a subprocess (it opens its own embedded store); a
last subprocess reads the store back and prints what the assertions need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

READ_BACK = """
import json
from suho_models import TABLE_NAMES
from suho_models.db import Database
from suho_models.settings import get_settings
from repositories.queries import BEST_RL_AGENTS, COMPARE_MODEL_PERFORMANCE
db = Database(get_settings().resolved_database_url())
counts = {t: db.scalar(f"SELECT count() FROM {t} FINAL") for t in TABLE_NAMES}
print(json.dumps({
    "counts": counts,
    "features": db.scalar("SELECT count() FROM ml_features"),
    "distinct_features": db.scalar(
        "SELECT count() FROM (SELECT DISTINCT symbol, time FROM ml_features)"),
    "statuses": [r[0] for r in db.execute("SELECT DISTINCT status FROM training_runs FINAL")]
              + [r[0] for r in db.execute("SELECT DISTINCT status FROM agent_training_runs FINAL")],
    "compare": db.execute_mappings(COMPARE_MODEL_PERFORMANCE),
    "agents": db.execute_mappings(BEST_RL_AGENTS),
    "production_per_name": [r[0] for r in db.execute(
        "SELECT count() FROM model_checkpoints FINAL WHERE deployment_status = 'production' "
        "GROUP BY model_name")] + [r[0] for r in db.execute(
        "SELECT count() FROM agent_checkpoints FINAL WHERE deployment_status = 'production' "
        "GROUP BY agent_type")],
}, default=str))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUHO_")}
    env["SUHO_DATA_DIR"] = str(tmp_path / "suho")
    return env


@pytest.mark.slow
def test_quick_demo_twice(tmp_path: Path) -> None:
    env = _env(tmp_path)
    suho = [sys.executable, "-m", "suho", "demo", "--quick", "--quiet"]
    first = subprocess.run(suho, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    for line in ("Compare Model Performance", "Best RL Agents", "demo-xgboost", "demo-ppo"):
        assert line in first.stdout
    second = subprocess.run(
        suho, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "already has" in second.stdout  # features reused, not synthesized again

    read = subprocess.run(
        [sys.executable, "-c", READ_BACK], env=env, capture_output=True, text=True, timeout=120
    )
    assert read.returncode == 0, read.stderr[-3000:]
    out = json.loads(read.stdout.strip().splitlines()[-1])
    counts = out["counts"]
    assert counts["training_runs"] == 6 and counts["agent_training_runs"] == 4
    assert counts["hyperparameters_log"] == 4  # 2 trials per LightGBM study, twice
    for table in ("model_checkpoints", "training_metrics", "agent_checkpoints", "reward_history"):
        assert counts[table] > 0, table
    assert out["features"] == out["distinct_features"] > 0  # not duplicated
    assert set(out["statuses"]) == {"completed"}
    assert len(out["compare"]) == 6 and len(out["agents"]) == 4
    accuracies = [r["final_test_accuracy"] for r in out["compare"]]
    assert accuracies == sorted(accuracies, reverse=True)
    # Something is in production, and never two for one model name or agent type.
    assert len(out["production_per_name"]) >= 2
    assert set(out["production_per_name"]) == {1}
    reports = list((tmp_path / "suho" / "reports").glob("*.html"))
    assert len(reports) >= 2
