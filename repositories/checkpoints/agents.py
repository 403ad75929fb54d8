"""RL agent checkpoints (``agent_checkpoints``) and their companion blobs.

An agent checkpoint's replay buffer (off-policy resume) is saved, hash-checked,
loaded and deleted with its checkpoint. Its object key names its SHA-256, and the
checkpoint's signature covers its URI.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import uuid
from collections.abc import Mapping
from typing import Any

from repositories.checkpoints.deploy import CheckpointRepository
from repositories.checkpoints.records import (
    AgentCheckpointInfo,
    AgentCheckpointRow,
    AgentSave,
    valid,
)
from repositories.errors import InvalidInputError
from repositories.runs import AgentRunRepository
from repositories.serialization import CODE_FORMATS, CheckpointBytes, CorruptCheckpointError
from suho_models import AgentCheckpoint as AgentCheckpointModel
from suho_models.enums import CheckpointKind, ModelFormat

REPLAY_BUFFER_PREFIX = "agent_replay_buffers"
"""Object-store folder of replay buffers; a buffer's key names its SHA-256."""
REPLAY_BUFFER_SUFFIX = ".npz"
LEGACY_REPLAY_BUFFER_SUFFIX = ".pkl.zlib"
"""Pickled buffers written before arrays: load only from a signed checkpoint."""
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{64})(\.npz|\.pkl\.zlib)$")


class AgentCheckpointRepository(CheckpointRepository[AgentCheckpointInfo]):
    """RL agent checkpoints (``agent_checkpoints``), with their replay buffers."""

    model = AgentCheckpointModel
    record = AgentCheckpointInfo
    run_repository = AgentRunRepository
    row_record = AgentCheckpointRow
    binary_column = "agent_binary"
    format_column = "agent_format"
    name_column = "agent_type"
    step_columns = ("episode_number", "timestep")

    def save_checkpoint(
        self,
        run_id: uuid.UUID | str,
        obj_or_bytes: Any,
        format: ModelFormat | str,
        metrics: Mapping[str, Any] | None = None,
        *,
        episode_number: int = 0,
        timestep: int = 0,
        kind: CheckpointKind | str = CheckpointKind.INTERMEDIATE,
        replay_buffer: bytes | None = None,
    ) -> AgentCheckpointInfo:
        """Save an agent of an RL run (``sb3_state`` bytes; ``sb3_zip`` is signed).

        ``replay_buffer``: the ``.npz`` arrays of an off-policy agent's buffer,
        stored as a companion object (its key names its SHA-256, and the row keeps
        its URI); it is loaded with :meth:`load_replay_buffer` and deleted with the
        checkpoint. ``agent_type`` is the run's; deployment is keyed on it.
        """
        request = valid(
            AgentSave,
            "checkpoint",
            format=format,
            kind=kind,
            metrics=metrics,
            episode_number=episode_number,
            timestep=timestep,
        )
        if replay_buffer is not None and (
            not isinstance(replay_buffer, bytes | bytearray | memoryview) or not replay_buffer
        ):
            raise InvalidInputError(
                f"replay_buffer: expected non-empty bytes (got {type(replay_buffer).__name__})"
            )
        run = self.runs.get(run_id)
        return self._save(
            run.run_id,
            obj_or_bytes,
            request,
            columns={"agent_type": str(run.agent_type), "replay_buffer_uri": ""},
            companion=None if replay_buffer is None else bytes(replay_buffer),
        )

    def _put_companion(self, run_id: uuid.UUID, row: dict[str, Any], data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        key = f"{REPLAY_BUFFER_PREFIX}/{run_id}/{row['timestep']}-{digest}{REPLAY_BUFFER_SUFFIX}"
        uri: str = self.store.put(key, data)
        row["replay_buffer_uri"] = uri
        return uri

    def _companion_uri(self, row: Mapping[str, Any]) -> str:
        return row.get("replay_buffer_uri") or ""

    def _companion_uris(self, info: AgentCheckpointInfo) -> builtins.list[str]:
        """The replay buffer goes with its checkpoint: nothing else can resume from it."""
        return [info.replay_buffer_uri] if info.replay_buffer_uri else []

    def load_replay_buffer(self, checkpoint_id: uuid.UUID | str) -> CheckpointBytes | None:
        """The checkpoint's replay buffer, checked against the SHA-256 its URI names;
        None when it has none. ``.npz`` arrays come as format ``raw`` (data only); a
        pickled buffer from before arrays (format ``pickle``) only when the
        checkpoint's signature, which covers the buffer's URI, verifies."""
        row = self._meta_row(checkpoint_id)
        uri = row["replay_buffer_uri"]
        if not uri:
            return None
        legacy = uri.endswith(LEGACY_REPLAY_BUFFER_SUFFIX)
        if legacy:
            reason = self._untrusted_reason(row)
            if ModelFormat(row[self.format_column]) not in CODE_FORMATS:
                reason = f"its replay buffer {uri} is pickled, and pickles load only when signed"
            if reason is not None:
                raise self._refuse(row, reason, what=f" (replay buffer {uri})")
        data = self._verified_companion(row, uri)
        fmt = ModelFormat.PICKLE if legacy else ModelFormat.RAW
        return CheckpointBytes(data, fmt, row["checkpoint_id"], trusted=legacy)

    def _verified_companion(self, row: Mapping[str, Any], uri: str) -> bytes:
        match = _HASH_IN_NAME.search(uri)
        if match is None:
            raise CorruptCheckpointError(f"replay buffer URI {uri!r} names no SHA-256")
        data = self._store_for(row["checkpoint_id"], uri).get(uri)
        actual = hashlib.sha256(data).hexdigest()
        if actual != match.group(1):
            raise CorruptCheckpointError(
                f"replay buffer {uri}: SHA-256 mismatch (recorded {match.group(1)}, "
                f"read {actual}); refusing to load it"
            )
        return data
