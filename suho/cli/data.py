"""``suho data``: the input feature table."""

from __future__ import annotations

from typing import Annotated

import typer

from suho.cli.common import database
from suho.cli.output import console

data_app = typer.Typer(help="The input feature table (ml_features).", no_args_is_help=True)


@data_app.command("synth")
def data_synth(
    table: Annotated[str, typer.Option(help="Feature table to write.")] = "ml_features",
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols.")] = (
        "EURUSD,GBPUSD,USDJPY,XAUUSD"
    ),
    periods: Annotated[int, typer.Option(min=200, help="Hourly bars per symbol.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 42,
    replace: Annotated[bool, typer.Option(help="Drop an existing table first.")] = False,
) -> None:
    """Write a realistic synthetic ml_features table (110 features, 2 targets)."""
    from repositories.features import FeatureTable
    from trainers.data.synth import generate_ml_features

    db = database()
    try:
        features = FeatureTable(db, table)
        if features.exists() and not replace:
            console.print(f"{table} already has {features.count():,} rows (use --replace)")
            return
        if replace:
            features.drop()
        frame = generate_ml_features(tuple(symbols.split(",")), periods=periods, seed=seed)
        rows = features.write(frame)
        console.print(f"wrote {rows:,} rows x {frame.shape[1]} columns to {table}")
    finally:
        db.close()
