"""Contract tests of the run repositories, on both backends."""

from __future__ import annotations

import math
import uuid

import pytest

from repositories import queries
from repositories.errors import InvalidInputError, InvalidTransitionError, NotFoundError
from repositories.runs import AgentRunRepository, TrainingRunRepository
from suho_models.db import Database
from suho_models.enums import RunStatus


def new_run(repo: TrainingRunRepository, name: str = "xgb-1", **kw: object):
    data = {"run_name": name, "model_type": "xgboost", "target_variable": "target_direction"}
    data.update(kw)
    return repo.create(data)


def test_lifecycle_and_current_row(db: Database) -> None:
    repo = TrainingRunRepository(db)
    run = new_run(repo, features_used=["rsi_14", "macd"])
    assert run.status is RunStatus.PENDING
    repo.start(run.run_id)
    repo.update(run.run_id, train_rows=100, val_rows=20, test_rows=20)
    done = repo.complete(
        run.run_id, {"final_test_accuracy": 0.61, "final_train_loss": float("nan")}
    )
    assert done.status is RunStatus.COMPLETED and done.duration_seconds is not None
    # Four versions of one run, no merge in between: readers see one current row.
    assert (
        db.scalar("SELECT count() FROM training_runs WHERE run_id = %(r)s", {"r": run.run_id}) == 4
    )
    current = repo.get(run.run_id)
    assert current.status is RunStatus.COMPLETED
    assert current.train_rows == 100 and current.final_test_accuracy == 0.61
    assert math.isnan(current.final_train_loss)
    assert current.features_used == ["rsi_14", "macd"]
    assert [r.run_id for r in repo.list()] == [run.run_id]


def test_transitions_are_checked(db: Database) -> None:
    repo = TrainingRunRepository(db)
    run = new_run(repo)
    with pytest.raises(InvalidTransitionError, match="pending to completed"):
        repo.complete(run.run_id)
    repo.start(run.run_id)
    repo.complete(run.run_id, {"final_test_accuracy": 0.5})
    with pytest.raises(InvalidTransitionError, match="completed to running"):
        repo.start(run.run_id)
    with pytest.raises(InvalidTransitionError, match="completed to completed"):
        repo.complete(run.run_id, {"final_test_accuracy": 0.9})
    assert repo.get(run.run_id).final_test_accuracy == 0.5


def test_list_filters_order_and_paging(db: Database) -> None:
    repo = TrainingRunRepository(db)
    a = new_run(repo, "alpha-xgb")
    b = new_run(repo, "beta-lgbm", model_type="lightgbm")
    c = new_run(repo, "alpha-cat", model_type="catboost")
    repo.start(b.run_id)
    assert {r.run_id for r in repo.list(name_like="alpha%")} == {a.run_id, c.run_id}
    assert [r.run_id for r in repo.list(type="lightgbm")] == [b.run_id]
    assert [r.run_id for r in repo.list(status="running")] == [b.run_id]
    names = [r.run_name for r in repo.list(order_by="run_name", descending=False)]
    assert names == sorted(names)
    assert [
        r.run_name for r in repo.list(order_by="run_name", descending=False, limit=1, offset=1)
    ] == [names[1]]


def test_unknown_run_is_refused(db: Database) -> None:
    repo = TrainingRunRepository(db)
    with pytest.raises(NotFoundError, match="no run with run_id"):
        repo.start(uuid.uuid4())
    with pytest.raises(InvalidInputError, match="run_id: not a UUID"):
        repo.get("not-a-uuid")


def test_seed_queries_verbatim_equal_the_final_methods(db: Database) -> None:
    runs = TrainingRunRepository(db)
    for i, acc in enumerate([0.55, 0.7, 0.6]):
        run = new_run(runs, f"m{i}")
        runs.start(run.run_id)
        runs.complete(run.run_id, {"final_test_accuracy": acc, "final_f1_score": acc / 2})
    agents = AgentRunRepository(db)
    for i, sharpe in enumerate([1.2, -0.3]):
        run = agents.create({"run_name": f"a{i}", "agent_type": "ppo"})
        agents.start(run.run_id)
        agents.complete(run.run_id, {"final_sharpe_ratio": sharpe, "final_total_return": 0.1})
    verbatim = db.execute_mappings(queries.COMPARE_MODEL_PERFORMANCE)
    method = runs.compare_model_performance()
    assert [r["run_name"] for r in verbatim] == ["m1", "m2", "m0"]
    assert [r["run_name"] for r in method] == ["m1", "m2", "m0"]
    assert [r["final_test_accuracy"] for r in verbatim] == [0.7, 0.6, 0.55]
    best = db.execute_mappings(queries.BEST_RL_AGENTS)
    assert [r["run_name"] for r in best] == ["a0", "a1"]
    assert [r["run_name"] for r in agents.best_agents()] == ["a0", "a1"]


BAD_CREATE = [
    ({"model_type": "Not A Library!"}, "model_type"),  # any library name, but a name
    ({"run_name": ""}, "run_name"),
    ({"run_name": "x" * 300}, "run_name"),
    ({"run_name": 42}, "run_name"),
    ({"train_ratio": 0.8, "val_ratio": 0.15, "test_ratio": 0.15}, "sum to 1"),
    ({"train_ratio": -0.1, "val_ratio": 0.6, "test_ratio": 0.5}, "train_ratio"),
    ({"train_rows": -5}, "train_rows"),
    ({"task_type": "ranking"}, "task_type"),
    ({"config_json": "{not json"}, "config_json"),
    ({"config_json": "[1, 2]"}, "config_json"),
    ({"features_used": "rsi"}, "features_used"),
    ({"unknown_field": 1}, "unknown_field"),
    ({"train_start": "yesterday"}, "train_start"),
]


@pytest.mark.parametrize(("override", "needle"), BAD_CREATE)
def test_bad_input_is_refused_and_nothing_changes(db: Database, override, needle) -> None:
    repo = TrainingRunRepository(db)
    keep = new_run(repo, "keep")
    before = db.execute("SELECT * FROM training_runs ORDER BY updated_at")
    data = {"run_name": "bad", "model_type": "xgboost", "target_variable": "t", **override}
    with pytest.raises(InvalidInputError, match=needle) as info:
        repo.create(data)
    assert "got" in str(info.value)
    assert db.execute("SELECT * FROM training_runs ORDER BY updated_at") == before
    assert repo.get(keep.run_id).run_name == "keep"


def test_sql_in_names_is_stored_literally(db: Database) -> None:
    repo = TrainingRunRepository(db)
    name = "x'); DROP TABLE training_runs; -- \\ \" ✓"
    run = new_run(repo, name)
    assert repo.get(run.run_id).run_name == name
    assert [r.run_name for r in repo.list(name_like="x'); DROP%")] == [name]


def test_bad_final_metrics_are_refused(db: Database) -> None:
    repo = TrainingRunRepository(db)
    run = new_run(repo)
    repo.start(run.run_id)
    with pytest.raises(InvalidInputError, match="final_test_accuracy"):
        repo.complete(run.run_id, {"final_test_accuracy": "high"})
    assert repo.get(run.run_id).status is RunStatus.RUNNING


def test_git_commit_hash_recorded(db: Database, tmp_path, monkeypatch) -> None:
    repo = TrainingRunRepository(db)
    monkeypatch.chdir(tmp_path)  # outside any checkout: empty, no error
    assert new_run(repo).git_commit_hash == ""
    import subprocess

    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
    )
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert new_run(repo).git_commit_hash == head
