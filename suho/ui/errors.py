"""Errors as the asker reads them: JSON (``{"error": ...}``) for ``/api/`` and
other scripts, an HTML page for a browser that asked for a page, so a bad URL
shows a readable page with a way back rather than raw JSON."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException

from repositories.errors import InvalidInputError, InvalidTransitionError, NotFoundError
from repositories.serialization import CorruptCheckpointError
from suho.ui.responses import FiniteJSONResponse

ERROR_STATUS: dict[type[Exception], int] = {
    InvalidInputError: 422,
    NotFoundError: 404,
    InvalidTransitionError: 409,
    CorruptCheckpointError: 422,  # a checkpoint that does not load as its format
}

TITLES = {400: "Bad request", 404: "Not found", 405: "Method not allowed", 409: "Conflict"}


def wants_json(request: Request) -> bool:
    """``/api/``, ``/static/`` and any client that did not ask for HTML get JSON."""
    path = request.url.path
    if path.startswith(("/api/", "/static/")) or path == "/api":
        return True
    return "text/html" not in request.headers.get("accept", "")


def error_response(request: Request, status: int, message: str) -> Response:
    if wants_json(request):
        return FiniteJSONResponse({"error": message}, status)
    templates = request.app.state.ui.templates
    title = TITLES.get(status, "Invalid input" if status == 422 else "Error")
    context = {
        "status": status,
        "error_title": title,
        "message": message,
        "read_only": bool(request.app.state.read_only),
        "path": request.url.path,
    }
    page: HTMLResponse = templates.TemplateResponse(request, "error.html", context, status)
    return page


def _message(request: Request, exc: Exception) -> str:
    if isinstance(exc, HTTPException):
        if exc.status_code == 404:
            return f"no such page: {request.url.path}"
        return str(exc.detail)
    if isinstance(exc, RequestValidationError):
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path"))
            parts.append(f"{where}: {e.get('msg', 'invalid')} (got {e.get('input')!r})")
        return "; ".join(parts) or "invalid request"
    return str(exc)


def install(app: FastAPI) -> None:
    """The app's error handlers: the repositories' errors, unknown routes and bad
    query values, each as JSON or as a page (:func:`wants_json`)."""

    def handler(status: int | None) -> Any:
        async def handle(request: Request, exc: Exception) -> Response:
            code = status
            if code is None:
                code = exc.status_code if isinstance(exc, HTTPException) else 422
            return error_response(request, code, _message(request, exc))

        return handle

    for error, status in ERROR_STATUS.items():
        app.add_exception_handler(error, handler(status))
    app.add_exception_handler(HTTPException, handler(None))
    app.add_exception_handler(RequestValidationError, handler(422))
