"""Output for people (rich tables) and for scripts (``--json``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def print_json(data: Any) -> None:
    import json

    console.print_json(json.dumps(data, default=str))


def emit(rows: list[dict[str, Any]], as_json: bool, title: str, columns: list[str]) -> None:
    """Rows as JSON (for scripts) or as a table (for people)."""
    if as_json:
        print_json(rows)
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(cell(row.get(c)) for c in columns))
    console.print(table)


def show(data: dict[str, Any], as_json: bool, title: str, hidden: tuple[str, ...]) -> None:
    """One record as JSON, or as a key/value table without the ``hidden`` keys."""
    if as_json:
        print_json(data)
        return
    table = Table(title=title, show_header=False)
    for key, value in data.items():
        if key not in hidden:
            table.add_row(key, cell(value))
    console.print(table)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(getattr(value, "value", value))


def dump(record: Any) -> dict[str, Any]:
    data: dict[str, Any] = record.model_dump(mode="json")
    return data
