"""Who may log in: the password, its 0600 file, and the endpoint ClickHouse asks.

Every server has a password. Without one given (``--password``,
``SUHO_SERVER_PASSWORD``), a loopback server generates one on first start and
keeps it in ``<path>/server/password`` (0600), as Jupyter keeps its token: any
local user could otherwise write the tables. Our own clients read that file
(:func:`local_server_password`); beyond loopback a password must be given.

Why an HTTP endpoint: chDB's own in-process session always logs in as
``default`` with an empty password, before any listener opens, so a password
written into ``users.xml`` stops the engine from starting at all. The
``default`` user therefore authenticates through ClickHouse's
``http_authentication`` against :class:`AuthServer`, which this process runs on
loopback: it accepts the password (compared by SHA-256 digest), and an empty
password exactly once, for the engine's own session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from suho_models.db.server.config import (
    READY_FILE_NAME,
    check_secret_strength,
    is_loopback,
    refuse_open_network,
    server_dir,
)

log = logging.getLogger(__name__)

PASSWORD_FILE_NAME = "password"


def password_file(path: Path) -> Path:
    """Where the server on data path ``path`` keeps its generated password."""
    return server_dir(path) / PASSWORD_FILE_NAME


def read_password_file(file: Path) -> str:
    """The password in ``file``; refuses a file that others could have read."""
    mode = file.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(
            f"{file} is readable by other users (mode {stat.S_IMODE(mode):o}); the secret "
            "in it may be known: delete the file to generate a new one on the next start"
        )
    password = file.read_text(encoding="utf-8").strip()
    if not password:
        raise ValueError(f"{file} is empty: delete it to generate a new one on the next start")
    return password


def ensure_password_file(path: Path) -> str:
    """The password of data path ``path``, generated into a 0600 file on first use."""
    return ensure_secret_file(password_file(path), "the server password")


def ensure_secret_file(file: Path, what: str) -> str:
    """The secret in ``file`` (folder 0700, file 0600), generated on first use; what
    ``suho db serve`` keeps its password in and ``suho ui`` its token."""
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_password_file(file)
    secret = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret + "\n")
    log.info("generated %s into %s", what, file)
    return secret


def resolve_password(path: Path, host: str, password: str | None) -> str:
    """The password a server on ``path`` runs with: the given one, else (loopback only)
    the one in the data folder's password file, generated on first start."""
    if password is not None:
        check_secret_strength(password, "password", host)
        return password
    refuse_open_network(host, password)
    return ensure_password_file(Path(path).expanduser().resolve())


def local_server_password(host: str, port: int, file: Path) -> str | None:
    """The password for a client of ``host:port``, if a server we started there uses ``file``.

    Only for loopback hosts, and only while ``ready.json`` next to ``file`` names a
    live process on that port: the password goes to no other server.
    """
    if not is_loopback(host) or not file.is_file():
        return None
    try:
        ready = json.loads((file.parent / READY_FILE_NAME).read_text())
        pid = int(ready["pid"])
        ports = {int(ready["tcp_port"]), int(ready["http_port"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if port not in ports or not _alive(pid):
        return None
    return read_password_file(file)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # another user's process (a reused pid) is not our server either
    except OSError:
        return False
    return True


class AuthServer:
    """Loopback HTTP endpoint that ClickHouse asks whether a ``default`` login may pass.

    Allows the password, and an empty password once: for the engine's own
    session, which logs in before the listeners open. The engine then fetches
    ``seal_path`` (``seal_sql``) before it opens them, which ends that window
    for good. The URLs carry a random token so that nothing else on the machine
    can use up the one empty login.
    """

    def __init__(self, password: str) -> None:
        self._digest = hashlib.sha256(password.encode("utf-8")).digest()
        self._token = secrets.token_urlsafe(16)
        self._bootstrap_left = True
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(send_body=True)

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def _answer(self, send_body: bool) -> None:
                if self.path == owner.seal_path:
                    owner.seal()
                    ok = True
                else:
                    ok = owner.allowed(self.path, self.headers.get("Authorization", ""))
                body = b"{}"
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), name="suho-auth", daemon=True
        )

    @property
    def uri(self) -> str:
        """Where ClickHouse checks credentials (``http_authentication_servers``)."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{self._token}"

    @property
    def seal_path(self) -> str:
        return f"/{self._token}/seal"

    @property
    def seal_sql(self) -> str:
        """A statement with which the engine ends the empty-password window itself.

        It runs right before ``SYSTEM START LISTEN``, so no network client can
        ever use that window, even if a future engine did not log in with it.
        """
        url = f"http://127.0.0.1:{self._httpd.server_address[1]}{self.seal_path}"
        return f"SELECT count() FROM url('{url}', 'RawBLOB') FORMAT Null"

    def seal(self) -> None:
        with self._lock:
            used = not self._bootstrap_left
            self._bootstrap_left = False
        log.debug("empty-password window closed (the engine used it: %s)", used)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()  # waits for serve_forever, so only once started
        self._httpd.server_close()

    def allowed(self, request_path: str, authorization: str) -> bool:
        if request_path.split("?", 1)[0] != f"/{self._token}":
            return False
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        if user != "default" or not sep:
            return False
        digest = hashlib.sha256(password.encode("utf-8")).digest()
        if hmac.compare_digest(digest, self._digest):
            return True
        with self._lock:
            if password == "" and self._bootstrap_left:
                self._bootstrap_left = False
                return True
        return False
