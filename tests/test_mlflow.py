"""The MLflow mirror, judged by MLflow's own client: a real ``mlflow server`` (SQLite
backend, local artifact folder) on a free loopback port, and a plain ``sqlite:///``
tracking URI. A short supervised run (with a 2-trial study, deployed to production)
and a short RL run (mirrored live while it trains, deployed to staging) are exported;
what MLflow reads back must equal our tables.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType
from typer.testing import CliRunner

from repositories.errors import InvalidInputError, NotFoundError
from repositories.features import FeatureTable
from repositories.series import RewardHistoryRepository, TrainingMetricRepository
from repositories.tracking import RunKind, RunTrackingService
from suho.cli import app
from suho.integrations.mlflow import (
    CONFIG_ARTIFACT,
    EPISODE_SERIES,
    PARAM_VALUE_MAX,
    RUN_ID_TAG,
    STEP_SERIES,
    SUPERVISED_SERIES,
    LiveMirror,
    MlflowExporter,
    checkpoint_artifact_name,
)
from suho_models.db import Database, migrations
from suho_models.enums import DeploymentStatus, RunStatus, TrialState
from suho_models.settings import get_settings
from trainers.data.synth import generate_ml_features
from trainers.rl import RLConfig
from trainers.rl.trainer import RLTrainer
from trainers.supervised.config import SupervisedConfig
from trainers.supervised.trainer import SupervisedTrainer

pytestmark = pytest.mark.slow

RL_START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
SUP_START = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(
    hours=400
)
SCREENSHOT_DIR = os.environ.get("SUHO_SCREENSHOT_DIR")
"""Set it (e.g. to docs/screenshots) to keep the UI screenshot there too."""


# --------------------------------------------------------------------------- fixtures
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """A real ``mlflow server``, started first: it takes tens of seconds to come up,
    which the trainings below overlap."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    cmd = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_healthy(url: str, proc: Any, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}")
        if healthy(url):
            return url
        time.sleep(0.5)
    pytest.fail(f"mlflow server at {url} not healthy after {timeout} s")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Module fixtures train outside the per-test settings: point them at a temp dir."""
    path = tmp_path_factory.mktemp("suho-data")
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("SUHO_"):
                mp.delenv(key)
        mp.setenv("SUHO_DATA_DIR", str(path))
        get_settings.cache_clear()
        yield path
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def store_url(embedded_dir: Path, data_dir: Path) -> str:
    url = f"clickhouse+chdb:///{embedded_dir}/mlflow_{uuid.uuid4().hex[:8]}"
    migrations.upgrade(url)
    with Database(url) as db:
        FeatureTable(db).write(
            generate_ml_features(("EURUSD", "XAUUSD"), periods=200, start=RL_START, seed=3)
        )
        FeatureTable(db, "sup_features").write(
            generate_ml_features(("EURUSD", "XAUUSD"), periods=400, start=SUP_START, seed=7)
        )
    return url


@pytest.fixture(scope="module")
def store(store_url: str) -> Iterator[Database]:
    db = Database(store_url)
    yield db
    db.close()


def supervised_config(**kw: Any) -> SupervisedConfig:
    base: dict[str, Any] = {
        "model_type": "xgboost",
        "source": "sup_features",
        "rounds": 25,
        "early_stopping": None,
        "progress": False,
        "cv_folds": 2,
        "checkpoint_every": 20,
        "selection": {"top_k": 10},
        "threads": 1,
    }
    base.update(kw)
    return SupervisedConfig.model_validate(base)


@pytest.fixture(scope="module")
def supervised_run(store: Database, mlflow_process: Any) -> Any:
    """A run with a 2-trial study, its final model deployed to production."""
    result = SupervisedTrainer(supervised_config(tuning={"trials": 2}), store).run()
    RunTrackingService(store, RunKind.SUPERVISED).deploy(
        result.checkpoint_id, DeploymentStatus.PRODUCTION
    )
    return result.run.run_id


@pytest.fixture(scope="module")
def server(mlflow_process: tuple[str, Any], supervised_run: Any) -> str:
    return wait_healthy(*mlflow_process)


@pytest.fixture(scope="module")
def rl_run(store: Database, server: str) -> tuple[Any, LiveMirror]:
    """A PPO run mirrored live into the server while it trains, deployed to staging."""
    config = RLConfig.model_validate(
        {
            "agent": "ppo",
            "timesteps": 400,
            "checkpoint_every_episodes": 1,
            "agent_params": {"n_steps": 64, "batch_size": 32, "n_epochs": 2, "net_arch": "tiny"},
            "run_name": f"mlflow-ppo-{uuid.uuid4().hex[:6]}",
            "reward": "log_return",
        }
    )
    mirror = LiveMirror(store, server, RunKind.RL, interval=0.3, final_timeout=120)
    with mirror:
        result = RLTrainer(config, store, tracking=mirror.tracking()).run()
    RunTrackingService(store, RunKind.RL).deploy(result.checkpoint_id, DeploymentStatus.STAGING)
    return result.run.run_id, mirror


@pytest.fixture(scope="module")
def plain_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One plain SQLite tracking store for the module (MLflow builds its schema once:
    seconds); tests keep apart by experiment prefix."""
    root = tmp_path_factory.mktemp("mlflow-plain")
    uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:  # MLflow fixes the default artifact root
        mp.chdir(root)  # (./mlruns) when it first opens the store, and keeps the store
        MlflowClient(uri).search_experiments()
    return uri


def exporter(store: Database, uri: str, **kw: Any) -> MlflowExporter:
    return MlflowExporter(store, uri, **kw)


# --------------------------------------------------------------------------- expectations
def flat(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The documented flattening, written out independently of the exporter."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return out


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float, int]]:
    return sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key))


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def counts(client: MlflowClient, experiment: str) -> dict[str, Any]:
    """What an idempotent export must leave unchanged: the runs, each run's latest point
    per key, the full histories of the parents' series, and the model versions."""
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)
    latest = {
        (r.info.run_id, m.key): (m.step, m.value, m.timestamp)
        for r in runs
        for m in r.data._metric_objs
    }
    parents = [r for r in runs if RUN_ID_TAG in r.data.tags]
    series = {
        (r.info.run_id, key): len(client.get_metric_history(r.info.run_id, key))
        for r in parents
        for key in r.data.metrics
        if not key.startswith(("final_", "total_"))
    }
    versions = [
        (v.name, str(v.version))
        for m in client.search_registered_models()
        for v in client.search_model_versions(f"name = '{m.name}'")
    ]
    return {"runs": len(runs), "latest": latest, "series": series, "versions": sorted(versions)}


def check_artifact(client: MlflowClient, mlrun: Any, info: Any, tmp: Path, data: bytes) -> None:
    path = client.download_artifacts(
        mlrun.info.run_id, f"checkpoints/{checkpoint_artifact_name(info)}", str(tmp)
    )
    got = Path(path).read_bytes()
    assert got == data
    assert hashlib.sha256(got).hexdigest() == info.sha256


# --------------------------------------------------------------------------- supervised
def test_supervised_run_reads_back_from_the_server(
    store: Database, server: str, supervised_run: Any, tmp_path: Path
) -> None:
    tracking = RunTrackingService(store, RunKind.SUPERVISED)
    run = tracking.get(supervised_run)
    result = exporter(store, server).export(supervised_run)
    assert result.created
    client = MlflowClient(server)
    (mlrun,) = client.search_runs(
        [client.get_experiment_by_name("suho-supervised").experiment_id],
        filter_string=f"tags.`{RUN_ID_TAG}` = '{run.run_id}'",
    )
    mlrun = client.get_run(mlrun.info.run_id)

    # Params: the configuration, flattened, plus the best trial's hyperparameters.
    trials = tracking.trials(run.run_id)
    best = min(
        (t for t in trials if t.state is TrialState.COMPLETE), key=lambda t: t.objective_value
    )
    expected = flat(json.loads(run.config_json))
    expected.update(flat(json.loads(best.hyperparameters), "tuned."))
    assert mlrun.data.params == expected
    assert mlrun.data.params["rounds"] == "25" and mlrun.data.params["model_type"] == "xgboost"
    assert mlrun.data.params["tuning.trials"] == "2"

    # Metrics: every series equal point by point (step, value, time) to the learning curve.
    curve = TrainingMetricRepository(tracking.db).learning_curve(run.run_id)
    assert len(curve) == 25
    for key in SUPERVISED_SERIES:
        ours = [
            (p.iteration_number, float(getattr(p, key)), ms(p.recorded_at))
            for p in curve
            if getattr(p, key) is not None
        ]
        theirs = history(client, mlrun.info.run_id, key)
        assert len(theirs) == len(ours), key
        assert all(
            a[0] == b[0] and same(a[1], b[1]) and a[2] == b[2]
            for a, b in zip(theirs, ours, strict=True)
        ), key
    for name in ("final_test_accuracy", "final_f1_score", "final_test_loss", "final_auc_score"):
        assert mlrun.data.metrics[name] == getattr(run, name)
    assert "final_rmse" not in mlrun.data.metrics  # NULL columns are not invented

    # Tags, status and times.
    tags = mlrun.data.tags
    assert tags[RUN_ID_TAG] == str(run.run_id)
    assert tags["mlflow.source.git.commit"] == run.git_commit_hash
    assert tags["suho.status"] == "completed" and tags["suho.model_type"] == "xgboost"
    assert tags["mlflow.runName"] == run.run_name
    assert mlrun.info.status == "FINISHED"
    assert mlrun.info.start_time == ms(run.started_at)
    assert mlrun.info.end_time == ms(run.completed_at)
    config = client.download_artifacts(mlrun.info.run_id, CONFIG_ARTIFACT, str(tmp_path))
    assert json.loads(Path(config).read_text()) == json.loads(run.config_json)

    # Trials: nested child runs with the objective, state and fold scores.
    children = client.search_runs(
        [mlrun.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{mlrun.info.run_id}'",
    )
    assert len(children) == len(trials) == 2
    by_number = {int(c.data.tags["suho.trial_number"]): c for c in children}
    for trial in trials:
        child = by_number[trial.trial_number]
        assert child.data.tags["suho.trial_state"] == trial.state.value
        assert child.data.params == flat(json.loads(trial.hyperparameters))
        assert child.info.status == ("FINISHED" if trial.state is TrialState.COMPLETE else "KILLED")
        if trial.objective_value is not None:
            assert child.data.metrics["objective"] == trial.objective_value
        folds = history(client, child.info.run_id, "fold_score")
        assert [(s, v) for s, v, _ in folds] == list(enumerate(trial.scores, start=1))
        assert RUN_ID_TAG not in child.data.tags  # the parent alone answers the run's tag

    # Checkpoints: bytes equal, same sha256; the deployed one registered with its alias.
    infos = tracking.checkpoints(run.run_id)
    for info in infos:
        check_artifact(
            client,
            mlrun,
            info,
            tmp_path / str(info.checkpoint_id),
            tracking.load_checkpoint(info.checkpoint_id),
        )
    (deployed,) = [i for i in infos if i.deployment_status is DeploymentStatus.PRODUCTION]
    name = f"suho-{deployed.model_name}"
    version = client.get_model_version_by_alias(name, "production")
    assert version.run_id == mlrun.info.run_id
    assert version.tags["suho.checkpoint_id"] == str(deployed.checkpoint_id)
    assert version.tags["suho.sha256"] == deployed.sha256

    # Export twice: nothing more.
    before = counts(client, "suho-supervised")
    again = exporter(store, server).export(supervised_run)
    assert (again.created, again.params, again.metric_points, again.artifacts) == (
        False,
        0,
        0,
        0,
    )
    assert (again.trials_created, again.model_versions) == (0, 0)
    assert counts(client, "suho-supervised") == before


# --------------------------------------------------------------------------- RL, live
def test_rl_run_mirrored_live_reads_back(
    store: Database, server: str, rl_run: tuple[Any, LiveMirror], tmp_path: Path
) -> None:
    run_id, mirror = rl_run
    assert mirror.failures == 0, mirror.last_error
    # Passes ran while the run trained and sent points then: the copy grew mid-training.
    running = [r for r in mirror.results if r.status is RunStatus.RUNNING]
    assert any(r.metric_points > 0 for r in running), mirror.results
    assert mirror.results[-1].status is RunStatus.COMPLETED

    tracking = RunTrackingService(store, RunKind.RL)
    run = tracking.get(run_id)
    result = exporter(store, server).export(run_id)  # after deployment: the registry
    assert not result.created and result.metric_points == 0  # the mirror had sent all
    client = MlflowClient(server)
    mlrun = exporter(store, server).find(RunKind.RL, run_id)
    mlrun = client.get_run(mlrun.info.run_id)

    # Episode summaries, by episode: rewards, Sharpe, account values and the losses.
    ends = RewardHistoryRepository(tracking.db).steps(run_id, episode_ends_only=True)
    curve = RewardHistoryRepository(tracking.db).reward_curve(run_id)
    assert len(ends) == len(curve) == run.total_episodes >= 5
    for key, column in EPISODE_SERIES.items():
        ours = [
            (s.episode_number, float(getattr(s, column)), ms(s.recorded_at))
            for s in ends
            if getattr(s, column) is not None
        ]
        theirs = history(client, mlrun.info.run_id, key)
        assert [(s, v) for s, v, _ in theirs] == [(s, v) for s, v, _ in ours], key
        assert [t for *_, t in theirs] == [t for *_, t in ours], key
    rewards = [v for _, v, _ in history(client, mlrun.info.run_id, "episode_reward")]
    assert rewards == [e.episode_final_reward for e in curve]
    assert history(client, mlrun.info.run_id, "episode_policy_loss")  # losses are there
    assert not any(k.startswith("step_") for k in mlrun.data.metrics)  # summaries only

    finals = [n for n in type(run).model_fields if n.startswith(("final_", "total_"))]
    for name in finals:
        value = getattr(run, name)
        if value is None:
            assert name not in mlrun.data.metrics
        else:
            assert same(mlrun.data.metrics[name], float(value)), name
    assert mlrun.data.metrics["total_timesteps"] == run.total_timesteps >= 400
    assert mlrun.data.params == flat(json.loads(run.config_json))
    tags = mlrun.data.tags
    assert tags["suho.agent_type"] == "ppo" and tags["suho.reward_function"] == "log_return"
    assert tags["mlflow.source.git.commit"] == run.git_commit_hash
    assert mlrun.info.status == "FINISHED" and mlrun.info.end_time == ms(run.completed_at)

    final = tracking.final_checkpoint(run_id)
    check_artifact(client, mlrun, final, tmp_path, tracking.load_checkpoint(final.checkpoint_id))
    version = client.get_model_version_by_alias("suho-ppo-agent", "staging")
    assert version.tags["suho.checkpoint_id"] == str(final.checkpoint_id)
    assert version.tags["suho.deployment_status"] == "staging"

    before = counts(client, "suho-rl")
    exporter(store, server).export(run_id)
    assert counts(client, "suho-rl") == before


def test_ui_shows_the_experiment_and_a_metric_chart(
    store: Database, server: str, supervised_run: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    mlrun = MlflowClient(server).get_run(
        exporter(store, server).export(supervised_run).mlflow_run_id
    )
    exp_id = mlrun.info.experiment_id
    shot = tmp_path / "mlflow.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{server}/#/experiments/{exp_id}")
            page.get_by_text("suho-supervised").first.wait_for(timeout=60_000)
            page.goto(f"{server}/#/experiments/{exp_id}/runs/{mlrun.info.run_id}/model-metrics")
            page.get_by_placeholder("Search metric charts").fill("val_loss")
            page.get_by_text("val_loss", exact=True).first.wait_for(timeout=60_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            assert page.get_by_text("suho-supervised").count() >= 1
            assert page.get_by_text("final_auc_score", exact=True).count() == 0  # filtered
            page.wait_for_timeout(1500)  # let the line draw before the picture
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(SCREENSHOT_DIR) / "mlflow.png")


# --------------------------------------------------------------------------- plain sqlite
def test_plain_sqlite_uri_with_all_steps(
    store: Database,
    rl_run: tuple[Any, LiveMirror],
    supervised_run: Any,
    plain_uri: str,
    tmp_path: Path,
) -> None:
    run_id, _ = rl_run
    uri = plain_uri
    ex = exporter(store, uri, all_steps=True, artifact_location=str(tmp_path / "artifacts"))
    ex.export(run_id)
    ex.export(supervised_run)
    client = MlflowClient(uri)
    mlrun = client.get_run(ex.find(RunKind.RL, run_id).info.run_id)
    steps = RewardHistoryRepository(store).steps(run_id)
    for key, column in STEP_SERIES.items():
        ours = [
            (s.timestep_number, float(getattr(s, column)))
            for s in steps
            if getattr(s, column) is not None
        ]
        assert [(s, v) for s, v, _ in history(client, mlrun.info.run_id, key)] == ours, key
    assert len(history(client, mlrun.info.run_id, "step_reward")) == len(steps)
    before = counts(client, "suho-rl") | {"sup": counts(client, "suho-supervised")}
    ex2 = exporter(store, uri, all_steps=True, artifact_location=str(tmp_path / "artifacts"))
    assert ex2.export(run_id).metric_points == 0
    assert ex2.export(supervised_run).metric_points == 0
    assert counts(client, "suho-rl") | {"sup": counts(client, "suho-supervised")} == before
    assert str(client.get_model_version_by_alias("suho-ppo-agent", "staging").version) == "1"


# --------------------------------------------------------------------------- incremental
def manual_run(store: Database, config: dict[str, Any] | None = None) -> Any:
    tracking = RunTrackingService(store, RunKind.SUPERVISED)
    run = tracking.create(
        {
            "run_name": f"manual-{uuid.uuid4().hex[:6]}",
            "model_type": "xgboost",
            "target_variable": "t",
            "config_json": config or {"rounds": 1500},
        }
    )
    tracking.start(run.run_id)
    return tracking, run.run_id


KEYS = 4
"""Series a logged point fills: the three below and iteration_duration_ms (default 0)."""


def log_points(tracking: RunTrackingService, run_id: Any, first: int, last: int) -> None:
    tracking.log_series(
        run_id,
        [
            {"iteration_number": i, "train_loss": 1 / i, "val_loss": 2 / i, "learning_rate": 0.1}
            for i in range(first, last + 1)
        ],
    )


def test_running_run_exported_again_sends_only_new_points(
    store: Database, plain_uri: str, tmp_path: Path
) -> None:
    long_value = "x" * 2000
    tracking, run_id = manual_run(
        store, {"rounds": 80, "notes": long_value, "odd key/with*chars": {"a b": 1}}
    )
    uri = plain_uri
    ex = exporter(store, uri, experiment_prefix="inc", artifact_location=str(tmp_path / "a"))
    client = MlflowClient(uri)

    log_points(tracking, run_id, 1, 40)
    first = ex.export(run_id)
    mlrun = client.get_run(first.mlflow_run_id)
    assert mlrun.info.status == "RUNNING" and mlrun.data.tags["suho.status"] == "running"
    assert first.metric_points == 40 * KEYS

    log_points(tracking, run_id, 41, 80)
    assert ex.export(run_id).metric_points == 40 * KEYS  # only the new ones
    tracking.complete(run_id, {"final_test_accuracy": 0.61})
    done = ex.export(run_id)
    assert done.metric_points == 1 and not done.created  # the final metric
    for key, f in (("train_loss", 1), ("val_loss", 2)):
        got = history(client, first.mlflow_run_id, key)
        assert [(s, v) for s, v, _ in got] == [(i, f / i) for i in range(1, 81)]
    mlrun = client.get_run(first.mlflow_run_id)
    assert mlrun.info.status == "FINISHED" and mlrun.data.metrics["final_test_accuracy"] == 0.61

    # Params: long values cut to 500 (full config as an artifact), odd keys escaped.
    params = mlrun.data.params
    assert params["notes"] == long_value[: PARAM_VALUE_MAX - 3] + "..."
    assert len(params["notes"]) == PARAM_VALUE_MAX
    assert params["odd key/with_chars.a b"] == "1"
    path = client.download_artifacts(first.mlflow_run_id, CONFIG_ARTIFACT, str(tmp_path))
    assert json.loads(Path(path).read_text())["notes"] == long_value


class FailingClient(MlflowClient):
    """A real client that loses its connection after ``ok`` metric batches."""

    def __init__(self, uri: str, ok: int) -> None:
        super().__init__(uri)
        self.ok = ok

    def log_batch(self, run_id: str, metrics: Any = (), **kw: Any) -> Any:
        if metrics:
            if self.ok == 0:
                raise ConnectionError("connection lost between two batches")
            self.ok -= 1
        return super().log_batch(run_id, metrics=metrics, **kw)


def test_crash_between_batches_leaves_nothing_missing_or_doubled(
    store: Database, plain_uri: str, tmp_path: Path
) -> None:
    tracking, run_id = manual_run(store)
    log_points(tracking, run_id, 1, 1500)  # 6,000 points: 6 batches of <= 1,000
    uri = plain_uri
    options = {"experiment_prefix": "crash", "artifact_location": str(tmp_path)}
    with pytest.raises(ConnectionError):
        exporter(store, uri, client=FailingClient(uri, ok=2), **options).export(run_id)
    client = MlflowClient(uri)
    (mlrun,) = client.search_runs([client.get_experiment_by_name("crash-supervised").experiment_id])
    sent = sum(len(client.get_metric_history(mlrun.info.run_id, k)) for k in mlrun.data.metrics)
    assert sent == 2000  # two batches landed
    result = exporter(store, uri, **options).export(run_id)
    assert not result.created and result.metric_points == 1500 * KEYS - 2000
    for key, f in (("train_loss", 1), ("val_loss", 2), ("learning_rate", None)):
        got = [(s, v) for s, v, _ in history(client, mlrun.info.run_id, key)]
        assert got == [(i, 0.1 if f is None else f / i) for i in range(1, 1501)], key


# --------------------------------------------------------------------------- server down
def test_server_down_during_live_mirror_training_completes(
    store: Database, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    mirror = LiveMirror(store, dead, RunKind.SUPERVISED, interval=0.2, final_timeout=10)
    caplog.set_level(logging.WARNING, logger="suho.integrations.mlflow")
    with mirror:
        result = SupervisedTrainer(supervised_config(), store, tracking=mirror.tracking()).run()
    tracking = RunTrackingService(store, RunKind.SUPERVISED)
    run = tracking.get(result.run.run_id)
    assert run.status is RunStatus.COMPLETED
    curve = TrainingMetricRepository(tracking.db).learning_curve(run.run_id)
    assert [p.iteration_number for p in curve] == list(range(1, 26))
    assert tracking.final_checkpoint(run.run_id) is not None
    assert mirror.passes == 0 and mirror.failures >= 2  # retried
    assert isinstance(mirror.last_error, ConnectionError)
    assert any("will retry" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- CLI and input
def test_cli_export_and_bad_input(
    store: Database,
    store_url: str,
    supervised_run: Any,
    plain_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SUHO_DATABASE_URL", store_url)
    get_settings.cache_clear()
    runner = CliRunner()
    uri = plain_uri
    common = [
        *("mlflow", "export", "--tracking-uri", uri, "--experiment-prefix", "cli"),
        *("--artifact-location", str(tmp_path)),
    ]
    out = runner.invoke(app, [*common, "--run", str(supervised_run), "--json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.stdout)  # stdout: the JSON (MLflow logs to stderr)
    assert row["created"] is True and row["run_id"] == str(supervised_run)
    out = runner.invoke(app, [*common, "--all", "--since", "2000-01-01", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    again = [r for r in rows if r["run_id"] == str(supervised_run)]
    assert again and not again[0]["created"] and again[0]["metric_points"] == 0

    # The live mirror through the CLI: the copy is complete when the command returns.
    out = runner.invoke(
        app,
        [
            *("train", "supervised", "--source", "sup_features", "--rounds", "5"),
            *("--model", "xgboost", "--threads", "1", "--quiet", "--mlflow-uri", uri),
        ],
    )
    assert out.exit_code == 0, out.output
    client = MlflowClient(uri)
    live = client.search_runs(
        [client.get_experiment_by_name("suho-supervised").experiment_id],
        filter_string="params.rounds = '5'",
    )
    assert len(live) == 1 and live[0].info.status == "FINISHED"
    assert len(client.get_metric_history(live[0].info.run_id, "train_loss")) == 5

    bad = runner.invoke(app, ["mlflow", "export", "--tracking-uri", uri])
    assert bad.exit_code != 0 and "--run" in bad.output
    bad = runner.invoke(app, [*common, "--all", "--since", "yesterday"])
    assert bad.exit_code != 0 and "yesterday" in bad.output

    missing = uuid.uuid4()
    with pytest.raises(NotFoundError, match=str(missing)):
        exporter(store, uri).export(missing)
    with pytest.raises(InvalidInputError, match="experiment_prefix"):
        exporter(store, uri, experiment_prefix="")
    with pytest.raises(InvalidInputError, match=r"after_timestep.*-1"):
        RewardHistoryRepository(store).steps(uuid.uuid4(), after_timestep=-1)


def test_metrics_of_any_name_are_mirrored(store: Database, plain_uri: str, tmp_path: Path) -> None:
    """``run.log`` keys go to MLflow under their own names, each point once; a key that
    is also a series column goes once, with the series."""
    import suho

    with suho.init(name="client", model_type="pytorch", db=store) as run:
        for step in (0, 5, 10):  # sparse steps, as a user may log them
            run.log({"loss/q": 1.0 / (step + 1), "val_loss": 0.5, "grad norm": step}, step=step)
    ex = exporter(store, plain_uri, experiment_prefix="anyname", artifact_location=str(tmp_path))
    result = ex.export(run.run_id)
    client = MlflowClient(plain_uri)
    mlrun = client.get_run(result.mlflow_run_id)
    assert [(s, v) for s, v, _ in history(client, mlrun.info.run_id, "loss/q")] == [
        (0, 1.0), (5, 1 / 6), (10, 1 / 11),
    ]  # fmt: skip
    assert [s for s, _, _ in history(client, mlrun.info.run_id, "grad norm")] == [0, 5, 10]
    assert len(history(client, mlrun.info.run_id, "val_loss")) == 3  # once, not twice
    assert ex.export(run.run_id).metric_points == 0  # again: nothing new to send
