"""Replay buffers in the object store (no SQL here: rows go through repositories).

* Replay buffers live in the checkpoint store's object store under a key that
  embeds their SHA-256; the checkpoint row keeps the URI (``replay_buffer_uri``),
  so the hash is recorded in the table, not only next to the object, and the
  bytes are verified before they are unpickled, as the checkpoint store does for
  agents.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from repositories.checkpoints import CorruptCheckpointError
from repositories.object_store import ObjectStore
from repositories.runs import _uuid

REPLAY_BUFFER_PREFIX = "agent_replay_buffers"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{64})\.pkl\.zlib$")


def put_replay_buffer(
    store: ObjectStore, run_id: uuid.UUID | str, timestep: int, data: bytes
) -> str:
    """Store replay-buffer bytes; the URI names their SHA-256."""
    digest = hashlib.sha256(data).hexdigest()
    key = f"{REPLAY_BUFFER_PREFIX}/{_uuid(run_id, 'run_id')}/{int(timestep)}-{digest}.pkl.zlib"
    return store.put(key, data)


def get_replay_buffer(store: ObjectStore, uri: str) -> bytes:
    """The bytes at ``uri``, checked against the SHA-256 in its name before use."""
    match = _HASH_IN_NAME.search(uri)
    if match is None:
        raise CorruptCheckpointError(f"replay buffer URI {uri!r} names no SHA-256")
    data = store.get(uri)
    actual = hashlib.sha256(data).hexdigest()
    if actual != match.group(1):
        raise CorruptCheckpointError(
            f"replay buffer {uri}: SHA-256 mismatch (recorded {match.group(1)}, read {actual})"
        )
    return data


__all__ = [
    "REPLAY_BUFFER_PREFIX",
    "get_replay_buffer",
    "put_replay_buffer",
]
