"""The ``suho ui`` web app: server-rendered pages (Jinja2) over a JSON API, both
reading through the repositories (no SQL here).

Security, as ``suho db serve`` does it: on loopback no token is needed (but the
Host header must name loopback, against DNS rebinding); bound anywhere else the
app needs a token, checked on every request, and is read-only unless told
otherwise. A write (deploy) takes a JSON body, which a cross-site form cannot
send without a CORS preflight we never answer.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from repositories.errors import InvalidInputError, InvalidTransitionError, NotFoundError
from suho.ui.responses import FiniteJSONResponse, json_text
from suho.ui.routes import api_router, pages_router
from suho.ui.views import UIState, deploy_checkpoint, fmt
from suho_models.db import Database

HERE = Path(__file__).resolve().parent
TOKEN_COOKIE = "suho_ui_token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class TokenMiddleware:
    """Every request carries the token: ``Authorization: Bearer``, the cookie, or
    ``?token=`` once (which sets the cookie, as Jupyter does)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        if given is not None and secrets.compare_digest(given, self.token):
            response: Response = RedirectResponse(request.url.remove_query_params("token"), 303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else ""
        cookie = request.cookies.get(TOKEN_COOKIE, "")
        if any(secrets.compare_digest(v, self.token) for v in (bearer, cookie) if v):
            await self.app(scope, receive, send)
            return
        await FiniteJSONResponse(
            {"error": "a token is required: open the URL with ?token=... or send a Bearer token"},
            401,
        )(scope, receive, send)


def create_app(
    db: Database,
    *,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """The app over ``db``. ``token``: required on every request when set;
    ``allowed_hosts``: Host headers accepted (None: any)."""
    app = FastAPI(title="suho", default_response_class=FiniteJSONResponse, docs_url=None)
    app.state.db = db
    app.state.read_only = read_only
    if token is not None:
        app.add_middleware(TokenMiddleware, token=token)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["fmt"] = fmt
    templates.env.policies["json.dumps_function"] = json_text
    app.state.ui = UIState.over(db, templates)
    for error, status in _ERROR_STATUS.items():
        app.add_exception_handler(error, _error_response(status))
    app.include_router(api_router)
    app.include_router(pages_router)
    return app


_ERROR_STATUS: dict[type[Exception], int] = {
    InvalidInputError: 422,
    NotFoundError: 404,
    InvalidTransitionError: 409,
}


def _error_response(status: int) -> Any:
    async def handler(request: Request, exc: Exception) -> Response:
        return FiniteJSONResponse({"error": str(exc)}, status)

    return handler


def serving_options(host: str, read_only: bool | None, token: str | None) -> dict[str, Any]:
    """``create_app`` options for an address, as ``suho db serve`` decides them: beyond
    loopback a token is required and the app is read-only unless told otherwise; on
    loopback only loopback Host headers are accepted."""
    loopback = is_loopback(host)
    if not loopback and not token:
        raise InvalidInputError(
            f"host: {host!r} is not loopback: set a token (--token or SUHO_UI_TOKEN) first"
        )
    return {
        "read_only": (not loopback) if read_only is None else read_only,
        "token": token or None,
        "allowed_hosts": [h.strip("[]") for h in LOOPBACK_HOSTS] if loopback else None,
    }


__all__ = ["create_app", "deploy_checkpoint", "is_loopback", "serving_options"]
