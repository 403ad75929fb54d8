"""``suho runs metrics RUN_ID KEY``: one metric of any name, for runs of either kind
(registered on ``runs_app`` by root.py).

Metrics logged by the client (``run.log``, ``suho.autolog``) live in ``run_metrics``
under any key; ``suho runs show`` lists a run's keys, this prints one series.
NaN and infinities are printed as such in the table and as ``null`` in ``--json``
(JSON has no NaN).
"""

from __future__ import annotations

import math
from typing import Any

from suho.cli.common import JsonOption, database
from suho.cli.output import emit


def runs_metrics(run_id: str, key: str, as_json: JsonOption = False) -> None:
    """Print one metric of a run (supervised or RL) as step/value rows."""
    from repositories.tracking import RunTrackingService, find_run

    with database() as db:
        kind, run = find_run(db, run_id)
        series = RunTrackingService(db, kind).metric_series(run.run_id, key)
    rows: list[dict[str, Any]] = [
        {"step": step, "value": value if math.isfinite(value) or not as_json else None}
        for step, value in series
    ]
    emit(rows, as_json, f"{key} of run {run.run_id}", ["step", "value"])


def metric_keys(tracking: Any, run_id: Any) -> dict[str, dict[str, Any]]:
    """A run's metric keys for ``runs show``: count, last step, last value."""
    return {
        k.key: {"count": k.count, "last_step": k.last_step, "last_value": _finite(k.last_value)}
        for k in tracking.metric_keys(run_id)
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
