"""``suho trials`` and ``suho checkpoints``: what a run's study and saves left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from suho.cli.common import JsonOption, database
from suho.cli.output import console, dump, emit

trials_app = typer.Typer(help="Tuning trials.", no_args_is_help=True)
checkpoints_app = typer.Typer(help="Saved models and agents.", no_args_is_help=True)


@trials_app.command("list")
def trials_list(
    run: Annotated[str, typer.Option("--run", help="Run whose study to list.")],
    as_json: JsonOption = False,
) -> None:
    """The tuning trials of a supervised or RL run."""
    from repositories.tracking import RunKind, RunTrackingService, find_run

    with database() as db:
        kind, record = find_run(db, run)
        trials = RunTrackingService(db, kind).trials.list(record.run_id)
    objective = "objective_value" if kind is RunKind.SUPERVISED else "mean_reward"
    emit(
        [dump(t) for t in trials],
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

    with database() as db:
        kind, record = find_run(db, run)
        infos = RunTrackingService(db, kind).checkpoints.list(record.run_id)
    emit(
        [dump(i) | {"step": i.step, "format": i.format.value} for i in infos],
        as_json,
        f"checkpoints of {run}",
        ["checkpoint_id", "step", "format", "size_bytes", "storage", "deployment_status"],
    )


@checkpoints_app.command("export")
def checkpoints_export(checkpoint_id: str, path: Path) -> None:
    """Write a checkpoint's bytes (verified against its SHA-256) to PATH."""
    from repositories.tracking import find_checkpoint

    with database() as db:
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

    with database() as db:
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
    with database() as db:
        signed = sign_checkpoints(db, None if all_runs else run)
    console.print(f"signed {len(signed)} checkpoint(s)")
