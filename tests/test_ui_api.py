"""The UI's JSON API and pages (``suho ui``), on both backends, through TestClient."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from repositories.checkpoints import ModelCheckpointRepository
from repositories.runs import AgentRunRepository, TrainingRunRepository
from repositories.series import TrainingMetricRepository
from suho.ui.app import create_app
from suho_models.db import Database, migrations
from tests.conftest import BACKENDS, backend_url, fresh_database_name
from tests.ui_data import populate


@pytest.fixture(scope="module", params=BACKENDS)
def filled(request: pytest.FixtureRequest) -> Iterator[tuple[Database, dict[str, Any]]]:
    """One populated database per backend for the read-only tests of this module."""
    url = backend_url(request.param, request)
    migrations.upgrade(url)
    db = Database(url)
    try:
        yield db, populate(db)
    finally:
        db.close()


@pytest.fixture
def client(filled: tuple[Database, dict[str, Any]]) -> TestClient:
    return TestClient(create_app(filled[0]))


@pytest.fixture
def ids(filled: tuple[Database, dict[str, Any]]) -> dict[str, Any]:
    return filled[1]


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]


# --------------------------------------------------------------------------- listings
def test_runs_default_view_is_the_seeds_compare_model_performance(client, filled) -> None:
    db, _ = filled
    body = client.get("/api/runs").json()
    seed = TrainingRunRepository(db).compare_model_performance(10)
    assert [r["run_id"] for r in body["rows"][:10]] == [str(r["run_id"]) for r in seed]
    assert body["sort"] == "final_test_accuracy" and body["order"] == "desc"
    assert {r["status"] for r in body["rows"]} == {"completed"}
    assert body["total"] == 6


def test_agents_default_view_is_the_seeds_best_rl_agents(client, filled) -> None:
    db, _ = filled
    body = client.get("/api/agents").json()
    seed = AgentRunRepository(db).best_agents(10)
    assert [r["run_id"] for r in body["rows"]] == [str(r["run_id"]) for r in seed]
    assert body["rows"][0]["run_name"] == "sac-agent"
    assert client.get("/api/seed/best_rl_agents").json()[0]["run_name"] == "sac-agent"


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_runs_sorted_by_a_metric_in_the_databases_order(client, filled, order) -> None:
    db, _ = filled
    body = client.get(f"/api/runs?status=&sort=final_f1_score&order={order}").json()
    expected = TrainingRunRepository(db).list(order_by="final_f1_score", descending=order == "desc")
    assert body["total"] == 8  # 6 completed, one running, one failed
    assert [r["run_id"] for r in body["rows"]] == [str(r.run_id) for r in expected]


def test_runs_filters_and_paging(client, ids) -> None:
    def names(query: str) -> list[str]:
        return [r["run_name"] for r in client.get(f"/api/runs?{query}").json()["rows"]]

    assert names("status=failed") == ["broken"]
    assert names("status=running") == ["still-training"]
    assert set(names("type=catboost")) == {"catboost-2", "catboost-5"}
    assert set(names("status=&name=XGBOOST")) == {"xgboost-0", "xgboost-3"}
    assert names("status=&name=%25") == []  # taken literally, not as a LIKE wildcard
    today = dt.date.today()
    assert len(names(f"status=&from={today - dt.timedelta(days=1)}&to={today}")) == 8
    assert names(f"status=&from={today + dt.timedelta(days=1)}") == []
    high = names("metric=final_test_accuracy&min=0.7")
    assert high and all(r >= 0.7 for r in _metric(client, "final_test_accuracy", "min=0.7"))
    page = client.get("/api/runs?status=&sort=run_name&order=asc&limit=3&offset=3").json()
    assert page["total"] == 8 and len(page["rows"]) == 3
    everything = names("status=&sort=run_name&order=asc")
    assert [r["run_name"] for r in page["rows"]] == everything[3:6]
    beyond = client.get("/api/runs?status=&offset=1000").json()
    assert beyond["rows"] == [] and beyond["total"] == 8


def _metric(client: TestClient, metric: str, bound: str) -> list[float]:
    rows = client.get(f"/api/runs?metric={metric}&{bound}").json()["rows"]
    return [r[metric] for r in rows]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("sort=nope", "sort"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("status=sleeping", "status"),
        ("from=yesterday", "from"),
        ("order=sideways", "order"),
        ("metric=final_rmse_typo&min=1", "metric"),
        ("metric=final_rmse&min=abc", "min"),
    ],
)
def test_listing_bad_input_names_the_field(client, query, field) -> None:
    message = _error(client.get(f"/api/runs?{query}"), 422)
    assert message.startswith(f"{field}:")


# --------------------------------------------------------------------------- one run
def test_run_detail(client, ids) -> None:
    run_id = ids["supervised"][0]
    body = client.get(f"/api/runs/{run_id}").json()
    assert body["kind"] == "supervised" and body["type"] == "xgboost"
    assert body["run"]["git_commit_hash"] == f"{0:040x}"
    assert body["parameters"]["params.max_depth"] == 2
    assert [c["checkpoint_id"] for c in body["checkpoints"]] == [str(ids["checkpoint"])]
    assert body["checkpoints"][0]["deployment_status"] == "not_deployed"
    assert body["evaluation"]["checkpoint.val_accuracy"] == 0.6
    agent = client.get(f"/api/runs/{ids['agents'][0]}").json()
    assert agent["kind"] == "rl" and agent["curves"] == ["episodes", "steps"]
    assert "not a UUID" in _error(client.get("/api/runs/not-a-uuid"), 422)
    assert _error(client.get(f"/api/runs/{uuid.uuid4()}"), 404).startswith("no supervised")


def test_curve_whole_downsampled_and_zoomed(client, ids) -> None:
    run_id = ids["supervised"][0]
    whole = client.get(f"/api/runs/{run_id}/curve").json()
    assert whole["points_in_range"] == 50 and whole["x_min"] == 0 and whole["x_max"] == 49
    assert whole["points_returned"]["train_loss"] == 50  # short curves come back whole
    assert whole["series"]["train_loss"][0] == [float(k) for k in range(50)]
    assert whole["points_returned"]["gradient_norm"] == 0  # never logged: no points
    small = client.get(f"/api/runs/{run_id}/curve?points=10&series=val_loss").json()
    xs, ys = small["series"]["val_loss"]
    assert list(small["series"]) == ["val_loss"] and len(xs) == 10
    assert xs[0] == 0 and xs[-1] == 49  # LTTB keeps both ends
    zoom = client.get(f"/api/runs/{run_id}/curve?x_from=10&x_to=19&series=train_loss").json()
    assert zoom["points_in_range"] == 10
    assert zoom["series"]["train_loss"][0] == [float(k) for k in range(10, 20)]
    for query, field in [
        ("name=bogus", "curve"),
        ("points=2", "points"),
        ("series=nope", "series"),
        ("x_from=5&x_to=1", "x_from"),
    ]:
        assert _error(client.get(f"/api/runs/{run_id}/curve?{query}"), 422).startswith(field)


def test_agent_curves(client, ids) -> None:
    run_id = ids["agents"][0]
    episodes = client.get(f"/api/runs/{run_id}/curve?name=episodes").json()
    assert episodes["series"]["episode_final_reward"] == [[0, 1, 2, 3], [0.45, 1.45, 2.45, 3.45]]
    steps = client.get(f"/api/runs/{run_id}/curve?name=steps&series=policy_loss").json()
    assert steps["points_in_range"] == 40
    assert steps["series"]["policy_loss"][1][:2] == [1.0, 0.5]


def test_status_trials_checkpoints(client, ids) -> None:
    status = client.get(f"/api/runs/{ids['running']}/status").json()
    assert status["status"] == "running" and status["kind"] == "supervised"
    trials = client.get(f"/api/runs/{ids['supervised'][0]}/trials").json()
    assert [t["objective"] for t in trials["trials"]] == [0.7, 0.6, 0.65]
    assert trials["best"] == {"trial_number": 1, "objective": 0.6, "parameters": {"max_depth": 3}}
    rl = client.get(f"/api/runs/{ids['agents'][0]}/trials").json()
    assert rl["direction"] == "maximize" and rl["best"]["parameters"] == {"gamma": 0.99}
    checkpoints = client.get(f"/api/runs/{ids['agents'][1]}/checkpoints").json()
    assert [c["kind"] for c in checkpoints] == ["intermediate"]


def test_feature_importance_of_the_final_model(client, ids) -> None:
    body = client.get(f"/api/runs/{ids['supervised'][0]}/feature-importance").json()
    assert [f["name"] for f in body["features"]][0] == "f_momentum"
    assert body["features"][0]["importance"] > body["features"][-1]["importance"]
    assert "no checkpoint" in _error(
        client.get(f"/api/runs/{ids['supervised'][1]}/feature-importance"), 404
    )
    assert "RL run" in _error(client.get(f"/api/runs/{ids['agents'][0]}/feature-importance"), 422)


def test_equity_needs_an_agent_with_a_checkpoint(client, ids, filled) -> None:
    db, _ = filled
    assert "supervised" in _error(client.get(f"/api/runs/{ids['supervised'][0]}/equity"), 422)
    bare = AgentRunRepository(db).create({"run_name": "no-ckpt", "agent_type": "a2c"})
    assert "no agent checkpoint" in _error(client.get(f"/api/runs/{bare.run_id}/equity"), 404)


def test_compare(client, ids) -> None:
    a, b = ids["supervised"][:2]
    body = client.get(f"/api/compare?ids={a},{b}").json()
    assert [r["run_id"] for r in body["runs"]] == [str(a), str(b)]
    diff = {row["name"]: row for row in body["diff"]}
    assert diff["params.max_depth"]["differs"] and diff["params.max_depth"]["values"] == {
        str(a): 2,
        str(b): 3,
    }
    assert not diff["target"]["differs"]
    assert diff["model_type"]["values"] == {str(a): "xgboost", str(b): "lightgbm"}
    assert body["runs"][1]["curve"]["points_returned"]["val_loss"] == 50
    agents = client.get(f"/api/compare?ids={ids['agents'][0]},{ids['agents'][1]}").json()
    assert agents["curve"] == "episodes"
    assert "2 to 10" in _error(client.get(f"/api/compare?ids={a}"), 422)
    many = ",".join(str(uuid.uuid4()) for _ in range(11))
    assert "2 to 10" in _error(client.get(f"/api/compare?ids={many}"), 422)
    mixed = f"{a},{ids['agents'][0]}"
    assert "one kind" in _error(client.get(f"/api/compare?ids={mixed}"), 422)


def test_pages_render(client, ids) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/runs"
    runs = client.get("/runs")
    assert runs.status_code == 200 and "Compare Model Performance" in runs.text
    first = client.get("/api/runs").json()["rows"][0]
    assert runs.text.index(first["run_name"]) < runs.text.index("</tbody>")
    assert "Best RL Agents" in client.get("/agents").text
    page = client.get(f"/runs/{ids['supervised'][0]}").text
    assert 'id="chart-loss"' in page and f"{0:040x}" in page and "ui-model" not in page
    assert 'id="chart-rewards"' in client.get(f"/runs/{ids['agents'][0]}").text
    a, b = ids["supervised"][:2]
    assert "params.max_depth" in client.get(f"/compare?ids={a},{b}").text
    assert "still-training" in client.get("/live").text
    assert client.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
    assert client.get("/static/vendor/uplot/LICENSE").text.startswith("The MIT License")


# --------------------------------------------------------------------------- live, deploy
def test_live_sees_a_status_change(db) -> None:
    client = TestClient(create_app(db))
    runs = TrainingRunRepository(db)
    run = runs.create({"run_name": "live-one", "model_type": "xgboost", "target_variable": "t"})
    runs.start(run.run_id)
    assert [r["run_name"] for r in client.get("/api/live").json()["running"]] == ["live-one"]
    TrainingMetricRepository(db).log_many(run.run_id, [{"iteration_number": 0, "val_loss": 1.0}])
    curve = client.get(f"/api/runs/{run.run_id}/curve?series=val_loss").json()
    assert curve["points_returned"] == {"val_loss": 1}
    runs.complete(run.run_id, {"final_test_accuracy": 0.5})
    assert client.get("/api/live").json()["running"] == []
    assert client.get(f"/api/runs/{run.run_id}/status").json()["status"] == "completed"


def _model_checkpoints(db: Database) -> tuple[Any, Any, ModelCheckpointRepository]:
    runs = TrainingRunRepository(db)
    run = runs.create({"run_name": "deployable", "model_type": "xgboost", "target_variable": "t"})
    repo = ModelCheckpointRepository(db)
    old = repo.save_checkpoint(run.run_id, b"old", "raw", iteration=1, model_name="m")
    new = repo.save_checkpoint(run.run_id, b"new", "raw", iteration=2, model_name="m")
    repo.deploy(old.checkpoint_id, "production")
    return old, new, repo


def test_deploy_goes_through_the_repository(db) -> None:
    old, new, repo = _model_checkpoints(db)
    client = TestClient(create_app(db))
    url = f"/api/checkpoints/{new.checkpoint_id}/deploy"
    response = client.post(url, json={"stage": "production"})
    assert response.status_code == 200, response.text
    assert response.json()["deployment_status"] == "production"
    assert repo.get(new.checkpoint_id).deployment_status.value == "production"
    assert repo.get(old.checkpoint_id).deployment_status.value == "archived"
    assert _error(client.post(url, json={"stage": "prod"}), 422).startswith("stage:")
    form = client.post(url, data={"stage": "staging"})  # what a cross-site form could send
    assert _error(form, 422).startswith("body:")
    assert repo.get(new.checkpoint_id).deployment_status.value == "production"
    missing = client.post(f"/api/checkpoints/{uuid.uuid4()}/deploy", json={"stage": "staging"})
    assert _error(missing, 404).startswith("no model or agent checkpoint")


def test_read_only_refuses_deploy_and_stores_nothing(db) -> None:
    _, new, repo = _model_checkpoints(db)
    client = TestClient(create_app(db, read_only=True))
    response = client.post(
        f"/api/checkpoints/{new.checkpoint_id}/deploy", json={"stage": "production"}
    )
    assert "read-only" in _error(response, 403)
    assert repo.get(new.checkpoint_id).deployment_status.value == "not_deployed"
    assert client.get("/api/config").json()["read_only"] is True


def test_token_is_checked_on_every_request(db) -> None:
    client = TestClient(create_app(db, token="s3cret"))
    assert "token is required" in _error(client.get("/api/runs"), 401)
    assert _error(client.get("/runs", headers={"Authorization": "Bearer wrong"}), 401)
    assert client.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    first = client.get("/runs?token=s3cret&status=", follow_redirects=False)
    assert first.status_code == 303 and "token" not in first.headers["location"]
    assert client.get("/api/runs").status_code == 200  # the cookie now carries it
    assert _error(TestClient(create_app(db, token="s3cret")).get("/runs?token=nope"), 401)


def test_loopback_app_refuses_foreign_host_headers(db) -> None:
    client = TestClient(create_app(db, allowed_hosts=["127.0.0.1", "localhost"]))
    assert client.get("/api/config", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/api/config", headers={"host": "localhost:5000"}).status_code == 200


def test_cli_refuses_a_public_host_without_a_token() -> None:
    from suho.cli import app

    result = CliRunner().invoke(app, ["ui", "--host", "0.0.0.0"])
    assert result.exit_code != 0
    assert "not loopback" in result.output


def test_diverged_values_reach_json_as_null_and_pages_as_nan(db) -> None:
    runs = TrainingRunRepository(db)
    run = runs.create({"run_name": "diverged", "model_type": "xgboost", "target_variable": "t"})
    runs.start(run.run_id)
    points = [{"iteration_number": 0, "train_loss": 1.0}, {"iteration_number": 1}]
    points[1]["train_loss"] = float("nan")
    TrainingMetricRepository(db).log_many(run.run_id, points)
    runs.complete(run.run_id, {"final_test_accuracy": float("nan"), "final_f1_score": 0.5})
    client = TestClient(create_app(db))
    listing = client.get("/api/runs")
    assert listing.status_code == 200 and listing.json()["rows"][0]["final_test_accuracy"] is None
    curve = client.get(f"/api/runs/{run.run_id}/curve?series=train_loss").json()
    assert curve["points_in_range"] == 2 and curve["series"]["train_loss"] == [[0.0], [1.0]]
    assert client.get(f"/api/runs/{run.run_id}").json()["run"]["final_test_accuracy"] is None
    assert ">nan<" in client.get(f"/runs/{run.run_id}").text


@pytest.mark.slow
def test_equity_curve_of_a_short_real_agent_run(embedded_dir) -> None:
    """One real (tiny) A2C run: the equity API re-evaluates its final agent on the trade
    period, as ``suho report`` does, against buy-and-hold."""
    from tests.test_rl_trainer import TRAIN_DAYS, write_features
    from tests.test_rl_trainer import config as rl_config
    from trainers.rl.report import trade_equity_curves
    from trainers.rl.trainer import RLTrainer

    url = f"clickhouse+chdb:///{embedded_dir}/{fresh_database_name()}"
    migrations.upgrade(url)
    db = Database(url)
    try:
        write_features(db)
        run = RLTrainer(rl_config("a2c", timesteps=TRAIN_DAYS), db).run().run
        client = TestClient(create_app(db))
        body = client.get(f"/api/runs/{run.run_id}/equity").json()
        agent, buy_and_hold = trade_equity_curves(db, run.run_id)
        assert body["agent"] == pytest.approx(list(agent))
        assert body["buy_and_hold"] == pytest.approx(list(buy_and_hold))
        assert len(body["dates"]) == len(agent) and body["dates"] == sorted(body["dates"])
        sharpe = body["metrics"]["sharpe_ratio"]  # NaN (flat equity) comes as null
        if run.final_sharpe_ratio is None:
            assert sharpe is None
        else:
            assert sharpe == pytest.approx(run.final_sharpe_ratio)
        detail = client.get(f"/api/runs/{run.run_id}").json()
        assert "checkpoint.benchmark_total_return" in detail["evaluation"]
        episodes = client.get(f"/api/runs/{run.run_id}/curve?name=episodes").json()
        assert episodes["points_in_range"] == run.total_episodes
    finally:
        db.close()


def test_serving_options_follow_suho_db_serve(tmp_path) -> None:
    from repositories.errors import InvalidInputError
    from suho.ui.security import serving_options

    strong = "t0ken-t0ken-t0ken-t0ken"
    local = serving_options("127.0.0.1", None, None, data_dir=tmp_path)
    assert local.read_only is False and local.token and local.generated
    assert "localhost" in local.allowed_hosts
    public = serving_options("0.0.0.0", None, strong)
    assert public.app_options() == {"read_only": True, "token": strong, "allowed_hosts": []}
    assert serving_options("0.0.0.0", False, strong).read_only is False  # --read-write
    assert serving_options("127.0.0.1", True, None, data_dir=tmp_path).read_only is True
    with pytest.raises(InvalidInputError, match="host: '10.0.0.5' is not loopback"):
        serving_options("10.0.0.5", None, "")
