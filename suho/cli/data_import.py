"""``suho data import``: the user's OHLCV bars into a feature table (the logic is
``trainers.data.importer``; this is only its command line)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from suho.cli.common import database
from suho.cli.data import data_app
from suho.cli.output import console, err_console, print_json


@data_app.command("import")
def data_import(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="CSV or Parquet files of OHLCV bars (one symbol per file, or a symbol column)."
        ),
    ] = None,
    symbol: Annotated[
        str | None,
        typer.Option(
            help="Symbol of the bars (default: the file name; with a symbol "
            "column: import only this symbol)."
        ),
    ] = None,
    table: Annotated[str, typer.Option(help="Feature table to write (or append to).")] = (
        "ml_features"
    ),
    query: Annotated[
        str | None,
        typer.Option(help='Read the bars with a read-only ClickHouse query ("SELECT ...").'),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(
            help="Time zone of times written without one (default UTC), e.g. America/New_York."
        ),
    ] = None,
    calendar: Annotated[
        str | None,
        typer.Option(
            help="Market calendar for annualisation: equities, fx or crypto "
            "(default: inferred from the bars)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Import OHLCV bars: checks them, computes the 110 features and both targets (as
    `suho data synth` does) and appends what is new. Re-importing adds nothing."""
    from trainers.data.calendar import CALENDARS
    from trainers.data.importer import import_ohlcv
    from trainers.data.ohlcv import OhlcvError

    if calendar is not None and calendar not in CALENDARS:
        raise typer.BadParameter(
            f"{calendar!r} is not one of {', '.join(CALENDARS)}", param_hint="--calendar"
        )
    db = database()
    try:
        result = import_ohlcv(
            db,
            files or [],
            symbol=symbol,
            query=query,
            table=table,
            timezone=timezone,
            calendar=calendar,
            progress=not quiet and not as_json,
        )
    except OhlcvError as exc:
        err_console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    finally:
        db.close()
    if as_json:
        print_json(
            {
                "table": result.table,
                "bar_size": result.bar_size.label,
                "calendar": result.calendar,
                "periods_per_year": result.periods_per_year,
                "written": result.written,
                "already_stored": result.already_stored,
                "warnings": result.warnings,
                "notes": result.notes,
            }
        )
        return
    for line in (*result.notes, *result.warnings):
        console.print(f"[yellow]note:[/yellow] {line}", highlight=False)
    per_symbol = ", ".join(f"{s} {n:,}" for s, n in result.written.items())
    console.print(
        f"wrote {result.rows_written:,} rows to {result.table} ({per_symbol}); "
        f"{result.bar_size.label} bars, {result.calendar} calendar, "
        f"{result.periods_per_year:g} bars a year"
    )
