"""Which checkpoints stored before signatures may be signed now, and signing them.

Signing blesses bytes: once signed, a pickle row runs on the next load. Whoever can
write a checkpoint table can write a pickle row whose hash agrees with its bytes, so
the hash alone cannot tell an old row of ours from a new row of theirs. The rule:

* Since the signing revision every code-format checkpoint is signed when saved, so
  only rows **created before signing began** (``checkpoint_signing_epoch``, recorded
  by revision ``0009_signing_epoch``) can be legacy rows. A newer unsigned row was
  not written by suho.
* Its **run existed then** too (a row naming a run created later is refused).
* A row carrying a signature that does not verify (copied, or another key) is
  refused: re-signing would launder it.
* Each row is **shown** (run, format, size, creation time) and signed only after
  confirmation (``suho checkpoints sign`` asks; ``--yes`` for scripts), and only if
  its hash is still the one shown.

Creation times are columns, so a writer who forges both a row's and its run's can
pass the time rule; the confirmation is the check for that, which is why the rows
are listed rather than signed blindly.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from repositories.checkpoints.agents import AgentCheckpointRepository
from repositories.checkpoints.deploy import CheckpointRepository
from repositories.checkpoints.models import ModelCheckpointRepository
from repositories.errors import NotFoundError, RepositoryError, as_uuid
from repositories.object_store import ObjectStore
from suho_models.db import Database

EPOCH_TABLE = "checkpoint_signing_epoch"


class SigningRuleError(RepositoryError):
    """The store cannot say when signing began (not migrated to 0009_signing_epoch)."""


@dataclass(frozen=True)
class LegacyCheckpoint:
    """An unsigned (or wrongly signed) code-format checkpoint, and whether the rule
    lets it be signed (``refused`` is None) or why not."""

    table: str
    checkpoint_id: uuid.UUID
    run_id: uuid.UUID
    run_name: str | None
    format: str
    size_bytes: int
    sha256: str
    created_at: dt.datetime
    run_created_at: dt.datetime | None
    refused: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "checkpoint_id": str(self.checkpoint_id),
            "run_id": str(self.run_id),
            "run_name": self.run_name,
            "format": self.format,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "created_at": self.created_at.isoformat(),
            "run_created_at": None
            if self.run_created_at is None
            else self.run_created_at.isoformat(),
            "signable": self.refused is None,
            "refused": self.refused,
        }


def signing_epoch(db: Database) -> dt.datetime:
    """When signing began in this store (rows created since are signed at save)."""
    if not db.scalar(f"EXISTS TABLE {EPOCH_TABLE}"):
        raise SigningRuleError(
            f"{EPOCH_TABLE} is missing: run `suho db upgrade` first (revision "
            "0009_signing_epoch records when signing began; without it no legacy "
            "checkpoint can be told from a new one)"
        )
    value = db.scalar(f"SELECT minOrNull(signing_from) FROM {EPOCH_TABLE}")
    if value is None:
        raise SigningRuleError(f"{EPOCH_TABLE} is empty: the time signing began was not recorded")
    epoch = _utc(value)
    for repo in _repositories(db, None):  # a validly signed row: signing was on by then
        rows = db.execute(
            f"SELECT checkpoint_id, created_at FROM {repo.table.name} FINAL "
            "WHERE signature != '' AND created_at < %(epoch)s ORDER BY created_at",
            {"epoch": epoch},
        )
        for checkpoint_id, created_at in rows:  # a forged signature does not count
            if repo.signature_problem(checkpoint_id) is None:
                epoch = _utc(created_at)
                break
    return epoch


def _repositories(db: Database, store: ObjectStore | None) -> tuple[CheckpointRepository[Any], ...]:
    return (ModelCheckpointRepository(db, store), AgentCheckpointRepository(db, store))


def legacy_checkpoints(
    db: Database, run_id: uuid.UUID | str | None = None, *, store: ObjectStore | None = None
) -> list[LegacyCheckpoint]:
    """The code-format checkpoints (of one run, or all) without a valid signature, each
    judged by the rule; validly signed and data-only ones are left out."""
    epoch = signing_epoch(db)
    repos = _repositories(db, store)
    if run_id is not None:
        run_id = as_uuid(run_id, "run_id")
        if not any(repo.runs.exists(run_id) for repo in repos):
            raise NotFoundError(f"no supervised or RL run with run_id {run_id}")
    found: list[LegacyCheckpoint] = []
    for repo in repos:
        for checkpoint_id in repo.code_format_ids(run_id):
            problem = repo.signature_problem(checkpoint_id)
            if problem is None:
                continue  # validly signed
            info = repo.get(checkpoint_id)
            run = repo.runs.get(info.run_id) if repo.runs.exists(info.run_id) else None
            created = _utc(info.created_at)
            run_created = None if run is None else _utc(run.created_at)
            refused = _refusal(epoch, created, run_created, info.signature, problem)
            found.append(
                LegacyCheckpoint(
                    repo.table.name, info.checkpoint_id, info.run_id,
                    None if run is None else run.run_name, info.format.value,
                    info.size_bytes, info.sha256, created, run_created, refused,
                )
            )  # fmt: skip
    found.sort(key=lambda c: (c.created_at, str(c.checkpoint_id)))
    return found


def _refusal(
    epoch: dt.datetime,
    created: dt.datetime,
    run_created: dt.datetime | None,
    signature: str,
    problem: str,
) -> str | None:
    since = f"signing began {epoch:%Y-%m-%d %H:%M:%S} UTC"
    if signature:
        return f"carries a signature that does not verify ({problem}): re-signing would launder it"
    if created >= epoch:
        return (
            f"created {created:%Y-%m-%d %H:%M:%S} UTC, after {since}: suho signs what it "
            "saves since then, so this row was written by something else"
        )
    if run_created is None:
        return "its run does not exist"
    if run_created >= epoch:
        return f"its run was created {run_created:%Y-%m-%d %H:%M:%S} UTC, after {since}"
    return None


def sign_legacy(
    db: Database,
    run_id: uuid.UUID | str | None = None,
    *,
    store: ObjectStore | None = None,
    confirm: Callable[[Sequence[LegacyCheckpoint]], bool] | None = None,
) -> list[uuid.UUID]:
    """Sign the checkpoints the rule allows, of one run or of all (None).

    ``confirm`` is shown every candidate (refused ones too, with the reason; also
    when none may be signed) and returns whether to sign the allowed ones; None
    signs them (scripts). A row whose
    hash changed since it was listed is refused. Returns the ids signed.
    """
    candidates = legacy_checkpoints(db, run_id, store=store)
    allowed = [c for c in candidates if c.refused is None]
    if not candidates or (confirm is not None and not confirm(candidates)) or not allowed:
        return []
    repos = {repo.table.name: repo for repo in _repositories(db, store)}
    signed: list[uuid.UUID] = []
    for candidate in allowed:
        repo = repos[candidate.table]
        if repo.sign(candidate.checkpoint_id, expected_sha256=candidate.sha256) is not None:
            signed.append(candidate.checkpoint_id)
    return signed


def _utc(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"expected a datetime (got {value!r})")
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


__all__ = [
    "LegacyCheckpoint",
    "SigningRuleError",
    "legacy_checkpoints",
    "sign_legacy",
    "signing_epoch",
]
