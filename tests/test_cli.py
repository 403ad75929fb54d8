"""Each CLI command through the CLI runner, error paths included."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suho.cli import app
from suho_models.db import migrations
from suho_models.settings import get_settings

runner = CliRunner()


@pytest.fixture(scope="module")
def store(embedded_dir: Path) -> str:
    url = f"clickhouse+chdb:///{embedded_dir}/cli_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(url)
    return url


@pytest.fixture
def cli(store: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SUHO_DATABASE_URL", store)
    get_settings.cache_clear()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


@pytest.fixture(scope="module")
def trained(store: str) -> str:
    """A completed xgboost run in the module's store (run_id)."""
    import os

    os.environ["SUHO_DATABASE_URL"] = store
    get_settings.cache_clear()
    try:
        for args in (
            ["data", "synth", "--periods", "300"],
            [
                "train",
                "supervised",
                "--model",
                "xgboost",
                "--rounds",
                "15",
                "--quiet",
                "--run-name",
                "cli-run",
                "--tune",
                "2",
                "--cv",
                "2",
            ],
        ):
            result = runner.invoke(app, args)
            assert result.exit_code == 0, result.output
        listed = runner.invoke(app, ["runs", "list", "--json"])
        return json.loads(listed.output)[0]["run_id"]
    finally:
        del os.environ["SUHO_DATABASE_URL"]
        get_settings.cache_clear()


def test_data_synth_is_idempotent(cli, trained) -> None:
    result = cli("data", "synth", "--periods", "300")
    assert result.exit_code == 0 and "already has 800 rows" in result.output


def test_runs_list_show_compare(cli, trained) -> None:
    rows = json.loads(cli("runs", "list", "--json").output)
    assert [r["run_name"] for r in rows] == ["cli-run"] and rows[0]["status"] == "completed"
    assert json.loads(cli("runs", "list", "--status", "failed", "--json").output) == []
    shown = json.loads(cli("runs", "show", trained, "--json").output)
    assert shown["metric_rows"] == 15 and shown["trials"] == 2
    assert [c["checkpoint_kind"] for c in shown["checkpoints"]] == ["final"]
    compare = json.loads(cli("runs", "compare", "--json").output)
    assert compare[0]["run_name"] == "cli-run"
    assert compare[0]["final_test_accuracy"] == rows[0]["final_test_accuracy"]
    assert "Compare Model Performance" in cli("runs", "compare").output
    table = cli("runs", "show", trained).output
    assert "cli-run" in table and "metric_rows" in table and "config_json" not in table
    assert "checkpoint " in table and " final iteration " in table
    assert rows[0]["stale"] is False and shown["stale"] is False


def test_agents_show(cli, embedded_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from repositories.runs import AgentRunRepository
    from suho_models.db import Database

    own = f"clickhouse+chdb:///{embedded_dir}/cli_agents_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(own)  # not the module's store: its agent tables stay empty
    monkeypatch.setenv("SUHO_DATABASE_URL", own)
    get_settings.cache_clear()
    with Database(own) as db:
        run = AgentRunRepository(db).create({"run_name": "cli-agent", "agent_type": "ppo"})
    shown = json.loads(cli("agents", "show", str(run.run_id), "--json").output)
    assert shown["run_name"] == "cli-agent" and shown["agent_type"] == "ppo"
    assert shown["episodes_logged"] == 0 and shown["checkpoints"] == []
    table = cli("agents", "show", str(run.run_id)).output
    assert "cli-agent" in table and "episodes_logged" in table
    assert "env_config_json" not in table and "checkpoints" not in table


def test_unknown_run_is_one_clear_error(cli, trained) -> None:
    result = cli("runs", "show", str(uuid.uuid4()))
    assert result.exit_code != 0
    assert "no run with run_id" in str(result.exception)


def test_trials_and_checkpoints(cli, trained, tmp_path: Path) -> None:
    trials = json.loads(cli("trials", "list", "--run", trained, "--json").output)
    assert [t["trial_number"] for t in trials] == [0, 1]
    checkpoints = json.loads(cli("checkpoints", "list", "--run", trained, "--json").output)
    (checkpoint,) = checkpoints
    target = tmp_path / "model.ubj"
    result = cli("checkpoints", "export", checkpoint["checkpoint_id"], str(target))
    assert result.exit_code == 0, result.output
    assert target.stat().st_size == checkpoint["size_bytes"]
    result = cli("checkpoints", "deploy", checkpoint["checkpoint_id"], "--stage", "staging")
    assert result.exit_code == 0 and "staging" in result.output
    bad = cli("checkpoints", "deploy", checkpoint["checkpoint_id"], "--stage", "prod")
    assert bad.exit_code != 0 and "prod" in str(bad.exception)
    missing = cli("checkpoints", "export", str(uuid.uuid4()), str(tmp_path / "x"))
    assert missing.exit_code != 0 and not (tmp_path / "x").exists()


def test_sql_is_read_only(cli, trained) -> None:
    rows = json.loads(cli("sql", "SELECT count() AS n FROM training_runs FINAL", "--json").output)
    assert rows == [{"n": 1}]
    for bad in (
        "DROP TABLE training_runs",
        "SELECT 1; DROP TABLE training_runs",
        "INSERT INTO training_runs SELECT * FROM training_runs",
    ):
        result = cli("sql", bad)
        assert result.exit_code != 0
        assert "read-only" in str(result.exception) or "one statement" in str(result.exception)
    assert (
        json.loads(cli("sql", "SELECT count() AS n FROM training_runs", "--json").output)[0]["n"]
        >= 1
    )


def test_agents_commands_on_an_empty_store(cli, trained) -> None:
    assert json.loads(cli("agents", "list", "--json").output) == []
    assert json.loads(cli("agents", "best", "--json").output) == []
    result = cli("agents", "deploy", "--best")
    assert result.exit_code != 0 and "no completed" in str(result.exception)
    assert cli("agents", "deploy").exit_code != 0


def test_help_is_fast_and_light() -> None:
    import subprocess
    import sys
    import time

    code = (
        "import sys, time; t = time.perf_counter(); from suho.cli import app; "
        "heavy = [m for m in ('torch', 'xgboost', 'lightgbm', 'catboost', 'finrl', 'optuna') "
        "if m in sys.modules]; print(heavy, time.perf_counter() - t)"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, seconds = out.stdout.rsplit(" ", 1)
    assert heavy == "[]"
    assert float(seconds) < 1.0 and time.perf_counter() - started < 5


def test_report_has_every_figure_and_the_stored_numbers(cli, trained, tmp_path: Path) -> None:
    import re

    out = tmp_path / "reports" / "run.html"
    result = cli("report", trained, "-o", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text()
    for figure in ("learning_curves", "feature_importance", "trials", "confusion_matrix"):
        assert f'<figure id="{figure}"><img' in page and "data:image/png;base64," in page
        assert (tmp_path / "reports" / f"run-{figure}.png").read_bytes()[:4] == b"\x89PNG"
    shown = json.loads(cli("runs", "show", trained, "--json").output)
    cells = dict(re.findall(r'<td data-field="([^"]+)">([^<]*)</td>', page))
    for field in ("final_test_accuracy", "final_f1_score", "final_auc_score", "train_rows"):
        assert float(cells[field]) == pytest.approx(shown[field], rel=1e-12)
    assert cells["run_id"] == trained and cells["status"] == "completed"
    missing = cli("report", str(uuid.uuid4()))
    assert missing.exit_code != 0


def test_train_options_left_out_keep_the_config_file(cli, trained, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('rounds = 7\nrun_name = "from-file"\nearly_stopping = 100\n')
    result = cli("train", "supervised", "--config", str(config), "--model", "xgboost", "--quiet")
    assert result.exit_code == 0, result.output
    (run,) = json.loads(cli("runs", "list", "--name", "from-file", "--json").output)
    assert json.loads(cli("runs", "show", run["run_id"], "--json").output)["metric_rows"] == 7
    bad = cli("train", "supervised", "--model", "prophet", "--quiet")
    assert bad.exit_code != 0 and "prophet" in str(bad.exception)


def test_stale_runs_are_shown_and_ended_by_hand(
    cli, embedded_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    from repositories.tracking import RunKind, RunTrackingService
    from suho_models.db import Database

    own = f"clickhouse+chdb:///{embedded_dir}/cli_stale_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(own)
    monkeypatch.setenv("SUHO_DATABASE_URL", own)
    get_settings.cache_clear()
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    ids = {}
    with Database(own) as db:
        for kind, data in (
            (RunKind.SUPERVISED, {"model_type": "xgboost", "target_variable": "t"}),
            (RunKind.RL, {"agent_type": "sac"}),
        ):
            tracking = RunTrackingService(db, kind)
            for name in ("dead", "alive", "doomed"):
                run = tracking.create({"run_name": f"{kind.value}-{name}", **data})
                tracking.start(run.run_id)
                tracking.heartbeat(run.run_id)
                if name != "alive":
                    tracking.update(run.run_id, heartbeat_at=long_ago)
                ids[f"{kind.value}-{name}"] = str(run.run_id)

    for listing, kind in ((("runs", "list"), "supervised"), (("agents", "list"), "rl")):
        rows = {r["run_name"]: r for r in json.loads(cli(*listing, "--json").output)}
        assert rows[f"{kind}-dead"]["stale"] is True and rows[f"{kind}-dead"]["status"] == "running"
        assert rows[f"{kind}-alive"]["stale"] is False
        table = cli(*listing).output
        assert table.count("(stale)") == 2  # the dead and the doomed run

    # fail / cancel end a run of either kind, with the reason kept.
    result = cli("runs", "fail", ids["rl-doomed"], "--reason", "node lost")
    assert result.exit_code == 0, result.output
    assert "rl run" in result.output and "failed" in result.output
    result = cli("runs", "cancel", ids["supervised-doomed"])
    assert result.exit_code == 0, result.output
    shown = json.loads(cli("agents", "show", ids["rl-doomed"], "--json").output)
    assert shown["status"] == "failed" and shown["error_message"] == "node lost"
    shown = json.loads(cli("runs", "show", ids["supervised-doomed"], "--json").output)
    assert shown["status"] == "cancelled"
    again = cli("runs", "cancel", ids["supervised-doomed"])
    assert again.exit_code != 0 and "cancelled to cancelled" in str(again.exception)
    missing = cli("runs", "fail", str(uuid.uuid4()))
    assert missing.exit_code != 0 and "no supervised or RL run" in str(missing.exception)

    # The sweep ends the remaining stale runs of both kinds, and only those.
    swept = json.loads(cli("runs", "sweep-stale", "--json").output)
    assert sorted(r["run_name"] for r in swept) == ["rl-dead", "supervised-dead"]
    assert all(r["status"] == "failed" for r in swept)
    assert json.loads(cli("runs", "sweep-stale", "--json").output) == []
    alive = json.loads(cli("agents", "show", ids["rl-alive"], "--json").output)
    assert alive["status"] == "running"


def test_quiet_means_the_same_on_both_trainers() -> None:
    import typer.main

    group = typer.main.get_group(app)
    train = group.commands["train"]
    options = {}
    for name in ("supervised", "rl"):
        (quiet,) = [p for p in train.commands[name].params if p.name == "quiet"]
        options[name] = (quiet.opts, quiet.help, quiet.default, quiet.is_flag)
    assert options["supervised"] == options["rl"] == (["--quiet"], "No progress bars.", False, True)


def test_an_option_means_the_same_on_every_trainer_and_tuner() -> None:
    """``suho train`` and ``suho tune`` share their options: one that appears on
    several of these commands has the same flags, type, bounds and help on each
    (``--threads``, whose help says per worker when tuning, aside)."""
    import typer.main

    group = typer.main.get_group(app)
    commands = {
        f"{verb} {kind}": group.commands[verb].commands[kind]
        for verb in ("train", "tune")
        for kind in ("supervised", "rl")
    }
    seen: dict[str, dict[str, tuple[object, ...]]] = {}
    for where, command in commands.items():
        for p in command.params:
            kind = p.bare_type() if hasattr(p, "bare_type") else p.type.name  # typer >= 0.16
            bounds = (getattr(p, "min", None), getattr(p, "max", None))
            seen.setdefault(p.name, {})[where] = (tuple(p.opts), str(kind), bounds, p.help)
    shared = {name: by for name, by in seen.items() if len(by) > 1 and name != "threads"}
    assert {"model", "agent", "source", "config", "run_name", "seed", "quiet"} <= set(shared)
    for name, by in shared.items():
        assert len(set(by.values())) == 1, (name, by)
        assert all(help for *_, help in by.values()), name


def test_db_status_counts_every_table(cli, trained) -> None:
    result = cli("db", "status")
    assert result.exit_code == 0, result.output
    assert "training_runs" in result.output and "reward_history" in result.output
