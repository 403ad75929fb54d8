"""What the UI's routes show, built from the tracking door: listings, a run's detail,
its trials, a comparison. One :class:`UIState` per app, shared by its routers; the
facts of each kind come from the registries (:mod:`repositories.kinds`,
:mod:`suho.kinds`), so nothing here branches on a kind.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates

from repositories.errors import InvalidInputError
from repositories.kinds import PROFILES, RunKind, RunRecord, kind_of_run
from repositories.tracking import AnyTracking, RunTrackingService, tracking_for_checkpoint
from repositories.ui_queries import Curve, flat_parameters, parameter_diff
from suho.ui.studies import study_view
from suho_models.db import Database
from suho_models.enums import DeploymentStatus

MAX_COMPARE = 10
DEPLOY_STAGES = (DeploymentStatus.STAGING.value, DeploymentStatus.PRODUCTION.value)


@dataclass
class UIState:
    """What every route of one app reads: the database and a door per kind."""

    db: Database
    tracking: dict[RunKind, AnyTracking]
    templates: Jinja2Templates

    @classmethod
    def over(cls, db: Database, templates: Jinja2Templates) -> UIState:
        return cls(db, {kind: RunTrackingService(db, kind) for kind in PROFILES}, templates)

    def find(self, run_id: str) -> tuple[AnyTracking, RunRecord]:
        """The door of the run's kind, and the run; NotFoundError if no kind has it."""
        tracking = self.tracking[kind_of_run(self.db, run_id).kind]
        return tracking, tracking.get(run_id)


def state(request: Request) -> UIState:
    ui: UIState = request.app.state.ui
    return ui


def read_only(request: Request) -> bool:
    return bool(request.app.state.read_only)


def an(label: str) -> str:
    """``label`` with its article ("a supervised", "an RL")."""
    vowel = label[:1] in "aeiouAEIOU" or (label.isupper() and label[:1] in "AEFHILMNORSX")
    return f"{'an' if vowel else 'a'} {label}"


# --------------------------------------------------------------------------- views
def listing(ui: UIState, kind: RunKind, params: Mapping[str, str]) -> dict[str, Any]:
    tracking = ui.tracking[kind]
    profile = tracking.profile
    chosen = chosen_columns(params)
    metric = params.get("metric") or None
    ranges = {}
    if metric:
        ranges[metric] = (_number(params.get("min"), "min"), _number(params.get("max"), "max"))
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidInputError(f"order: expected asc or desc (got {order!r})")
    page = tracking.page(
        # the default view is the seed's query: completed runs, best first
        status=params.get("status", "completed") or None,
        type=params.get("type") or None,
        name=params.get("name") or None,
        created_from=_date(params.get("from"), "from"),
        created_to=_date(params.get("to"), "to", end_of_day=True),
        metric_ranges=ranges,
        sort=params.get("sort") or profile.ranking_metric,
        descending=order == "desc",
        limit=_integer(params.get("limit"), "limit", 50),
        offset=_integer(params.get("offset"), "offset", 0),
        search=params.get("q") or None,
        columns=[c for c in chosen if not c.startswith(CONFIG)],
        details=True,
    )
    configs = {k: flat_parameters(v) for k, v in page.configs.items()}
    for row in page.rows:
        flat = configs.get(str(row["run_id"]), {})
        row["stages"] = page.stages.get(str(row["run_id"]), [])
        row.update({c: flat.get(c.removeprefix(CONFIG)) for c in chosen if c.startswith(CONFIG)})
    return {
        "kind": kind.value,
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "sort": page.sort,
        "order": "desc" if page.descending else "asc",
        "columns": tracking.list_columns,
        "chosen": chosen,
        "parameters": sorted({CONFIG + k for flat in configs.values() for k in flat}),
        "rows": page.rows,
    }


CONFIG = "config."
"""Prefix of a listing column that is a config value (``config.params.max_depth``)."""


def chosen_columns(params: Mapping[str, str]) -> list[str]:
    """The ``cols`` of a listing's URL (comma-separated), in order, without repeats."""
    return list(
        dict.fromkeys(c.strip() for c in (params.get("cols") or "").split(",") if c.strip())
    )


def run_detail(ui: UIState, run_id: str) -> dict[str, Any]:
    return detail_of(*ui.find(run_id))


def detail_of(tracking: AnyTracking, run: RunRecord) -> dict[str, Any]:
    record = run.model_dump(mode="json")
    final = tracking.final_checkpoint(run.run_id)
    return {
        "kind": tracking.kind.value,
        "run": record,
        "type": record[tracking.type_column],
        "stale": tracking.is_stale(run),
        "parameters": flat_parameters(run.config_json),
        "checkpoints": [c.summary() for c in tracking.checkpoints(run.run_id)],
        "evaluation": _evaluation(run, final),
        "out_of_sample": _out_of_sample(tracking, run, final),
        "curves": [c.name for c in tracking.profile.curves],
    }


def out_of_sample_of(tracking: AnyTracking, run: RunRecord) -> dict[str, Any] | None:
    """The run's test figures beside its naive baselines' and its walk-forward folds
    (:mod:`trainers.out_of_sample`); None when it stored neither."""
    return _out_of_sample(tracking, run, tracking.final_checkpoint(run.run_id))


def _out_of_sample(tracking: AnyTracking, run: RunRecord, final: Any) -> dict[str, Any] | None:
    from trainers.kinds import trainer_kind
    from trainers.out_of_sample import out_of_sample
    from trainers.walk_forward import KEY_PREFIX

    kind = trainer_kind(tracking.kind)
    return out_of_sample(
        lambda metrics: kind.comparisons(run, metrics),
        None if final is None else final.metrics,
        tracking.metric_steps(run.run_id, KEY_PREFIX),
        run.config_json,
    )


def trials_of(tracking: AnyTracking, run: RunRecord) -> dict[str, Any]:
    """The run page's trials: from the study view (cached per trial count)."""
    view = study_view(tracking, run)
    trials = view["trials"]
    best = view["best"]
    params: dict[str, Any] = next(
        (t["params"] for t in trials if best and t["number"] == best["number"]), {}
    )
    return {
        "objective": tracking.objective_column,
        "direction": tracking.profile.direction,
        "trials": [
            {
                "trial_number": t["number"],
                "state": t["state"],
                "objective": t["value"],
                "duration_seconds": t["duration_seconds"],
            }
            for t in trials
        ],
        "history": view["history"],
        "best": None
        if best is None
        else {"trial_number": best["number"], "objective": best["value"], "parameters": params},
    }


def status_of(ui: UIState, run_id: str) -> dict[str, Any]:
    tracking, run = ui.find(run_id)
    return {
        "run_id": run.run_id,
        "kind": tracking.kind.value,
        "status": run.status.value,
        "stale": tracking.is_stale(run),
        "heartbeat_at": run.heartbeat_at,
        "updated_at": run.updated_at,
        "error_message": run.error_message,
    }


def compare(
    ui: UIState, ids: list[str], curve: str | None, series: list[str] | None
) -> dict[str, Any]:
    if not 2 <= len(ids) <= MAX_COMPARE:
        raise InvalidInputError(f"ids: expected 2 to {MAX_COMPARE} runs (got {len(ids)})")
    found = [ui.find(i) for i in ids]
    kinds = {t.kind for t, _ in found}
    if len(kinds) > 1:
        raise InvalidInputError(
            "ids: compare runs of one kind (got supervised and RL runs together)"
        )
    tracking = found[0][0]
    name = curve or tracking.profile.curves[0].name
    type_column = tracking.type_column
    metrics = tracking.metric_columns
    runs: list[dict[str, Any]] = []
    for _, run in found:
        params = {
            type_column: getattr(run, type_column).value,
            **flat_parameters(run.config_json),
            **_tuned(tracking, run),
        }
        c = tracking.curve(run.run_id, name, series=series)
        runs.append(
            {
                "run_id": run.run_id,
                "run_name": run.run_name,
                "status": run.status.value,
                "parameters": params,
                "metrics": {m: getattr(run, m) for m in metrics},
                "curve": curve_json(c),
            }
        )
    diff = parameter_diff({str(r["run_id"]): r["parameters"] for r in runs})
    # a metric no compared run has (regression metrics of classifiers) is no row
    metrics = [m for m in metrics if any(r["metrics"][m] is not None for r in runs)]
    return {
        "kind": tracking.kind.value,
        "curve": name,
        "runs": runs,
        "diff": diff,
        "metrics": metrics,
    }


def _tuned(tracking: AnyTracking, run: RunRecord) -> dict[str, Any]:
    """The run's best trial's parameters as ``best_trial.<name>`` (what tuning chose,
    which the config alone does not hold); none for an untuned run."""
    best = tracking.best_trials(run.run_id, n=1)
    if not best:
        return {}
    return {f"best_trial.{k}": v for k, v in flat_parameters(best[0].hyperparameters).items()}


def live(ui: UIState) -> dict[str, Any]:
    out = []
    for kind, tracking in ui.tracking.items():
        for row in tracking.running():
            run = tracking.get(row["run_id"])
            out.append(
                {
                    "kind": kind.value,
                    "run_id": row["run_id"],
                    "run_name": row["run_name"],
                    "status": row["status"],
                    "stale": tracking.is_stale(run),
                    "heartbeat_at": row["heartbeat_at"],
                }
            )
    return {"running": out}


def deploy_checkpoint(db: Database, checkpoint_id: str, stage: str) -> dict[str, Any]:
    """What ``suho checkpoints deploy`` does: find the checkpoint's kind, deploy there."""
    tracking, _ = tracking_for_checkpoint(db, checkpoint_id)
    return tracking.deploy(checkpoint_id, stage).summary()


def curve_json(c: Curve) -> dict[str, Any]:
    return {
        "run_id": c.run_id,
        "name": c.name,
        "x": c.x,
        "points_in_range": c.points_in_range,
        "x_min": c.x_min,
        "x_max": c.x_max,
        "points_returned": c.points_returned,
        "series": c.series,
    }


def _evaluation(run: RunRecord, final: Any) -> dict[str, Any]:
    """The run's final metrics, plus those of its final checkpoint (for an agent,
    its evaluation on the trade period against buy-and-hold)."""
    values = {k: v for k, v in run.model_dump().items() if k.startswith("final_")}
    if final is not None:
        values.update({f"checkpoint.{k}": v for k, v in final.metrics.items()})
    return values


# --------------------------------------------------------------------------- parsing
FIRST_YEAR, LAST_YEAR = 1900, 2299


def _number(value: str | None, name: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise InvalidInputError(f"{name}: not a number (got {value!r})") from None
    if not math.isfinite(number):
        raise InvalidInputError(f"{name}: expected a finite number (got {value!r})")
    return number


def _integer(value: str | None, name: str, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidInputError(f"{name}: not an integer (got {value!r})") from None


def _date(value: str | None, name: str, *, end_of_day: bool = False) -> dt.datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"{name}: not a date (YYYY-MM-DD) (got {value!r})") from None
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:  # what the store's DateTime64 holds
        raise InvalidInputError(
            f"{name}: expected a date from {FIRST_YEAR}-01-01 to {LAST_YEAR}-12-31 (got {value!r})"
        )
    if end_of_day and len(value) == 10:
        parsed = parsed + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def duration(seconds: float | None) -> str:
    """A wall time as a person reads it: 54 ms, 5.4 s, 3m 05s, 2h 03m."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def cell(value: Any, column: str) -> str:
    """A listing cell: durations in words, counts with thousands separators, times
    to the minute, floats to 4 significant digits."""
    if column.endswith("duration_seconds"):
        return duration(value)
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list):
        shown = ", ".join(map(str, value[:6]))
        return shown + (f", … ({len(value)})" if len(value) > 6 else "")
    return fmt(value)


def fmt(value: Any) -> str:
    """The templates' ``fmt`` filter: times to the second, floats to 4 digits."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)
