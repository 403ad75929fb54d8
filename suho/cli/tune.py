"""``suho tune``: studies shared by worker processes."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from suho.cli.common import (
    AgentOption,
    ConfigOption,
    CvOption,
    ModelOption,
    QuietOption,
    RoundsOption,
    RunNameOption,
    SeedOption,
    SourceOption,
    SymbolsOption,
    TargetOption,
    TimestepsOption,
    database,
    supervised_config,
)
from suho.cli.output import console, err_console

tune_app = typer.Typer(
    help="Tuning studies shared by worker processes, on this machine or many.",
    no_args_is_help=True,
)

TrialsOption = Annotated[int, typer.Option(min=1, help="Trials the study finishes in total.")]
WorkersOption = Annotated[int, typer.Option(min=1, help="Worker processes on this machine.")]
StorageOption = Annotated[
    str | None,
    typer.Option(help="Optuna storage URL (default: SUHO_OPTUNA_STORAGE, else a journal file)."),
]


def launch_tuning(kind: str, cfg: Any, workers: int, quiet: bool) -> None:
    from repositories.tracking import RunTrackingService
    from trainers.workers import create_tuning_run, launch, local_workers_allowed

    with database() as db:
        local_workers_allowed(db, workers)
        run = create_tuning_run(kind, cfg, db)
        console.print(f"run [bold]{run.run_id}[/bold]: join with `suho tune worker {run.run_id}`")
        codes = launch(run, kind, db, workers, progress=not quiet)
        tracking = RunTrackingService(db, kind)
        run = tracking.get(run.run_id)
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

    cfg = supervised_config(
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
    launch_tuning("supervised", cfg, workers, quiet)


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
    launch_tuning("rl", cfg, workers, quiet)


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
    with database() as db:
        result = run_worker(run_id, db, heartbeat=TrialHeartbeat(heartbeat, grace))
    console.print(
        f"worker {socket.gethostname()}:{os.getpid()}: {result.trials_run} trials; {result.message}"
    )
