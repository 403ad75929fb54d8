"""The trust policy: which checkpoints may be deserialized, and signing them.

The hash lives in the same row as the bytes, so whoever can write the table can
write a matching one. Formats that run code on load
(:data:`~repositories.serialization.CODE_FORMATS`: pickle, joblib, SB3's zip) are
therefore signed at save with a key that is not in the database
(:mod:`repositories.signing`) and refused, before their bytes are even read, when
the signature does not verify. Data-only formats need no signature. Everything
about a signature is here: what one covers, when it is made, checked and refused,
and signing one row; which rows stored before signatures may be signed is the
rule in :mod:`repositories.legacy_signing`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Generic

from repositories import signing
from repositories.checkpoints.queries import CheckpointQueries
from repositories.checkpoints.records import SERIALIZED_FORMATS, InfoT
from repositories.errors import InvalidInputError, as_uuid
from repositories.serialization import (
    CODE_FORMATS,
    CheckpointBytes,
    UntrustedCheckpointError,
    loads_object,
)
from suho_models.enums import ModelFormat


class SignedCheckpoints(CheckpointQueries[InfoT], Generic[InfoT]):
    """Loading under the trust policy, and signing."""

    _key: bytes | None = None

    @property
    def key(self) -> bytes:
        """The signing key, read (or made) the first time a signature is needed."""
        if self._key is None:
            self._key = signing.checkpoint_key()
        return self._key

    # ------------------------------------------------------------------ signatures
    def _signed_fields(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """What a signature vouches for: the bytes (by hash and size), their format and
        which checkpoint of which run and table they are, and the companion blob."""
        return {
            "table": self.table.name,
            "checkpoint_id": row["checkpoint_id"],
            "run_id": row["run_id"],
            "format": row[self.format_column],
            "size_bytes": row["size_bytes"],
            "sha256": row["sha256"],
            "companion": self._companion_uri(row),
        }

    def _signature(self, row: Mapping[str, Any]) -> str:
        """Made at save for the formats that run code; '' for the others."""
        if ModelFormat(row[self.format_column]) not in CODE_FORMATS:
            return ""
        return signing.sign(self._signed_fields(row), self.key)

    def _untrusted_reason(self, row: Mapping[str, Any]) -> str | None:
        return signing.check(self._signed_fields(row), row.get("signature") or "", self.key)

    def _refuse(
        self, row: Mapping[str, Any], reason: str, what: str = ""
    ) -> UntrustedCheckpointError:
        return UntrustedCheckpointError(
            f"{self.table.name}: checkpoint {row['checkpoint_id']}{what} is "
            f"{row[self.format_column]}, a format that runs code when loaded, and {reason}; "
            "refusing to load it. Checkpoints saved before signatures existed are signed "
            f"once by a trusted operator: sign_checkpoints(db, run_id={str(row['run_id'])!r})"
        )

    # ------------------------------------------------------------------ load
    def load_checkpoint(self, checkpoint_id: uuid.UUID | str) -> CheckpointBytes:
        """The checkpoint's bytes, verified against the recorded SHA-256 and, for
        formats that run code, against the row's signature (checked before the bytes
        are read). They carry the format of the row they came from."""
        row = self._meta_row(checkpoint_id)
        fmt = ModelFormat(row[self.format_column])
        trusted = False
        if fmt in CODE_FORMATS:
            reason = self._untrusted_reason(row)
            if reason is not None:
                raise self._refuse(row, reason)
            trusted = True
        return self._verified_bytes(
            row, lambda buffer: CheckpointBytes(buffer, fmt, row["checkpoint_id"], trusted=trusted)
        )

    def load_object(self, checkpoint_id: uuid.UUID | str) -> Any:
        """Deserialize a pickle/joblib checkpoint: signature and hash verified first.

        Library-native formats are refused: load their bytes with
        :meth:`load_checkpoint` and hand them to the library.
        """
        row = self._meta_row(checkpoint_id)
        fmt = ModelFormat(row[self.format_column])
        if fmt not in SERIALIZED_FORMATS:
            raise InvalidInputError(
                f"checkpoint {row['checkpoint_id']} is {fmt.value}, a library-native format: "
                "use load_checkpoint() and the library's own loader"
            )
        data = self.load_checkpoint(row["checkpoint_id"])
        return loads_object(data, data.format)

    # ------------------------------------------------------------------ signing
    def sign(
        self, checkpoint_id: uuid.UUID | str, *, expected_sha256: str | None = None
    ) -> InfoT | None:
        """Sign a checkpoint stored before signatures existed (its hash is checked first).

        For a trusted operator, once, on a store nobody else could write yet: a
        signature vouches that the bytes are ours. Returns the new row's record, or
        None when it needs none (a data-only format, or already validly signed).
        ``expected_sha256``: the hash the operator was shown; a row changed since
        then is refused. Which rows may be signed at all: :mod:`repositories.legacy_signing`.
        """
        row = self._meta_row(checkpoint_id)
        if ModelFormat(row[self.format_column]) not in CODE_FORMATS:
            return None
        if self._untrusted_reason(row) is None:
            return None
        if expected_sha256 is not None and row["sha256"] != expected_sha256:
            raise UntrustedCheckpointError(
                f"checkpoint {checkpoint_id} changed since it was listed (sha256 "
                f"{row['sha256'][:12]}…, listed {expected_sha256[:12]}…): not signed"
            )
        self._verified_bytes(row, bytes)
        for uri in self._companion_uris(self._to_info(row)):
            self._verified_companion(row, uri)
        signature = signing.sign(self._signed_fields(row), self.key)
        return self._new_version(row, {"signature": signature})

    def signature_problem(self, checkpoint_id: uuid.UUID | str) -> str | None:
        """Why a code-format checkpoint may not be loaded as it is (unsigned, or a
        signature that does not verify); None when it may (or needs no signature)."""
        row = self._meta_row(checkpoint_id)
        if ModelFormat(row[self.format_column]) not in CODE_FORMATS:
            return None
        return self._untrusted_reason(row)

    def code_format_ids(self, run_id: uuid.UUID | str | None) -> list[uuid.UUID]:
        """Ids of the code-format checkpoints of a run (None: of every run)."""
        c = self.table.c
        where = [c[self.format_column].in_([f.value for f in sorted(CODE_FORMATS)])]
        if run_id is not None:
            where.append(c.run_id == as_uuid(run_id, "run_id"))
        return [row["checkpoint_id"] for row in self._select(*where, columns=[c.checkpoint_id])]
