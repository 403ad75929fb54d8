"""The README's client examples (the blocks that ``import suho``), run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import suho
from repositories.tracking import RunTrackingService, find_run
from suho_models.db import Database
from suho_models.enums import RunStatus
from suho_models.settings import get_settings

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return [b for b in blocks if "import suho" in b]


def test_the_readme_client_examples_run_and_store_what_they_say(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUHO_DATABASE_URL", db.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    blocks = _blocks()
    assert len(blocks) == 3, "the README's client examples moved; update this test"
    runs = []
    try:
        for block in blocks:
            namespace: dict[str, object] = {}
            exec(compile(block, str(README), "exec"), namespace)
            runs.append(namespace["run"])
    finally:
        suho.autolog(disable=True)
    first, torch_run, xgb_run = runs
    kind, stored = find_run(db, first.run_id)
    assert stored.status is RunStatus.COMPLETED and stored.final_test_accuracy == 0.61
    service = RunTrackingService(db, kind)
    keys = {k.key: k.count for k in service.metric_keys(first.run_id)}
    assert keys == {"train_loss": 100, "val_auc": 100, "epoch_time_s": 1}  # test_accuracy: a column
    assert [r.run_id for r in service.runs_with_params({"_tags.team": "ml"})] == [first.run_id]
    assert len(service.metric_series(torch_run.run_id, "weight_norm/linear")) == 5
    assert service.final_checkpoint(torch_run.run_id).model_format.value == "torch_state_dict"
    assert len(service.metric_series(xgb_run.run_id, "train-logloss")) == 20
    assert service.final_checkpoint(xgb_run.run_id).model_format.value == "xgboost_ubjson"
