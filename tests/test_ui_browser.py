"""The UI in a real browser: Debian's chromium, headless, driven by Playwright, against
the app served over HTTP (uvicorn in a thread). Screenshots of the main pages go to
``docs/screenshots/`` (``SUHO_UI_SCREENSHOTS`` elsewhere).

Chromium or Playwright missing is a failure, not a skip: ``.ci/run`` installs both.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from repositories.checkpoints import ModelCheckpointRepository
from repositories.runs import TrainingRunRepository
from repositories.series import TrainingMetricRepository
from suho.ui.app import create_app
from suho_models.db import Database, migrations
from tests.conftest import fresh_database_name
from tests.ui_data import populate

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("SUHO_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("SUHO_UI_SCREENSHOTS", ROOT / "docs" / "screenshots"))
LONG_POINTS = 20_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """An app on a free loopback port, served by uvicorn in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def store(embedded_dir: Path) -> Iterator[tuple[Database, dict[str, Any]]]:
    url = f"clickhouse+chdb:///{embedded_dir}/{fresh_database_name()}"
    migrations.upgrade(url)
    db = Database(url)
    ids = populate(db)
    runs = TrainingRunRepository(db)
    long = runs.create({"run_name": "long-curve", "model_type": "xgboost", "target_variable": "t"})
    runs.start(long.run_id)
    TrainingMetricRepository(db).log_many(
        long.run_id,
        [
            {
                "iteration_number": k,
                "train_loss": math.exp(-k / 3000) + 0.02 * math.sin(k / 7),
                "val_loss": math.exp(-k / 3500) + 0.1 + 0.03 * math.sin(k / 11),
                "learning_rate": 0.1 * 0.9999**k,
            }
            for k in range(LONG_POINTS)
        ],
    )
    runs.complete(long.run_id, {"final_test_accuracy": 0.51})
    ids["long"] = long.run_id
    try:
        yield db, ids
    finally:
        db.close()


@pytest.fixture(scope="module")
def base(store: tuple[Database, dict[str, Any]]) -> Iterator[str]:
    with Served(create_app(store[0])) as url:
        yield url


@pytest.fixture(scope="module")
def read_only_base(store: tuple[Database, dict[str, Any]]) -> Iterator[str]:
    with Served(create_app(store[0], read_only=True)) as url:
        yield url


@contextmanager
def chromium() -> Iterator[Browser]:
    """The system's Chromium (Playwright's own download fails here): missing, the test
    fails saying how to install it; it is never skipped."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no chromium at {CHROMIUM}: `apt-get install chromium` (or set SUHO_CHROMIUM)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@contextmanager
def open_page(browser: Browser, viewport: dict[str, int]) -> Iterator[Page]:
    """A page in a fresh context; a JavaScript error on it fails the test."""
    context = browser.new_context(viewport=viewport)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield p
    finally:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with open_page(browser, {"width": 1280, "height": 860}) as p:
        yield p


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def _row_ids(page: Page) -> list[str]:
    return page.locator("#runs-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.runId)"
    )


def test_runs_page_sorts_by_a_metric_as_the_database_does(page, base, store) -> None:
    db, _ = store
    page.goto(f"{base}/runs")
    expect(page.locator("#sort-key")).to_have_text("final_test_accuracy")
    seed = TrainingRunRepository(db).compare_model_performance(10)
    assert _row_ids(page)[:10] == [str(r["run_id"]) for r in seed]
    shot(page, "runs")
    runs = TrainingRunRepository(db)
    for order in ("desc", "asc"):
        page.locator("a.sort[data-column=final_f1_score]").click()
        expect(page.locator("#sort-key")).to_have_text("final_f1_score")
        assert f"order={order}" in page.url
        expected = runs.list(
            status="completed", order_by="final_f1_score", descending=order == "desc"
        )
        assert _row_ids(page) == [str(r.run_id) for r in expected]


def test_agents_page(page, base, store) -> None:
    page.goto(f"{base}/agents")
    expect(page.locator("#runs-table tbody tr").first).to_contain_text("sac-agent")
    shot(page, "agents")
    page.locator("#runs-table tbody tr").first.locator("a").first.click()
    expect(page.locator("#chart-rewards")).to_have_attribute(
        "data-series-points", '{"episode_final_reward":4}'
    )
    expect(page.locator("#chart-losses")).to_have_attribute(
        "data-series-points", '{"policy_loss":40,"value_loss":40}'
    )
    expect(page.locator("#evaluation [data-field=final_sharpe_ratio]")).to_have_text("2")
    shot(page, "agent")


def _series_points(page: Page, chart: str) -> dict[str, int]:
    return json.loads(page.locator(chart).get_attribute("data-series-points") or "{}")


def test_run_page_curve_has_the_points_the_api_returned(page, base, store) -> None:
    _, ids = store
    run_id = ids["long"]
    page.goto(f"{base}/runs/{run_id}")
    chart = page.locator("#chart-loss")
    expect(chart).to_have_attribute("data-zoomed", "false")
    api = page.request.get(f"{base}/api/runs/{run_id}/curve?series=train_loss,val_loss").json()
    assert api["points_in_range"] == LONG_POINTS
    assert 1_000 <= api["points_returned"]["train_loss"] <= 2_000  # downsampled in ClickHouse
    assert _series_points(page, "#chart-loss") == api["points_returned"]
    shot(page, "run")

    box = page.locator("#chart-loss .u-over").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.40, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=5)
    page.mouse.up()
    expect(chart).to_have_attribute("data-zoomed", "true")
    x_from, x_to = chart.get_attribute("data-x-from"), chart.get_attribute("data-x-to")
    zoomed = page.request.get(
        f"{base}/api/runs/{run_id}/curve?series=train_loss,val_loss&x_from={x_from}&x_to={x_to}"
    ).json()
    assert zoomed["points_in_range"] < LONG_POINTS / 5
    assert _series_points(page, "#chart-loss") == zoomed["points_returned"]
    assert int(chart.get_attribute("data-points-in-range") or 0) == zoomed["points_in_range"]


def test_compare_two_runs(page, base, store) -> None:
    _, ids = store
    a, b = (str(x) for x in ids["supervised"][:2])
    page.goto(f"{base}/runs?status=&sort=run_name&order=asc")
    page.locator(f"input.pick[value='{a}']").check()
    page.locator(f"input.pick[value='{b}']").check()
    page.locator("#compare-button").click()
    page.wait_for_url("**/compare?ids=*")
    expect(page.locator("#compare-val_loss")).to_have_attribute("data-points", "50")
    counts = _series_points(page, "#compare-val_loss")
    assert sorted(counts.values()) == [50, 50] and len(counts) == 2
    expect(page.locator("tr.differs[data-param='params.max_depth']")).to_be_visible()
    shot(page, "compare")


def test_compare_ten_runs_overlays_ten_curves(page, base, store) -> None:
    """Compare's upper bound: ten runs, one series each, every point the API sent;
    the chart still zooms (the redraw's speed is bench_ui_browser's)."""
    db, ids = store
    runs = TrainingRunRepository(db)
    chosen = [str(x) for x in ids["supervised"]] + [str(ids["long"])]
    while len(chosen) < 10:
        run = runs.create(
            {"run_name": f"extra-{len(chosen)}", "model_type": "xgboost", "target_variable": "t"}
        )
        TrainingMetricRepository(db).log_many(
            run.run_id,
            [
                {"iteration_number": k, "val_loss": 1 / k, "iteration_duration_ms": 1.0}
                for k in range(1, 31 + len(chosen))
            ],
        )
        chosen.append(str(run.run_id))
    api = page.request.get(f"{base}/api/compare?ids={','.join(chosen)}").json()
    expected = {r["run_name"]: r["curve"]["points_returned"]["val_loss"] for r in api["runs"]}
    assert len(expected) == 10
    page.goto(f"{base}/compare?ids={','.join(chosen)}")
    expect(page.locator("#compare-val_loss")).to_have_attribute("data-points", re.compile(r"\d+"))
    assert _series_points(page, "#compare-val_loss") == expected
    drawn = page.evaluate(
        """() => {
          const u = document.querySelector('#compare-val_loss').suhoChart;
          const xs = u.data[0];
          u.setScale('x', {min: xs[0], max: xs[Math.floor(xs.length / 2)]});
          return {series: u.series.length - 1};
        }"""
    )
    assert drawn["series"] == 10
    shot(page, "compare-ten")


def _fresh_checkpoints(db: Database, name: str) -> tuple[Any, Any]:
    runs = TrainingRunRepository(db)
    run = runs.create({"run_name": name, "model_type": "xgboost", "target_variable": "t"})
    repo = ModelCheckpointRepository(db)
    info = repo.save_checkpoint(run.run_id, b"model", "raw", iteration=3, model_name=name)
    return run, info


def test_deploy_a_checkpoint_from_the_ui(page, base, store) -> None:
    db, _ = store
    run, info = _fresh_checkpoints(db, "deploy-me")
    page.goto(f"{base}/runs/{run.run_id}")
    row = page.locator(f"tr[data-checkpoint-id='{info.checkpoint_id}']")
    row.locator("button.deploy[data-stage=production]").click()
    expect(page.locator("#deploy-dialog")).to_be_visible()  # the confirmation
    assert ModelCheckpointRepository(db).get(info.checkpoint_id).deployment_status == "not_deployed"
    page.locator("#deploy-confirm").click()
    expect(row.locator("[data-field=deployment_status]")).to_have_text("production")
    assert ModelCheckpointRepository(db).get(info.checkpoint_id).deployment_status == "production"
    shot(page, "deployed")


def test_read_only_refuses_the_same_deploy(page, read_only_base, store) -> None:
    db, _ = store
    run, info = _fresh_checkpoints(db, "stay-put")
    page.goto(f"{read_only_base}/runs/{run.run_id}")
    expect(page.locator("#read-only-badge")).to_be_visible()
    button = page.locator(f"tr[data-checkpoint-id='{info.checkpoint_id}'] button.deploy").first
    expect(button).to_be_disabled()
    status = page.evaluate(
        """async id => (await fetch(`/api/checkpoints/${id}/deploy`, {method: 'POST',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({stage: 'production'})})).status""",
        str(info.checkpoint_id),
    )
    assert status == 403
    assert ModelCheckpointRepository(db).get(info.checkpoint_id).deployment_status == "not_deployed"


def test_live_run_updates_without_a_reload(page, base, store) -> None:
    db, _ = store
    runs = TrainingRunRepository(db)
    run = runs.create({"run_name": "live-run", "model_type": "xgboost", "target_variable": "t"})
    runs.start(run.run_id)
    metrics = TrainingMetricRepository(db)
    metrics.log_many(
        run.run_id, [{"iteration_number": k, "val_loss": 1.0 / (k + 1)} for k in range(5)]
    )
    page.goto(f"{base}/live")
    expect(page.locator(f"#live-table tr[data-run-id='{run.run_id}']")).to_be_visible()
    page.goto(f"{base}/runs/{run.run_id}")
    expect(page.locator("#run-status")).to_have_text("running")
    page.evaluate("window.__marker = 'same page'")
    metrics.log_many(
        run.run_id, [{"iteration_number": k, "val_loss": 1.0 / (k + 1)} for k in range(5, 12)]
    )
    expect(page.locator("#chart-loss")).to_have_attribute(
        "data-series-points",
        json.dumps({"train_loss": 0, "val_loss": 12}).replace(" ", ""),
        timeout=15_000,
    )
    runs.complete(run.run_id, {"final_test_accuracy": 0.5})
    expect(page.locator("#run-status")).to_have_text("completed", timeout=15_000)
    assert page.evaluate("window.__marker") == "same page"  # no reload happened
    page.goto(f"{base}/live")
    expect(page.locator(f"#live-table tr[data-run-id='{run.run_id}']")).to_have_count(0)
    shot(page, "live")
