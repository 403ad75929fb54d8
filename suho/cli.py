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
    from suho_models import TABLE_NAMES
    from suho_models.db import Database

    db = Database(_url())
    try:
        db.verify_schema()
        table = Table(title=f"{db.database_name} @ {db.safe_url}")
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name in TABLE_NAMES:
            table.add_row(name, str(db.scalar(f"SELECT count() FROM {name}")))
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
        str | None, typer.Option(envvar="SUHO_SERVER_PASSWORD", help="Password of user default.")
    ] = None,
) -> None:
    """Serve the store as a real ClickHouse server (until Ctrl-C or SIGTERM)."""
    import logging

    from suho_models.db.server import serve
    from suho_models.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    data = path or get_settings().embedded_path
    console.print(
        f"serving {data} on {host}: native {tcp_port}, http {http_port} "
        f"(SUHO_DATABASE_URL=clickhouse+native://{host}:{tcp_port}/suho_analytics)"
    )
    serve(data, tcp_port=tcp_port, http_port=http_port, host=host, password=password)


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


@train_app.command("supervised")
def train_supervised(
    model: Annotated[str, typer.Option(help="xgboost, lightgbm or catboost.")] = "lightgbm",
    target: Annotated[str, typer.Option(help="Target column.")] = "target_direction",
    tune: Annotated[int, typer.Option(min=0, help="Optuna trials (0: no tuning).")] = 0,
    cv: Annotated[int, typer.Option(min=2, help="Time-series CV folds.")] = 3,
    rounds: Annotated[int, typer.Option(min=1, help="Boosting rounds.")] = 300,
    source: Annotated[str, typer.Option(help="Feature table, or a .parquet/.csv file.")] = (
        "ml_features"
    ),
    config: Annotated[Path | None, typer.Option(help="YAML/TOML config file.")] = None,
    run_name: Annotated[str | None, typer.Option(help="Run name.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
    checkpoint_every: Annotated[
        int, typer.Option(min=1, help="Save the model every N iterations.")
    ] = 100,
    resume: Annotated[
        str | None, typer.Option(help="Continue this crashed or interrupted run.")
    ] = None,
) -> None:
    """Train a gradient-boosting model on ml_features and track the run."""
    from trainers.supervised.config import SupervisedConfig
    from trainers.supervised.trainer import SupervisedTrainer

    if resume:
        db = _database()
        try:
            result = SupervisedTrainer.resume(resume, db, progress=not quiet)
        finally:
            db.close()
        run = result.run
        console.print(
            f"run [bold]{run.run_id}[/bold] {run.status.value}: test {result.test_metrics}"
        )
        return

    options: dict[str, Any] = {
        "model_type": model,
        "target": target,
        "cv_folds": cv,
        "rounds": rounds,
        "source": source,
        "run_name": run_name,
        "seed": seed,
        "progress": not quiet,
        "tuning": {"trials": tune},
        "checkpoint_every": checkpoint_every,
    }
    cfg = (
        SupervisedConfig.from_file(config, **options)
        if config
        else SupervisedConfig.model_validate(options)
    )
    db = _database()
    try:
        result = SupervisedTrainer(cfg, db).run()
    finally:
        db.close()
    run = result.run
    console.print(f"run [bold]{run.run_id}[/bold] {run.status.value}: test {result.test_metrics}")


def main() -> None:
    """Entry point: user errors become one line and a non-zero exit."""
    try:
        app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click usage errors
            exc.show()
            sys.exit(exc.exit_code)
        if _State.debug:
            raise
        err_console.print(f"[red]error:[/red] {_one_line(exc)}", soft_wrap=True)
        sys.exit(1)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    head = text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {head}" if not head.startswith(type(exc).__name__) else head
