"""The ``suho`` application: its sub-apps, its top-level commands, and the entry point
where user errors become one line and a non-zero exit (``--debug`` shows the traceback)."""

from __future__ import annotations

import signal
import sys
from typing import Annotated, Any

import typer

from suho.cli import (
    data_import,  # noqa: F401  (registers suho data import)
    metrics,
    predict,
    store,
    tools,
)
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
runs_app.command("metrics")(metrics.runs_metrics)
for command in (tools.demo, tools.report, tools.ui, tools.sql):
    app.command(command.__name__)(command)
db_app.command("stop")(store.db_stop)
app.command("predict")(predict.predict)
app.command("serve")(predict.serve)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    State.debug = debug


def main() -> None:
    """Entry point: user errors become one line and a non-zero exit; Ctrl-C exits 130
    and SIGTERM 143, each with one line (a run being trained is marked cancelled
    first, by its guard)."""
    from repositories.tracking import Terminated

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_terminated)
    interrupted: list[KeyboardInterrupt] = []
    command = typer.main.get_command(app)
    invoke = command.invoke

    def recording_invoke(ctx: Any) -> Any:
        """Typer turns an interrupt into exit code 130 and drops the exception (which
        says whether it was SIGTERM); keep it."""
        try:
            return invoke(ctx)
        except KeyboardInterrupt as exc:
            interrupted.append(exc)
            raise

    command.invoke = recording_invoke  # type: ignore[method-assign]
    code: Any = None
    try:
        code = command.main(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort as exc:  # EOF at a prompt
        if not isinstance(exc.__cause__, KeyboardInterrupt):
            err_console.print("aborted")
            sys.exit(130)
        interrupted.append(exc.__cause__)
    except KeyboardInterrupt as exc:
        interrupted.append(exc)
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
    if interrupted or code == 130:  # typer's code for an interrupt it caught itself
        if interrupted and isinstance(interrupted[0], Terminated):
            err_console.print("terminated (SIGTERM)", highlight=False)
            sys.exit(143)
        err_console.print("interrupted (Ctrl-C)", highlight=False)
        sys.exit(130)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)  # typer.Exit(code) raised by a command comes back as the result


def _raise_terminated(signum: int, frame: Any) -> None:
    """SIGTERM outside a run's guard: the same clean exit as inside one."""
    from repositories.tracking import Terminated

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the first one is enough
    raise Terminated("SIGTERM")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    head = text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {head}" if not head.startswith(type(exc).__name__) else head
