"""A wheel install migrates and tracks a run from outside the checkout.

Built as a user would (``pip wheel --no-deps .``), installed without dependencies
into a fresh venv that sees this test venv's packages through a ``.pth`` line
(that adds the directory only: the editable install's own ``.pth`` hook is not
run there, so the checkout is not importable), then driven from a temporary
directory outside the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from suho_models.db import migrations

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

TRACKED_RUN = """
from repositories.runs import TrainingRunRepository
from suho_models.db import Database
import suho_models
db = Database()
runs = TrainingRunRepository(db)
run = runs.create({"run_name": "wheel", "model_type": "xgboost", "target_variable": "t"})
runs.start(run.run_id)
runs.complete(run.run_id, {"final_test_accuracy": 0.61})
print("STATUS", runs.get(run.run_id).status.value)
print("FROM", suho_models.__file__)
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_wheel_install_migrates_and_tracks_from_anywhere(tmp_path: Path) -> None:
    # No PYTHONPATH: it names the checkout, whose metadata pip would take as installed.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(REPO)],
        tmp_path, clean,
    )  # fmt: skip
    (wheel,) = wheels.glob("suho_training_tables-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, clean)
    python = venv / "bin" / "python"
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
             tmp_path, {"PATH": os.environ["PATH"]}).strip()
    )  # fmt: skip
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         str(wheel)],
        tmp_path, clean,
    )  # fmt: skip
    # After the install: pip must not see (and never touch) the test venv's packages.
    (site / "test_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "SUHO_DATA_DIR": str(outside / "state"),
        # Long enough that the server is still up for `db stop` on a loaded machine;
        # short enough that a failed test leaves no server for long.
        "SUHO_SERVER_IDLE_SECONDS": "120",
    }
    suho = [str(venv / "bin" / "suho")]
    upgraded = _run([*suho, "db", "upgrade"], outside, env)
    assert migrations.head_revision() in upgraded
    assert "(head)" in _run([*suho, "db", "current"], outside, env)
    history = _run([*suho, "db", "history"], outside, env)
    assert "base -> 0001_training_tables" in history
    assert "0001_training_tables -> 0002_kind_signature_heartbeat" in history
    tracked = _run([str(python), "-c", TRACKED_RUN], outside, env)
    assert "STATUS completed" in tracked
    assert str(site) in tracked and str(REPO) not in tracked  # the wheel's code ran
    _run([*suho, "db", "downgrade", "base"], outside, env)
    assert "none" in _run([*suho, "db", "current"], outside, env)
    assert "stopped the server" in _run([*suho, "db", "stop"], outside, env)
