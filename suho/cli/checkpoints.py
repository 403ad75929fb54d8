"""``suho trials`` and ``suho checkpoints``: what a run's study and saves left behind."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from suho.cli.common import JsonOption, database
from suho.cli.output import console, dump, emit, err_console

trials_app = typer.Typer(help="Tuning trials.", no_args_is_help=True)
checkpoints_app = typer.Typer(help="Saved models and agents.", no_args_is_help=True)


@trials_app.command("list")
def trials_list(
    run: Annotated[str, typer.Option("--run", help="Run whose study to list.")],
    as_json: JsonOption = False,
) -> None:
    """The tuning trials of a supervised or RL run."""
    from repositories.tracking import tracking_for_run

    with database() as db:
        tracking, record = tracking_for_run(db, run)
        trials = tracking.trials(record.run_id)
    objective = tracking.objective_column
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
    from repositories.tracking import tracking_for_run

    with database() as db:
        tracking, record = tracking_for_run(db, run)
        infos = tracking.checkpoints(record.run_id)
    emit(
        [dump(i) | {"step": i.step, "format": i.format.value} for i in infos],
        as_json,
        f"checkpoints of {run}",
        ["checkpoint_id", "step", "format", "size_bytes", "storage", "deployment_status"],
    )


@checkpoints_app.command("export")
def checkpoints_export(
    checkpoint_id: str,
    path: Path,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing file or symbolic link at PATH.")
    ] = False,
) -> None:
    """Write a checkpoint's bytes (verified against its SHA-256) to PATH: through a
    temporary file and a rename, never through a symbolic link, never over an
    existing file without --force."""
    from repositories.tracking import tracking_for_checkpoint
    from suho.cli.files import write_new_file

    with database() as db:
        tracking, info = tracking_for_checkpoint(db, checkpoint_id)
        data = tracking.load_checkpoint(info.checkpoint_id)
    write_new_file(path, data, force=force)
    console.print(
        f"wrote {len(data):,} bytes ({info.format.value}, sha256 {info.sha256[:12]}…) to {path}"
    )


@checkpoints_app.command("deploy")
def checkpoints_deploy(
    checkpoint_id: str,
    stage: Annotated[str, typer.Option(help="staging or production.")] = "production",
) -> None:
    """Mark a checkpoint staging or production; the previous holder is archived."""
    from repositories.tracking import tracking_for_checkpoint

    with database() as db:
        tracking, _ = tracking_for_checkpoint(db, checkpoint_id)
        info = tracking.deploy(checkpoint_id, stage)
    console.print(f"deployed {info.checkpoint_id} ({info.name}) to {stage}")


@checkpoints_app.command("sign")
def checkpoints_sign(
    run: Annotated[str | None, typer.Argument(help="Run id (omit with --all).")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every run.")] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Sign without asking (scripts).")
    ] = False,
) -> None:
    """Sign the pickle/joblib/SB3-zip checkpoints stored before signatures (run once,
    as the trusted operator). Only rows, of runs, created before signing began are
    signed; each is shown (run, format, size, creation time) and signed after you
    confirm. Rows refused by that rule are listed with the reason, and the command
    then exits 1: they were not written by suho."""
    from repositories.checkpoints import sign_checkpoints

    if (run is None) == (not all_runs):
        raise typer.BadParameter("give a RUN_ID or --all (not both)")
    shown: list[Any] = []

    def confirm(candidates: Sequence[Any]) -> bool:
        shown.extend(candidates)
        _show_candidates(candidates)
        allowed = sum(c.refused is None for c in candidates)
        if not allowed:
            return False
        return yes or typer.confirm(f"sign these {allowed} checkpoint(s)?", default=False)

    with database() as db:
        signed = sign_checkpoints(db, None if all_runs else run, confirm=confirm)
    console.print(f"signed {len(signed)} checkpoint(s)")
    refused = [c for c in shown if c.refused is not None]
    if refused:
        err_console.print(
            f"refused {len(refused)} checkpoint(s) that suho did not write (see above): "
            "delete them, or restore them from a backup taken before signing began",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(1)


def _show_candidates(candidates: Sequence[Any]) -> None:
    """One line per checkpoint (whole ids, to grep or copy), refused ones with why."""
    console.print(f"{len(candidates)} checkpoint(s) without a valid signature:")
    for c in candidates:
        verdict = "sign   " if c.refused is None else "REFUSED"
        line = (
            f"  {verdict} {c.checkpoint_id}  run {c.run_name or '?'} ({c.run_id})  "
            f"{c.format}  {c.size_bytes:,} bytes  created {c.created_at:%Y-%m-%d %H:%M:%S} UTC"
        )
        if c.refused is not None:
            line += f"\n          why: {c.refused}"
        console.print(line, soft_wrap=True, markup=False, highlight=False)
