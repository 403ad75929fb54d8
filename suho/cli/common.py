"""What every command shares: the store, the debug switch, and the options that read the
same on every command that takes them.

Heavy libraries (boosting, torch, FinRL) are imported inside the commands that need
them, so ``suho --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


class State:
    debug = False


def url() -> str:
    from suho_models.settings import get_settings

    return get_settings().resolved_database_url()


def supervised_config(config: Path | None, **options: Any) -> Any:
    """The options given on the command line (None: not given, so the config file's value
    or the default stays) over the config file, as a ``SupervisedConfig``."""
    from trainers.supervised.config import SupervisedConfig

    given = {k: v for k, v in options.items() if v is not None}
    if config:
        return SupervisedConfig.from_file(config, **given)
    return SupervisedConfig.model_validate(given)


def database() -> Any:
    from suho_models.db import Database

    db = Database(url())
    db.verify_schema()
    return db


QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
ModelOption = Annotated[str | None, typer.Option(help="xgboost, lightgbm or catboost.")]
AgentOption = Annotated[str | None, typer.Option(help="ppo, a2c, ddpg, sac or td3.")]
TargetOption = Annotated[str | None, typer.Option(help="Target column.")]
CvOption = Annotated[int | None, typer.Option(min=2, help="Time-series CV folds.")]
RoundsOption = Annotated[int | None, typer.Option(min=1, help="Boosting rounds.")]
SymbolsOption = Annotated[str | None, typer.Option(help="Comma-separated tickers.")]
SourceOption = Annotated[str | None, typer.Option(help="Feature table or .parquet/.csv.")]
ConfigOption = Annotated[Path | None, typer.Option(help="YAML/TOML config file.")]
RunNameOption = Annotated[str | None, typer.Option(help="Run name.")]
SeedOption = Annotated[int | None, typer.Option(help="Random seed.")]
WalkForwardOption = Annotated[
    int | None,
    typer.Option(
        "--walk-forward", min=2, help="Also retrain and test on K walk-forward folds in time order."
    ),
]
WalkForwardModeOption = Annotated[
    str | None,
    typer.Option(help="expanding (every earlier block; default) or rolling (a fixed window)."),
]


def walk_forward_options(folds: int | None, mode: str | None) -> dict[str, Any] | None:
    """The ``walk_forward`` section the two options make (None: leave the config's)."""
    if folds is None:
        if mode is not None:
            raise typer.BadParameter("needs --walk-forward K", param_hint="--walk-forward-mode")
        return None
    return {"folds": folds, **({} if mode is None else {"mode": mode})}


TuneOption = Annotated[int | None, typer.Option(min=0, help="Optuna trials (0: none).")]
TimestepsOption = Annotated[
    int | None, typer.Option(min=1, help="Environment steps (of the final run, when tuning).")
]
KeepCheckpointsOption = Annotated[
    int | None, typer.Option(min=1, help="Intermediate checkpoints kept per run.")
]
ResumeOption = Annotated[str | None, typer.Option(help="Continue this crashed or interrupted run.")]
MlflowUriOption = Annotated[
    str | None,
    typer.Option(
        "--mlflow-uri",
        help="Also mirror the run into this MLflow tracking URI while it trains "
        "(in the background: a slow or absent server never slows or fails training).",
    ),
]


def mlflow_mirror(db: Any, uri: str | None, kind: str) -> Any:
    """A live MLflow mirror around training, or a no-op without ``--mlflow-uri``."""
    import contextlib

    if uri is None:
        return contextlib.nullcontext(None)
    from suho.integrations.mlflow import LiveMirror

    return LiveMirror(db, uri, kind)


JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ReasonOption = Annotated[str, typer.Option(help="Why (kept as the run's error message).")]
