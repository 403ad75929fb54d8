"""``suho train``: one tracked training run of either kind."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from suho.cli.common import (
    AgentOption,
    ConfigOption,
    CvOption,
    KeepCheckpointsOption,
    MlflowUriOption,
    ModelOption,
    QuietOption,
    ResumeOption,
    RoundsOption,
    RunNameOption,
    SeedOption,
    SourceOption,
    SymbolsOption,
    TargetOption,
    TimestepsOption,
    TuneOption,
    WalkForwardModeOption,
    WalkForwardOption,
    database,
    mlflow_mirror,
    supervised_config,
    walk_forward_options,
)
from suho.cli.output import console

train_app = typer.Typer(
    help="Train models and agents, tracked in ClickHouse.", no_args_is_help=True
)


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
    features: Annotated[
        str | None,
        typer.Option(help="Exactly these feature columns (comma-separated)."),
    ] = None,
    exclude_features: Annotated[
        str | None,
        typer.Option(help="Leave out these feature columns or globs (comma-separated)."),
    ] = None,
    quiet: QuietOption = False,
    checkpoint_every: Annotated[
        int | None, typer.Option(min=1, help="Save the model every N iterations.")
    ] = None,
    keep_checkpoints: KeepCheckpointsOption = None,
    resume: ResumeOption = None,
    mlflow_uri: MlflowUriOption = None,
    walk_forward: WalkForwardOption = None,
    walk_forward_mode: WalkForwardModeOption = None,
) -> None:
    """Train a gradient-boosting model on ml_features and track the run.

    Options left out keep the config file's values (or SupervisedConfig's defaults).
    """
    from trainers.supervised.trainer import SupervisedTrainer
    from trainers.walk_forward import describe_walk_forward

    if resume:
        db = database()
        try:
            with mlflow_mirror(db, mlflow_uri, "supervised") as mirror:
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
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        progress=not quiet,
        tuning=None if tune is None else {"trials": tune},
        features=_feature_options(features, exclude_features),
        walk_forward=walk_forward_options(walk_forward, walk_forward_mode),
    )
    db = database()
    try:
        with mlflow_mirror(db, mlflow_uri, "supervised") as mirror:
            tracking = None if mirror is None else mirror.tracking()
            result = SupervisedTrainer(cfg, db, tracking=tracking).run()
    finally:
        db.close()
    run = result.run
    console.print(f"run [bold]{run.run_id}[/bold] {run.status.value}: test {result.test_metrics}")
    if result.walk_forward:
        console.print(describe_walk_forward(result.walk_forward))


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
    indicators: Annotated[
        str | None,
        typer.Option(help="Indicator columns the agent sees (comma-separated)."),
    ] = None,
    periods_per_year: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Bars per year for annualised metrics (default: from the bar size and "
            "calendar of the data, e.g. 6240 for hourly FX, 252 for daily equities).",
        ),
    ] = None,
    quiet: QuietOption = False,
    mlflow_uri: MlflowUriOption = None,
    walk_forward: WalkForwardOption = None,
    walk_forward_mode: WalkForwardModeOption = None,
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
            "indicators": indicators.split(",") if indicators else None,
            "periods_per_year": periods_per_year,
            "walk_forward": walk_forward_options(walk_forward, walk_forward_mode),
        },
        config,
    )
    with database() as db, mlflow_mirror(db, mlflow_uri, "rl") as mirror:
        tracking = None if mirror is None else mirror.tracking()
        result = RLTrainer(cfg, db, progress=not quiet, tracking=tracking).run()
    run = result.run
    console.print(
        f"run [bold]{run.run_id}[/bold] {run.status.value}: {run.total_timesteps:,} steps, "
        f"{run.total_episodes} episodes, Sharpe {run.final_sharpe_ratio}"
    )
    from trainers.baselines import never_traded, rl_verdict

    summary = {
        **result.evaluation.metrics.to_dict(),
        **result.evaluation.activity.to_dict(),
        **result.evaluation.baseline_metrics(),
    }
    console.print(rl_verdict(summary), highlight=False)
    warning = never_traded(summary)
    if warning is not None:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if result.walk_forward:
        from trainers.walk_forward import describe_walk_forward, fold_means

        console.print(describe_walk_forward(result.walk_forward), highlight=False)
        console.print(f"Mean over folds: {rl_verdict(fold_means(result.walk_forward))}")


def _feature_options(features: str | None, exclude: str | None) -> dict[str, Any] | None:
    """``--features`` / ``--exclude-features`` as a feature spec section (merged key by
    key over a config file's)."""
    spec: dict[str, Any] = {}
    if features is not None:
        spec.update(
            feature_columns=[c.strip() for c in features.split(",") if c.strip()],
            include=None,
            exclude=[],
        )
    if exclude is not None:
        spec["exclude"] = [c.strip() for c in exclude.split(",") if c.strip()]
    return spec or None
