"""The UI's views a new user met short of optuna-dashboard and MLflow (issue 27), in
Debian's chromium at 1400x900: error pages, feature-importance bars, studies,
smoothing and log scale, the runs table's columns, the compare page's width.

Same harness as :mod:`tests.test_ui_browser` (uvicorn in a thread, Playwright).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from suho.ui.app import create_app
from suho_models.db import Database, migrations
from tests.conftest import fresh_database_name
from tests.test_ui_browser import Served, chromium, open_page, shot
from tests.ui_data import populate

pytestmark = pytest.mark.slow

WINDOW = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def store(embedded_dir: Path) -> Iterator[tuple[Database, dict[str, Any]]]:
    url = f"clickhouse+chdb:///{embedded_dir}/{fresh_database_name()}"
    migrations.upgrade(url)
    db = Database(url)
    try:
        yield db, populate(db)
    finally:
        db.close()


@pytest.fixture(scope="module")
def base(store: tuple[Database, dict[str, Any]]) -> Iterator[str]:
    with Served(create_app(store[0])) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with open_page(browser, WINDOW) as p:
        yield p


# --------------------------------------------------------------------------- errors
def test_a_bad_url_is_an_html_page_and_the_api_stays_json(page: Page, base: str) -> None:
    response = page.goto(f"{base}/no-such-page")
    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    expect(page.locator("#error-page h1")).to_contain_text("404")
    expect(page.locator("#error-message")).to_contain_text("/no-such-page")
    expect(page.locator("nav a[href='/runs']")).to_be_visible()  # a way back

    missing = page.goto(f"{base}/runs/00000000-0000-0000-0000-000000000000")
    assert missing is not None and missing.status == 404
    expect(page.locator("#error-message")).to_contain_text("no supervised")
    bad = page.goto(f"{base}/runs?limit=many")
    assert bad is not None and bad.status == 422
    expect(page.locator("#error-message")).to_contain_text("limit")
    shot(page, "error")

    api = page.request.get(f"{base}/api/no-such-thing")
    assert api.status == 404 and api.headers["content-type"].startswith("application/json")
    assert "/api/no-such-thing" in api.json()["error"]
    api_run = page.request.get(f"{base}/api/runs/00000000-0000-0000-0000-000000000000")
    assert api_run.status == 404 and api_run.json()["error"].startswith("no supervised")


# --------------------------------------------------------------------------- importance
def test_feature_importance_bars_are_proportional(page: Page, base: str, store) -> None:
    _, ids = store
    run_id = ids["supervised"][0]
    api = page.request.get(f"{base}/api/runs/{run_id}/feature-importance").json()
    values = [f["importance"] for f in api["features"]]
    assert len(values) >= 2 and values[0] > values[1] > 0
    page.goto(f"{base}/runs/{run_id}")
    page.locator("#feature-importance button").click()
    expect(page.locator("#feature-importance")).to_have_attribute(
        "data-state", "loaded", timeout=30_000
    )  # the first load imports the booster's library
    widths = page.locator("#feature-importance .bar").evaluate_all(
        "bars => bars.map(b => b.getBoundingClientRect().width)"
    )
    assert len(widths) == len(values)
    for width, value in zip(widths, values, strict=True):
        assert width == pytest.approx(widths[0] * value / values[0], abs=1.5)


# --------------------------------------------------------------------------- studies
@pytest.fixture(scope="module")
def study_run(store) -> str:
    from repositories.runs import TrainingRunRepository
    from tests.study_data import run_study, store_study

    db, _ = store
    run = TrainingRunRepository(db).create(
        {"run_name": "tuned-study", "model_type": "xgboost", "target_variable": "t"}
    )
    store_study(db, run.run_id, run_study(25))
    return str(run.run_id)


def _chart(page: Page, selector: str) -> dict[str, Any]:
    return page.evaluate(
        """sel => { const u = document.querySelector(sel).suhoChart;
            return {labels: u.series.map(s => s.label), data: u.data}; }""",
        selector,
    )


def test_run_page_trials_have_a_best_so_far_line_and_whole_trial_ticks(
    page: Page, base: str, store
) -> None:
    _, ids = store
    run_id = ids["supervised"][0]  # trials 0.7, 0.6, 0.65, minimised
    page.goto(f"{base}/runs/{run_id}")
    chart = page.locator("#chart-trials")
    expect(chart).to_have_attribute("data-x-ticks", re.compile(r"\["))
    ticks = json.loads(chart.get_attribute("data-x-ticks") or "[]")
    assert ticks and all(float(t).is_integer() for t in ticks)
    drawn = _chart(page, "#chart-trials")
    assert drawn["labels"][2] == "best so far"
    assert drawn["data"][2] == [0.7, 0.6, 0.6]
    expect(page.locator("#study-link")).to_be_visible()


def test_study_page_history_importance_parallel_slices_and_a_trial(
    page: Page, base: str, study_run: str
) -> None:
    api = page.request.get(f"{base}/api/runs/{study_run}/study").json()
    complete = [t for t in api["trials"] if t["value"] is not None]
    page.goto(f"{base}/runs/{study_run}/study")
    history = page.locator("#study-history")
    expect(history).to_have_attribute("data-x-ticks", re.compile(r"\["))
    assert all(float(t).is_integer() for t in json.loads(history.get_attribute("data-x-ticks")))
    drawn = _chart(page, "#study-history")
    assert drawn["labels"][1:] == ["objective_value", "best so far"]
    best = dict(zip(api["history"]["best_trial"], api["history"]["best"], strict=True))
    assert [best.get(x) for x in drawn["data"][0]] == drawn["data"][2]

    importance = page.locator("#param-importance")
    expect(importance).to_have_attribute("data-state", "loaded", timeout=30_000)
    expected = page.request.get(f"{base}/api/runs/{study_run}/study/importance").json()
    names = importance.locator(".bar-row").evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert names == [i["name"] for i in expected["importances"]]

    parallel = page.locator("#parallel")
    expect(parallel).to_have_attribute("data-lines", str(len(complete)))
    axes = json.loads(parallel.get_attribute("data-axes") or "[]")
    assert axes == [p["name"] for p in api["parameters"]] + ["objective_value"]
    for p in api["parameters"]:
        with_param = [t for t in complete if p["name"] in t["params"]]
        expect(page.locator(f"#slice-{p['name']}")).to_have_attribute(
            "data-points", str(len(with_param))
        )
    shot(page, "study")

    # click the best trial's point on the history chart: its parameters show
    best_trial = api["best"]["number"]
    box = history.locator(".u-over").bounding_box()
    assert box is not None
    x, y = page.evaluate(
        """([n, v]) => { const u = document.querySelector('#study-history').suhoChart;
            return [u.valToPos(n, 'x'), u.valToPos(v, 'y')]; }""",
        [best_trial, api["best"]["value"]],
    )
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.mouse.click(box["x"] + x, box["y"] + y)
    expect(page.locator("#trial-detail")).to_be_visible()
    expect(page.locator("#trial-number")).to_have_text(f"#{best_trial}")
    params = next(t for t in api["trials"] if t["number"] == best_trial)["params"]
    expect(page.locator("#trial-values [data-field=max_depth]")).to_have_text(
        str(params["max_depth"])
    )
    expect(page.locator("#trial-values [data-field=booster]")).to_have_text(params["booster"])
    # and a line of the parallel coordinates
    other = next(t["number"] for t in complete if t["number"] != best_trial)
    page.locator(f"#parallel polyline[data-trial='{other}']").dispatch_event("click")
    expect(page.locator("#trial-number")).to_have_text(f"#{other}")


# --------------------------------------------------------------------------- charts
def _ema(values: list[float], weight: float) -> list[float]:
    acc, out = 0.0, []
    for n, v in enumerate(values, start=1):
        acc = acc * weight + (1 - weight) * v
        out.append(acc / (1 - weight**n))
    return out


def test_smoothing_slider_changes_the_drawn_line_and_keeps_the_raw_one_faint(
    page: Page, base: str, store
) -> None:
    _, ids = store
    run_id = ids["supervised"][1]
    api = page.request.get(f"{base}/api/runs/{run_id}/curve?series=train_loss,val_loss").json()
    page.goto(f"{base}/runs/{run_id}")
    chart = page.locator("#chart-loss")
    expect(chart).to_have_attribute("data-series-points", re.compile("val_loss"))
    before = _chart(page, "#chart-loss")
    assert before["labels"] == ["iteration_number", "train_loss", "val_loss"]

    page.locator("#smoothing").fill("0.9")
    expect(chart).to_have_attribute("data-smoothing", "0.9")
    after = _chart(page, "#chart-loss")
    assert after["labels"] == [
        "iteration_number",
        "train_loss (raw)",
        "train_loss",
        "val_loss (raw)",
        "val_loss",
    ]
    raw = api["series"]["val_loss"][1]
    assert after["data"][3] == pytest.approx(raw)  # the raw line is still drawn
    assert after["data"][4] == pytest.approx(_ema(raw, 0.9))  # and its EMA on top
    assert after["data"][4] != pytest.approx(raw)
    strokes = page.evaluate(
        "() => document.querySelector('#chart-loss').suhoChart.series.map(s => s._stroke)"
    )
    assert strokes[3].endswith("40") and not strokes[4].endswith("40")  # raw faint
    assert "smooth=0.9" in page.url  # kept in the URL: a view can be shared
    shot(page, "smoothing")

    page.locator("#log-y").check()
    expect(chart).to_have_attribute("data-log-y", "true")
    assert (
        page.evaluate("() => document.querySelector('#chart-loss').suhoChart.scales.y.distr") == 3
    )
    page.reload()
    expect(page.locator("#chart-loss")).to_have_attribute("data-smoothing", "0.9")
    expect(page.locator("#chart-loss")).to_have_attribute("data-log-y", "true")
    expect(page.locator("#log-y")).to_be_checked()


def test_a_chart_for_any_logged_series(page: Page, base: str, store) -> None:
    import suho

    db, _ = store
    with suho.init(kind="rl", agent_type="dqn", db=db) as run:
        for i in range(6):
            run.log({"loss/q": 1.0 / (i + 1), "eps": 1 - i / 10})
    page.goto(f"{base}/runs/{run.run_id}")
    chart = page.locator("#chart-metric")
    expect(chart).to_have_attribute("data-key", "eps")
    page.locator("#metric-key").select_option("loss/q")
    expect(chart).to_have_attribute("data-key", "loss/q")
    expect(chart).to_have_attribute("data-series-points", '{"loss/q":6}')
    assert _chart(page, "#chart-metric")["data"][1] == pytest.approx(
        [1 / (i + 1) for i in range(6)]
    )


# --------------------------------------------------------------------------- compare
def test_compare_shows_tuned_parameters_no_empty_rows_and_fits_the_window(
    page: Page, base: str, store
) -> None:
    from repositories.kinds import RunKind
    from repositories.tracking import RunTrackingService

    db, _ = store
    supervised = RunTrackingService(db, RunKind.SUPERVISED)
    tuned = []
    for leaves in (31, 63):
        run = supervised.create(
            {"run_name": f"lgbm-{leaves}", "model_type": "lightgbm", "target_variable": "t"}
        )
        for n, loss in enumerate((0.7, 0.5)):
            supervised.log_trial(
                run.run_id,
                {
                    "trial_number": n,
                    "hyperparameters": {"num_leaves": leaves + n, "learning_rate": 0.05},
                    "objective_value": loss,
                },
            )
        supervised.start(run.run_id)
        supervised.complete(run.run_id, {"final_test_accuracy": 0.6, "final_f1_score": 0.5})
        tuned.append(str(run.run_id))
    page.goto(f"{base}/compare?ids={','.join(tuned)}")
    row = page.locator("tr[data-param='best_trial.num_leaves']")
    expect(row).to_have_class(re.compile("differs"))
    expect(row.locator("td")).to_have_text(["32", "64"])  # the best trial's, per run
    metrics = page.locator("#compare-metrics tbody th").all_inner_texts()
    assert metrics == ["final_test_accuracy", "final_f1_score"]  # no empty regression rows

    agents = RunTrackingService(db, RunKind.RL)
    tickers = [f"TICKER{i:03d}" for i in range(60)]
    chosen = []
    for i, agent_type in enumerate(("ppo", "sac", "a2c", "td3")):
        run = agents.create(
            {
                "run_name": f"wide-{agent_type}-agent-with-a-long-descriptive-name",
                "agent_type": agent_type,
                "tickers": tickers,
                "config_json": json.dumps(
                    {"tickers": tickers[i:], "net_arch": [256, 256, 128], "note": "x" * 200}
                ),
            }
        )
        agents.start(run.run_id)
        agents.complete(run.run_id, {"final_sharpe_ratio": 1.0 + i})
        chosen.append(str(run.run_id))
    page.goto(f"{base}/compare?ids={','.join(chosen)}")
    expect(page.locator("tr[data-param='tickers']")).to_have_class(re.compile("differs"))
    assert page.evaluate("document.documentElement.scrollWidth") <= WINDOW["width"]
    shot(page, "compare-agents")


# --------------------------------------------------------------------------- tables
def _headers(page: Page) -> list[str]:
    return [h.strip().rstrip("▼▲ ") for h in page.locator("#runs-table thead th").all_inner_texts()]


def test_columns_chosen_are_kept_in_the_url(page: Page, base: str, store) -> None:
    _, ids = store
    page.goto(f"{base}/runs?status=completed")
    page.locator("#column-chooser summary").click()
    page.locator("#column-chooser input.column").evaluate_all(
        "xs => xs.forEach(x => x.checked = false)"
    )
    for col in ("final_f1_score", "task_type", "duration_seconds", "config.params.max_depth"):
        page.locator(f"#column-chooser input.column[value='{col}']").check()
    page.locator("#apply-columns").click()
    page.wait_for_url(re.compile(r"cols="))
    want = [
        "",
        "run_name",
        "final_f1_score",
        "duration_seconds",
        "task_type",
        "config.params.max_depth",
    ]
    assert _headers(page) == want
    api = page.request.get(
        f"{base}/api/runs?status=completed&cols=final_f1_score,config.params.max_depth"
    ).json()
    depth = {r["run_id"]: r["config.params.max_depth"] for r in api["rows"]}
    cells = page.locator("#runs-table tbody tr").evaluate_all(
        """rows => rows.map(r => [r.dataset.runId,
             r.querySelector('[data-field="config.params.max_depth"]').textContent])"""
    )
    assert cells and all(text == ("" if depth[i] is None else str(depth[i])) for i, text in cells)
    assert str(ids["supervised"][3]) in depth and depth[str(ids["supervised"][3])] == 5
    shot(page, "runs-columns")

    shared = page.url
    page.goto(shared)  # a shared link shows the same columns
    assert _headers(page) == want
    page.locator("a.sort[data-column=final_f1_score]").click()  # sorting keeps them
    page.wait_for_url(re.compile(r"sort=final_f1_score"))
    assert "cols=" in page.url and _headers(page) == want
    bad = page.request.get(f"{base}/api/runs?cols=final_f1_score,bogus")
    assert bad.status == 422 and "columns: unknown 'bogus'" in bad.json()["error"]


def test_numbers_and_durations_are_formatted_and_deployed_runs_badged(
    page: Page, base: str, store
) -> None:
    from repositories.kinds import RunKind
    from repositories.tracking import RunTrackingService

    db, ids = store
    RunTrackingService(db, RunKind.SUPERVISED).deploy(ids["checkpoint"], "production")
    page.goto(f"{base}/runs?status=")
    row = page.locator(f"#runs-table tr[data-run-id='{ids['supervised'][0]}']")
    expect(row.locator("[data-field=run_name] .badge[data-stage=production]")).to_be_visible()
    others = page.locator("#runs-table tbody .badge[data-stage]")
    expect(others).to_have_count(1)  # only the run whose checkpoint is in production
    durations = page.locator("#runs-table tbody [data-field=duration_seconds]").all_inner_texts()
    shown = [d for d in durations if d]
    assert shown and all(re.fullmatch(r"\d+ ms|\d+\.\d s|\d+m \d\ds|\d+h \d\dm", d) for d in shown)
    created = page.locator("#runs-table tbody [data-field=created_at]").first.inner_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", created)
    assert page.evaluate("document.documentElement.scrollWidth") <= WINDOW["width"]


def test_free_text_search_over_names_types_tags_and_parameters(
    page: Page, base: str, store
) -> None:
    _, ids = store
    page.goto(f"{base}/runs?status=")
    page.locator("#search").fill('"max_depth": 5')  # a parameter value in the config
    page.locator("#filters button[type=submit]").click()
    page.wait_for_url(re.compile(r"q="))
    assert [r for r in _row_ids(page)] == [str(ids["supervised"][3])]
    page.goto(f"{base}/runs?status=&q=CATBOOST")  # a type, any case
    assert set(_row_ids(page)) == {str(ids["supervised"][2]), str(ids["supervised"][5])}
    page.goto(f"{base}/agents?status=&q=BBB")  # a tag: the agents' tickers
    assert set(_row_ids(page)) == {str(i) for i in ids["agents"]}
    page.goto(f"{base}/runs?status=&q=no-such-thing-anywhere")
    expect(page.locator("#total")).to_have_text("0")


def _row_ids(page: Page) -> list[str]:
    return page.locator("#runs-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.runId)"
    )
