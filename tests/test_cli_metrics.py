"""``suho runs metrics``, metric keys in ``suho runs show`` and ``--param`` filters."""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

import suho
from suho.cli import app
from suho_models.db import Database
from suho_models.settings import get_settings

runner = CliRunner()


def test_metrics_keys_and_param_filters(db: Database, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("SUHO_DATABASE_URL", db.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    with suho.init(name="cli-client", config={"max_depth": 6, "booster": "gbtree"}, db=db) as run:
        for i in range(5):
            run.log({"val_auc": 0.5 + i / 10, "odd": math.nan if i == 4 else 1.0})
    with suho.init(name="other", config={"max_depth": 4}, db=db):
        pass

    def cli(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    series = json.loads(cli("runs", "metrics", str(run.run_id), "val_auc", "--json"))
    assert series == [{"step": i, "value": 0.5 + i / 10} for i in range(5)]
    assert json.loads(cli("runs", "metrics", str(run.run_id), "odd", "--json"))[4] == {
        "step": 4,
        "value": None,
    }
    assert "val_auc" in cli("runs", "metrics", str(run.run_id), "val_auc")
    shown = json.loads(cli("runs", "show", str(run.run_id), "--json"))
    assert shown["metric_keys"]["val_auc"] == {"count": 5, "last_step": 4, "last_value": 0.9}
    assert "metric val_auc: 5 step(s)" in cli("runs", "show", str(run.run_id))
    listed = json.loads(cli("runs", "list", "--param", "max_depth=6", "--json"))
    assert [r["run_name"] for r in listed] == ["cli-client"]
    both = cli("runs", "list", "--param", "max_depth=6", "--param", "booster=gbtree", "--json")
    assert [r["run_name"] for r in json.loads(both)] == ["cli-client"]
    assert json.loads(cli("runs", "list", "--param", "max_depth=5", "--json")) == []
    bad = runner.invoke(app, ["runs", "list", "--param", "max_depth"])
    assert bad.exit_code != 0 and "expected NAME=VALUE" in str(bad.exception or bad.output)
