"""The ``suho ui`` web app: server-rendered pages (Jinja2) over a JSON API, both
reading through the repositories (no SQL here).

Security (:mod:`suho.ui.security`): a token on every request, loopback too (a
generated one there); the Host header must name the bound address, against DNS
rebinding; writes from a browser must be same-origin; beyond loopback the app is
read-only unless told otherwise. A write (deploy) takes a JSON body, which a
cross-site form cannot send without a CORS preflight we never answer.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from enum import Enum
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from repositories.errors import InvalidInputError, InvalidTransitionError, NotFoundError
from repositories.serialization import CorruptCheckpointError
from repositories.tracking import RunKind, RunTrackingService, find_checkpoint, find_run
from repositories.ui_queries import (
    CURVES,
    DEFAULT_VIEWS,
    SEED_COLUMNS,
    CurveReader,
    RunBrowser,
    flat_parameters,
    parameter_diff,
)
from suho.ui.security import (
    HostCheckMiddleware,
    SameOriginWritesMiddleware,
    TokenMiddleware,
)
from suho_models.db import Database
from suho_models.enums import DeploymentStatus, RunStatus

HERE = Path(__file__).resolve().parent
MAX_COMPARE = 10
FIRST_YEAR, LAST_YEAR = 1900, 2299
DEPLOY_STAGES = (DeploymentStatus.STAGING.value, DeploymentStatus.PRODUCTION.value)
CHART_CURVES = {RunKind.SUPERVISED: ("metrics",), RunKind.RL: ("episodes", "steps")}


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they go out as null (a gap on a chart)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, uuid.UUID | Enum):
        return str(value.value if isinstance(value, Enum) else value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return jsonable_encoder(value)


def _json_text(content: Any, **kwargs: Any) -> str:
    """Straight to ``json.dumps`` (a curve is thousands of floats: walking them with
    ``jsonable_encoder`` cost ten times the query); only content holding NaN or
    infinity takes the slower path that writes them as null."""
    try:
        return json.dumps(content, allow_nan=False, separators=(",", ":"), default=_json_default)
    except ValueError:
        cleaned = _finite(json.loads(json.dumps(content, default=_json_default)))
        return json.dumps(cleaned, allow_nan=False, separators=(",", ":"))


class FiniteJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return _json_text(content).encode()


def create_app(
    db: Database,
    *,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """The app over ``db``. ``token``: required on every request when set;
    ``allowed_hosts``: Host headers accepted (None or empty: any). Browser writes
    must be same-origin whatever the options."""
    app = FastAPI(title="suho", default_response_class=FiniteJSONResponse, docs_url=None)
    app.state.db = db
    app.state.read_only = read_only
    if token is not None:
        app.add_middleware(TokenMiddleware, token=token)
    app.add_middleware(SameOriginWritesMiddleware)  # outside the token: refused first
    if allowed_hosts:
        app.add_middleware(HostCheckMiddleware, allowed=allowed_hosts)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["fmt"] = _fmt
    templates.env.policies["json.dumps_function"] = _json_text
    browsers = {kind: RunBrowser(db, kind) for kind in RunKind}
    curves = CurveReader(db)
    tracking = {kind: RunTrackingService(db, kind) for kind in RunKind}

    # ------------------------------------------------------------------ errors
    @app.exception_handler(InvalidInputError)
    async def _invalid(request: Request, exc: InvalidInputError) -> Response:
        return FiniteJSONResponse({"error": str(exc)}, 422)

    @app.exception_handler(NotFoundError)
    async def _missing(request: Request, exc: NotFoundError) -> Response:
        return FiniteJSONResponse({"error": str(exc)}, 404)

    @app.exception_handler(CorruptCheckpointError)
    async def _unloadable(request: Request, exc: CorruptCheckpointError) -> Response:
        return FiniteJSONResponse({"error": str(exc)}, 422)

    @app.exception_handler(InvalidTransitionError)
    async def _conflict(request: Request, exc: InvalidTransitionError) -> Response:
        return FiniteJSONResponse({"error": str(exc)}, 409)

    # ------------------------------------------------------------------ helpers
    def listing(kind: RunKind, params: Any) -> dict[str, Any]:
        browser = browsers[kind]
        view = DEFAULT_VIEWS[kind]
        metric = params.get("metric") or None
        ranges = {}
        if metric:
            ranges[metric] = (
                _number(params.get("min"), "min"),
                _number(params.get("max"), "max"),
            )
        order = params.get("order", "desc" if view["descending"] else "asc")
        if order not in ("asc", "desc"):
            raise InvalidInputError(f"order: expected asc or desc (got {order!r})")
        page = browser.page(
            status=params.get("status", view["status"]) or None,
            type=params.get("type") or None,
            name=params.get("name") or None,
            created_from=_date(params.get("from"), "from"),
            created_to=_date(params.get("to"), "to", end_of_day=True),
            metric_ranges=ranges,
            sort=params.get("sort") or view["sort"],
            descending=order == "desc",
            limit=_integer(params.get("limit"), "limit", 50),
            offset=_integer(params.get("offset"), "offset", 0),
        )
        return {
            "kind": kind.value,
            "total": page.total,
            "offset": page.offset,
            "limit": page.limit,
            "sort": page.sort,
            "order": "desc" if page.descending else "asc",
            "columns": browser.list_columns,
            "rows": page.rows,
        }

    def run_detail(run_id: str) -> dict[str, Any]:
        kind, run = find_run(db, run_id)
        service = tracking[kind]
        checkpoints = [c.summary() for c in service.checkpoints.list(run.run_id)]
        final = service.final_checkpoint(run.run_id)
        record = run.model_dump(mode="json")
        return {
            "kind": kind.value,
            "run": record,
            "type": record["model_type" if kind is RunKind.SUPERVISED else "agent_type"],
            "stale": service.is_stale(run),
            "parameters": flat_parameters(run.config_json),
            "checkpoints": checkpoints,
            "evaluation": _evaluation(run, final),
            "curves": list(CHART_CURVES[kind]),
        }

    def trials_of(kind: RunKind, run_id: uuid.UUID) -> dict[str, Any]:
        repo = tracking[kind].trials
        direction = "minimize" if kind is RunKind.SUPERVISED else "maximize"
        objective = repo.objective_column
        trials = repo.list(run_id)
        best = repo.best(run_id, n=1, direction=direction)
        return {
            "objective": objective,
            "direction": direction,
            "trials": [
                {
                    "trial_number": t.trial_number,
                    "state": t.state.value,
                    "objective": getattr(t, objective),
                    "duration_seconds": t.duration_seconds,
                }
                for t in trials
            ],
            "best": None
            if not best
            else {
                "trial_number": best[0].trial_number,
                "objective": getattr(best[0], objective),
                "parameters": json.loads(best[0].hyperparameters),
            },
        }

    def status_of(run_id: str) -> dict[str, Any]:
        kind, run = find_run(db, run_id)
        return {
            "run_id": run.run_id,
            "kind": kind.value,
            "status": run.status.value,
            "stale": tracking[kind].is_stale(run),
            "heartbeat_at": run.heartbeat_at,
            "updated_at": run.updated_at,
            "error_message": run.error_message,
        }

    def compare(ids: list[str], curve: str | None, series: list[str] | None) -> dict[str, Any]:
        if not 2 <= len(ids) <= MAX_COMPARE:
            raise InvalidInputError(f"ids: expected 2 to {MAX_COMPARE} runs (got {len(ids)})")
        found = [find_run(db, i) for i in ids]
        kinds = {k for k, _ in found}
        if len(kinds) > 1:
            raise InvalidInputError(
                "ids: compare runs of one kind (got supervised and RL runs together)"
            )
        kind = kinds.pop()
        name = curve or CHART_CURVES[kind][0]
        if CURVES.get(name, (None,))[0] is not kind:
            allowed = ", ".join(CHART_CURVES[kind])
            raise InvalidInputError(f"curve: {name!r} is not a {kind.value} curve ({allowed})")
        type_column = browsers[kind].type_column
        metrics = browsers[kind].metric_columns
        runs = []
        for _, run in found:
            params = {
                type_column: getattr(run, type_column).value,
                **flat_parameters(run.config_json),
            }
            c = curves.curve(run.run_id, name, series=series)
            runs.append(
                {
                    "run_id": run.run_id,
                    "run_name": run.run_name,
                    "status": run.status.value,
                    "parameters": params,
                    "metrics": {m: getattr(run, m) for m in metrics},
                    "curve": _curve_json(c),
                }
            )
        diff = parameter_diff({str(r["run_id"]): r["parameters"] for r in runs})
        return {"kind": kind.value, "curve": name, "runs": runs, "diff": diff, "metrics": metrics}

    # ------------------------------------------------------------------ API
    @app.get("/api/runs")
    def api_runs(request: Request) -> Any:
        return listing(RunKind.SUPERVISED, request.query_params)

    @app.get("/api/agents")
    def api_agents(request: Request) -> Any:
        return listing(RunKind.RL, request.query_params)

    @app.get("/api/seed/{kind}")
    def api_seed(kind: str) -> Any:
        """The seed's query as the repositories run it (the listings' default views)."""
        if kind == "compare_model_performance":
            return browsers[RunKind.SUPERVISED].runs.compare_model_performance()
        if kind == "best_rl_agents":
            return browsers[RunKind.RL].runs.best_agents()
        raise InvalidInputError(
            f"kind: expected compare_model_performance or best_rl_agents (got {kind!r})"
        )

    @app.get("/api/runs/{run_id}")
    def api_run(run_id: str) -> Any:
        return run_detail(run_id)

    @app.get("/api/runs/{run_id}/status")
    def api_status(run_id: str) -> Any:
        return status_of(run_id)

    @app.get("/api/runs/{run_id}/curve")
    def api_curve(
        run_id: str,
        name: str = "metrics",
        points: int = 1500,
        x_from: float | None = None,
        x_to: float | None = None,
        series: str | None = None,
    ) -> Any:
        find_run(db, run_id)
        chosen = [s for s in series.split(",") if s] if series else None
        c = curves.curve(run_id, name, points=points, x_from=x_from, x_to=x_to, series=chosen)
        return _curve_json(c)

    @app.get("/api/runs/{run_id}/trials")
    def api_trials(run_id: str) -> Any:
        kind, run = find_run(db, run_id)
        return trials_of(kind, run.run_id)

    @app.get("/api/runs/{run_id}/checkpoints")
    def api_checkpoints(run_id: str) -> Any:
        kind, run = find_run(db, run_id)
        return [c.summary() for c in tracking[kind].checkpoints.list(run.run_id)]

    @app.get("/api/runs/{run_id}/feature-importance")
    def api_feature_importance(run_id: str, top: int = 20) -> Any:
        kind, run = find_run(db, run_id)
        if kind is not RunKind.SUPERVISED:
            raise InvalidInputError(f"run_id: {run_id} is an RL run; feature importance is not")
        from trainers.supervised.inference import load_run_model

        loaded = load_run_model(db, run.run_id)
        importance = loaded.booster.feature_importance(loaded.model, loaded.features)
        ranked = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[: max(top, 1)]
        return {"run_id": run.run_id, "features": [{"name": k, "importance": v} for k, v in ranked]}

    @app.get("/api/runs/{run_id}/equity")
    def api_equity(run_id: str) -> Any:
        kind, run = find_run(db, run_id)
        if kind is not RunKind.RL:
            raise InvalidInputError(f"run_id: {run_id} is a supervised run; equity is for agents")
        if tracking[kind].final_checkpoint(run.run_id) is None:
            raise NotFoundError(f"run {run.run_id} has no agent checkpoint to evaluate")
        from trainers.rl.report import trade_evaluation

        evaluation = trade_evaluation(db, run.run_id)
        equity = evaluation.equity
        return {
            "run_id": run.run_id,
            "dates": [int(d.timestamp()) for d in equity["date"]],
            "agent": equity["account_value"].astype(float).tolist(),
            "buy_and_hold": equity["buy_and_hold"].astype(float).tolist(),
            "metrics": evaluation.metrics.to_dict(),
        }

    @app.get("/api/compare")
    def api_compare(ids: str, curve: str | None = None, series: str | None = None) -> Any:
        chosen = [s for s in series.split(",") if s] if series else None
        return compare([i for i in ids.split(",") if i], curve, chosen)

    @app.get("/api/live")
    def api_live() -> Any:
        out = []
        for kind in RunKind:
            for row in browsers[kind].running():
                run = tracking[kind].runs.get(row["run_id"])
                out.append(
                    {
                        "kind": kind.value,
                        "run_id": row["run_id"],
                        "run_name": row["run_name"],
                        "status": row["status"],
                        "stale": tracking[kind].is_stale(run),
                        "heartbeat_at": row["heartbeat_at"],
                    }
                )
        return {"running": out}

    @app.get("/api/config")
    def api_config() -> Any:
        return {"read_only": app.state.read_only, "stages": list(DEPLOY_STAGES)}

    @app.post("/api/checkpoints/{checkpoint_id}/deploy")
    async def api_deploy(checkpoint_id: str, request: Request) -> Any:
        if app.state.read_only:
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
        return deploy_checkpoint(db, checkpoint_id, stage)

    # ------------------------------------------------------------------ pages
    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        context.update(read_only=app.state.read_only, path=request.url.path)
        return templates.TemplateResponse(request, name, context)

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return RedirectResponse("/runs", 307)

    def list_page(request: Request, kind: RunKind) -> HTMLResponse:
        data = listing(kind, request.query_params)
        browser = browsers[kind]
        params = dict(request.query_params)
        view = DEFAULT_VIEWS[kind]
        params.setdefault("status", view["status"])
        seed = SEED_COLUMNS[kind]
        shown = [c for c in browser.metric_columns if c not in seed]
        shown = [c for c in shown if any(r[c] is not None for r in data["rows"])]
        display = [*seed[:2], "status", *seed[2:], *shown, "created_at", "duration_seconds"]
        return page(
            request,
            "runs.html",
            display=display,
            kind=kind.value,
            title="Runs" if kind is RunKind.SUPERVISED else "Agents",
            base="/runs" if kind is RunKind.SUPERVISED else "/agents",
            data=data,
            params=params,
            seed_columns=SEED_COLUMNS[kind],
            metric_columns=browser.metric_columns,
            sortable=browser.sortable,
            type_column=browser.type_column,
            statuses=[s.value for s in RunStatus],
        )

    @app.get("/runs", response_class=HTMLResponse, include_in_schema=False)
    def runs_page(request: Request) -> HTMLResponse:
        return list_page(request, RunKind.SUPERVISED)

    @app.get("/agents", response_class=HTMLResponse, include_in_schema=False)
    def agents_page(request: Request) -> HTMLResponse:
        return list_page(request, RunKind.RL)

    @app.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        detail = run_detail(run_id)
        kind = RunKind(detail["kind"])
        run_uuid = uuid.UUID(detail["run"]["run_id"])
        return page(
            request,
            "run.html",
            section="runs" if kind is RunKind.SUPERVISED else "agents",
            d=detail,
            run=detail["run"],
            trials=trials_of(kind, run_uuid),
            config_pretty=json.dumps(json.loads(detail["run"]["config_json"]), indent=2),
            stages=DEPLOY_STAGES,
        )

    @app.get("/compare", response_class=HTMLResponse, include_in_schema=False)
    def compare_page(request: Request, ids: str = "") -> HTMLResponse:
        chosen = [i for i in ids.split(",") if i] or request.query_params.getlist("id")
        data = compare(chosen, None, None)
        return page(request, "compare.html", data=data, ids=",".join(chosen))

    @app.get("/live", response_class=HTMLResponse, include_in_schema=False)
    def live_page(request: Request) -> HTMLResponse:
        return page(request, "live.html", data=api_live())

    return app


def deploy_checkpoint(db: Database, checkpoint_id: str, stage: str) -> Any:
    """What ``suho checkpoints deploy`` does: find the checkpoint's table, deploy there."""
    _, repo, _ = find_checkpoint(db, checkpoint_id)
    return repo.deploy(checkpoint_id, stage).summary()


def _curve_json(c: Any) -> dict[str, Any]:
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


def _evaluation(run: Any, final: Any) -> dict[str, Any]:
    """The run's final metrics, plus those of its final checkpoint (for an agent,
    its evaluation on the trade period against buy-and-hold)."""
    values = {k: v for k, v in run.model_dump().items() if k.startswith("final_")}
    if final is not None:
        values.update({f"checkpoint.{k}": v for k, v in final.metrics.items()})
    return values


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
    if value in (None, ""):
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


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)
