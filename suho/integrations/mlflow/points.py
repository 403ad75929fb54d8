"""Metric points MLflow lacks: past each key's highest step there, the idempotence
that lets an export be re-run or resumed after a crash between batches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from suho.integrations.mlflow.names import as_float


@dataclass
class Row:
    """One step of a series: its number, time (ms) and values by MLflow key."""

    step: int
    timestamp: int
    values: dict[str, float | None]


def high_water_marks(mlrun: Any) -> dict[str, int]:
    """The highest step MLflow holds per metric key (its "latest" point)."""
    return {m.key: int(m.step) for m in getattr(mlrun.data, "_metric_objs", [])}


def new_points(rows: list[Row], high: Mapping[str, int], running: bool) -> list[Any]:
    """Metric points past each key's high-water mark, in step order; while the run is
    running, only up to the first gap in the step numbers."""
    from mlflow.entities import Metric

    rows = sorted(rows, key=lambda r: r.step)
    if running:
        for i in range(1, len(rows)):
            if rows[i].step != rows[i - 1].step + 1:
                rows = rows[:i]
                break
    points = []
    for row in rows:
        for key, value in row.values.items():
            number = as_float(value)
            if number is not None and row.step > high.get(key, -1):
                points.append(Metric(key, number, row.timestamp, row.step))
    return points
