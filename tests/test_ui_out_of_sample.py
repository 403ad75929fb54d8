"""The run page's "Out of sample" panel and its JSON (``/api/runs/{id}/out-of-sample``):
test figures beside the naive baselines', the plain line the CLI prints, and the
walk-forward folds with their mean ± std, for a supervised run and an agent written
through the repositories as the trainers write them (``tests.ui_data``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect

from suho.ui.app import create_app
from suho_models.db import Database, migrations
from tests.conftest import BACKENDS, backend_url, fresh_database_name
from tests.test_ui_browser import Served, chromium, open_page
from tests.ui_data import AGENT_FOLDS, SUPERVISED_FOLDS, out_of_sample_runs, populate
from trainers.baselines import rl_verdict, supervised_verdict


def _store(url: str) -> tuple[Database, dict[str, Any]]:
    migrations.upgrade(url)
    db = Database(url)
    ids = out_of_sample_runs(db)
    bare = populate(db, runs=1, iterations=3)
    ids["bare"] = bare["supervised"][0]  # a final checkpoint without baseline figures
    ids["bare_agent"] = bare["agents"][0]  # an intermediate checkpoint only
    return db, ids


@pytest.fixture(scope="module", params=BACKENDS)
def filled(request: pytest.FixtureRequest) -> Iterator[tuple[Database, dict[str, Any]]]:
    url = backend_url(request.param, request)
    db, ids = _store(url)
    try:
        yield db, ids
    finally:
        db.close()


# --------------------------------------------------------------------------- API
def test_api_shows_the_stored_figures_beside_the_baselines_and_the_folds(filled) -> None:
    db, ids = filled
    client = TestClient(create_app(db))
    body = client.get(f"/api/runs/{ids['supervised']}/out-of-sample").json()
    assert body["run_id"] == str(ids["supervised"])
    test = body["test"]
    assert test["baseline_names"] == ["majority class", "last move"]
    (accuracy,) = test["figures"]
    assert accuracy["model"] == pytest.approx(0.511)
    assert accuracy["baselines"] == {
        "majority class": pytest.approx(0.538),
        "last move": pytest.approx(0.497),
    }
    assert accuracy["beat"] == "some"
    stored = {"test_accuracy": 0.511, "baseline_majority_accuracy": 0.538,
              "baseline_last_move_accuracy": 0.497}  # fmt: skip
    assert test["verdict"] == supervised_verdict("classification", stored)  # the CLI's line
    assert test["verdict"].startswith("model beat last move only: accuracy 0.511")
    assert test["notes"] == ["majority class: 1 (the training split's)"]

    walk = body["walk_forward"]
    assert (walk["folds_count"], walk["mode"], walk["size_unit"]) == (3, "expanding", "rows")
    assert [f["fold"] for f in walk["folds"]] == [1, 2, 3]
    for fold, logged in zip(walk["folds"], SUPERVISED_FOLDS, strict=True):
        assert (fold["train_size"], fold["test_size"]) == (logged["train_rows"], 200.0)
        assert fold["figures"][0]["model"] == pytest.approx(logged["test_accuracy"])
        assert fold["figures"][0]["baselines"]["majority class"] == pytest.approx(
            logged["baseline_majority_accuracy"]
        )
    accuracies = [f["test_accuracy"] for f in SUPERVISED_FOLDS]
    assert walk["mean"][0]["model"] == pytest.approx(np.mean(accuracies))
    assert walk["std"][0]["model"] == pytest.approx(np.std(accuracies))
    assert walk["verdict"].startswith("model beat every baseline: accuracy 0.547")
    assert walk["line"].startswith("walk-forward (3 folds): ")

    agent = client.get(f"/api/runs/{ids['agent']}/out-of-sample").json()
    assert [f["figure"] for f in agent["test"]["figures"]] == ["Sharpe", "total return"]
    assert agent["test"]["verdict"] == rl_verdict(
        {"sharpe_ratio": 0.47, "benchmark_sharpe_ratio": 1.04, "trend_sharpe_ratio": 0.2}
    )
    assert agent["test"]["warning"] is None
    assert agent["walk_forward"]["size_unit"] == "bars"
    assert agent["walk_forward"]["mode"] == "rolling"
    sharpes = [f["sharpe_ratio"] for f in AGENT_FOLDS]
    assert [f["figures"][0]["model"] for f in agent["walk_forward"]["folds"]] == sharpes
    # the run's detail carries the same structure (the page renders it)
    detail = client.get(f"/api/runs/{ids['agent']}").json()
    assert detail["out_of_sample"]["walk_forward"]["folds"] == agent["walk_forward"]["folds"]


def test_api_says_why_a_run_has_no_out_of_sample_figures(filled) -> None:
    db, ids = filled
    client = TestClient(create_app(db))
    for key in ("bare", "bare_agent"):
        response = client.get(f"/api/runs/{ids[key]}/out-of-sample")
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert error.startswith(f"run_id: {ids[key]} has no out-of-sample comparison")
        assert "baseline" in error and "walk-forward" in error
        assert client.get(f"/api/runs/{ids[key]}").json()["out_of_sample"] is None
    missing = client.get("/api/runs/00000000-0000-0000-0000-000000000000/out-of-sample")
    assert missing.status_code == 404 and missing.json()["error"].startswith("no supervised")


# --------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def served(embedded_dir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    db, ids = _store(f"clickhouse+chdb:///{embedded_dir}/{fresh_database_name()}")
    try:
        with Served(create_app(db)) as url:
            yield url, ids
    finally:
        db.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with open_page(browser, {"width": 1400, "height": 900}) as p:
        yield p


@pytest.mark.slow
def test_run_pages_show_the_out_of_sample_panel_only_when_stored(page: Page, served) -> None:
    base, ids = served
    page.goto(f"{base}/runs/{ids['supervised']}")
    panel = page.locator("#out-of-sample")
    expect(panel.locator("h2")).to_have_text("Out of sample")
    expect(page.locator("#oos-verdict")).to_have_text(
        "model beat last move only: accuracy 0.511 against majority class 0.538, last move 0.497"
    )
    row = page.locator("#oos-test tr[data-figure=accuracy]")
    expect(row.locator("td[data-field=model]")).to_have_text("0.511")
    expect(row.locator("td[data-field='majority class']")).to_have_text("0.538")
    expect(row.locator("td[data-field='last move']")).to_have_text("0.497")
    expect(page.locator("#oos-folds tbody tr")).to_have_count(3)
    second = page.locator("#oos-folds tr[data-fold='2'] td")
    expect(second).to_have_text(["2", "600", "200", "0.58", "0.53", "0.49"])
    expect(page.locator("#oos-mean td[data-field='accuracy:model']")).to_have_text(
        f"{np.mean([0.52, 0.58, 0.54]):.4g} ± {np.std([0.52, 0.58, 0.54]):.4g}"
    )
    expect(page.locator("#oos-wf-verdict")).to_contain_text(
        "Mean over folds: model beat every baseline"
    )

    page.goto(f"{base}/runs/{ids['agent']}")
    expect(page.locator("#oos-verdict")).to_have_text(
        "model beat trend rule only: Sharpe 0.470 against buy-and-hold 1.040, trend rule 0.200"
    )
    expect(page.locator("#out-of-sample h3")).to_have_text("Walk-forward: 2 folds (rolling)")
    expect(page.locator("#oos-folds thead th").nth(1)).to_have_text("train bars")
    expect(page.locator("#oos-folds tr[data-fold='1'] td[data-field='Sharpe:model']")).to_have_text(
        "0.3"
    )
    expect(page.locator("#oos-notes")).to_contain_text("50-bar mean")

    for key in ("bare", "bare_agent"):  # nothing stored: no panel, not an empty one
        page.goto(f"{base}/runs/{ids[key]}")
        expect(page.locator("#metadata")).to_be_visible()
        expect(page.locator("#out-of-sample")).to_have_count(0)
