"""Backends for the contract suite: every test that takes ``db`` or ``url`` runs
against the embedded engine and against the local server (``suho db serve``).

Each test gets its own fresh database, so tests are independent; the embedded
engine keeps one data directory per process (chDB allows one path per process).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from suho_models.db import Database, migrations

BACKENDS = ("embedded", "server")


@pytest.fixture(scope="session")
def embedded_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from suho_models.db.server import LocalServer

    server = LocalServer(tmp_path_factory.mktemp("server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def fresh_database_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def backend_url(backend: str, request: pytest.FixtureRequest) -> str:
    """A URL of a fresh, empty database on ``backend`` (for module-scoped stores too)."""
    name = fresh_database_name()
    if backend == "embedded":
        path = request.getfixturevalue("embedded_dir")
        return f"clickhouse+chdb:///{path}/{name}"
    server = request.getfixturevalue("local_server")
    return str(server.native_url(name))


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:
    """A URL of a fresh, empty database on the current backend."""
    return backend_url(backend, request)


@pytest.fixture
def db(url: str) -> Iterator[Database]:
    """A migrated database on the current backend."""
    migrations.upgrade(url)
    database = Database(url)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads the developer's SUHO_* environment or writes to ./.suho; a default
    store's background server that a test started is stopped when it ends (and would
    stop by itself after SUHO_SERVER_IDLE_SECONDS, short here)."""
    for key in list(os.environ):
        if key.startswith("SUHO_"):
            monkeypatch.delenv(key)
    data_dir = tmp_path / "suho-data"
    monkeypatch.setenv("SUHO_DATA_DIR", str(data_dir))
    monkeypatch.setenv("SUHO_SERVER_IDLE_SECONDS", "20")
    from suho_models.settings import get_settings

    get_settings.cache_clear()
    yield
    from suho_models.db.server.shared import stop_server

    stop_server(data_dir / "clickhouse")
