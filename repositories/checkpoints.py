"""The checkpoint store: save, verify, load, list, deploy, sign and prune model and
agent checkpoints (tables ``model_checkpoints`` and ``agent_checkpoints``).

Why it works the way it does:

* **Inline or object store.** Checkpoints up to ``inline_max_bytes`` (raw size)
  are kept base64 in the row itself (``storage="inline"``): one INSERT, nothing
  else to back up. ClickHouse does the base64 both ways (``base64Encode`` on a
  raw-bytes insert, ``base64Decode`` on a raw-bytes read), so Python never
  encodes them. Larger ones go to an :class:`~repositories.object_store.ObjectStore`
  (a local directory by default, or S3) and the row keeps ``storage_uri``. The
  object is written before the row, so a row never points at a missing object.
* **Integrity before deserialization.** Every row records ``size_bytes`` and the
  ``sha256`` of the raw bytes; loading recomputes it and raises
  :class:`ChecksumMismatchError` on a mismatch.
* **No code from the database.** The hash lives in the same row as the bytes, so
  whoever can write the table can write a matching one. Formats that run code on
  load (:data:`~repositories.serialization.CODE_FORMATS`: pickle, joblib, SB3's
  zip) are therefore signed at save with a key that is not in the database
  (:mod:`repositories.signing`) and refused, before their bytes are even read,
  when the signature does not verify. Data-only formats need no signature.
  :meth:`CheckpointRepository.load_checkpoint` returns
  :class:`~repositories.serialization.CheckpointBytes`: the bytes with the format
  of the row they came from, which is what the deserializers go by.
* **Companion blobs.** An agent checkpoint's replay buffer (off-policy resume) is
  saved, hash-checked, loaded and deleted here, with its checkpoint.
* **Listing never loads blobs.** Metadata reads select explicit columns, never
  ``model_binary``/``agent_binary``.
* **A change is a new row.** Deployment changes and signatures re-insert the
  row (copied inside ClickHouse, blob included) with a strictly newer
  ``updated_at``; reads use ``FINAL``. Deletion is a lightweight ``DELETE FROM``,
  then the object is removed.
* **One implementation, two tables.** :class:`CheckpointRepository` is generic;
  :class:`ModelCheckpointRepository` and :class:`AgentCheckpointRepository` only
  name their columns and add their own ``save_checkpoint`` keywords.

Before migration 0002 an agent checkpoint's kind was kept in ``metrics_json`` under
:data:`KIND_METRIC_KEY`; 0002 moved it to the ``checkpoint_kind`` column, and the
key stays reserved.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import json
import logging
import math
import numbers
import re
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from sqlalchemy import func

from repositories import signing
from repositories.base import Repository, next_version, utcnow
from repositories.errors import InvalidInputError, NotFoundError, describe_validation_error
from repositories.object_store import ObjectStore, ObjectStoreError, object_store_from_uri
from repositories.records import MAX_NAME_LENGTH, Record, UtcDatetime
from repositories.runs import AgentRunRepository, TrainingRunRepository, _RunRepository, _uuid
from repositories.serialization import (
    CODE_FORMATS,
    FILE_EXTENSIONS,
    OBJECT_FORMATS,
    CheckpointBytes,
    CorruptCheckpointError,
    UntrustedCheckpointError,
    dumps_object,
    loads_object,
)
from suho_models import AgentCheckpoint as AgentCheckpointModel
from suho_models import ModelCheckpoint as ModelCheckpointModel
from suho_models.db import Database
from suho_models.enums import (
    AgentType,
    CheckpointKind,
    DeploymentStatus,
    ModelFormat,
    ModelType,
    StorageKind,
)
from suho_models.settings import Settings, get_settings

logger = logging.getLogger(__name__)

DEFAULT_INLINE_MAX_BYTES: int = Settings.model_fields["checkpoint_inline_max_bytes"].default
"""Raw checkpoints up to this size (100 MiB, the seed's threshold) are stored inline."""

KIND_METRIC_KEY = "checkpoint_kind"
"""Where an agent checkpoint's kind lived in ``metrics_json`` before 0002 (reserved)."""

SERIALIZED_FORMATS = OBJECT_FORMATS
"""Formats this module serializes and deserializes; the others are library-native bytes."""

DEPLOY_STAGES = (DeploymentStatus.STAGING, DeploymentStatus.PRODUCTION)
LIVE_STATUSES = frozenset(DEPLOY_STAGES)

REPLAY_BUFFER_PREFIX = "agent_replay_buffers"
"""Object-store folder of replay buffers; a buffer's key names its SHA-256."""
REPLAY_BUFFER_SUFFIX = ".npz"
LEGACY_REPLAY_BUFFER_SUFFIX = ".pkl.zlib"
"""Pickled buffers written before arrays: load only from a signed checkpoint."""
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{64})(\.npz|\.pkl\.zlib)$")

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1


# --------------------------------------------------------------------------- errors
class ChecksumMismatchError(CorruptCheckpointError):
    """The bytes read back do not hash to the SHA-256 recorded when they were saved."""

    def __init__(self, checkpoint_id: uuid.UUID, expected: str, actual: str, size: int) -> None:
        self.checkpoint_id = checkpoint_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"checkpoint {checkpoint_id}: SHA-256 mismatch, recorded {expected}, "
            f"read {actual} ({size} bytes); refusing to load it"
        )


# --------------------------------------------------------------------------- records
class CheckpointRecord(Record):
    """A checkpoint's metadata (never its bytes): the one record type of both tables.

    :class:`ModelCheckpointInfo` and :class:`AgentCheckpointInfo` add their table's
    columns; ``name``, ``step``, ``format`` and ``kind`` read the same on both.
    """

    metric_fields: ClassVar[tuple[str, ...]] = ()

    checkpoint_id: uuid.UUID
    run_id: uuid.UUID
    checkpoint_kind: CheckpointKind = CheckpointKind.INTERMEDIATE
    size_bytes: int
    sha256: str
    storage: StorageKind
    storage_uri: str = ""
    metrics: dict[str, float | int | None] = Field(default_factory=dict)
    deployment_status: DeploymentStatus = DeploymentStatus.NOT_DEPLOYED
    deployed_at: UtcDatetime | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    signature: str = ""

    def summary(self) -> dict[str, Any]:
        """The table-neutral view (name, kind, step, format), JSON-ready: what a listing of
        both tables' checkpoints side by side shows."""
        data = self.model_dump(mode="json")
        return {
            "checkpoint_id": data["checkpoint_id"],
            "run_id": data["run_id"],
            "name": self.name,
            "kind": self.kind.value,
            "step": self.step,
            "format": self.format.value,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "storage": data["storage"],
            "storage_uri": self.storage_uri,
            "metrics": data["metrics"],
            "deployment_status": data["deployment_status"],
            "deployed_at": data["deployed_at"],
            "created_at": data["created_at"],
            "updated_at": data["updated_at"],
        }

    # Table-neutral names, for code that handles both tables.
    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def step(self) -> int:
        raise NotImplementedError

    @property
    def format(self) -> ModelFormat:
        raise NotImplementedError

    @property
    def kind(self) -> CheckpointKind:
        return self.checkpoint_kind

    @property
    def order_key(self) -> tuple[Any, ...]:
        """Training progress: what "newest" means for ``latest`` and ``prune``."""
        return (self.step, self.created_at)

    def metric(self, name: str) -> float | None:
        """A metric by name, column first, then ``metrics``; None if absent or NaN."""
        value = getattr(self, name) if name in self.metric_fields else self.metrics.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return float(value)


class ModelCheckpointInfo(CheckpointRecord):
    """A ``model_checkpoints`` row without ``model_binary``."""

    metric_fields: ClassVar[tuple[str, ...]] = ("train_loss", "val_loss", "val_accuracy")

    model_name: str
    model_type: ModelType
    iteration: int
    model_format: ModelFormat
    train_loss: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None

    @property
    def name(self) -> str:
        return self.model_name

    @property
    def step(self) -> int:
        return self.iteration

    @property
    def format(self) -> ModelFormat:
        return self.model_format


class AgentCheckpointInfo(CheckpointRecord):
    """An ``agent_checkpoints`` row without ``agent_binary``."""

    metric_fields: ClassVar[tuple[str, ...]] = ("mean_reward", "sharpe_ratio")

    agent_type: AgentType
    episode_number: int
    timestep: int
    agent_format: ModelFormat
    replay_buffer_uri: str = ""
    mean_reward: float | None = None
    sharpe_ratio: float | None = None

    @property
    def name(self) -> str:
        return self.agent_type.value

    @property
    def step(self) -> int:
        return self.episode_number

    @property
    def format(self) -> ModelFormat:
        return self.agent_format

    @property
    def order_key(self) -> tuple[Any, ...]:
        return (self.episode_number, self.timestep, self.created_at)


InfoT = TypeVar("InfoT", bound=CheckpointRecord)
M = TypeVar("M", bound=BaseModel)
BytesT = TypeVar("BytesT", bound=bytes)


# --------------------------------------------------------------------------- validation
def _integral(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError("expected an integer")
    return int(value)


def _metric_value(value: Any) -> float | int | None:
    """Metric values: numbers (NaN and inf kept: a diverged loss is a result) or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError("expected a number")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


Counter32 = Annotated[int, BeforeValidator(_integral), Field(ge=0, le=UINT32_MAX)]
Counter64 = Annotated[int, BeforeValidator(_integral), Field(ge=0, le=UINT64_MAX)]
MetricName = Annotated[str, Strict(), StringConstraints(min_length=1)]
MetricValue = Annotated[Any, BeforeValidator(_metric_value)]


class _SaveRequest(BaseModel):
    """What ``save_checkpoint`` is given, validated before anything is written."""

    model_config = ConfigDict(extra="forbid")

    format: ModelFormat
    kind: CheckpointKind = CheckpointKind.INTERMEDIATE
    metrics: dict[MetricName, MetricValue] = Field(default_factory=dict)

    @field_validator("metrics", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("metrics")
    @classmethod
    def _reserved(cls, value: dict[str, Any]) -> dict[str, Any]:
        if KIND_METRIC_KEY in value:  # read back as the pre-0002 kind, so reserved
            raise ValueError(f"{KIND_METRIC_KEY!r} is reserved, pass kind= instead")
        return value


class _ModelSave(_SaveRequest):
    iteration: Counter32 = 0


class _AgentSave(_SaveRequest):
    episode_number: Counter32 = 0
    timestep: Counter64 = 0


class _PruneRequest(BaseModel):
    keep_last: Annotated[int, Strict(), Field(ge=0)]
    kind: CheckpointKind
    mode: Literal["min", "max"]


def _valid(model: type[M], what: str, **values: Any) -> M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_error(exc, what)) from None


def _one(type_: Any, value: Any, field: str) -> Any:
    """One value checked against a type; the error names the field and the value."""
    try:
        return TypeAdapter(type_).validate_python(value)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise InvalidInputError(f"{field}: {reason} (got {value!r:.80})") from None


def _stage(value: Any) -> DeploymentStatus:
    try:
        stage = DeploymentStatus(value)
    except ValueError:
        stage = None
    if stage not in DEPLOY_STAGES:
        allowed = ", ".join(s.value for s in DEPLOY_STAGES)
        raise InvalidInputError(f"stage: expected one of {allowed} (got {value!r})")
    return stage


# --------------------------------------------------------------------------- repository
class CheckpointRepository(Repository[InfoT], Generic[InfoT]):
    """Checkpoints of one table; subclasses name the columns.

    ``store`` receives checkpoints above ``inline_max_bytes`` and serves their
    reads (default: ``<data_dir>/objects``, made on first use).
    """

    run_repository: ClassVar[type[_RunRepository[Any]]]
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
        self._key: bytes | None = None

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            settings = get_settings()
            self._store = object_store_from_uri(
                settings.object_store_url, endpoint_url=settings.s3_endpoint_url
            )
        return self._store

    @property
    def key(self) -> bytes:
        """The signing key, read (or made) the first time a signature is needed."""
        if self._key is None:
            self._key = signing.checkpoint_key()
        return self._key

    # ------------------------------------------------------------------ columns
    @property
    def _info_columns(self) -> list[Any]:
        return [c for c in self.table.columns if c.name != self.binary_column]

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

    def _companion_uri(self, row: Mapping[str, Any]) -> str:
        return ""

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

    # ------------------------------------------------------------------ save
    def _save(
        self,
        run_id: uuid.UUID | str,
        obj_or_bytes: Any,
        request: _SaveRequest,
        *,
        columns: Mapping[str, Any],
        companion: bytes | None = None,
    ) -> InfoT:
        """Validate everything, write the bytes (objects first), then the row.

        ``run_id`` must be a known run: the subclasses look it up first.
        """
        fmt = request.format
        run_key = _uuid(run_id, "run_id")
        payload = _payload(obj_or_bytes, fmt)

        hashing = _HASHING.submit(lambda: hashlib.sha256(payload).hexdigest())
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
            "created_at": _millis(now),
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
            row["signature"] = (
                signing.sign(self._signed_fields(row), self.key) if fmt in CODE_FORMATS else ""
            )
            if inline:
                self.db.insert_row_with_blob(
                    self.table.name, row, self.binary_column, payload, encode="base64Encode"
                )
            else:
                self._insert_rows([{**row, self.binary_column: ""}])
        except BaseException:
            hashing.cancel()
            for uri in written:
                self._delete_object(checkpoint_id, uri)
            raise
        return self._to_info(row)

    def _put_companion(self, run_id: uuid.UUID, row: dict[str, Any], data: bytes) -> str:
        raise InvalidInputError(f"{self.table.name}: checkpoints have no companion blobs")

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

    def _meta_row(self, checkpoint_id: uuid.UUID | str) -> Mapping[str, Any]:
        key = _uuid(checkpoint_id, "checkpoint_id")
        rows = self._select(self.table.c.checkpoint_id == key, columns=self._info_columns, limit=1)
        if not rows:
            raise NotFoundError(f"{self.table.name}: no checkpoint with checkpoint_id {key}")
        row: Mapping[str, Any] = rows[0]
        return row

    def _verified_bytes(self, row: Mapping[str, Any], into: Callable[[Any], BytesT]) -> BytesT:
        """The row's bytes as ``into`` builds them from the buffer they arrive in
        (copied once: a checkpoint can be most of the memory a process touches),
        once their SHA-256 matches the row's."""
        checkpoint_id = row["checkpoint_id"]
        hashed = _CopyAndHash(into)
        if row["storage"] == StorageKind.INLINE.value:
            data = self._inline_bytes(row, hashed)
        else:
            data = hashed(
                self._store_for(checkpoint_id, row["storage_uri"]).get(row["storage_uri"])
            )
        if hashed.digest != row["sha256"]:
            raise ChecksumMismatchError(checkpoint_id, row["sha256"], hashed.digest, len(data))
        return data

    def _inline_bytes(self, row: Mapping[str, Any], into: Callable[[Any], BytesT]) -> BytesT:
        """The row's base64, decoded by ClickHouse and sent as raw bytes."""
        column = f"`{self.binary_column}`"
        data = self.db.read_blob(
            f"SELECT tryBase64Decode({column}) "
            f"FROM `{self.table.name}` FINAL "
            "PREWHERE run_id = %(run_id)s AND checkpoint_id = %(checkpoint_id)s LIMIT 1",
            {"run_id": row["run_id"], "checkpoint_id": row["checkpoint_id"]},
            into,
            size_hint=row["size_bytes"] or None,
        )
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

    # ------------------------------------------------------------------ signing
    def sign(
        self, checkpoint_id: uuid.UUID | str, *, expected_sha256: str | None = None
    ) -> InfoT | None:
        """Sign a checkpoint stored before signatures existed (its hash is checked first).

        For a trusted operator, once, on a store nobody else could write yet: a
        signature vouches that the bytes are ours. Returns the new row's record, or
        None when it needs none (a data-only format, or already validly signed).
        ``expected_sha256``: the hash the operator was shown; a row changed since
        then is refused. Which rows may be signed at all: :mod:`.legacy_signing`.
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

    def _verified_companion(self, row: Mapping[str, Any], uri: str) -> bytes:
        raise NotImplementedError

    def _new_version(self, row: Mapping[str, Any], changes: Mapping[str, Any]) -> InfoT:
        """Insert a newer version of a row, copied inside ClickHouse (blob included)."""
        from suho_models.db.chdb_dbapi import render_literal

        updated_at = next_version(_as_utc(row["updated_at"]))
        values = {**changes, "updated_at": updated_at}
        replace = ", ".join(f"{render_literal(v)} AS `{k}`" for k, v in values.items())
        params = {"run_id": row["run_id"], "checkpoint_id": row["checkpoint_id"]}
        self.db.execute(
            f"INSERT INTO `{self.table.name}` SELECT * REPLACE ({replace.replace('%', '%%')}) "
            f"FROM `{self.table.name}` FINAL "
            "PREWHERE run_id = %(run_id)s AND checkpoint_id = %(checkpoint_id)s",
            params,
        )
        return self._to_info({**row, **values})

    # ------------------------------------------------------------------ metadata
    def _to_info(self, row: Mapping[str, Any]) -> InfoT:
        data = {k: v for k, v in row.items() if k != self.binary_column}
        raw = data.pop("metrics_json", "") or "{}"
        metrics = json.loads(raw) if isinstance(raw, str) else dict(raw)
        metrics.pop(KIND_METRIC_KEY, None)  # rows from before 0002; the column holds it
        data["metrics"] = metrics
        return self.record.model_validate(data)

    def get(self, checkpoint_id: uuid.UUID | str) -> InfoT:
        """Metadata of one checkpoint (no bytes); NotFoundError if unknown."""
        return self._to_info(self._meta_row(checkpoint_id))

    def list(
        self,
        run_id: uuid.UUID | str,
        *,
        kind: CheckpointKind | str | None = None,
        deployment_status: DeploymentStatus | str | None = None,
    ) -> list[InfoT]:
        """A run's checkpoints, oldest first (by training progress), without bytes."""
        key = self.runs.require(run_id)
        c = self.table.c
        where = [c.run_id == key]
        if kind is not None:
            where.append(c[self.kind_column] == _one(CheckpointKind, kind, "kind").value)
        if deployment_status is not None:
            status = _one(DeploymentStatus, deployment_status, "deployment_status")
            where.append(c.deployment_status == status.value)
        rows = self._select(*where, columns=self._info_columns, order_by=self._progress())
        return [self._to_info(r) for r in rows]

    def _progress(self, *, descending: bool = False) -> builtins.list[Any]:
        """Training progress as an ORDER BY: what "oldest" and "newest" mean."""
        c = self.table.c
        columns = [*(c[name] for name in self.step_columns), c.created_at, c.checkpoint_id]
        return [col.desc() if descending else col.asc() for col in columns]

    def latest(self, run_id: uuid.UUID | str) -> InfoT | None:
        """The most advanced checkpoint of a run (step, then save time); None if none."""
        key = self.runs.require(run_id)
        rows = self._select(
            self.table.c.run_id == key,
            columns=self._info_columns,
            order_by=self._progress(descending=True),
            limit=1,
        )
        return self._to_info(rows[0]) if rows else None

    def best(
        self, run_id: uuid.UUID | str, metric: str, mode: Literal["min", "max"] = "min"
    ) -> InfoT | None:
        """The run's checkpoint with the lowest (``min``) or highest (``max``) metric.

        ``metric`` is a metric column (``val_loss``, ``mean_reward``, ...) or a key
        of ``metrics``. Checkpoints without the metric, or with NaN, are skipped;
        ties go to the earliest checkpoint. None when the run has no checkpoints;
        InvalidInputError when none of them has the metric (likely a typo).
        """
        if mode not in ("min", "max"):
            raise InvalidInputError(f"mode: expected 'min' or 'max' (got {mode!r})")
        if not isinstance(metric, str) or not metric:
            raise InvalidInputError(f"metric: expected a metric name (got {metric!r})")
        key = self.runs.require(run_id)
        c = self.table.c
        value = (
            c[metric]
            if metric in self.record.metric_fields
            # Not JSONExtract: metrics_json keeps NaN/inf as Python writes them, which a
            # strict JSON parser refuses for the whole document.
            else func.toFloat64OrNull(
                func.trimBoth(func.simpleJSONExtractRaw(c.metrics_json, metric))
            )
        )
        rows = self._select(
            c.run_id == key,
            value.is_not(None),
            func.isNaN(value) == 0,
            columns=self._info_columns,
            order_by=[value.asc() if mode == "min" else value.desc(), *self._progress()],
            limit=1,
        )
        if rows:
            return self._to_info(rows[0])
        infos = self.list(run_id)
        if not infos:
            return None
        known = sorted(  # no checkpoint has it: name the metrics they do have
            {k for i in infos for k in i.metrics}
            | {f for i in infos for f in i.metric_fields if getattr(i, f) is not None}
        )
        raise InvalidInputError(
            f"metric {metric!r}: not recorded on any checkpoint of run {infos[0].run_id} "
            f"(known: {', '.join(known) or 'none'})"
        )

    # ------------------------------------------------------------------ deployment
    def deploy(self, checkpoint_id: uuid.UUID | str, stage: DeploymentStatus | str) -> InfoT:
        """Put a checkpoint in ``staging`` or ``production``.

        The checkpoint that held that stage for the same name (model name, or
        agent type) moves to ``archived``. Written as new row versions, copied
        inside ClickHouse (blob included, since FINAL keeps only the newest).
        """
        target = _stage(stage)
        row = self._meta_row(checkpoint_id)
        if row["deployment_status"] == target.value:
            return self._to_info(row)
        c = self.table.c
        holders = self._select(
            c[self.name_column] == row[self.name_column],
            c.deployment_status == target.value,
            c.checkpoint_id != row["checkpoint_id"],
            columns=self._info_columns,
        )
        for holder in holders:
            self._new_version(holder, {"deployment_status": DeploymentStatus.ARCHIVED.value})
        return self._new_version(
            row, {"deployment_status": target.value, "deployed_at": _millis(utcnow())}
        )

    def deployed(
        self, name_or_type: str, stage: DeploymentStatus | str = DeploymentStatus.PRODUCTION
    ) -> InfoT | None:
        """The checkpoint currently in ``stage`` for a model name / agent type, or None."""
        target = _stage(stage)
        c = self.table.c
        rows = self._select(
            c[self.name_column] == str(name_or_type),
            c.deployment_status == target.value,
            columns=self._info_columns,
            order_by=[c.deployed_at.desc(), c.updated_at.desc()],
            limit=1,
        )
        return self._to_info(rows[0]) if rows else None

    # ------------------------------------------------------------------ delete / prune
    def delete(self, checkpoint_id: uuid.UUID | str, *, force: bool = False) -> InfoT:
        """Remove a checkpoint: every version of its row, then its objects.

        A checkpoint in staging or production is refused unless ``force``: deleting
        it would leave the stage pointing at nothing. The row goes first, so no
        row ever points at a missing object; an object left behind by a failed
        delete is only logged.
        """
        info = self.get(checkpoint_id)
        if info.deployment_status in LIVE_STATUSES and not force:
            raise InvalidInputError(
                f"checkpoint {info.checkpoint_id} is in {info.deployment_status.value}: "
                "deploy another one first, or pass force=True"
            )
        self._delete_rows_and_objects(info.run_id, [info])
        return info

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

    def _companion_uris(self, info: InfoT) -> builtins.list[str]:
        """Objects that belong to a checkpoint besides its own bytes: deleted with it."""
        return []

    def _delete_object(self, checkpoint_id: uuid.UUID, uri: str) -> None:
        try:
            self._store_for(checkpoint_id, uri).delete(uri)
        except ObjectStoreError as exc:
            logger.warning("checkpoint %s: object %s left behind: %s", checkpoint_id, uri, exc)

    def prune(
        self,
        run_id: uuid.UUID | str,
        keep_last: int = 3,
        kind: CheckpointKind | str = CheckpointKind.INTERMEDIATE,
        *,
        metric: str | None = None,
        mode: Literal["min", "max"] = "min",
    ) -> builtins.list[uuid.UUID]:
        """Delete all but the ``keep_last`` newest checkpoints of ``kind`` in a run.

        Always kept: checkpoints that are or were deployed (staging, production,
        archived: the rollback history) and, when ``metric`` is given, the run's
        best checkpoint by it. Returns the ids deleted.
        """
        request = _valid(_PruneRequest, "prune", keep_last=keep_last, kind=kind, mode=mode)
        infos = self.list(run_id)
        protected = {
            i.checkpoint_id
            for i in infos
            if i.deployment_status is not DeploymentStatus.NOT_DEPLOYED
        }
        if metric is not None:
            best = self.best(run_id, metric, request.mode)
            if best is not None:
                protected.add(best.checkpoint_id)
        candidates = [i for i in reversed(infos) if i.kind is request.kind]
        doomed = [i for i in candidates[request.keep_last :] if i.checkpoint_id not in protected]
        if doomed:
            self._delete_rows_and_objects(doomed[0].run_id, doomed)
        return [i.checkpoint_id for i in doomed]


class ModelCheckpointRepository(CheckpointRepository[ModelCheckpointInfo]):
    """Supervised model checkpoints (``model_checkpoints``)."""

    model = ModelCheckpointModel
    record = ModelCheckpointInfo
    run_repository = TrainingRunRepository
    binary_column = "model_binary"
    format_column = "model_format"
    name_column = "model_name"
    step_columns = ("iteration",)

    def save_checkpoint(
        self,
        run_id: uuid.UUID | str,
        obj_or_bytes: Any,
        format: ModelFormat | str,
        metrics: Mapping[str, Any] | None = None,
        *,
        iteration: int = 0,
        kind: CheckpointKind | str = CheckpointKind.INTERMEDIATE,
        model_name: str | None = None,
    ) -> ModelCheckpointInfo:
        """Save a model of a training run.

        ``obj_or_bytes``: bytes are stored as they are (library-native formats:
        ``booster.save_raw("ubj")``, LightGBM's model string, ...); an object is
        serialized here for ``pickle`` and ``joblib`` only (those are signed).
        ``model_name`` (what deployment is keyed on) defaults to the run's name;
        ``model_type`` is the run's. Metrics named like a metric column also fill
        that column.
        """
        request = _valid(
            _ModelSave, "checkpoint", format=format, kind=kind, metrics=metrics, iteration=iteration
        )
        run = self.runs.get(run_id)
        name = run.run_name if model_name is None else model_name
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
            raise InvalidInputError(
                f"model_name: expected 1 to {MAX_NAME_LENGTH} characters (got {name!r:.80})"
            )
        return self._save(
            run.run_id,
            obj_or_bytes,
            request,
            columns={"model_name": name, "model_type": run.model_type.value},
        )


class AgentCheckpointRepository(CheckpointRepository[AgentCheckpointInfo]):
    """RL agent checkpoints (``agent_checkpoints``), with their replay buffers."""

    model = AgentCheckpointModel
    record = AgentCheckpointInfo
    run_repository = AgentRunRepository
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
        request = _valid(
            _AgentSave,
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
            columns={"agent_type": run.agent_type.value, "replay_buffer_uri": ""},
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


def sign_checkpoints(
    db: Database,
    run_id: uuid.UUID | str | None = None,
    *,
    store: ObjectStore | None = None,
    confirm: Callable[[Any], bool] | None = None,
) -> list[uuid.UUID]:
    """Sign the checkpoints of one run, or of every run (None), stored before
    signatures; only those :mod:`repositories.legacy_signing`'s rule allows."""
    from repositories.legacy_signing import sign_legacy

    return sign_legacy(db, run_id, store=store, confirm=confirm)


# --------------------------------------------------------------------------- helpers
_HASHING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="suho-sha256")
"""Where a checkpoint is hashed while it is being copied (hashlib lets go of the
GIL; the copy into a ``bytes`` object does not), so verifying costs no extra pass."""


class _CopyAndHash(Generic[BytesT]):
    """``into(buffer)`` with the buffer's SHA-256 computed meanwhile on another thread."""

    def __init__(self, into: Callable[[Any], BytesT]) -> None:
        self.into = into
        self.digest = ""

    def __call__(self, buffer: Any) -> BytesT:
        hashing = _HASHING.submit(lambda: hashlib.sha256(buffer).hexdigest())
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


def _millis(value: dt.datetime) -> dt.datetime:
    """Timestamp columns hold milliseconds: what we return equals what is read back."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


__all__ = [
    "DEFAULT_INLINE_MAX_BYTES",
    "KIND_METRIC_KEY",
    "REPLAY_BUFFER_PREFIX",
    "AgentCheckpointInfo",
    "AgentCheckpointRepository",
    "CheckpointBytes",
    "CheckpointRecord",
    "CheckpointRepository",
    "ChecksumMismatchError",
    "CorruptCheckpointError",
    "ModelCheckpointInfo",
    "ModelCheckpointRepository",
    "UntrustedCheckpointError",
    "sign_checkpoints",
]
