"""The ``suho`` command line.

Heavy libraries (boosting, torch, FinRL) are imported inside the commands that
need them, so ``suho --help`` stays fast. User errors print one line and exit
non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Track ML and RL training in ClickHouse.", no_args_is_help=True)
db_app = typer.Typer(
    help="Schema migrations and the local ClickHouse server.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
data_app = typer.Typer(help="The input feature table (ml_features).", no_args_is_help=True)
app.add_typer(data_app, name="data")
train_app = typer.Typer(
    help="Train models and agents, tracked in ClickHouse.", no_args_is_help=True
)
app.add_typer(train_app, name="train")

console = Console()
err_console = Console(stderr=True)


class _State:
    debug = False


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    _State.debug = debug


def _url() -> str:
    from suho_models.settings import get_settings

    return get_settings().resolved_database_url()


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Migrate the database up to REVISION (default: head)."""
    from suho_models.db import migrations

    migrations.upgrade(_url(), revision)
    console.print(f"database at revision [bold]{migrations.current(_url())}[/bold]")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, or base.")],
) -> None:
    """Migrate the database down to REVISION ('base' removes every table)."""
    from suho_models.db import migrations

    migrations.downgrade(_url(), revision)
    console.print(f"database at revision [bold]{migrations.current(_url()) or 'base'}[/bold]")


@db_app.command("current")
def db_current() -> None:
    """Show the database's revision and whether it is at head."""
    from suho_models.db import migrations

    current = migrations.current(_url())
    head = migrations.head_revision()
    state = "head" if current == head else f"behind head {head}: run `suho db upgrade`"
    console.print(f"{current or 'none'} ({state})")


@db_app.command("history")
def db_history() -> None:
    """List the migrations from base to head."""
    from suho_models.db import migrations

    for revision, down, message in migrations.history():
        console.print(f"{down or 'base'} -> [bold]{revision}[/bold]: {message.splitlines()[0]}")


@db_app.command("status")
def db_status() -> None:
    """Show where the store is, its revision, and the row count of each table."""
    from repositories.queries import table_row_counts
    from suho_models.db import Database

    db = Database(_url())
    try:
        db.verify_schema()
        table = Table(title=f"{db.database_name} @ {db.safe_url}")
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name, rows in table_row_counts(db).items():
            table.add_row(name, str(rows))
        console.print(table)
        console.print(f"schema revision [bold]{db.current_revision()}[/bold] (head)")
    finally:
        db.close()


@db_app.command("serve")
def db_serve(
    path: Annotated[
        Path | None, typer.Option(help="Data directory (default: the embedded store's).")
    ] = None,
    tcp_port: Annotated[int, typer.Option(help="Native protocol port.")] = 9000,
    http_port: Annotated[int, typer.Option(help="HTTP port.")] = 8123,
    host: Annotated[str, typer.Option(help="Listen address; non-loopback needs a password.")] = (
        "127.0.0.1"
    ),
    password: Annotated[
        str | None,
        typer.Option(
            help="Password of user default (prefer SUHO_SERVER_PASSWORD: arguments show in "
            "`ps`). Unset on loopback: generated once into <path>/server/password (0600)."
        ),
    ] = None,
) -> None:
    """Serve the store as a real ClickHouse server (until Ctrl-C or SIGTERM)."""
    import logging

    from suho_models.db.server import native_url, resolve_password, serve
    from suho_models.settings import DATABASE_NAME, get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    settings = get_settings()
    data = path or settings.embedded_path
    if password is None and settings.server_password is not None:
        password = settings.server_password.get_secret_value()
    password = resolve_password(data, host, password)
    url = native_url(host, tcp_port, DATABASE_NAME, password=password, http_port=http_port)
    console.print(
        f"serving {data} on {host}: native {tcp_port}, http {http_port}\nSUHO_DATABASE_URL={url}",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    serve(data, tcp_port=tcp_port, http_port=http_port, host=host, password=password)


db_cluster_app = typer.Typer(help="A ClickHouse cluster (SUHO_CLICKHOUSE_CLUSTER).")
db_app.add_typer(db_cluster_app, name="cluster")


@db_cluster_app.command("status")
def db_cluster_status() -> None:
    """Show each node's revision and each table's rows on each node (its shard)."""
    from suho_models import TABLE_NAMES
    from suho_models.db import cluster

    nodes = cluster.status(_url())
    table = Table(title=f"cluster {cluster.cluster_settings().cluster}")
    table.add_column("table")
    for node in nodes:
        table.add_column(f"shard {node.shard} replica {node.replica}\n{node.name}", justify="right")
    table.add_row("revision", *[n.error or n.revision or "none" for n in nodes])
    for name in TABLE_NAMES:
        table.add_row(name, *["" if n.error else str(n.rows.get(name, "")) for n in nodes])
    console.print(table)
    if not cluster.healthy(nodes):  # a node down, or nodes at different revisions
        raise typer.Exit(1)


def _supervised_config(config: Path | None, **options: Any) -> Any:
    """The options given on the command line (None: not given, so the config file's value
    or the default stays) over the config file, as a ``SupervisedConfig``."""
    from trainers.supervised.config import SupervisedConfig

    given = {k: v for k, v in options.items() if v is not None}
    if config:
        return SupervisedConfig.from_file(config, **given)
    return SupervisedConfig.model_validate(given)


def _database() -> Any:
    from suho_models.db import Database

    db = Database(_url())
    db.verify_schema()
    return db


@data_app.command("synth")
def data_synth(
    table: Annotated[str, typer.Option(help="Feature table to write.")] = "ml_features",
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols.")] = (
        "EURUSD,GBPUSD,USDJPY,XAUUSD"
    ),
    periods: Annotated[int, typer.Option(min=200, help="Hourly bars per symbol.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 42,
    replace: Annotated[bool, typer.Option(help="Drop an existing table first.")] = False,
) -> None:
    """Write a realistic synthetic ml_features table (110 features, 2 targets)."""
    from repositories.features import FeatureTable
    from trainers.data.synth import generate_ml_features

    db = _database()
    try:
        features = FeatureTable(db, table)
        if features.exists() and not replace:
            console.print(f"{table} already has {features.count():,} rows (use --replace)")
            return
        if replace:
            features.drop()
        frame = generate_ml_features(tuple(symbols.split(",")), periods=periods, seed=seed)
        rows = features.write(frame)
        console.print(f"wrote {rows:,} rows x {frame.shape[1]} columns to {table}")
    finally:
        db.close()


QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
ModelOption = Annotated[str | None, typer.Option(help="xgboost, lightgbm or catboost.")]
AgentOption = Annotated[str | None, typer.Option(help="ppo, a2c, ddpg, sac or td3.")]
TargetOption = Annotated[str | None, typer.Option(help="Target column.")]
CvOption = Annotated[int | None, typer.Option(min=2, help="Time-series CV folds.")]
RoundsOption = Annotated[int | None, typer.Option(min=1, help="Boosting rounds.")]
SymbolsOption = Annotated[str | None, typer.Option(help="Comma-separated tickers.")]
SourceOption = Annotated[str | None, typer.Option(help="Feature table or .parquet/.csv.")]
ConfigOption = Annotated[Path | None, typer.Option(help="YAML/TOML config file.")]
RunNameOption = Annotated[str | None, typer.Option(help="Run name.")]
SeedOption = Annotated[int | None, typer.Option(help="Random seed.")]
TuneOption = Annotated[int | None, typer.Option(min=0, help="Optuna trials (0: none).")]
TimestepsOption = Annotated[
    int | None, typer.Option(min=1, help="Environment steps (of the final run, when tuning).")
]
KeepCheckpointsOption = Annotated[
    int | None, typer.Option(min=1, help="Intermediate checkpoints kept per run.")
]
ResumeOption = Annotated[str | None, typer.Option(help="Continue this crashed or interrupted run.")]
MlflowUriOption = Annotated[
    str | None,
    typer.Option(
        "--mlflow-uri",
        help="Also mirror the run into this MLflow tracking URI while it trains "
        "(in the background: a slow or absent server never slows or fails training).",
    ),
]


def _mirror(db: Any, uri: str | None, kind: str) -> Any:
    """A live MLflow mirror around training, or a no-op without ``--mlflow-uri``."""
    import contextlib

    if uri is None:
        return contextlib.nullcontext(None)
    from suho.integrations.mlflow import LiveMirror

    return LiveMirror(db, uri, kind)


@train_app.command("supervised")
def train_supervised(
    model: ModelOption = None,
    target: TargetOption = None,
    tune: TuneOption = None,
    cv: CvOption = None,
    rounds: RoundsOption = None,
    source: SourceOption = None,
    config: ConfigOption = None,
    run_name: RunNameOption = None,
    seed: SeedOption = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Threads (free cores).")] = None,
    quiet: QuietOption = False,
    checkpoint_every: Annotated[
        int | None, typer.Option(min=1, help="Save the model every N iterations.")
    ] = None,
    keep_checkpoints: KeepCheckpointsOption = None,
    resume: ResumeOption = None,
    mlflow_uri: MlflowUriOption = None,
) -> None:
    """Train a gradient-boosting model on ml_features and track the run.

    Options left out keep the config file's values (or SupervisedConfig's defaults).
    """
    from trainers.supervised.trainer import SupervisedTrainer

    if resume:
        db = _database()
        try:
            with _mirror(db, mlflow_uri, "supervised") as mirror:
                if mirror is not None:
                    mirror.follow(resume)
                result = SupervisedTrainer.resume(resume, db, progress=not quiet)
        finally:
            db.close()
        run = result.run
        console.print(
            f"run [bold]{run.run_id}[/bold] {run.status.value}: test {result.test_metrics}"
        )
        return

    cfg = _supervised_config(
        config,
        model_type=model,
        target=target,
        cv_folds=cv,
        rounds=rounds,
        source=source,
        run_name=run_name,
        seed=seed,
        threads=threads,
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        progress=not quiet,
        tuning=None if tune is None else {"trials": tune},
    )
    db = _database()
    try:
        with _mirror(db, mlflow_uri, "supervised") as mirror:
            tracking = None if mirror is None else mirror.tracking()
            result = SupervisedTrainer(cfg, db, tracking=tracking).run()
    finally:
        db.close()
    run = result.run
    console.print(f"run [bold]{run.run_id}[/bold] {run.status.value}: test {result.test_metrics}")


@train_app.command("rl")
def train_rl(
    agent: AgentOption = None,
    timesteps: TimestepsOption = None,
    reward: Annotated[
        str | None,
        typer.Option(
            help="portfolio_value_change, log_return, differential_sharpe or drawdown_penalized."
        ),
    ] = None,
    checkpoint_every_episodes: Annotated[
        int | None, typer.Option(min=1, help="Save the agent every N episodes.")
    ] = None,
    keep_checkpoints: KeepCheckpointsOption = None,
    resume: ResumeOption = None,
    tune: TuneOption = None,
    symbols: SymbolsOption = None,
    source: SourceOption = None,
    config: ConfigOption = None,
    run_name: RunNameOption = None,
    seed: SeedOption = None,
    env: Annotated[
        str | None,
        typer.Option(help="fast (numpy, FinRL's dynamics; default) or finrl (FinRL's own env)."),
    ] = None,
    n_envs: Annotated[
        int | None, typer.Option(min=1, help="Environments stepped side by side (default 1).")
    ] = None,
    quiet: QuietOption = False,
    mlflow_uri: MlflowUriOption = None,
) -> None:
    """Train a FinRL agent with Stable-Baselines3 and track the run.

    Options left out keep the config file's (or, with --resume, the run's) values.
    """
    from trainers.rl.config import RLConfig
    from trainers.rl.trainer import RLTrainer

    cfg = RLConfig.from_cli_options(
        {
            "agent": agent,
            "timesteps": timesteps,
            "reward": reward,
            "checkpoint_every_episodes": checkpoint_every_episodes,
            "keep_checkpoints": keep_checkpoints,
            "resume": resume,
            "tune": tune,
            "symbols": symbols.split(",") if symbols else None,
            "source": source,
            "run_name": run_name,
            "seed": seed,
            "env": env,
            "n_envs": n_envs,
        },
        config,
    )
    with _database() as db, _mirror(db, mlflow_uri, "rl") as mirror:
        tracking = None if mirror is None else mirror.tracking()
        run = RLTrainer(cfg, db, progress=not quiet, tracking=tracking).run().run
    console.print(
        f"run [bold]{run.run_id}[/bold] {run.status.value}: {run.total_timesteps:,} steps, "
        f"{run.total_episodes} episodes, Sharpe {run.final_sharpe_ratio}"
    )


# --------------------------------------------------------------------------- tuning
tune_app = typer.Typer(
    help="Tuning studies shared by worker processes, on this machine or many.",
    no_args_is_help=True,
)
app.add_typer(tune_app, name="tune")

TrialsOption = Annotated[int, typer.Option(min=1, help="Trials the study finishes in total.")]
WorkersOption = Annotated[int, typer.Option(min=1, help="Worker processes on this machine.")]
StorageOption = Annotated[
    str | None,
    typer.Option(help="Optuna storage URL (default: SUHO_OPTUNA_STORAGE, else a journal file)."),
]


def _launch_tuning(kind: str, cfg: Any, workers: int, quiet: bool) -> None:
    from repositories.tracking import RunTrackingService
    from trainers.workers import create_tuning_run, launch, local_workers_allowed

    with _database() as db:
        local_workers_allowed(db, workers)
        run = create_tuning_run(kind, cfg, db)
        console.print(f"run [bold]{run.run_id}[/bold]: join with `suho tune worker {run.run_id}`")
        codes = launch(run, kind, db, workers, progress=not quiet)
        tracking = RunTrackingService(db, kind)
        run = tracking.runs.get(run.run_id)
        if run.status.value == "running" and all(codes):  # no worker of ours got through
            run = tracking.fail(run.run_id, f"every tuning worker failed (exit codes {codes})")
    console.print(f"run [bold]{run.run_id}[/bold] {run.status.value}")
    if run.status.value != "completed":
        err_console.print(f"workers exited with {codes}; the run is {run.status.value}")
        raise typer.Exit(1)


@tune_app.command("supervised")
def tune_supervised(
    trials: TrialsOption,
    workers: WorkersOption = 1,
    model: ModelOption = None,
    target: TargetOption = None,
    cv: CvOption = None,
    rounds: RoundsOption = None,
    source: SourceOption = None,
    config: ConfigOption = None,
    run_name: RunNameOption = None,
    seed: SeedOption = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Threads per worker.")] = None,
    storage: StorageOption = None,
    quiet: QuietOption = False,
) -> None:
    """Create a supervised run and its study, tune it with WORKERS processes, train the best."""

    cfg = _supervised_config(
        config,
        model_type=model,
        target=target,
        cv_folds=cv,
        rounds=rounds,
        source=source,
        run_name=run_name,
        seed=seed,
        threads=threads,
        progress=False,
        tuning={"trials": trials, **({"storage": storage} if storage else {})},
    )
    _launch_tuning("supervised", cfg, workers, quiet)


@tune_app.command("rl")
def tune_rl(
    trials: TrialsOption,
    workers: WorkersOption = 1,
    agent: AgentOption = None,
    timesteps: TimestepsOption = None,
    trial_timesteps: Annotated[int | None, typer.Option(min=1, help="Steps per trial.")] = None,
    symbols: SymbolsOption = None,
    source: SourceOption = None,
    config: ConfigOption = None,
    run_name: RunNameOption = None,
    seed: SeedOption = None,
    storage: StorageOption = None,
    quiet: QuietOption = False,
) -> None:
    """Create an RL run and its study, tune it with WORKERS processes, train the best."""
    from trainers.rl.config import RLConfig

    tuning: dict[str, Any] = {"trials": trials}
    if trial_timesteps is not None:
        tuning["timesteps"] = trial_timesteps
    if storage:
        tuning["storage"] = storage
    cfg = RLConfig.from_cli_options(
        {
            "agent": agent,
            "timesteps": timesteps,
            "symbols": symbols.split(",") if symbols else None,
            "source": source,
            "run_name": run_name,
            "seed": seed,
            "tuning": tuning,
        },
        config,
    )
    _launch_tuning("rl", cfg, workers, quiet)


@tune_app.command("worker")
def tune_worker(
    run_id: Annotated[str, typer.Argument(help="The tuning run whose study to join.")],
    heartbeat: Annotated[int, typer.Option(min=1, help="Seconds between trial beats.")] = 5,
    grace: Annotated[
        int, typer.Option(min=2, help="Seconds without a beat before a trial's worker is dead.")
    ] = 30,
) -> None:
    """Join a run's study from any machine that reaches its storage and the database."""
    import logging
    import os
    import socket

    from trainers.study import TrialHeartbeat
    from trainers.workers import run_worker

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    with _database() as db:
        result = run_worker(run_id, db, heartbeat=TrialHeartbeat(heartbeat, grace))
    console.print(
        f"worker {socket.gethostname()}:{os.getpid()}: {result.trials_run} trials; {result.message}"
    )


# --------------------------------------------------------------------------- listing
runs_app = typer.Typer(help="Supervised training runs.", no_args_is_help=True)
agents_app = typer.Typer(help="RL agent runs.", no_args_is_help=True)
trials_app = typer.Typer(help="Tuning trials.", no_args_is_help=True)
checkpoints_app = typer.Typer(help="Saved models and agents.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(agents_app, name="agents")
app.add_typer(trials_app, name="trials")
app.add_typer(checkpoints_app, name="checkpoints")

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _print_json(data: Any) -> None:
    import json

    console.print_json(json.dumps(data, default=str))


def _emit(rows: list[dict[str, Any]], as_json: bool, title: str, columns: list[str]) -> None:
    """Rows as JSON (for scripts) or as a table (for people)."""
    if as_json:
        _print_json(rows)
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)


def _show(data: dict[str, Any], as_json: bool, title: str, hidden: tuple[str, ...]) -> None:
    """One record as JSON, or as a key/value table without the ``hidden`` keys."""
    if as_json:
        _print_json(data)
        return
    table = Table(title=title, show_header=False)
    for key, value in data.items():
        if key not in hidden:
            table.add_row(key, _cell(value))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(getattr(value, "value", value))


def _dump(record: Any) -> dict[str, Any]:
    return record.model_dump(mode="json")


def _run_rows(db: Any, kind: Any, *, as_json: bool, **filters: Any) -> list[dict[str, Any]]:
    """Listed runs with ``stale`` (JSON) or a status of ``running (stale)`` (table)."""
    from repositories.tracking import RunTrackingService

    tracking = RunTrackingService(db, kind)
    rows = []
    for run in tracking.runs.list(**filters):
        row, stale = _dump(run), tracking.is_stale(run)
        row["stale"] = stale
        if stale and not as_json:
            row["status"] = f"{row['status']} (stale)"
        rows.append(row)
    return rows


@runs_app.command("list")
def runs_list(
    status: Annotated[str | None, typer.Option(help="pending, running, completed, ...")] = None,
    model: Annotated[str | None, typer.Option(help="Model type.")] = None,
    name: Annotated[str | None, typer.Option(help="Name pattern (SQL LIKE, e.g. 'xgb%').")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: JsonOption = False,
) -> None:
    """List supervised runs, newest first (a running run without heartbeats: stale)."""
    from repositories.tracking import RunKind

    with _database() as db:
        rows = _run_rows(
            db,
            RunKind.SUPERVISED,
            status=status,
            type=model,
            name_like=name,
            limit=limit,
            as_json=as_json,
        )
    _emit(
        rows,
        as_json,
        "training runs",
        [
            "run_id",
            "run_name",
            "model_type",
            "status",
            "final_test_accuracy",
            "final_f1_score",
            "created_at",
        ],
    )


@runs_app.command("show")
def runs_show(run_id: str, as_json: JsonOption = False) -> None:
    """One run with its checkpoints and trial count."""
    from repositories.tracking import RunKind, RunTrackingService

    with _database() as db:
        tracking = RunTrackingService(db, RunKind.SUPERVISED)
        run = tracking.runs.get(run_id)
        data = _dump(run) | {"stale": tracking.is_stale(run)}
        data["metric_rows"] = tracking.series.count(run.run_id)
        data["trials"] = len(tracking.trials.list(run.run_id))
        data["checkpoints"] = [_dump(c) for c in tracking.checkpoints.list(run.run_id)]
    _show(data, as_json, f"run {run.run_id}", ("checkpoints", "config_json"))
    if as_json:
        return
    for c in data["checkpoints"]:
        console.print(
            f"checkpoint {c['checkpoint_id']} {c['checkpoint_kind']} "
            f"iteration {c['iteration']} {c['deployment_status']}"
        )


ReasonOption = Annotated[str, typer.Option(help="Why (kept as the run's error message).")]


def _end_run(run_id: str, status: str, reason: str) -> None:
    from repositories.tracking import RunTrackingService, find_run

    with _database() as db:
        kind, run = find_run(db, run_id)
        ended = RunTrackingService(db, kind).end(run.run_id, status, reason)
    console.print(f"{kind.value} run [bold]{ended.run_id}[/bold] {ended.status.value}")


@runs_app.command("fail")
def runs_fail(run_id: str, reason: ReasonOption = "") -> None:
    """Mark a run of either kind failed (e.g. one whose process died: stale)."""
    _end_run(run_id, "failed", reason)


@runs_app.command("cancel")
def runs_cancel(run_id: str, reason: ReasonOption = "") -> None:
    """Mark a run of either kind cancelled."""
    _end_run(run_id, "cancelled", reason)


@runs_app.command("sweep-stale")
def runs_sweep_stale(as_json: JsonOption = False) -> None:
    """Mark every stale run (running, no heartbeat for a while) failed, of both kinds."""
    from repositories.tracking import RunKind, RunTrackingService

    ended = []
    with _database() as db:
        for kind in RunKind:
            for run in RunTrackingService(db, kind).sweep_stale():
                ended.append({"kind": kind.value, **_dump(run)})
    _emit(
        ended, as_json, "stale runs marked failed", ["kind", "run_id", "run_name", "error_message"]
    )


@runs_app.command("compare")
def runs_compare(
    limit: Annotated[int, typer.Option(min=1)] = 10, as_json: JsonOption = False
) -> None:
    """The seed's "Compare Model Performance": best completed runs by test accuracy."""
    from repositories.runs import TrainingRunRepository

    with _database() as db:
        rows = TrainingRunRepository(db).compare_model_performance(limit)
    _emit(
        rows,
        as_json,
        "Compare Model Performance",
        ["run_name", "model_type", "final_test_accuracy", "final_f1_score"],
    )


@agents_app.command("list")
def agents_list(
    status: Annotated[str | None, typer.Option()] = None,
    agent: AgentOption = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: JsonOption = False,
) -> None:
    """List RL agent runs, newest first (a running run without heartbeats: stale)."""
    from repositories.tracking import RunKind

    with _database() as db:
        rows = _run_rows(db, RunKind.RL, status=status, type=agent, limit=limit, as_json=as_json)
    _emit(
        rows,
        as_json,
        "agent runs",
        [
            "run_id",
            "run_name",
            "agent_type",
            "status",
            "final_sharpe_ratio",
            "final_total_return",
            "created_at",
        ],
    )


@agents_app.command("show")
def agents_show(run_id: str, as_json: JsonOption = False) -> None:
    """One agent run with its checkpoints and episode count."""
    import json

    from repositories.tracking import RunKind, RunTrackingService
    from suho_models.enums import CheckpointKind

    with _database() as db:
        tracking = RunTrackingService(db, RunKind.RL)
        run = tracking.runs.get(run_id)
        data = _dump(run) | {"stale": tracking.is_stale(run)}
        data["episodes_logged"] = len(tracking.series.reward_curve(run.run_id))
        checkpoints = tracking.checkpoints.list(run.run_id)
        data["checkpoints"] = [_dump(c) for c in checkpoints]
        env = json.loads(run.env_config_json or "{}")
        for key in ("env", "n_envs", "sizing", "observation", "reward", "reward_params"):
            if key in env:
                data[f"env_{key}" if key in ("env", "reward") else key] = env[key]
        finals = [c for c in checkpoints if c.kind is CheckpointKind.FINAL]
        if finals:  # a stuck agent: few steps moving shares, saturated or constant actions
            activity = {k: v for k, v in finals[-1].metrics.items() if k.startswith("eval_")}
            data.update(activity)
    _show(
        data, as_json, f"agent run {run.run_id}", ("checkpoints", "config_json", "env_config_json")
    )


@agents_app.command("best")
def agents_best(
    limit: Annotated[int, typer.Option(min=1)] = 10, as_json: JsonOption = False
) -> None:
    """The seed's "Best RL Agents": completed agents by Sharpe ratio."""
    from repositories.runs import AgentRunRepository

    with _database() as db:
        rows = AgentRunRepository(db).best_agents(limit)
    _emit(
        rows,
        as_json,
        "Best RL Agents",
        ["run_name", "agent_type", "final_sharpe_ratio", "final_total_return"],
    )


@agents_app.command("deploy")
def agents_deploy(
    best: Annotated[bool, typer.Option("--best", help="Deploy the best completed agent.")] = False,
    by: Annotated[str, typer.Option(help="Run column to rank by.")] = "final_sharpe_ratio",
    checkpoint: Annotated[str | None, typer.Option(help="Deploy this checkpoint.")] = None,
    stage: Annotated[str, typer.Option(help="staging or production.")] = "production",
) -> None:
    """Mark an agent checkpoint as production (the previous one is archived)."""
    from repositories.tracking import RunKind, RunTrackingService

    if not best and not checkpoint:
        raise typer.BadParameter("give --best or --checkpoint ID")
    with _database() as db:
        tracking = RunTrackingService(db, RunKind.RL)
        if checkpoint:
            info = tracking.checkpoints.deploy(checkpoint, stage)
        else:
            info = tracking.deploy_best(by=by, stage=stage)
    console.print(f"deployed {info.checkpoint_id} ({info.agent_type.value}) to {stage}")


@trials_app.command("list")
def trials_list(
    run: Annotated[str, typer.Option("--run", help="Run whose study to list.")],
    as_json: JsonOption = False,
) -> None:
    """The tuning trials of a supervised or RL run."""
    from repositories.tracking import RunKind, RunTrackingService, find_run

    with _database() as db:
        kind, record = find_run(db, run)
        trials = RunTrackingService(db, kind).trials.list(record.run_id)
    objective = "objective_value" if kind is RunKind.SUPERVISED else "mean_reward"
    _emit(
        [_dump(t) for t in trials],
        as_json,
        f"trials of {run}",
        ["trial_number", "state", objective, "duration_seconds", "hyperparameters"],
    )


@checkpoints_app.command("list")
def checkpoints_list(
    run: Annotated[str, typer.Option("--run", help="Run whose checkpoints to list.")],
    as_json: JsonOption = False,
) -> None:
    """Checkpoints of a run (metadata only, never the bytes)."""
    from repositories.tracking import RunTrackingService, find_run

    with _database() as db:
        kind, record = find_run(db, run)
        infos = RunTrackingService(db, kind).checkpoints.list(record.run_id)
    _emit(
        [_dump(i) | {"step": i.step, "format": i.format.value} for i in infos],
        as_json,
        f"checkpoints of {run}",
        ["checkpoint_id", "step", "format", "size_bytes", "storage", "deployment_status"],
    )


@checkpoints_app.command("export")
def checkpoints_export(checkpoint_id: str, path: Path) -> None:
    """Write a checkpoint's bytes (verified against its SHA-256) to PATH."""
    from repositories.tracking import find_checkpoint

    with _database() as db:
        _, repo, info = find_checkpoint(db, checkpoint_id)
        data = repo.load_checkpoint(info.checkpoint_id)
    path.write_bytes(data)
    console.print(
        f"wrote {len(data):,} bytes ({info.format.value}, sha256 {info.sha256[:12]}…) to {path}"
    )


@checkpoints_app.command("deploy")
def checkpoints_deploy(
    checkpoint_id: str,
    stage: Annotated[str, typer.Option(help="staging or production.")] = "production",
) -> None:
    """Mark a checkpoint staging or production; the previous holder is archived."""
    from repositories.tracking import find_checkpoint

    with _database() as db:
        _, repo, _ = find_checkpoint(db, checkpoint_id)
        info = repo.deploy(checkpoint_id, stage)
    console.print(f"deployed {info.checkpoint_id} ({info.name}) to {stage}")


@checkpoints_app.command("sign")
def checkpoints_sign(
    run: Annotated[str | None, typer.Argument(help="Run id (omit with --all).")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every run.")] = False,
) -> None:
    """Sign the pickle/joblib/SB3-zip checkpoints stored before signatures (run once,
    as the trusted operator, on a store nobody else could write yet)."""
    from repositories.checkpoints import sign_checkpoints

    if (run is None) == (not all_runs):
        raise typer.BadParameter("give a RUN_ID or --all (not both)")
    with _database() as db:
        signed = sign_checkpoints(db, None if all_runs else run)
    console.print(f"signed {len(signed)} checkpoint(s)")


# --------------------------------------------------------------------------- MLflow
mlflow_app = typer.Typer(
    help="Mirror runs into an MLflow tracking server (the `mlflow` extra).", no_args_is_help=True
)
app.add_typer(mlflow_app, name="mlflow")


@mlflow_app.command("export")
def mlflow_export(
    tracking_uri: Annotated[
        str, typer.Option("--tracking-uri", help="MLflow tracking URI (http://..., sqlite:///...).")
    ],
    run: Annotated[
        list[str] | None, typer.Option("--run", help="Run id of either kind (repeatable).")
    ] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every run of both kinds.")] = False,
    since: Annotated[
        str | None, typer.Option(help="With --all: runs created at or after this date (ISO).")
    ] = None,
    experiment_prefix: Annotated[
        str, typer.Option(help="Experiments <prefix>-supervised and <prefix>-rl.")
    ] = "suho",
    all_steps: Annotated[
        bool, typer.Option("--all-steps", help="RL: every step, not only episode summaries.")
    ] = False,
    artifact_location: Annotated[
        str | None, typer.Option(help="Artifact root of experiments this creates.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create or update the MLflow copy of runs (idempotent: only what is new is sent)."""
    import datetime as dt

    from repositories.tracking import find_run
    from suho.integrations.mlflow import MlflowExporter

    if bool(run) == all_runs:
        raise typer.BadParameter("give --run RUN_ID (one or more) or --all")
    if since is not None and not all_runs:
        raise typer.BadParameter("--since goes with --all")
    cutoff = None
    if since is not None:
        try:
            cutoff = dt.datetime.fromisoformat(since)
        except ValueError:
            raise typer.BadParameter(f"--since: not an ISO date or datetime: {since!r}") from None
        if cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=dt.UTC)
    with _database() as db:
        exporter = MlflowExporter(
            db,
            tracking_uri,
            experiment_prefix=experiment_prefix,
            all_steps=all_steps,
            artifact_location=artifact_location,
        )
        chosen = exporter.select(since=cutoff) if all_runs else [find_run(db, r) for r in run or []]
        results = [exporter.export(record.run_id, kind).as_dict() for kind, record in chosen]
    _emit(
        results,
        as_json,
        f"exported to {tracking_uri}",
        ["run_id", "kind", "mlflow_run_id", "created", "params", "metric_points", "artifacts"],
    )


@app.command("demo")
def demo(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes (about a minute).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """The whole pipeline on the configured store (the embedded default: no server)."""
    from suho.demo import run_demo
    from suho_models.settings import get_settings

    run_demo(_url(), get_settings().data_dir, quick=quick, console=console, progress=not quiet)


@app.command("report")
def report(
    run_id: str,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="HTML file.")] = None,
) -> None:
    """Write a self-contained HTML report (plus PNGs) of a supervised or RL run."""
    from suho.report import write_report

    with _database() as db:
        path = write_report(db, run_id, output)
    console.print(f"wrote {path}")


@app.command("ui")
def ui(
    host: Annotated[str, typer.Option(help="Listen address; non-loopback needs a token.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="HTTP port.")] = 5000,
    read_only: Annotated[
        bool | None,
        typer.Option(
            "--read-only/--read-write",
            help="Refuse deploys (default: read-only unless bound to loopback).",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Token every request must carry (prefer SUHO_UI_TOKEN: arguments show in "
            "`ps`). Required beyond loopback."
        ),
    ] = None,
) -> None:
    """Serve the web UI: runs, agents, curves, trials, checkpoints and deploys."""
    import os

    import uvicorn

    from repositories.errors import InvalidInputError
    from suho.ui.app import create_app, serving_options

    try:
        options = serving_options(host, read_only, token or os.environ.get("SUHO_UI_TOKEN"))
    except InvalidInputError as exc:
        raise typer.BadParameter(str(exc).removeprefix("host: "), param_hint="--host") from None
    read_only = options["read_only"]
    db = _database()
    app = create_app(db, **options)
    mode = "read-only" if read_only else "read-write"
    console.print(f"suho ui on http://{host}:{port}/ ({mode}) over {db.safe_url}", soft_wrap=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        db.close()


@app.command("sql")
def sql(
    query: Annotated[str, typer.Argument(help="One SELECT, SHOW, DESCRIBE, WITH or EXPLAIN.")],
    as_json: JsonOption = False,
) -> None:
    """Run a read-only query against the store."""
    from repositories.adhoc import run_read_only

    with _database() as db:
        columns, rows = run_read_only(db, query)
    _emit([dict(zip(columns, r, strict=True)) for r in rows], as_json, "", columns)


def main() -> None:
    """Entry point: user errors become one line and a non-zero exit."""
    try:
        app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort as exc:
        from repositories.tracking import Terminated

        if isinstance(exc.__cause__, Terminated):
            err_console.print("terminated")
            sys.exit(143)
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click usage errors
            exc.show()
            sys.exit(exc.exit_code)
        if _State.debug:
            raise
        from rich.markup import escape

        from trainers.config_file import describe_config_error

        message = describe_config_error(exc) or _one_line(exc)
        err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
        sys.exit(1)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    head = text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {head}" if not head.startswith(type(exc).__name__) else head
