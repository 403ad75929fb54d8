"""The ``suho`` application: its sub-apps, its top-level commands, and the entry point
where user errors become one line and a non-zero exit (``--debug`` shows the traceback)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from suho.cli import tools
from suho.cli.agents import agents_app
from suho.cli.checkpoints import checkpoints_app, trials_app
from suho.cli.common import State
from suho.cli.data import data_app
from suho.cli.db import db_app
from suho.cli.mirror import mlflow_app
from suho.cli.output import err_console
from suho.cli.runs import runs_app
from suho.cli.train import train_app
from suho.cli.tune import tune_app

app = typer.Typer(help="Track ML and RL training in ClickHouse.", no_args_is_help=True)
for sub, name in (
    (db_app, "db"),
    (data_app, "data"),
    (train_app, "train"),
    (tune_app, "tune"),
    (runs_app, "runs"),
    (agents_app, "agents"),
    (trials_app, "trials"),
    (checkpoints_app, "checkpoints"),
    (mlflow_app, "mlflow"),
):
    app.add_typer(sub, name=name)
for command in (tools.demo, tools.report, tools.ui, tools.sql):
    app.command(command.__name__)(command)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    State.debug = debug


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
        if State.debug:
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
