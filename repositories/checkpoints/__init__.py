"""The checkpoint store: save, verify, load, list, deploy, sign and prune model and
agent checkpoints (tables ``model_checkpoints`` and ``agent_checkpoints``).

Why it works the way it does, and where each part lives:

* **Records** (:mod:`.records`): a checkpoint's metadata, never its bytes, and its
  row, exactly the table's columns; the checked requests of a save or a prune.
* **Placement** (:mod:`.placement`): inline (base64 in the row, encoded and
  decoded by ClickHouse) up to ``inline_max_bytes``, else an object store; the
  object is written before the row, and every read is checked against the row's
  ``size_bytes`` and ``sha256`` (:class:`ChecksumMismatchError`). A change is a
  new row, copied inside ClickHouse with a strictly newer ``updated_at``.
* **Queries** (:mod:`.queries`): metadata reads through the repository's
  ``Query`` (FINAL, PREWHERE on the sorting key), never a blob column.
* **Trust** (:mod:`.trust`): formats that run code on load are signed at save
  with a key that is not in the database and refused, before their bytes are read,
  when the signature does not verify; :func:`sign_checkpoints` signs those stored
  before signatures existed. :meth:`CheckpointRepository.load_checkpoint` returns
  :class:`~repositories.serialization.CheckpointBytes`: the bytes with the format
  of the row they came from, which is what the deserializers go by.
* **Deployment** (:mod:`.deploy`): one checkpoint per name and stage; the
  deployed ones, and those that were, survive pruning.
* **One implementation, two tables:** :class:`ModelCheckpointRepository`
  (:mod:`.models`) and :class:`AgentCheckpointRepository` (:mod:`.agents`, with the
  replay buffers that go with an agent checkpoint) only name their columns and
  add their own ``save_checkpoint`` keywords.

Before migration 0002 an agent checkpoint's kind was kept in ``metrics_json`` under
:data:`KIND_METRIC_KEY`; 0002 moved it to the ``checkpoint_kind`` column, and the
key stays reserved.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from repositories.checkpoints.agents import (
    LEGACY_REPLAY_BUFFER_SUFFIX,
    REPLAY_BUFFER_PREFIX,
    REPLAY_BUFFER_SUFFIX,
    AgentCheckpointRepository,
)
from repositories.checkpoints.deploy import CheckpointRepository
from repositories.checkpoints.models import ModelCheckpointRepository
from repositories.checkpoints.records import (
    DEFAULT_INLINE_MAX_BYTES,
    DEPLOY_STAGES,
    KIND_METRIC_KEY,
    LIVE_STATUSES,
    SERIALIZED_FORMATS,
    AgentCheckpointInfo,
    CheckpointRecord,
    ChecksumMismatchError,
    ModelCheckpointInfo,
)
from repositories.object_store import (
    LocalObjectStore,
    ObjectNotFoundError,
    ObjectStore,
    ObjectStoreError,
)
from repositories.serialization import (
    CODE_FORMATS,
    FILE_EXTENSIONS,
    OBJECT_FORMATS,
    CheckpointBytes,
    CorruptCheckpointError,
    UntrustedCheckpointError,
)
from suho_models.db import Database


def sign_checkpoints(
    db: Database,
    run_id: uuid.UUID | str | None = None,
    *,
    store: ObjectStore | None = None,
    confirm: Callable[[Sequence[Any]], bool] | None = None,
) -> list[uuid.UUID]:
    """Sign the checkpoints of one run, or of every run (None), stored before
    signatures, in both tables: only those :mod:`repositories.legacy_signing`'s rule
    allows, after ``confirm`` (shown every candidate). Returns the ids signed."""
    from repositories.legacy_signing import sign_legacy

    return sign_legacy(db, run_id, store=store, confirm=confirm)


__all__ = [
    "CODE_FORMATS",
    "DEFAULT_INLINE_MAX_BYTES",
    "DEPLOY_STAGES",
    "FILE_EXTENSIONS",
    "KIND_METRIC_KEY",
    "LEGACY_REPLAY_BUFFER_SUFFIX",
    "LIVE_STATUSES",
    "OBJECT_FORMATS",
    "REPLAY_BUFFER_PREFIX",
    "REPLAY_BUFFER_SUFFIX",
    "SERIALIZED_FORMATS",
    "AgentCheckpointInfo",
    "AgentCheckpointRepository",
    "CheckpointBytes",
    "CheckpointRecord",
    "CheckpointRepository",
    "ChecksumMismatchError",
    "CorruptCheckpointError",
    "LocalObjectStore",
    "ModelCheckpointInfo",
    "ModelCheckpointRepository",
    "ObjectNotFoundError",
    "ObjectStore",
    "ObjectStoreError",
    "UntrustedCheckpointError",
    "sign_checkpoints",
]
