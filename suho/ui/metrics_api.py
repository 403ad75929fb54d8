"""UI JSON for metrics of any name (``run_metrics``): a run's keys and one key's series.

A router of its own, included by :func:`suho.ui.app.create_app`; reads go through
:class:`~repositories.tracking.RunTrackingService` like every other route.
NaN and infinities come out as ``null`` (the app's finite JSON response).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter()


@router.get("/api/runs/{run_id}/metric-keys")
def api_metric_keys(request: Request, run_id: str) -> Any:
    """Every key the run logged: count, last step, last value."""
    from repositories.tracking import RunTrackingService, find_run

    db = request.app.state.db
    kind, run = find_run(db, run_id)
    keys = RunTrackingService(db, kind).metric_keys(run.run_id)
    return {"run_id": run.run_id, "keys": [k.model_dump() for k in keys]}


@router.get("/api/runs/{run_id}/metrics/{key:path}")
def api_metric_series(request: Request, run_id: str, key: str) -> Any:
    """One key's series as two arrays (``step``, ``value``), in step order."""
    from repositories.tracking import RunTrackingService, find_run

    db = request.app.state.db
    kind, run = find_run(db, run_id)
    series = RunTrackingService(db, kind).metric_series(run.run_id, key)
    return {
        "run_id": run.run_id,
        "key": key,
        "step": [s for s, _ in series],
        "value": [v for _, v in series],
    }
