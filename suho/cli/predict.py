"""``suho predict`` (batch) and ``suho serve`` (online) with a deployed model or agent."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from suho.cli.common import QuietOption, SymbolsOption, database
from suho.cli.output import console

ModelRef = Annotated[
    str,
    typer.Option(
        "--model", help="Model name or agent type (deployed in --stage), or a run id (its final)."
    ),
]


def _when(value: str | None, flag: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO date or time: {value!r}", param_hint=flag) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def predict(
    model: ModelRef,
    source: Annotated[
        str, typer.Option(help="Feature table, or a .parquet / .csv file.")
    ] = "ml_features",
    stage: Annotated[str, typer.Option(help="staging or production.")] = "production",
    start: Annotated[str | None, typer.Option("--from", help="First time (ISO).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last time (ISO).")] = None,
    symbols: SymbolsOption = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write a .parquet file instead of model_predictions."),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Predict (or act) over feature rows; every row names the checkpoint that made it."""
    import time

    from suho.inference.batch import run_batch
    from suho.inference.models import from_checkpoint, resolve

    since, until = _when(start, "--from"), _when(end, "--to")
    tickers = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    with database() as db:
        began = time.perf_counter()
        loaded = from_checkpoint(*resolve(db, model, stage))
        result = run_batch(
            db,
            loaded,
            source,
            start=since,
            end=until,
            symbols=tickers,
            output=output,
            progress=not quiet,
        )
        took = time.perf_counter() - began
    n = len(result.predictions)
    console.print(
        f"{n:,} predictions by checkpoint {loaded.checkpoint_id} "
        f"({loaded.describe()['name']}) -> {result.written_to} in {took:.1f}s",
        soft_wrap=True,
    )


def serve(
    model: ModelRef,
    stage: Annotated[str, typer.Option(help="staging or production.")] = "production",
    host: Annotated[str, typer.Option(help="Listen address; non-loopback needs a token.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            help="Token every request must carry (prefer SUHO_UI_TOKEN: arguments show in "
            "`ps`). Required beyond loopback."
        ),
    ] = None,
    poll: Annotated[
        float, typer.Option(min=0.1, help="Seconds between checks for a new deploy.")
    ] = 2.0,
) -> None:
    """Serve a deployed model (POST /predict) or agent (POST /act) over HTTP; a new
    deploy to the stage is picked up without a restart. Docs at /docs."""
    import os

    import uvicorn

    from repositories.errors import InvalidInputError
    from suho.inference.serve import ModelHolder, create_serving_app
    from suho.ui.security import serving_options

    try:
        serving = serving_options(host, True, token or os.environ.get("SUHO_UI_TOKEN"))
    except InvalidInputError as exc:
        raise typer.BadParameter(str(exc).removeprefix("host: "), param_hint="--host") from None
    db = database()
    holder = ModelHolder(db, model, stage, poll_seconds=poll)
    app = create_serving_app(holder, token=serving.token, allowed_hosts=serving.allowed_hosts)
    console.print(
        f"suho serve on {serving.url(port).split('?')[0]} (docs at /docs): checkpoint "
        f"{holder.model.checkpoint_id} ({holder.model.describe()['name']}, {stage})\n"
        f"send Authorization: Bearer {serving.token}",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    holder.start()
    try:
        uvicorn.run(app, host=serving.bind, port=port, log_level="warning")
    finally:
        holder.stop()
        db.close()
