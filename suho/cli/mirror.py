"""``suho mlflow``: the MLflow copy of runs."""

from __future__ import annotations

from typing import Annotated

import typer

from suho.cli.common import JsonOption, database
from suho.cli.output import emit

mlflow_app = typer.Typer(
    help="Mirror runs into an MLflow tracking server (the `mlflow` extra).", no_args_is_help=True
)


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
    with database() as db:
        exporter = MlflowExporter(
            db,
            tracking_uri,
            experiment_prefix=experiment_prefix,
            all_steps=all_steps,
            artifact_location=artifact_location,
        )
        chosen = exporter.select(since=cutoff) if all_runs else [find_run(db, r) for r in run or []]
        results = [exporter.export(record.run_id, kind).as_dict() for kind, record in chosen]
    emit(
        results,
        as_json,
        f"exported to {tracking_uri}",
        ["run_id", "kind", "mlflow_run_id", "created", "params", "metric_points", "artifacts"],
    )
