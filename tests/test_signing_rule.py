"""Issue 28 §3: signing legacy checkpoints cannot bless a tampered row.

The attacker here can INSERT into the checkpoint tables (and the run tables): every
row they could plant or change, in each code format and both tables, must be
refused by ``sign_checkpoints`` and stay unloadable; only rows (of runs) that
existed before signing began are signed, after confirmation.
"""

from __future__ import annotations

import datetime as dt
import pickle
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from repositories.checkpoints import (
    AgentCheckpointRepository,
    ModelCheckpointRepository,
    UntrustedCheckpointError,
    sign_checkpoints,
)
from repositories.legacy_signing import (
    LegacyCheckpoint,
    SigningRuleError,
    legacy_checkpoints,
    signing_epoch,
)
from repositories.object_store import LocalObjectStore
from suho_models.db import Database, migrations
from tests.test_checkpoint_security import (
    LEGACY_TIME,
    insert_pre_signature_row,
    legacy_run,
    new_agent_run,
    new_run,
    tamper,
)

pytestmark = pytest.mark.parametrize("backend", ["embedded"])

CODE_ROWS = [
    ("model_checkpoints", "pickle"),
    ("model_checkpoints", "joblib"),
    ("agent_checkpoints", "sb3_zip"),
]


def _row(db: Database, table: str, run_id: uuid.UUID, fmt: str, **columns: object) -> uuid.UUID:
    extra = (
        {"model_name": "xgb", "model_type": "xgboost"}
        if table == "model_checkpoints"
        else {"agent_type": "ppo", "checkpoint_kind": "intermediate"}
    )
    data = pickle.dumps({"fmt": fmt, "nonce": uuid.uuid4().hex})
    return insert_pre_signature_row(db, table, run_id, fmt, data, **extra, **columns)


def _run(db: Database, table: str, at: dt.datetime = LEGACY_TIME) -> uuid.UUID:
    return legacy_run(db, None if table == "model_checkpoints" else "ppo", at)


def _repo(
    db: Database, table: str, tmp_path: Path
) -> ModelCheckpointRepository | AgentCheckpointRepository:
    store = LocalObjectStore(tmp_path / "objects")
    if table == "model_checkpoints":
        return ModelCheckpointRepository(db, store)
    return AgentCheckpointRepository(db, store)


def _unloadable(db: Database, table: str, checkpoint_id: uuid.UUID, tmp_path: Path) -> bool:
    try:
        _repo(db, table, tmp_path).load_checkpoint(checkpoint_id)
    except UntrustedCheckpointError:
        return True
    return False


@pytest.fixture
def old_db(url: str) -> Iterator[Database]:
    """A store at the revision before signing's time was recorded."""
    migrations.upgrade(url, "0007_run_metrics")
    db = Database(url)
    # The code of that time wrote through these same repositories (0008 only adds a
    # table), so they may write here without the head-revision check.
    db._schema_checked = True
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def legacy_store(old_db: Database, url: str) -> tuple[Database, dict[str, uuid.UUID]]:
    """A store that had unsigned code-format rows of every kind before it was migrated
    to the revision that records when signing began."""
    rows = {fmt: _row(old_db, table, _run(old_db, table), fmt) for table, fmt in CODE_ROWS}
    migrations.upgrade(url)
    return old_db, rows


def test_rows_from_before_signing_are_listed_and_signed_after_confirmation(
    legacy_store: tuple[Database, dict[str, uuid.UUID]], tmp_path: Path, backend: str
) -> None:
    db, rows = legacy_store
    assert signing_epoch(db) > LEGACY_TIME
    listed = legacy_checkpoints(db)
    assert {c.checkpoint_id for c in listed} == set(rows.values())
    assert all(c.refused is None for c in listed)
    for c in listed:  # what the operator is shown: run, format, size, creation time
        assert c.run_name in ("xgb", "ppo") and c.format in ("pickle", "joblib", "sb3_zip")
        assert c.size_bytes > 0 and c.created_at == LEGACY_TIME
        assert c.as_dict()["signable"] is True

    assert sign_checkpoints(db, confirm=lambda shown: False) == []  # declined: nothing
    assert all(_unloadable(db, t, rows[f], tmp_path) for t, f in CODE_ROWS)
    shown: list[Sequence[LegacyCheckpoint]] = []
    signed = sign_checkpoints(db, confirm=lambda c: shown.append(c) is None)
    assert set(signed) == set(rows.values()) and len(shown) == 1
    assert not any(_unloadable(db, t, rows[f], tmp_path) for t, f in CODE_ROWS)
    assert legacy_checkpoints(db) == [] and sign_checkpoints(db) == []


@pytest.mark.parametrize(("table", "fmt"), CODE_ROWS)
def test_every_planted_row_is_refused(
    legacy_store: tuple[Database, dict[str, uuid.UUID]],
    table: str,
    fmt: str,
    tmp_path: Path,
    backend: str,
) -> None:
    """Each way to plant a row after signing began, in each code format and table."""
    db, _ = legacy_store
    now = dt.datetime.now(dt.UTC)
    planted = {
        # a new row, of an old run
        _row(db, table, _run(db, table), fmt, created_at=now, updated_at=now): "after",
        # an old-looking row of a run created since
        _row(db, table, _run(db, table, now), fmt): "its run was created",
        # an old-looking row of no run at all
        _row(db, table, uuid.uuid4(), fmt): "does not exist",
    }
    # a validly signed checkpoint's signature pasted onto an old-looking row
    new = new_run(db) if table == "model_checkpoints" else new_agent_run(db)
    repo = _repo(db, table, tmp_path)
    if table == "model_checkpoints":
        good = repo.save_checkpoint(new, {"ok": 1}, "pickle", iteration=1, model_name="m")
    else:
        good = repo.save_checkpoint(new, b"zip", "sb3_zip", timestep=1)
    copied = _row(db, table, _run(db, table), fmt, signature=good.signature)
    planted[copied] = "signature that does not verify"

    listed = {c.checkpoint_id: c for c in legacy_checkpoints(db)}
    for checkpoint_id, why in planted.items():
        assert listed[checkpoint_id].refused is not None
        assert why in listed[checkpoint_id].refused, listed[checkpoint_id].refused
    signed = sign_checkpoints(db)
    assert not set(signed) & set(planted)
    assert all(_unloadable(db, table, c, tmp_path) for c in planted)


def test_a_row_changed_after_it_was_shown_is_not_signed(
    legacy_store: tuple[Database, dict[str, uuid.UUID]], tmp_path: Path, backend: str
) -> None:
    db, rows = legacy_store
    target = rows["pickle"]

    def swap_while_asking(shown: Sequence[LegacyCheckpoint]) -> bool:
        tamper(db, "model_checkpoints", target, bytes=pickle.dumps("swapped"))
        return True

    with pytest.raises(UntrustedCheckpointError, match="changed since it was listed"):
        sign_checkpoints(db, confirm=swap_while_asking)
    assert _unloadable(db, "model_checkpoints", target, tmp_path)


@pytest.mark.parametrize(("table", "fmt"), CODE_ROWS)
def test_signing_began_at_the_oldest_signed_checkpoint(
    old_db: Database, url: str, table: str, fmt: str, tmp_path: Path, backend: str
) -> None:
    """A store that signed at save before 0008 recorded the time: an unsigned row
    newer than its oldest signed checkpoint was planted in between, and is refused."""
    db = old_db
    early = _row(db, table, _run(db, table), fmt)
    signed_at = LEGACY_TIME + dt.timedelta(days=1)
    repo = _repo(db, table, tmp_path)
    run = _run(db, table)
    if table == "model_checkpoints":
        good = repo.save_checkpoint(run, {"ok": 1}, "pickle", iteration=1, model_name="m")
    else:
        good = repo.save_checkpoint(run, b"zip", "sb3_zip", timestep=1)
    tamper(db, table, good.checkpoint_id, created_at=signed_at)  # saved back then
    later = signed_at + dt.timedelta(days=1)
    planted = _row(db, table, _run(db, table), fmt, created_at=later, updated_at=later)
    migrations.upgrade(url)
    assert signing_epoch(db) == signed_at
    listed = {c.checkpoint_id: c for c in legacy_checkpoints(db)}
    assert listed[early].refused is None
    assert "after signing began" in (listed[planted].refused or "")
    assert sign_checkpoints(db) == [early]


def test_without_the_recorded_time_nothing_is_signed(
    old_db: Database, url: str, backend: str
) -> None:
    db = old_db
    _row(db, "model_checkpoints", _run(db, "model_checkpoints"), "pickle")
    with pytest.raises(SigningRuleError, match="suho db upgrade"):
        sign_checkpoints(db)
    migrations.upgrade(url)
    migrations.upgrade(url)  # re-run keeps the first time
    first = signing_epoch(db)
    db.execute("INSERT INTO checkpoint_signing_epoch SELECT now64(3) + 3600, now64(3), 'x'")
    assert signing_epoch(db) == first  # a later time added cannot widen the window
