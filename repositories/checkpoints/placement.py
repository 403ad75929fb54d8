"""Where a checkpoint's bytes live and how they come back verified.

* **Inline or object store.** Checkpoints up to ``inline_max_bytes`` (raw size) are
  kept base64 in the row itself (``storage="inline"``): one INSERT, nothing else to
  back up. ClickHouse does the base64 both ways (``base64Encode`` on a raw-bytes
  insert, ``base64Decode`` on a raw-bytes read), so Python never encodes them.
  Larger ones go to an :class:`~repositories.object_store.ObjectStore` and the row
  keeps ``storage_uri``. The object is written before the row, so a row never
  points at a missing object; the row goes first on delete, for the same reason.
* **Hashed while copied.** The SHA-256 is computed on another thread while the
  bytes are written or copied out (hashlib lets go of the GIL), so verifying
  costs no extra pass.
* **A change is a new row.** A newer version of a row is copied inside ClickHouse
  (blob included, since FINAL keeps only the newest).
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import func

from repositories.base import Repository, next_version, row_of, utcnow
from repositories.checkpoints.records import (
    KIND_METRIC_KEY,
    CheckpointRow,
    ChecksumMismatchError,
    InfoT,
    SaveRequest,
)
from repositories.errors import InvalidInputError, as_uuid
from repositories.object_store import ObjectStore, ObjectStoreError, object_store_from_uri
from repositories.runs import RunRepository
from repositories.serialization import FILE_EXTENSIONS, CorruptCheckpointError, dumps_object
from suho_models.db import Database
from suho_models.db.chdb_dbapi import render_literal
from suho_models.enums import DeploymentStatus, ModelFormat, StorageKind
from suho_models.settings import get_settings

logger = logging.getLogger(__name__)

BytesT = TypeVar("BytesT", bound=bytes)

HASHING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="suho-sha256")
"""Where a checkpoint is hashed while it is being copied (hashlib lets go of the
GIL; the copy into a ``bytes`` object does not), so verifying costs no extra pass."""


class CheckpointPlacement(Repository[InfoT], Generic[InfoT]):
    """Checkpoints of one table, as bytes in a place; subclasses name the columns.

    ``store`` receives checkpoints above ``inline_max_bytes`` and serves their
    reads (default: ``<data_dir>/objects``, made on first use).
    """

    run_repository: ClassVar[type[RunRepository[Any]]]
    row_record: ClassVar[type[CheckpointRow]]
    binary_column: ClassVar[str]
    format_column: ClassVar[str]
    name_column: ClassVar[str]
    kind_column: ClassVar[str] = "checkpoint_kind"
    step_columns: ClassVar[tuple[str, ...]]
    """The progress counters, most significant first."""

    def __init__(
        self,
        db: Database,
        store: ObjectStore | None = None,
        *,
        inline_max_bytes: int | None = None,
    ) -> None:
        super().__init__(db)
        if inline_max_bytes is None:
            inline_max_bytes = get_settings().checkpoint_inline_max_bytes
        if isinstance(inline_max_bytes, bool) or not isinstance(inline_max_bytes, int):
            raise InvalidInputError(f"inline_max_bytes: expected an int (got {inline_max_bytes!r})")
        if inline_max_bytes < 0:
            raise InvalidInputError(f"inline_max_bytes: must be >= 0 (got {inline_max_bytes})")
        self.runs = self.run_repository(db)
        self.inline_max_bytes = inline_max_bytes
        self._store = store

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            settings = get_settings()
            self._store = object_store_from_uri(
                settings.object_store_url, endpoint_url=settings.s3_endpoint_url
            )
        return self._store

    @property
    def _info_columns(self) -> list[Any]:
        return [c for c in self.table.columns if c.name != self.binary_column]

    def _to_info(self, row: Mapping[str, Any]) -> InfoT:
        data = {k: v for k, v in row.items() if k != self.binary_column}
        raw = data.pop("metrics_json", "") or "{}"
        metrics = json.loads(raw) if isinstance(raw, str) else dict(raw)
        metrics.pop(KIND_METRIC_KEY, None)  # rows from before 0002; the column holds it
        data["metrics"] = metrics
        return self.record.model_validate(data)

    # ------------------------------------------------------------------ hooks
    def _signature(self, row: Mapping[str, Any]) -> str:
        """The row's signature ('' for data-only formats): the trust layer's rule."""
        raise NotImplementedError

    def _companion_uri(self, row: Mapping[str, Any]) -> str:
        return ""

    def _companion_uris(self, info: InfoT) -> builtins.list[str]:
        """Objects that belong to a checkpoint besides its own bytes: deleted with it."""
        return []

    def _put_companion(self, run_id: uuid.UUID, row: dict[str, Any], data: bytes) -> str:
        raise InvalidInputError(f"{self.table.name}: checkpoints have no companion blobs")

    def _verified_companion(self, row: Mapping[str, Any], uri: str) -> bytes:
        raise NotImplementedError

    # ------------------------------------------------------------------ save
    def _save(
        self,
        run_id: uuid.UUID | str,
        obj_or_bytes: Any,
        request: SaveRequest,
        *,
        columns: Mapping[str, Any],
        companion: bytes | None = None,
    ) -> InfoT:
        """Validate everything, write the bytes (objects first), then the row.

        ``run_id`` must be a known run: the subclasses look it up first.
        """
        fmt = request.format
        run_key = as_uuid(run_id, "run_id")
        payload = _payload(obj_or_bytes, fmt)

        hashing = HASHING.submit(lambda: hashlib.sha256(payload).hexdigest())
        checkpoint_id = uuid.uuid4()
        now = utcnow()
        row: dict[str, Any] = {
            "checkpoint_id": checkpoint_id,
            "run_id": run_key,
            **columns,
            **{name: getattr(request, name) for name in self.step_columns},
            self.kind_column: request.kind.value,
            self.format_column: fmt.value,
            "size_bytes": len(payload),
            "sha256": "",  # hashed meanwhile: while an object store writes the bytes
            "metrics_json": json.dumps(request.metrics, sort_keys=True, allow_nan=True),
            "deployment_status": DeploymentStatus.NOT_DEPLOYED.value,
            "deployed_at": None,
            "created_at": millis(now),
            "updated_at": now,
        }
        for name in self.record.metric_fields:
            value = request.metrics.get(name)
            row[name] = None if value is None else float(value)

        written: list[str] = []
        try:
            if companion is not None:
                written.append(self._put_companion(run_key, row, companion))
            inline = len(payload) <= self.inline_max_bytes
            if inline:
                row.update(storage=StorageKind.INLINE.value, storage_uri="")
            else:
                store = self.store
                key = f"{self.table.name}/{run_key}/{checkpoint_id}.{FILE_EXTENSIONS[fmt]}"
                written.append(store.put(key, payload))
                row.update(storage=store.kind.value, storage_uri=written[-1])

            row["sha256"] = hashing.result()
            row["signature"] = self._signature(row)
            row = row_of(self.row_record.model_validate(row), self.table)
            if inline:
                del row[self.binary_column]
                self.db.insert_row_with_blob(
                    self.table.name, row, self.binary_column, payload, encode="base64Encode"
                )
            else:
                self._insert_rows([row])
        except BaseException:
            hashing.cancel()
            for uri in written:
                self._delete_object(checkpoint_id, uri)
            raise
        return self._to_info(row)

    # ------------------------------------------------------------------ load
    def _verified_bytes(self, row: Mapping[str, Any], into: Callable[[Any], BytesT]) -> BytesT:
        """The row's bytes as ``into`` builds them from the buffer they arrive in
        (copied once: a checkpoint can be most of the memory a process touches),
        once their SHA-256 matches the row's."""
        checkpoint_id = row["checkpoint_id"]
        hashed = CopyAndHash(into)
        if row["storage"] == StorageKind.INLINE.value:
            data = self._inline_bytes(row, hashed)
        else:
            data = hashed(
                self._store_for(checkpoint_id, row["storage_uri"]).get(row["storage_uri"])
            )
        if hashed.digest != row["sha256"]:
            raise ChecksumMismatchError(checkpoint_id, row["sha256"], hashed.digest, len(data))
        return data

    def _one_row(self, row: Mapping[str, Any], *, columns: list[Any]) -> Any:
        """A query of the current version of ``row``'s checkpoint (sorting key: PREWHERE)."""
        c = self.table.c
        where = (c.run_id == row["run_id"], c.checkpoint_id == row["checkpoint_id"])
        return self.read(*where, columns=columns)

    def _inline_bytes(self, row: Mapping[str, Any], into: Callable[[Any], BytesT]) -> BytesT:
        """The row's base64, decoded by ClickHouse and sent as raw bytes."""
        decoded = func.tryBase64Decode(self.table.c[self.binary_column])
        query = self._one_row(row, columns=[decoded]).limit(1)
        data = self.db.read_blob(query.sql(), None, into, size_hint=row["size_bytes"] or None)
        if not data:  # never empty when saved; tryBase64Decode gives '' for invalid input
            raise CorruptCheckpointError(
                f"checkpoint {row['checkpoint_id']}: inline bytes are not valid base64 "
                "(or missing); refusing to load it"
            )
        return data

    def _store_for(self, checkpoint_id: uuid.UUID, uri: str) -> ObjectStore:
        store = self.store
        if not store.owns(uri):
            raise ObjectStoreError(
                f"checkpoint {checkpoint_id} is stored at {uri}, which {store!r} does not "
                "serve; open the repository with the store it was saved to"
            )
        return store

    # ------------------------------------------------------------------ change / delete
    def _new_version(self, row: Mapping[str, Any], changes: Mapping[str, Any]) -> InfoT:
        """Insert a newer version of a row, copied inside ClickHouse (blob included)."""
        updated_at = next_version(_as_utc(row["updated_at"]))
        values = {**changes, "updated_at": updated_at}
        # The new values as SQL literals, not parameters: the native driver would send
        # a datetime parameter without its fraction of a second, an older version.
        columns = [
            sa.literal_column(render_literal(values[c.name])).label(c.name)
            if c.name in values
            else c
            for c in self.table.columns
        ]
        copy = self._one_row(row, columns=columns).statement
        names = [c.name for c in self.table.columns]
        with self.db.engine.connect() as conn:
            conn.execute(sa.insert(self.table).from_select(names, copy))
        return self._to_info({**row, **values})

    def _delete_rows_and_objects(self, run_id: uuid.UUID, infos: builtins.list[InfoT]) -> None:
        """One lightweight DELETE for all (a DELETE is a mutation: costly per statement)."""
        if not infos:
            return
        params: dict[str, Any] = {f"c{n}": i.checkpoint_id for n, i in enumerate(infos)}
        placeholders = ", ".join(f"%({name})s" for name in params)
        params["run_id"] = run_id
        self.db.execute(
            f"DELETE FROM `{self.table.name}` WHERE run_id = %(run_id)s "
            f"AND checkpoint_id IN ({placeholders})",
            params,
        )
        for info in infos:
            if info.storage is not StorageKind.INLINE and info.storage_uri:
                self._delete_object(info.checkpoint_id, info.storage_uri)
            for uri in self._companion_uris(info):
                self._delete_object(info.checkpoint_id, uri)

    def _delete_object(self, checkpoint_id: uuid.UUID, uri: str) -> None:
        try:
            self._store_for(checkpoint_id, uri).delete(uri)
        except ObjectStoreError as exc:
            logger.warning("checkpoint %s: object %s left behind: %s", checkpoint_id, uri, exc)


class CopyAndHash(Generic[BytesT]):
    """``into(buffer)`` with the buffer's SHA-256 computed meanwhile on another thread."""

    def __init__(self, into: Callable[[Any], BytesT]) -> None:
        self.into = into
        self.digest = ""

    def __call__(self, buffer: Any) -> BytesT:
        hashing = HASHING.submit(lambda: hashlib.sha256(buffer).hexdigest())
        try:
            return self.into(buffer)
        finally:
            self.digest = hashing.result()


def _payload(obj: Any, fmt: ModelFormat) -> bytes:
    raw = isinstance(obj, bytes | bytearray | memoryview)
    data = bytes(obj) if raw else dumps_object(obj, fmt)
    if not data:
        raise InvalidInputError("checkpoint bytes are empty")
    return data


def millis(value: dt.datetime) -> dt.datetime:
    """Timestamp columns hold milliseconds: what we return equals what is read back."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
