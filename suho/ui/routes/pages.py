"""The UI's pages, server-rendered (Jinja2) from the same views as the API."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from repositories.kinds import RunKind
from suho.kinds import PRESENTATIONS, presentation
from suho.ui import studies
from suho.ui.views import (
    DEPLOY_STAGES,
    UIState,
    compare,
    detail_of,
    listing,
    live,
    read_only,
    state,
    trials_of,
)
from suho_models.enums import RunStatus

UI = Annotated[UIState, Depends(state)]
"""The app's :class:`UIState`, given to a route."""

router = APIRouter(include_in_schema=False)


def page(request: Request, name: str, **context: Any) -> HTMLResponse:
    context.update(read_only=read_only(request), path=request.url.path)
    return state(request).templates.TemplateResponse(request, name, context)


@router.get("/")
def index() -> Response:
    return RedirectResponse("/runs", 307)


def list_page(request: Request, ui: UIState, kind: RunKind) -> HTMLResponse:
    data = listing(ui, kind, request.query_params)
    tracking = ui.tracking[kind]
    shown = presentation(kind)
    params = dict(request.query_params)
    params.setdefault("status", "completed")
    seed = tracking.profile.seed_columns
    extra = [c for c in tracking.metric_columns if c not in seed]
    extra = [c for c in extra if any(r[c] is not None for r in data["rows"])]
    display = [*seed[:2], "status", *seed[2:], *extra, "created_at", "duration_seconds"]
    if data["chosen"]:  # the URL's columns (a shared view), the name always first
        display = ["run_name", *(c for c in data["chosen"] if c != "run_name")]
    listed = tracking.list_columns
    tags = [c for c in tracking.profile.describing_columns if c not in listed]
    choosable = [c for c in [*listed, *tags] if c != "run_id"]
    groups = {
        "metrics": [c for c in choosable if c in tracking.metric_columns],
        "run": [c for c in choosable if c not in tracking.metric_columns],
        "config (parameters)": data["parameters"],
    }
    return page(
        request,
        "runs.html",
        display=display,
        groups=groups,
        kind=kind.value,
        shown=shown,
        title=shown.title,
        base=shown.path,
        data=data,
        params=params,
        seed_columns=seed,
        metric_columns=tracking.metric_columns,
        sortable=tracking.sortable_columns,
        type_column=tracking.type_column,
        statuses=[s.value for s in RunStatus],
    )


def _list_route(kind: RunKind) -> Any:
    def listing_page(ui: UI, request: Request) -> HTMLResponse:
        return list_page(request, ui, kind)

    listing_page.__name__ = f"{kind.value}_listing_page"
    return listing_page


for _shown in PRESENTATIONS.values():  # /runs, /agents
    router.add_api_route(
        _shown.path,
        _list_route(_shown.data.kind),
        methods=["GET"],
        response_class=HTMLResponse,
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(ui: UI, request: Request, run_id: str) -> HTMLResponse:
    tracking, run = ui.find(run_id)
    detail = detail_of(tracking, run)
    return page(
        request,
        "run.html",
        section=presentation(tracking.kind).path.strip("/"),
        shown=presentation(tracking.kind),
        d=detail,
        run=detail["run"],
        trials=trials_of(tracking, run),
        config_pretty=json.dumps(json.loads(detail["run"]["config_json"]), indent=2),
        stages=DEPLOY_STAGES,
    )


@router.get("/runs/{run_id}/study", response_class=HTMLResponse)
def study_page(ui: UI, request: Request, run_id: str) -> HTMLResponse:
    tracking, run = ui.find(run_id)
    return page(
        request,
        "study.html",
        section=presentation(tracking.kind).path.strip("/"),
        run=run,
        study=studies.study_view(tracking, run),
        evaluators=list(studies.EVALUATORS),
        fanova_limit=studies.FANOVA_PAGE_LIMIT,
    )


@router.get("/compare", response_class=HTMLResponse)
def compare_page(ui: UI, request: Request, ids: str = "") -> HTMLResponse:
    chosen = [i for i in ids.split(",") if i] or request.query_params.getlist("id")
    data = compare(ui, chosen, None, None)
    shown = presentation(data["kind"])
    return page(request, "compare.html", data=data, ids=",".join(chosen), shown=shown)


@router.get("/live", response_class=HTMLResponse)
def live_page(ui: UI, request: Request) -> HTMLResponse:
    return page(request, "live.html", data=live(ui))
