"""Issue 17 §1: no code from the database.

Whoever can write a checkpoint table can add a row version whose format, bytes and
SHA-256 agree. Each test here is that attacker: it inserts such a row (newer
``updated_at``, so FINAL serves it) with a payload that creates a marker file when
deserialized, then asserts that every loader refuses it and that no marker appears.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import pickle
import stat
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from repositories.checkpoints import (
    AgentCheckpointRepository,
    ChecksumMismatchError,
    CorruptCheckpointError,
    ModelCheckpointRepository,
    UntrustedCheckpointError,
    sign_checkpoints,
)
from repositories.object_store import LocalObjectStore
from repositories.runs import AgentRunRepository, TrainingRunRepository
from repositories.serialization import CheckpointBytes, loads_arrays, loads_object
from repositories.signing import CheckpointKeyError, checkpoint_key, key_path
from suho_models.db import Database, migrations
from suho_models.enums import ModelFormat, TaskType
from suho_models.settings import get_settings


class Marker:
    """Unpickling this creates ``path``: proof that bytes were deserialized."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


@pytest.fixture
def evil(marker: Path) -> bytes:
    payload = pickle.dumps(Marker(marker))
    pickle.loads(payload).close()  # control: this payload does run code when unpickled
    assert marker.exists()
    marker.unlink()
    return payload


def evil_sb3_zip(marker: Path) -> bytes:
    """An SB3 zip whose ``data`` holds a ``:serialized:`` entry, as SB3's save writes
    for objects; SB3's ``load`` cloudpickles it back."""
    entry = base64.b64encode(pickle.dumps(Marker(marker))).decode()
    data = {"policy_class": {":type:": "<class 'type'>", ":serialized:": entry}}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data", json.dumps(data))
    return buffer.getvalue()


def new_run(db: Database) -> uuid.UUID:
    data = {"run_name": "xgb", "model_type": "xgboost", "target_variable": "target_direction"}
    return TrainingRunRepository(db).create(data).run_id


def new_agent_run(db: Database, agent: str = "ppo") -> uuid.UUID:
    return AgentRunRepository(db).create({"run_name": agent, "agent_type": agent}).run_id


LEGACY_TIME = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)
"""When the rows "from before signatures" of these tests were written."""


def legacy_run(db: Database, agent: str | None = None, at: dt.datetime = LEGACY_TIME) -> uuid.UUID:
    """A run as it stood before signing began (created at ``at``)."""
    run_id = new_run(db) if agent is None else new_agent_run(db, agent)
    table = "training_runs" if agent is None else "agent_training_runs"
    db.execute(
        f"INSERT INTO {table} SELECT * REPLACE (%(at)s AS created_at, "
        "updated_at + INTERVAL 1 SECOND AS updated_at) "
        f"FROM {table} FINAL WHERE run_id = %(r)s",
        {"r": run_id, "at": at},
    )
    # created_at is part of the runs' key (revision 0010): a run has one creation time,
    # so the versions from its real creation go
    db.execute(
        f"DELETE FROM {table} WHERE run_id = %(r)s AND created_at != %(at)s",
        {"r": run_id, "at": at},
    )
    return run_id


def tamper(db: Database, table: str, target: uuid.UUID, /, **columns: Any) -> None:
    """The attack: a newer row version with the given columns replaced, as any user
    with INSERT on the table can write it."""
    binary = "model_binary" if table == "model_checkpoints" else "agent_binary"
    values = dict(columns)
    if "bytes" in values:
        data = values.pop("bytes")
        values.update(
            {binary: base64.b64encode(data).decode(), "storage": "inline", "storage_uri": ""}
        )
        values.setdefault("sha256", hashlib.sha256(data).hexdigest())
        values.setdefault("size_bytes", len(data))
    replace = ", ".join(f"%({k})s AS {k}" for k in values)
    db.execute(
        f"INSERT INTO {table} SELECT * REPLACE ({replace}, "
        "updated_at + INTERVAL 1 SECOND AS updated_at) "
        f"FROM {table} FINAL WHERE {table}.checkpoint_id = %(target)s",
        {**values, "target": target},
    )


@pytest.fixture
def models(db: Database, tmp_path: Path) -> ModelCheckpointRepository:
    return ModelCheckpointRepository(db, LocalObjectStore(tmp_path / "objects"))


@pytest.fixture
def agents(db: Database, tmp_path: Path) -> AgentCheckpointRepository:
    return AgentCheckpointRepository(db, LocalObjectStore(tmp_path / "objects"))


# --------------------------------------------------------------------------- supervised
@pytest.mark.parametrize("fmt", ["pickle", "joblib"])
def test_switched_format_row_is_refused_by_every_model_loader(
    db: Database, models: ModelCheckpointRepository, evil: bytes, marker: Path, fmt: str
) -> None:
    from trainers.supervised.boosters import booster_for
    from trainers.supervised.inference import load_run_model

    run_id = new_run(db)
    info = models.save_checkpoint(run_id, b"{}", "xgboost_json", kind="best")
    tamper(db, "model_checkpoints", info.checkpoint_id, model_format=fmt, bytes=evil)
    assert models.get(info.checkpoint_id).format.value == fmt  # the attack took
    booster = booster_for("xgboost")

    loaders = {
        "load_object": lambda: models.load_object(info.checkpoint_id),
        "load_checkpoint": lambda: models.load_checkpoint(info.checkpoint_id),
        "from_bytes(stale format)": lambda: booster.from_bytes(
            models.load_checkpoint(info.checkpoint_id), info.format, TaskType.CLASSIFICATION
        ),
        "from_bytes(plain bytes)": lambda: booster.from_bytes(
            evil, ModelFormat(fmt), TaskType.CLASSIFICATION
        ),
        "loads_object(plain bytes)": lambda: loads_object(evil, fmt),
        "load_run_model": lambda: load_run_model(db, run_id),
    }
    for name, load in loaders.items():
        with pytest.raises(UntrustedCheckpointError, match="code") as caught:
            load()
        assert not marker.exists(), name
        if name in ("load_object", "load_checkpoint"):
            assert "not signed" in str(caught.value) and "sign_checkpoints" in str(caught.value)


def test_copied_signatures_do_not_verify(
    db: Database, models: ModelCheckpointRepository, evil: bytes, marker: Path
) -> None:
    run_id = new_run(db)
    signed = models.save_checkpoint(run_id, {"ours": 1}, "pickle", iteration=1)
    target = models.save_checkpoint(run_id, b"{}", "xgboost_json", iteration=2)
    assert signed.signature.startswith("v1:") and target.signature == ""

    # A valid signature (and the format it was made for) pasted onto other bytes.
    tamper(db, "model_checkpoints", target.checkpoint_id, model_format="pickle",
           signature=signed.signature, bytes=evil)  # fmt: skip
    with pytest.raises(UntrustedCheckpointError, match="does not match"):
        models.load_object(target.checkpoint_id)
    # ... with the signed row's hash and size too: the hash check catches the bytes.
    tamper(db, "model_checkpoints", target.checkpoint_id, model_format="pickle",
           signature=signed.signature, sha256=signed.sha256, size_bytes=signed.size_bytes,
           bytes=evil)  # fmt: skip
    with pytest.raises(UntrustedCheckpointError, match="does not match"):
        models.load_object(target.checkpoint_id)  # bound to its checkpoint id
    # The signed checkpoint itself with its bytes swapped: signature holds, hash does not.
    tamper(db, "model_checkpoints", signed.checkpoint_id, sha256=signed.sha256,
           size_bytes=signed.size_bytes, bytes=evil)  # fmt: skip
    with pytest.raises(ChecksumMismatchError):
        models.load_object(signed.checkpoint_id)
    # A signed model row moved to the agent table, signature and all.
    agents = AgentCheckpointRepository(db)
    agent = agents.save_checkpoint(new_agent_run(db), b"state", "sb3_state")
    tamper(db, "agent_checkpoints", agent.checkpoint_id, agent_format="pickle",
           checkpoint_id=signed.checkpoint_id, run_id=signed.run_id,
           signature=signed.signature, bytes=pickle.dumps({"ours": 1}))  # fmt: skip
    with pytest.raises(UntrustedCheckpointError, match="does not match"):
        agents.load_checkpoint(signed.checkpoint_id)
    assert not marker.exists()


def test_data_row_under_a_stale_pickle_listing_is_not_unpickled(
    db: Database, models: ModelCheckpointRepository, evil: bytes, marker: Path
) -> None:
    """Listed as a signed pickle, then switched to a data format with pickle bytes:
    the loader goes by the format of the row the bytes came from."""
    from trainers.supervised.boosters import booster_for

    info = models.save_checkpoint(new_run(db), {"ours": 1}, "pickle")
    tamper(db, "model_checkpoints", info.checkpoint_id, model_format="xgboost_json", bytes=evil)
    data = models.load_checkpoint(info.checkpoint_id)
    assert data.format is ModelFormat.XGBOOST_JSON and not data.trusted
    with pytest.raises(UntrustedCheckpointError, match="is xgboost_json now, not pickle"):
        booster_for("xgboost").from_bytes(data, info.format, TaskType.CLASSIFICATION)
    assert not marker.exists()


def test_signed_checkpoints_load_and_wrong_keys_are_named(
    db: Database, models: ModelCheckpointRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = models.save_checkpoint(new_run(db), {"w": [1.5]}, "pickle")
    assert models.load_object(info.checkpoint_id) == {"w": [1.5]}
    path = key_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # made on first use, private

    monkeypatch.setenv("SUHO_CHECKPOINT_KEY", "another-key-of-16-or-more")
    get_settings.cache_clear()
    other = ModelCheckpointRepository(db, models.store)
    with pytest.raises(UntrustedCheckpointError, match="signed with another key"):
        other.load_object(info.checkpoint_id)
    signed_by_env = other.save_checkpoint(info.run_id, {"env": True}, "joblib")
    assert other.load_object(signed_by_env.checkpoint_id) == {"env": True}
    with pytest.raises(UntrustedCheckpointError, match="another key"):
        models.load_object(signed_by_env.checkpoint_id)


def test_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key = checkpoint_key()
    assert len(key) == 64 and checkpoint_key() == key  # made once, then read back
    key_path().chmod(0o644)
    with pytest.raises(CheckpointKeyError, match="accessible to other users .*chmod 600"):
        checkpoint_key()


# --------------------------------------------------------------------------- RL
def test_switched_agent_row_is_refused_by_every_agent_loader(
    db: Database, agents: AgentCheckpointRepository, marker: Path
) -> None:
    from trainers.rl.agents import algorithm_class, load_model
    from trainers.rl.deploy import load_deployed_agent

    payload = evil_sb3_zip(marker)
    with pytest.raises(Exception):  # noqa: B017 - control: SB3's own load runs the entry
        algorithm_class("ppo").load(io.BytesIO(payload))
    assert marker.exists()
    marker.unlink()

    run_id = new_agent_run(db, "ppo")
    info = agents.save_checkpoint(run_id, b"weights", "sb3_state", kind="final")
    agents.deploy(info.checkpoint_id, "production")
    tamper(db, "agent_checkpoints", info.checkpoint_id, agent_format="sb3_zip", bytes=payload)

    loaders = {
        "load_checkpoint": lambda: agents.load_checkpoint(info.checkpoint_id),
        "load_model": lambda: load_model("ppo", agents.load_checkpoint(info.checkpoint_id)),
        "load_model(plain bytes)": lambda: load_model("ppo", payload),
        "load_deployed_agent": lambda: load_deployed_agent(db, "ppo", store=agents.store),
    }
    for name, load in loaders.items():
        with pytest.raises((UntrustedCheckpointError, CorruptCheckpointError)):
            load()
        assert not marker.exists(), name


def test_pickled_replay_buffers_need_a_signed_checkpoint(
    db: Database, agents: AgentCheckpointRepository, evil: bytes, marker: Path, tmp_path: Path
) -> None:
    from trainers.rl.agents import restore_replay_buffer

    run_id = new_agent_run(db, "sac")
    info = agents.save_checkpoint(run_id, b"weights", "sb3_state", replay_buffer=b"npz")
    store = agents.store
    assert isinstance(store, LocalObjectStore)

    # A pickled buffer (the pre-array format) put where the row now points.
    legacy = zlib.compress(evil)
    name = f"agent_replay_buffers/{run_id}/1-{hashlib.sha256(legacy).hexdigest()}.pkl.zlib"
    tamper(db, "agent_checkpoints", info.checkpoint_id, replay_buffer_uri=store.put(name, legacy))
    with pytest.raises(UntrustedCheckpointError, match="pickled"):
        agents.load_replay_buffer(info.checkpoint_id)
    # Pickle bytes under an .npz name: read as arrays, never unpickled.
    name = f"agent_replay_buffers/{run_id}/2-{hashlib.sha256(evil).hexdigest()}.npz"
    tamper(db, "agent_checkpoints", info.checkpoint_id, replay_buffer_uri=store.put(name, evil))
    data = agents.load_replay_buffer(info.checkpoint_id)
    with pytest.raises(CorruptCheckpointError, match="not an array archive"):
        loads_arrays(data)
    with pytest.raises(CorruptCheckpointError):
        restore_replay_buffer(object(), data)
    with pytest.raises(UntrustedCheckpointError):
        restore_replay_buffer(object(), CheckpointBytes(legacy, ModelFormat.PICKLE))
    assert not marker.exists()


# --------------------------------------------------------------------------- migration
def insert_pre_signature_row(
    db: Database, table: str, run_id: uuid.UUID, fmt: str, data: bytes, **columns: Any
) -> uuid.UUID:
    """A row as the code before signatures wrote it: Python base64, no signature."""
    checkpoint_id = uuid.uuid4()
    binary, fmt_column = (
        ("model_binary", "model_format")
        if table == "model_checkpoints"
        else ("agent_binary", "agent_format")
    )
    row = {
        "checkpoint_id": checkpoint_id,
        "run_id": run_id,
        fmt_column: fmt,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "storage": "inline",
        binary: base64.b64encode(data).decode(),
        "deployment_status": "not_deployed",
        "created_at": LEGACY_TIME,
        "updated_at": LEGACY_TIME,
        **columns,
    }
    if table == "model_checkpoints":
        row.setdefault("checkpoint_kind", "best")
    names = ", ".join(row)
    values = ", ".join(f"%({k})s" for k in row)
    db.execute(f"INSERT INTO {table} ({names}) VALUES ({values})", row)
    return checkpoint_id


def test_checkpoints_stored_before_signatures_still_load(
    db: Database, models: ModelCheckpointRepository, agents: AgentCheckpointRepository
) -> None:
    run_id = legacy_run(db)
    native = insert_pre_signature_row(
        db, "model_checkpoints", run_id, "lightgbm_text", b"tree\n",
        model_name="xgb", model_type="xgboost",
    )  # fmt: skip
    legacy = insert_pre_signature_row(
        db, "model_checkpoints", run_id, "pickle", pickle.dumps({"old": True}),
        model_name="xgb", model_type="xgboost",
    )  # fmt: skip
    assert models.load_checkpoint(native) == b"tree\n"  # data-only: no signature needed
    with pytest.raises(UntrustedCheckpointError, match="not signed"):
        models.load_object(legacy)

    assert sign_checkpoints(db, run_id) == [legacy]
    assert models.load_object(legacy) == {"old": True}
    assert sign_checkpoints(db, run_id) == []  # once is enough
    with pytest.raises(Exception, match="no supervised or RL run"):
        sign_checkpoints(db, uuid.uuid4())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["embedded"])
def test_legacy_sb3_zip_and_pickled_buffer_load_once_signed(db: Database, tmp_path: Path) -> None:
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.vec_env import DummyVecEnv

    from trainers.rl.agents import build_model, load_model, model_to_bytes, restore_replay_buffer

    def env() -> Any:
        return DummyVecEnv([lambda: gym.make("Pendulum-v1")])

    params = {"learning_starts": 20, "batch_size": 16, "buffer_size": 200}
    model = build_model("sac", env(), params, timesteps=200, seed=1)
    model.learn(60)
    zip_buffer = io.BytesIO()
    model.save(zip_buffer)
    buffer_bytes = zlib.compress(pickle.dumps(model.replay_buffer), 1)
    store = LocalObjectStore(tmp_path / "objects")
    run_id = legacy_run(db, "sac")
    uri = store.put(
        f"agent_replay_buffers/{run_id}/60-{hashlib.sha256(buffer_bytes).hexdigest()}.pkl.zlib",
        buffer_bytes,
    )
    old = insert_pre_signature_row(
        db, "agent_checkpoints", run_id, "sb3_zip", zip_buffer.getvalue(),
        agent_type="sac", timestep=60, replay_buffer_uri=uri, checkpoint_kind="intermediate",
    )  # fmt: skip
    agents = AgentCheckpointRepository(db, store)
    with pytest.raises(UntrustedCheckpointError, match="not signed"):
        agents.load_checkpoint(old)
    with pytest.raises(UntrustedCheckpointError, match="not signed"):
        agents.load_replay_buffer(old)

    assert sign_checkpoints(db, store=store) == [old]
    loaded = load_model("sac", agents.load_checkpoint(old), env(), params=params, timesteps=200)
    restore_replay_buffer(loaded, agents.load_replay_buffer(old))
    assert loaded.replay_buffer.pos == model.replay_buffer.pos == 60
    obs = np.zeros((4, 3), dtype=np.float32)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0],
                          model.predict(obs, deterministic=True)[0])  # fmt: skip
    # Saved again, the resumed agent goes to the data-only format.
    again = load_model("sac", model_to_bytes(loaded))
    assert np.array_equal(again.predict(obs, deterministic=True)[0],
                          model.predict(obs, deterministic=True)[0])  # fmt: skip


@pytest.mark.parametrize("backend", ["embedded"])
def test_0002_backfills_agent_checkpoint_kind_from_metrics_json(url: str) -> None:
    migrations.upgrade(url, "0001_training_tables")
    with Database(url) as db:
        run_id = uuid.uuid4()
        db.execute(
            "INSERT INTO agent_training_runs (run_id, run_name, agent_type) "
            "VALUES (%(r)s, 'old', 'ppo')",
            {"r": run_id},
        )
        kinds = {}
        for kind in ("best", "final", None):
            metrics = {"mean_reward": 1.0} | ({"checkpoint_kind": kind} if kind else {})
            kinds[kind] = insert_pre_signature_row(
                db, "agent_checkpoints", run_id, "sb3_zip", b"zip",
                agent_type="ppo", metrics_json=json.dumps(metrics),
            )  # fmt: skip
    migrations.upgrade(url)
    with Database(url) as db:
        repo = AgentCheckpointRepository(db)
        assert {k: repo.get(cid).kind.value for k, cid in kinds.items()} == {
            "best": "best",
            "final": "final",
            None: "intermediate",
        }
        assert all(repo.get(cid).metrics == {"mean_reward": 1.0} for cid in kinds.values())
        assert repo.get(kinds["best"]).signature == ""


def test_nothing_is_written_for_a_refused_load(
    db: Database, models: ModelCheckpointRepository, evil: bytes
) -> None:
    info = models.save_checkpoint(new_run(db), b"{}", "xgboost_json")
    tamper(db, "model_checkpoints", info.checkpoint_id, model_format="pickle", bytes=evil)
    before = db.scalar("SELECT count() FROM model_checkpoints")
    with pytest.raises(UntrustedCheckpointError):
        models.load_object(info.checkpoint_id)
    assert db.scalar("SELECT count() FROM model_checkpoints") == before


@pytest.mark.parametrize("backend", ["embedded"])
def test_cli_signs_checkpoints_stored_before_signatures(
    db: Database, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from suho.cli import app

    run_id = legacy_run(db)
    legacy = insert_pre_signature_row(
        db, "model_checkpoints", run_id, "joblib", pickle.dumps([1, 2]),
        model_name="xgb", model_type="xgboost",
    )  # fmt: skip
    monkeypatch.setenv("SUHO_DATABASE_URL", url)
    get_settings.cache_clear()
    runner = CliRunner()
    refused = runner.invoke(app, ["checkpoints", "sign"])
    assert refused.exit_code != 0 and "RUN_ID or --all" in refused.output
    declined = runner.invoke(app, ["checkpoints", "sign", str(run_id)], input="n\n")
    assert declined.exit_code == 0 and "signed 0 checkpoint(s)" in declined.output
    assert str(legacy) in declined.output and "joblib" in declined.output  # shown first
    done = runner.invoke(app, ["checkpoints", "sign", str(run_id)], input="y\n")
    assert done.exit_code == 0, done.output
    assert "signed 1 checkpoint(s)" in done.output
    assert ModelCheckpointRepository(db).load_object(legacy) == [1, 2]
    assert "signed 0" in runner.invoke(app, ["checkpoints", "sign", "--all", "--yes"]).output


def test_rl_resume_refuses_a_switched_checkpoint(
    db: Database, agents: AgentCheckpointRepository, marker: Path
) -> None:
    from trainers.rl.config import RLConfig
    from trainers.rl.trainer import RLTrainer

    info = agents.save_checkpoint(new_agent_run(db, "ppo"), b"weights", "sb3_state")
    tamper(db, "agent_checkpoints", info.checkpoint_id, agent_format="sb3_zip",
           bytes=evil_sb3_zip(marker))  # fmt: skip
    trainer = RLTrainer(RLConfig(agent="ppo"), db, store=agents.store)
    with pytest.raises(UntrustedCheckpointError, match="not signed"):
        trainer._restore(agents.get(info.checkpoint_id), None, trainer.config)
    assert not marker.exists()
