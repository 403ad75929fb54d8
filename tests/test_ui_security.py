"""Issue 28 §2: a local UI nobody else can drive, and one address check for
``suho ui`` and ``suho db serve``.

Each test is a category: every spelling of an address, every loopback bind, every
weak secret, every cross-origin write, not only the example the issue gave.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from repositories.checkpoints import ModelCheckpointRepository
from repositories.errors import InvalidInputError
from repositories.runs import TrainingRunRepository
from suho.ui.app import create_app
from suho.ui.security import host_of, serving_options, token_file
from suho_models.db import Database
from suho_models.db.server.auth import resolve_password
from suho_models.db.server.config import (
    MIN_SECRET_LENGTH,
    is_loopback,
    listen_address,
    validate,
)

pytestmark = pytest.mark.parametrize("backend", ["embedded"])  # a policy, not the engine

LOOPBACK = ["127.0.0.1", "127.0.0.2", "127.255.0.9", "::1", "[::1]", "localhost"]
NOT_LOOPBACK = ["0.0.0.0", "::", "[::]", "10.0.0.5", "192.168.1.10", "::ffff:10.0.0.1"]
FAKE_LOOPBACK_NAMES = ["127.attacker.example", "127.0.0.1.attacker.example", "localhost.evil"]
STRONG = "k3y-" + "x" * (MIN_SECRET_LENGTH - 4)
WEAK = ["x", "short-token", "a" * (MIN_SECRET_LENGTH - 1), " " * 20, "\t" * 20,
        "space in-the-middle-of-it", STRONG + "\n" + STRONG]  # fmt: skip


# --------------------------------------------------------------------------- one address check
@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_addresses_are_loopback(host: str, backend: str) -> None:
    address = listen_address(host)
    assert address.loopback and is_loopback(host)
    assert address.ip in ("127.0.0.1", "::1") or address.ip == host.strip("[]")


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_other_addresses_are_not(host: str, backend: str) -> None:
    assert not listen_address(host).loopback and not is_loopback(host)


@pytest.mark.parametrize("host", FAKE_LOOPBACK_NAMES)
def test_a_name_is_not_loopback_by_its_spelling(host: str, tmp_path: Path, backend: str) -> None:
    """Names are resolved (and these do not resolve): refused, by ui and db serve alike."""
    assert not is_loopback(host)
    with pytest.raises(ValueError, match="does not resolve"):
        listen_address(host)
    with pytest.raises(InvalidInputError, match="host"):
        serving_options(host, None, None, data_dir=tmp_path)  # no token: never loopback
    with pytest.raises(InvalidInputError, match="host"):
        serving_options(host, None, STRONG, data_dir=tmp_path)
    with pytest.raises(ValueError, match="without a password"):
        validate(host, 19000, 18123, None)
    with pytest.raises(ValueError, match="does not resolve"):
        validate(host, 19000, 18123, STRONG)
    assert not token_file(tmp_path).exists()


# --------------------------------------------------------------------------- secrets
@pytest.mark.parametrize("secret", WEAK)
def test_weak_secrets_are_refused_off_loopback(secret: str, tmp_path: Path, backend: str) -> None:
    with pytest.raises(InvalidInputError, match="too weak"):
        serving_options("0.0.0.0", None, secret)
    with pytest.raises(ValueError, match="too weak"):
        validate("0.0.0.0", 19000, 18123, secret)
    with pytest.raises(ValueError, match="too weak"):
        resolve_password(tmp_path, "10.0.0.5", secret)


def test_strong_secrets_pass_and_loopback_is_not_held_to_them(tmp_path: Path, backend: str) -> None:
    assert serving_options("0.0.0.0", None, STRONG).token == STRONG
    validate("0.0.0.0", 19000, 18123, STRONG)
    assert resolve_password(tmp_path, "127.0.0.1", "p@ss") == "p@ss"  # only this machine


def test_loopback_ui_generates_a_private_token_once(tmp_path: Path, backend: str) -> None:
    first = serving_options("127.0.0.1", None, None, data_dir=tmp_path)
    assert first.generated and not first.read_only and len(first.token) >= MIN_SECRET_LENGTH
    file = token_file(tmp_path)
    assert file.read_text().strip() == first.token
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700
    again = serving_options("::1", None, None, data_dir=tmp_path)
    assert again.token == first.token  # kept across restarts, as db serve's password
    assert f"token={first.token}" in first.url(5000) and first.url(5000).startswith(
        "http://127.0.0.1:5000/?"
    )
    assert again.url(5000).startswith("http://[::1]:5000/?")
    given = serving_options("127.0.0.1", None, "mine", data_dir=tmp_path / "other")
    assert given.token == "mine" and not given.generated
    assert not token_file(tmp_path / "other").exists()
    file.chmod(0o644)
    with pytest.raises(PermissionError, match="readable by other users"):
        serving_options("127.0.0.1", None, None, data_dir=tmp_path)


# --------------------------------------------------------------------------- the app
def _deployable(db: Database) -> tuple[Any, ModelCheckpointRepository]:
    run = TrainingRunRepository(db).create(
        {"run_name": "deployable", "model_type": "xgboost", "target_variable": "t"}
    )
    repo = ModelCheckpointRepository(db)
    return repo.save_checkpoint(run.run_id, b"new", "raw", iteration=1, model_name="m"), repo


def _client(db: Database, bind: str, tmp_path: Path, port: int = 5000) -> TestClient:
    serving = serving_options(bind, None, None, data_dir=tmp_path)
    host = f"[{serving.bind}]" if ":" in serving.bind else serving.bind
    return TestClient(create_app(db, **serving.app_options()), base_url=f"http://{host}:{port}")


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_ui_needs_its_token_for_reads_and_writes(
    db: Database, bind: str, tmp_path: Path, backend: str
) -> None:
    checkpoint, repo = _deployable(db)
    client = _client(db, bind, tmp_path)
    deploy = f"/api/checkpoints/{checkpoint.checkpoint_id}/deploy"
    for method, path in [("GET", "/api/runs"), ("GET", "/runs"), ("POST", deploy)]:
        response = client.request(method, path, json={"stage": "production"})
        assert response.status_code == 401, (method, path, response.text)
    assert repo.get(checkpoint.checkpoint_id).deployment_status.value == "not_deployed"
    token = token_file(tmp_path).read_text().strip()
    assert client.get(f"/runs?token={token}", follow_redirects=False).status_code == 303
    assert client.get("/api/runs").status_code == 200  # the cookie, as Jupyter
    assert client.post(deploy, json={"stage": "production"}).status_code == 200
    assert repo.get(checkpoint.checkpoint_id).deployment_status.value == "production"


@pytest.mark.parametrize(
    ("bind", "host_headers"),
    [
        ("127.0.0.2", ["127.0.0.2:5000", "127.0.0.2", "localhost:5000"]),
        ("::1", ["[::1]:5000", "[::1]", "localhost:5000"]),
        ("127.0.0.1", ["127.0.0.1:5000", "LOCALHOST:5000"]),
    ],
)
def test_host_is_accepted_for_the_bound_loopback_address(
    db: Database, bind: str, host_headers: list[str], tmp_path: Path, backend: str
) -> None:
    client = _client(db, bind, tmp_path)
    auth = {"Authorization": "Bearer " + token_file(tmp_path).read_text().strip()}
    for header in host_headers:
        response = client.get("/api/config", headers={**auth, "host": header})
        assert response.status_code == 200, (header, response.text)
    for header in ["evil.example:5000", "127.attacker.example:5000", "[::1", "127.0.0.1:x", ""]:
        response = client.get("/api/config", headers={**auth, "host": header})
        assert response.status_code == 400, header


def test_host_header_parsing(backend: str) -> None:
    assert host_of("[::1]:5000") == "::1" and host_of("[::1]") == "::1"
    assert host_of("127.0.0.2:80") == "127.0.0.2" and host_of("LocalHost") == "localhost"
    assert host_of("[::1]x") is None and host_of("a:b") is None and host_of("") is None


CROSS_ORIGIN = [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://evil.example"},
    {"Origin": "http://127.0.0.1:8888"},  # another port of this machine is another origin
    {"Origin": "null"},
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"},
]


@pytest.mark.parametrize("headers", CROSS_ORIGIN)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_cross_origin_writes_are_refused_even_with_the_token(
    db: Database, headers: dict[str, str], method: str, tmp_path: Path, backend: str
) -> None:
    checkpoint, repo = _deployable(db)
    client = _client(db, "127.0.0.1", tmp_path)
    auth = {"Authorization": "Bearer " + token_file(tmp_path).read_text().strip()}
    deploy = f"/api/checkpoints/{checkpoint.checkpoint_id}/deploy"
    response = client.request(method, deploy, json={"stage": "production"},
                              headers={**auth, **headers})  # fmt: skip
    assert response.status_code == 403, response.text
    assert "refused" in response.json()["error"]
    assert repo.get(checkpoint.checkpoint_id).deployment_status.value == "not_deployed"
    assert client.get("/api/config", headers={**auth, **headers}).status_code == 200  # reads


def test_same_origin_and_non_browser_writes_pass(
    db: Database, tmp_path: Path, backend: str
) -> None:
    checkpoint, repo = _deployable(db)
    client = _client(db, "127.0.0.1", tmp_path)
    auth = {"Authorization": "Bearer " + token_file(tmp_path).read_text().strip()}
    deploy = f"/api/checkpoints/{checkpoint.checkpoint_id}/deploy"
    browser = {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:5000"}
    assert client.post(deploy, json={"stage": "staging"}, headers={**auth, **browser}).is_success
    assert client.post(deploy, json={"stage": "production"}, headers=auth).is_success  # curl
    assert repo.get(checkpoint.checkpoint_id).deployment_status.value == "production"
