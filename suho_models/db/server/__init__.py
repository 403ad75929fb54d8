"""A real ClickHouse server on loopback, run from the embedded chDB engine.

A chDB data directory is locked to one process (``<path>/status``), so several
processes (trainers, the CLI, a notebook) cannot open it at once. This package
runs the engine once, in a process of its own, with clickhouse-local's TCP and
HTTP listeners open, and every other process talks to it as to any ClickHouse
server (clickhouse-driver, clickhouse-connect, clickhouse-sqlalchemy).

* :mod:`.config`: checked settings, ``config.xml``/``users.xml``, preflight checks;
* :mod:`.auth`: the password, its 0600 file, the login endpoint ClickHouse asks;
* :mod:`.engine`: ``serve()``, the engine with its listeners, in this process;
* :mod:`.process`: :class:`LocalServer`, which supervises an engine process.

People start it with ``suho db serve``; ``python -m suho_models.db.server`` is
the process :class:`LocalServer` starts (settings on stdin, no options).
"""

from suho_models.db.server.auth import local_server_password, password_file, resolve_password
from suho_models.db.server.config import ServerError, free_port, is_loopback, native_url
from suho_models.db.server.engine import serve
from suho_models.db.server.process import LocalServer

__all__ = [
    "LocalServer",
    "ServerError",
    "free_port",
    "is_loopback",
    "local_server_password",
    "native_url",
    "password_file",
    "resolve_password",
    "serve",
]
