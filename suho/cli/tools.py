"""The top-level commands: demo, report, ui and sql (registered in ``suho.cli.root``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from suho.cli.common import JsonOption, database, url
from suho.cli.output import console, emit


def demo(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes (about a minute).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """The whole pipeline on the configured store (the shared default: nothing to start)."""
    from suho.demo import run_demo
    from suho_models.settings import get_settings

    run_demo(url(), get_settings().data_dir, quick=quick, console=console, progress=not quiet)


def report(
    run_id: str,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="HTML file.")] = None,
) -> None:
    """Write a self-contained HTML report (plus PNGs) of a supervised or RL run."""
    from suho.report import write_report

    with database() as db:
        path = write_report(db, run_id, output)
    console.print(f"wrote {path}")


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
            "`ps`). Beyond loopback it is required (16+ characters, no whitespace); on "
            "loopback one is generated into <data_dir>/ui/token (0600) when none is set."
        ),
    ] = None,
) -> None:
    """Serve the web UI: runs, agents, curves, trials, checkpoints and deploys."""
    import os

    from repositories.errors import InvalidInputError

    try:
        import uvicorn

        from suho.ui.app import create_app
        from suho.ui.security import serving_options
    except ImportError as exc:
        raise InvalidInputError(
            f"suho ui needs the [ui] extra ({exc.name} is not installed): "
            "pip install 'suho-training-tables[ui]'"
        ) from None

    try:
        serving = serving_options(host, read_only, token or os.environ.get("SUHO_UI_TOKEN"))
    except InvalidInputError as exc:
        raise typer.BadParameter(str(exc).removeprefix("host: "), param_hint="--host") from None
    db = database()
    app = create_app(db, **serving.app_options())
    mode = "read-only" if serving.read_only else "read-write"
    console.print(
        f"suho ui ({mode}) over {db.safe_url}\nopen {serving.url(port)}",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    try:
        uvicorn.run(app, host=serving.bind, port=port, log_level="warning")
    finally:
        db.close()


def sql(
    query: Annotated[str, typer.Argument(help="One SELECT, SHOW, DESCRIBE, WITH or EXPLAIN.")],
    as_json: JsonOption = False,
) -> None:
    """Run a read-only query against the store."""
    from repositories.adhoc import run_read_only

    with database() as db:
        columns, rows = run_read_only(db, query)
    emit([dict(zip(columns, r, strict=True)) for r in rows], as_json, "", columns)
