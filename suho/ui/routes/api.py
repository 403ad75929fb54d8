"""The UI's JSON API (``/api/...``): listings, a run, its curves, trials,
checkpoints, feature importance or equity, out-of-sample figures against the naive
baselines, comparison, live runs, deployment."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from repositories.errors import InvalidInputError, NotFoundError
from repositories.kinds import PROFILES, RunKind
from suho.kinds import PRESENTATIONS, presentation
from suho.ui import studies
from suho.ui.responses import FiniteJSONResponse
from suho.ui.views import (
    DEPLOY_STAGES,
    UIState,
    an,
    compare,
    curve_json,
    deploy_checkpoint,
    listing,
    live,
    out_of_sample_of,
    read_only,
    run_detail,
    state,
    status_of,
    trials_of,
)

UI = Annotated[UIState, Depends(state)]
"""The app's :class:`UIState`, given to a route."""

router = APIRouter(prefix="/api")


def _listing_route(kind: RunKind) -> Any:
    def api_listing(ui: UI, request: Request) -> Any:
        return listing(ui, kind, request.query_params)

    api_listing.__name__ = f"api_{kind.value}_listing"
    return api_listing


for _shown in PRESENTATIONS.values():  # /api/runs, /api/agents
    router.add_api_route(_shown.path, _listing_route(_shown.data.kind), methods=["GET"])


@router.get("/seed/{name}")
def api_seed(ui: UI, name: str) -> Any:
    """The seed's query as the repositories run it (the listings' default views)."""
    for kind, profile in PROFILES.items():
        if profile.seed_query == name:
            return ui.tracking[kind].seed_ranking()
    names = " or ".join(p.seed_query for p in PROFILES.values())
    raise InvalidInputError(f"kind: expected {names} (got {name!r})")


@router.get("/runs/{run_id}")
def api_run(ui: UI, run_id: str) -> Any:
    return run_detail(ui, run_id)


@router.get("/runs/{run_id}/status")
def api_status(ui: UI, run_id: str) -> Any:
    return status_of(ui, run_id)


@router.get("/runs/{run_id}/curve")
def api_curve(
    ui: UI,
    run_id: str,
    name: str | None = None,
    points: int = 1500,
    x_from: float | None = None,
    x_to: float | None = None,
    series: str | None = None,
) -> Any:
    """One of the run's curves (default: its kind's first), downsampled."""
    tracking, run = ui.find(run_id)
    chosen = [s for s in series.split(",") if s] if series else None
    c = tracking.curve(run.run_id, name, points=points, x_from=x_from, x_to=x_to, series=chosen)
    return curve_json(c)


@router.get("/runs/{run_id}/trials")
def api_trials(ui: UI, run_id: str) -> Any:
    tracking, run = ui.find(run_id)
    return trials_of(tracking, run)


@router.get("/runs/{run_id}/study")
def api_study(ui: UI, run_id: str) -> Any:
    """The run's study: trials with their parameters, tuned parameters, history."""
    return studies.study_view(*ui.find(run_id))


@router.get("/runs/{run_id}/study/importance")
def api_study_importance(ui: UI, run_id: str, evaluator: str = "fanova") -> Any:
    """Optuna's hyperparameter importance of the run's study (cached per trial count)."""
    return studies.importance(*ui.find(run_id), evaluator)


@router.get("/runs/{run_id}/checkpoints")
def api_checkpoints(ui: UI, run_id: str) -> Any:
    tracking, run = ui.find(run_id)
    return [c.summary() for c in tracking.checkpoints(run.run_id)]


@router.get("/runs/{run_id}/feature-importance")
def api_feature_importance(ui: UI, run_id: str, top: int = 20) -> Any:
    tracking, run = ui.find(run_id)
    if not presentation(tracking.kind).feature_importance:
        label = tracking.profile.label
        raise InvalidInputError(f"run_id: {run_id} is {an(label)} run; feature importance is not")
    from trainers.supervised.inference import run_feature_importance

    importance = run_feature_importance(ui.db, run.run_id)
    if importance is None:
        raise NotFoundError(
            f"run_id: {run_id} has no feature importance (no model of the trainer's, and "
            "none logged as feature_importance/<name>)"
        )
    ranked = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[: max(top, 1)]
    return {"run_id": run.run_id, "features": [{"name": k, "importance": v} for k, v in ranked]}


@router.get("/runs/{run_id}/equity")
def api_equity(ui: UI, run_id: str) -> Any:
    tracking, run = ui.find(run_id)
    if not presentation(tracking.kind).equity:
        label = tracking.profile.label
        raise InvalidInputError(f"run_id: {run_id} is {an(label)} run; equity is for agents")
    if tracking.final_checkpoint(run.run_id) is None:
        raise NotFoundError(f"run {run.run_id} has no agent checkpoint to evaluate")
    from trainers.rl.report import trade_evaluation

    evaluation = trade_evaluation(ui.db, run.run_id)
    equity = evaluation.equity
    return {
        "run_id": run.run_id,
        "dates": [int(d.timestamp()) for d in equity["date"]],
        "agent": equity["account_value"].astype(float).tolist(),
        "buy_and_hold": equity["buy_and_hold"].astype(float).tolist(),
        "metrics": evaluation.metrics.to_dict(),
    }


@router.get("/runs/{run_id}/out-of-sample")
def api_out_of_sample(ui: UI, run_id: str) -> Any:
    """The run's test figures beside its naive baselines' on the same rows or period,
    the plain line whether it beat them, and its walk-forward folds."""
    tracking, run = ui.find(run_id)
    found = out_of_sample_of(tracking, run)
    if found is None:
        raise NotFoundError(
            f"run_id: {run_id} has no out-of-sample comparison: no baseline figures on a "
            "final checkpoint and no walk-forward folds (walk_forward/* metrics)"
        )
    return {"run_id": run.run_id, **found}


@router.get("/compare")
def api_compare(ui: UI, ids: str, curve: str | None = None, series: str | None = None) -> Any:
    chosen = [s for s in series.split(",") if s] if series else None
    return compare(ui, [i for i in ids.split(",") if i], curve, chosen)


@router.get("/live")
def api_live(ui: UI) -> Any:
    return live(ui)


@router.get("/config")
def api_config(request: Request) -> Any:
    return {"read_only": read_only(request), "stages": list(DEPLOY_STAGES)}


@router.post("/checkpoints/{checkpoint_id}/deploy")
async def api_deploy(checkpoint_id: str, request: Request) -> Any:
    if read_only(request):
        return FiniteJSONResponse(
            {"error": "read-only: deploying is disabled (started with --read-only)"}, 403
        )
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise InvalidInputError('body: send JSON ({"stage": ...}, application/json)')
    try:
        body = await request.json()
    except ValueError:
        raise InvalidInputError("body: not valid JSON") from None
    stage = body.get("stage") if isinstance(body, dict) else None
    if stage not in DEPLOY_STAGES:
        raise InvalidInputError(f"stage: expected staging or production (got {stage!r})")
    return deploy_checkpoint(state(request).db, checkpoint_id, stage)
