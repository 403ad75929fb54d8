"""Every package of the project (repositories/, suho_models/, trainers/, suho/) passes
mypy in strict mode.

mypy is in the test extra: if it is missing, ``python -m mypy`` fails and so does
this test (it never skips).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED_PACKAGES = ("repositories", "suho_models", "trainers", "suho")

DEFERRED = {"repositories.checkpoints", "repositories.object_store", "repositories.serialization"}
"""Our only modules whose errors mypy ignores for now (see pyproject.toml)."""


def mypy_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def test_mypy_is_strict_for_the_checked_packages() -> None:
    config = mypy_config()
    assert config.get("strict") is True
    assert set(CHECKED_PACKAGES) <= set(config["files"])
    # A strict flag turned off globally (disallow_subclassing_any = false, ...).
    assert not [key for key, value in config.items() if value is False]
    for override in config.get("overrides", []):
        modules = override["module"]
        modules = [modules] if isinstance(modules, str) else modules
        ours = {m for m in modules if m.split(".")[0] in CHECKED_PACKAGES}
        assert ours <= DEFERRED, f"mypy override relaxes our own modules: {sorted(ours)}"


@pytest.mark.slow
def test_mypy_strict_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"mypy failed:\n{result.stdout}{result.stderr}"
