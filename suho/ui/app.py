"""The ``suho ui`` web app: server-rendered pages (Jinja2) over a JSON API, both
reading through the repositories (no SQL here).

Security (:mod:`suho.ui.security`): a token on every request, loopback too (a
generated one there); the Host header must name the bound address, against DNS
rebinding; writes from a browser must be same-origin; beyond loopback the app is
read-only unless told otherwise. A write (deploy) takes a JSON body, which a
cross-site form cannot send without a CORS preflight we never answer.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from suho.ui import errors
from suho.ui.metrics_api import router as metrics_router
from suho.ui.responses import FiniteJSONResponse, json_text
from suho.ui.routes import api_router, pages_router
from suho.ui.security import (
    HostCheckMiddleware,
    SameOriginWritesMiddleware,
    TokenMiddleware,
    serving_options,
)
from suho.ui.views import UIState, cell, deploy_checkpoint, fmt
from suho_models.db import Database

HERE = Path(__file__).resolve().parent


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
    templates.env.filters["fmt"] = fmt
    templates.env.filters["cell"] = cell
    templates.env.policies["json.dumps_function"] = json_text
    app.state.ui = UIState.over(db, templates)
    errors.install(app)  # JSON for /api/, an HTML page for a page
    app.include_router(metrics_router)
    app.include_router(api_router)
    app.include_router(pages_router)
    return app


__all__ = ["create_app", "deploy_checkpoint", "serving_options"]  # serving_options: security
