"""What the engine is told before it starts: checked settings, ``config.xml`` and ``users.xml``.

Everything here is refused or written before the engine runs, because the engine
itself only prints an error and exits when a port is taken or a path is locked.
"""

from __future__ import annotations

import base64
import errno
import ipaddress
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

SERVER_DIR_NAME = "server"
"""Subfolder of the data path with the generated config, the password and ``ready.json``
(the engine's cwd)."""

READY_FILE_NAME = "ready.json"
"""``{"pid", "host", "tcp_port", "http_port"}`` of the server serving this path, while it runs."""

AUTH_SERVER_NAME = "suho_auth"


class ServerError(RuntimeError):
    """The server could not start, or stopped on its own."""


def server_dir(path: Path) -> Path:
    return Path(path) / SERVER_DIR_NAME


# ---------------------------------------------------------------------------
# Hosts, ports and URLs
# ---------------------------------------------------------------------------


MIN_SECRET_LENGTH = 16
"""Shortest token or password accepted beyond loopback (generated ones have 32)."""


@dataclass(frozen=True)
class ListenAddress:
    """Where a server listens: the address as given, the IP it binds, and whether
    only this machine can reach it."""

    given: str
    ip: str
    loopback: bool

    @property
    def url_host(self) -> str:
        return url_host(self.ip)


def listen_address(host: str) -> ListenAddress:
    """The one address check of ``suho db serve`` and ``suho ui``.

    An IP literal is parsed (``127.0.0.0/8`` and ``::1`` are loopback); a name is
    resolved once, counts as loopback only when every address it resolves to is
    loopback, and the server binds the resolved address (a second lookup at bind
    time could answer differently). A name that does not resolve is refused, so
    ``127.attacker.example`` is never loopback by its spelling.
    """
    bare = host.strip().strip("[]")
    if not bare:
        raise ValueError("host must not be empty")
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        pass
    else:
        return ListenAddress(host, str(ip), ip.is_loopback)
    try:
        found = socket.getaddrinfo(bare, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"host {host!r} does not resolve ({exc}): give an IP address") from None
    ips = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if not ips:
        raise ValueError(f"host {host!r} does not resolve: give an IP address")
    loopback = all(ip.is_loopback for ip in ips)
    chosen = next((ip for ip in ips if ip.version == 4), ips[0])
    return ListenAddress(host, str(chosen), loopback)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only reaches this machine (see :func:`listen_address`)."""
    try:
        return listen_address(host).loopback
    except ValueError:
        return False  # a name that does not resolve: it may resolve to anything later


def check_secret_strength(secret: str, what: str, host: str) -> None:
    """Beyond loopback a token or password is all that stands between the network
    and the store: at least :data:`MIN_SECRET_LENGTH` characters, no whitespace."""
    if is_loopback(host):
        return
    if any(c.isspace() for c in secret) or len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"{what}: too weak for {host!r}, which is not loopback: use at least "
            f"{MIN_SECRET_LENGTH} characters without whitespace (e.g. python -c "
            "'import secrets; print(secrets.token_urlsafe(24))')"
        )


def client_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to ``host``."""
    bare = host.strip("[]")
    if bare.lower() == "localhost" or bare in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bare == "::":
        return "::1"
    return bare


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def native_url(
    host: str,
    tcp_port: int,
    database: str,
    *,
    password: str | None = None,
    http_port: int | None = None,
) -> str:
    """SQLAlchemy URL of a server bound to ``host``, as a client on this machine writes it."""
    creds = f"default:{urllib.parse.quote(password, safe='')}@" if password is not None else ""
    url = f"clickhouse+native://{creds}{url_host(client_host(host))}:{tcp_port}/{database}"
    return f"{url}?http_port={http_port}" if http_port is not None else url


def refuse_open_network(host: str, password: str | None) -> None:
    """Beyond loopback the ``default`` user would be open to the network without a password."""
    if password is None and not is_loopback(host):
        raise ValueError(
            f"refusing to listen on {host!r} without a password: the default user would "
            "be open to the network. Bind a loopback address (127.0.0.1, ::1, localhost) "
            "or set a password (--password or SUHO_SERVER_PASSWORD)."
        )


def validate(host: str, tcp_port: int, http_port: int, password: str | None) -> None:
    """Raise ``ValueError`` for settings that must never reach the engine."""
    if not host or not host.strip():
        raise ValueError("host must not be empty")
    for name, port in (("tcp_port", tcp_port), ("http_port", http_port)):
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"{name} must be an integer in 1..65535, got {port!r}")
    if tcp_port == http_port:
        raise ValueError(f"tcp_port and http_port must differ (both are {tcp_port})")
    if password is not None and password == "":
        raise ValueError("password must not be empty (pass None for no password)")
    refuse_open_network(host, password)
    listen_address(host)  # a name that does not resolve is refused here
    if password is not None:
        check_secret_strength(password, "password", host)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (another process may still take it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host.strip("[]"), 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """Fail early and clearly when a port is taken (the engine would only print an error)."""
    bare = host.strip("[]")
    if bare.lower() == "localhost":
        bare = "127.0.0.1"
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bare, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServerError(f"port {port} on {host} is already in use") from exc
            raise ServerError(f"cannot bind {host}:{port}: {exc}") from exc


def http_request(
    url: str, data: bytes | None = None, password: str | None = None, timeout: float = 2.0
) -> str:
    request = urllib.request.Request(url, data=data)
    if password is not None:
        token = base64.b64encode(f"default:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: bytes = response.read()  # typeshed types urlopen's response as Any
    return body.decode("utf-8", "replace")


def ping(base_url: str, timeout: float = 1.0) -> bool:
    try:
        return http_request(f"{base_url}/ping", timeout=timeout).strip() == "Ok."
    except (OSError, urllib.error.URLError):
        return False


# ---------------------------------------------------------------------------
# Configuration files
# ---------------------------------------------------------------------------


def config_xml(host: str, tcp_port: int, http_port: int, auth_uri: str) -> str:
    """Listeners, and the endpoint that checks every login (see :mod:`.auth`)."""
    auth = f"""
  <http_authentication_servers>
    <{AUTH_SERVER_NAME}>
      <uri>{escape(auth_uri)}</uri>
      <connection_timeout_ms>2000</connection_timeout_ms>
      <receive_timeout_ms>5000</receive_timeout_ms>
      <send_timeout_ms>2000</send_timeout_ms>
      <max_tries>3</max_tries>
      <retry_initial_backoff_ms>50</retry_initial_backoff_ms>
      <retry_max_backoff_ms>500</retry_max_backoff_ms>
    </{AUTH_SERVER_NAME}>
  </http_authentication_servers>"""
    return f"""<?xml version="1.0"?>
<!-- Written by suho_models.db.server on every start; edits are overwritten. -->
<clickhouse>
  <listen_host>{escape(host.strip("[]"))}</listen_host>
  <tcp_port>{tcp_port}</tcp_port>
  <http_port>{http_port}</http_port>
  <users_config>users.xml</users_config>
  <!-- Idle keep-alive HTTP connections must end before the engine's shutdown
       wait (5 s), or it exits forcefully with status 1. -->
  <keep_alive_timeout>3</keep_alive_timeout>{auth}
</clickhouse>
"""


def users_xml() -> str:
    """The one user, ``default``, whose logins the authentication endpoint decides."""
    auth = (
        f"<http_authentication><server>{AUTH_SERVER_NAME}</server>"
        "<scheme>basic</scheme></http_authentication>"
    )
    return f"""<?xml version="1.0"?>
<!-- Written by suho_models.db.server on every start; edits are overwritten. -->
<clickhouse>
  <profiles>
    <default>
      <!-- Idle native connections notice a stop within 1 s (10 s by default,
           longer than the engine's 5 s shutdown wait). -->
      <poll_interval>1</poll_interval>
    </default>
  </profiles>
  <users>
    <default>
      {auth}
      <networks>
        <ip>::/0</ip>
      </networks>
      <profile>default</profile>
      <quota>default</quota>
      <named_collection_control>1</named_collection_control>
    </default>
  </users>
  <quotas>
    <default></default>
  </quotas>
</clickhouse>
"""


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only, replacing it atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_extra_config(folder: Path, fragment: str) -> None:
    """Put ``fragment`` (XML elements of ``<clickhouse>``: remote_servers, macros, ...)
    where the engine merges it into ``config.xml`` (``config.d/``), or remove it."""
    extra = folder / "config.d" / "suho_extra.xml"
    if not fragment.strip():
        extra.unlink(missing_ok=True)
        return
    extra.parent.mkdir(mode=0o700, exist_ok=True)
    write_private(extra, f'<?xml version="1.0"?>\n<clickhouse>\n{fragment}\n</clickhouse>\n')
