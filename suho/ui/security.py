"""Who may drive ``suho ui``: its token, the Host it answers to, and where a write
may come from.

* **A token everywhere.** On loopback too: any local user can reach a loopback
  port, and a deploy is a write. Without ``--token``/``SUHO_UI_TOKEN`` a loopback
  UI generates one into ``<data_dir>/ui/token`` (0600, folder 0700; kept across
  restarts, as ``suho db serve`` keeps its password) and prints it once, in the
  URL it shows (``?token=`` sets a cookie, as Jupyter does). Beyond loopback a
  token must be given, and be strong (:func:`check_secret_strength`).
* **One address check** with ``suho db serve`` (:func:`listen_address`): IP
  literals parsed, names resolved once and bound by address, unresolvable names
  refused.
* **Host** must name the bound address (or ``localhost`` on loopback), against
  DNS rebinding; IPv6 literals in brackets are parsed, not split at a colon.
* **Writes from a browser** must be same-origin: a POST/PUT/PATCH/DELETE whose
  ``Sec-Fetch-Site`` is cross-site/same-site, or whose ``Origin`` is another
  host or port, is refused (403) before the token is even looked at.
"""

from __future__ import annotations

import ipaddress
import secrets
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from repositories.errors import InvalidInputError
from suho_models.db.server.auth import ensure_secret_file
from suho_models.db.server.config import check_secret_strength, listen_address

TOKEN_COOKIE = "suho_ui_token"
TOKEN_FILE = Path("ui") / "token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})


def token_file(data_dir: Path) -> Path:
    """Where a loopback UI keeps its generated token."""
    return Path(data_dir) / TOKEN_FILE


@dataclass(frozen=True)
class Serving:
    """How ``suho ui`` serves: where it binds, and the :func:`create_app` options."""

    bind: str
    loopback: bool
    read_only: bool
    token: str
    generated: bool
    allowed_hosts: list[str]

    def app_options(self) -> dict[str, Any]:
        return {
            "read_only": self.read_only,
            "token": self.token,
            "allowed_hosts": self.allowed_hosts,
        }

    def url(self, port: int) -> str:
        """The URL to open; it carries the token (printed once, never logged)."""
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        query = urllib.parse.urlencode({"token": self.token})
        return f"http://{host}:{port}/?{query}"


def serving_options(
    host: str, read_only: bool | None, token: str | None, *, data_dir: Path | None = None
) -> Serving:
    """Decide how to serve on ``host``, as ``suho db serve`` decides: beyond loopback a
    strong token is required and the app is read-only unless told otherwise; on
    loopback a token is generated into ``data_dir`` when none is given."""
    try:
        address = listen_address(host)
    except ValueError as exc:
        raise InvalidInputError(f"host: {exc}") from None
    token = token or None
    generated = False
    if token is None:
        if not address.loopback:
            raise InvalidInputError(
                f"host: {host!r} is not loopback: set a token (--token or SUHO_UI_TOKEN) first"
            )
        if data_dir is None:
            from suho_models.settings import get_settings

            data_dir = get_settings().data_dir
        token = ensure_secret_file(token_file(data_dir), "the UI token")
        generated = True
    try:
        check_secret_strength(token, "token", host)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    return Serving(
        bind=address.ip,
        loopback=address.loopback,
        read_only=(not address.loopback) if read_only is None else read_only,
        token=token,
        generated=generated,
        allowed_hosts=allowed_hosts(address.ip, address.loopback),
    )


def allowed_hosts(bind: str, loopback: bool) -> list[str]:
    """Host headers a server bound to ``bind`` answers: the address itself, and on
    loopback ``localhost`` and the usual loopback literals; ``[]`` (any) for a
    wildcard bind, where the token alone decides."""
    ip = ipaddress.ip_address(bind)
    if ip.is_unspecified:
        return []
    hosts = {str(ip)}
    if loopback:
        hosts |= {"localhost", "127.0.0.1", "::1"}
    return sorted(hosts)


def host_of(header: str) -> str | None:
    """The host part of a Host header (``[::1]:5000`` -> ``::1``), lower-cased."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        rest = header[end + 1 :]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return header[1:end]
    name, _, port = header.partition(":")
    if port and not port.isdigit():
        return None
    return name or None


class HostCheckMiddleware:
    """Only the Host names the server is bound to (DNS rebinding: another name that
    resolves here must not reach the app)."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.allowed:
            await self.app(scope, receive, send)
            return
        host = host_of(Request(scope).headers.get("host", ""))
        if host is None or host not in self.allowed:
            await PlainTextResponse("Invalid host header", 400)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class SameOriginWritesMiddleware:
    """A write sent by a browser must come from this UI's own pages.

    ``Sec-Fetch-Site`` (sent by every current browser) must be ``same-origin`` or
    ``none``; an ``Origin`` header must name this very host and port. A client
    that sends neither (curl, a script) is not a browser and needs the token.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        reason = cross_origin_reason(Request(scope))
        if reason is not None:
            await JSONResponse({"error": reason}, 403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def cross_origin_reason(request: Request) -> str | None:
    """Why a write request is cross-origin, or None when it is not."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.lower() not in SAME_ORIGIN_FETCH:
        return f"refused: a {site} request may not change anything (Sec-Fetch-Site)"
    origin = request.headers.get("origin")
    if origin is None:
        return None
    parsed = urllib.parse.urlsplit(origin)
    host = request.headers.get("host", "").lower()
    if origin == "null" or parsed.netloc.lower() != host:
        return f"refused: a write from origin {origin!r} is not from this UI ({host})"
    return None


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
        if given is not None and secrets.compare_digest(given.encode(), self.token.encode()):
            response: Response = RedirectResponse(request.url.remove_query_params("token"), 303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else ""
        cookie = request.cookies.get(TOKEN_COOKIE, "")
        expected = self.token.encode()
        if any(secrets.compare_digest(v.encode(), expected) for v in (bearer, cookie) if v):
            await self.app(scope, receive, send)
            return
        await JSONResponse(
            {"error": "a token is required: open the URL with ?token=... or send a Bearer token"},
            401,
        )(scope, receive, send)
