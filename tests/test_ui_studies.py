"""A run's study as the UI shows it, checked against Optuna's own functions on the
same study: importance (``get_param_importances``, same evaluator and seed), the
optimization history, parallel coordinates and slices (``optuna.visualization``)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import optuna
import pytest
from fastapi.testclient import TestClient

from repositories.kinds import RunKind
from repositories.tracking import RunTrackingService
from suho.ui import studies
from suho.ui.app import create_app
from suho_models.db import Database
from tests.study_data import run_study, store_study


@pytest.fixture(scope="module")
def study() -> optuna.Study:
    return run_study(40)


@pytest.fixture
def stored(db: Database, study: optuna.Study) -> Iterator[tuple[Database, str]]:
    tracking = RunTrackingService(db, RunKind.SUPERVISED)
    run = tracking.create({"run_name": "tuned", "model_type": "xgboost", "target_variable": "t"})
    store_study(db, run.run_id, study)
    yield db, str(run.run_id)


@pytest.fixture
def client(stored: tuple[Database, str]) -> TestClient:
    return TestClient(create_app(stored[0]))


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


@pytest.mark.parametrize("evaluator", ["fanova", "mean-decrease-impurity", "ped-anova"])
def test_importance_equals_optunas_on_the_same_study(client, stored, study, evaluator) -> None:
    _, run_id = stored
    got = client.get(f"/api/runs/{run_id}/study/importance?evaluator={evaluator}").json()
    assert got["seed"] == studies.SEED and got["trials"] == len(study.trials)
    expected = optuna.importance.get_param_importances(
        study, evaluator=studies.EVALUATORS[evaluator]()
    )
    ours = {i["name"]: i["importance"] for i in got["importances"]}
    assert list(ours) == list(expected)  # same order: largest first
    assert ours == pytest.approx(dict(expected), abs=1e-12)
    assert set(ours) == {"learning_rate", "max_depth", "booster", "subsample"}  # not BASE's


def test_rebuilt_study_has_the_stored_trials_and_the_sampled_space(stored, study) -> None:
    db, run_id = stored
    tracking = RunTrackingService(db, RunKind.SUPERVISED)
    trials = studies.stored_trials(tracking, tracking.get(run_id))
    parameters = studies.tuned_parameters(trials)
    rebuilt = studies.rebuild(trials, parameters, "minimize")
    assert [t.params for t in rebuilt.trials] == [t.params for t in study.trials]
    assert [t.state for t in rebuilt.trials] == [t.state for t in study.trials]
    assert rebuilt.best_value == study.best_value
    space = optuna.search_space.intersection_search_space(_complete(study))
    assert optuna.search_space.intersection_search_space(_complete(rebuilt)) == space


def test_history_is_optunas_optimization_history(client, stored, study) -> None:
    _, run_id = stored
    view = client.get(f"/api/runs/{run_id}/study").json()
    figure = optuna.visualization.plot_optimization_history(study)
    traces = {t.name: t for t in figure.data}
    assert view["history"]["trial"] == list(traces["Objective Value"].x)
    assert view["history"]["value"] == pytest.approx(list(traces["Objective Value"].y))
    assert view["history"]["best_trial"] == list(traces["Best Value"].x)
    assert view["history"]["best"] == pytest.approx(list(traces["Best Value"].y))
    assert view["best"] == {"number": study.best_trial.number, "value": study.best_value}


def test_parallel_coordinates_are_optunas(client, stored, study) -> None:
    """Axes (kind, range, log scale, choices) and each complete trial's position,
    against the data behind ``optuna.visualization.plot_parallel_coordinate``."""
    from optuna.visualization._parallel_coordinate import _get_parallel_coordinate_info

    _, run_id = stored
    view = client.get(f"/api/runs/{run_id}/study").json()
    complete = [t for t in view["trials"] if t["value"] is not None]
    info = _get_parallel_coordinate_info(study)
    (objective,) = info.dims_objectives
    assert list(objective.values) == pytest.approx([t["value"] for t in complete])
    ours = {p["name"]: p for p in view["parameters"]}
    assert [d.label for d in info.dims_params] == list(ours)
    for dim in info.dims_params:
        p = ours[dim.label]
        values = [t["params"][dim.label] for t in complete]
        assert (p["kind"] == "categorical", p["log"]) == (dim.is_cat, dim.is_log)
        if dim.is_cat:
            assert [str(c) for c in p["choices"]] == list(dim.ticktext)
            assert [p["choices"].index(v) for v in values] == list(dim.values)
        elif dim.is_log:
            assert (math.log10(p["low"]), math.log10(p["high"])) == pytest.approx(dim.range)
            assert [math.log10(v) for v in values] == pytest.approx(list(dim.values))
        else:
            assert (p["low"], p["high"]) == pytest.approx(dim.range)
            assert values == pytest.approx(list(dim.values))


def test_slices_are_optunas(client, stored, study) -> None:
    _, run_id = stored
    view = client.get(f"/api/runs/{run_id}/study").json()
    complete = [t for t in view["trials"] if t["value"] is not None]
    figure = optuna.visualization.plot_slice(study)
    names = [p["name"] for p in view["parameters"]]
    titles = [figure.layout[f"xaxis{n + 1 if n else ''}"].title.text for n in range(len(names))]
    assert titles == names
    for name, trace in zip(names, figure.data, strict=True):
        theirs = [(str(x).strip("'"), y) for x, y in zip(trace.x, trace.y, strict=True)]
        ours = [(str(t["params"][name]), t["value"]) for t in complete]
        assert sorted(theirs) == sorted(ours)


def test_importance_is_cached_per_trial_count_and_a_new_trial_recomputes(client, stored) -> None:
    db, run_id = stored
    first = client.get(f"/api/runs/{run_id}/study/importance").json()
    assert client.get(f"/api/runs/{run_id}/study/importance").json() == first
    key = (run_id, first["trials"], "fanova")
    assert key in studies.CACHE._items
    RunTrackingService(db, RunKind.SUPERVISED).log_trial(
        run_id,
        {
            "trial_number": first["trials"],
            "hyperparameters": {"learning_rate": 0.5, "max_depth": 2, "booster": "dart"},
            "objective_value": 0.1,
        },
    )
    again = client.get(f"/api/runs/{run_id}/study/importance").json()
    assert again["trials"] == first["trials"] + 1


def test_an_unknown_evaluator_is_refused_by_name(client, stored) -> None:
    _, run_id = stored
    response = client.get(f"/api/runs/{run_id}/study/importance?evaluator=shap")
    assert response.status_code == 422
    assert response.json()["error"].startswith("evaluator: expected one of fanova")
    assert "'shap'" in response.json()["error"]
