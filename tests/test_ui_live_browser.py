"""A live run in a real browser (issue 24): the UI and a training process share the
default store; the run page says "waiting for data" until the first point, its curve
grows while the run logs, and its status and metadata turn ``completed`` without a
reload. Chromium driven by Playwright, as in ``test_ui_browser``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from suho.ui.app import create_app
from suho_models.db import Database, migrations
from suho_models.settings import get_settings
from tests.test_ui_browser import Served, chromium

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.server]

_RUN = """
import sys, time
from repositories.batch_writer import training_metrics_writer
from repositories.tracking import RunTrackingService
from suho_models.db import Database

db = Database()
service = RunTrackingService(db, "supervised")
run = service.create({"run_name": "live-run", "model_type": "lightgbm", "target_variable": "t"})
service.start(run.run_id)
print(run.run_id, flush=True)
sys.stdin.readline()  # the page is open
writer = training_metrics_writer(db)  # default max_seconds: live, no flush here
for k in range(24):
    writer.log(run_id=run.run_id, iteration_number=k, train_loss=1 / (k + 1),
               val_loss=1.2 / (k + 1), iteration_duration_ms=1.0)
    time.sleep(0.35)
writer.close()
service.complete(run.run_id, {"final_test_accuracy": 0.61})
print("completed", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def test_a_live_runs_curve_grows_and_its_status_turns_completed(browser: Browser) -> None:
    migrations.upgrade(get_settings().resolved_database_url())
    db = Database()  # the UI's process: the default store, shared with the trainer's
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_RUN)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        run_id = child.stdout.readline().strip()
        assert run_id, "the training process did not start its run"
        with Served(create_app(db)) as base:
            page = browser.new_page()
            page.goto(f"{base}/runs/{run_id}")
            chart = page.locator("#chart-loss")
            expect(page.locator("#run-status")).to_have_text("running")
            expect(chart).to_have_attribute("data-waiting", "true", timeout=15_000)
            expect(chart.locator(".chart-waiting")).to_have_text("waiting for data")

            child.stdin.write("go\n")
            child.stdin.flush()
            seen: list[int] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(set(seen)) < 4:
                points = chart.get_attribute("data-points")
                if points and chart.get_attribute("data-waiting") == "false":
                    seen.append(int(points))
                time.sleep(0.2)
            growth = sorted(set(seen))
            assert len(growth) >= 4, f"the curve did not grow while the run logged: {seen}"
            assert seen == sorted(seen), f"points went backwards: {seen}"
            assert growth[0] < 24  # seen while the run was still logging
            expect(chart.locator(".chart-waiting")).to_have_count(0)

            assert child.stdout.readline().strip() == "completed"
            expect(page.locator("#run-status")).to_have_text("completed", timeout=15_000)
            expect(page.locator("#run")).to_have_attribute("data-refreshed", "true")
            expect(page.locator('#metadata td[data-field="status"]')).to_have_text("completed")
            expect(chart).to_have_attribute("data-points", "24")
            page.close()
    finally:
        child.stdin.close()
        child.wait(30)
        db.close()
