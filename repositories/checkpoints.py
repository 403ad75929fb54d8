"""The checkpoint store: save, verify, load, list, deploy and prune model and agent
checkpoints (tables ``model_checkpoints`` and ``agent_checkpoints``).

Why it works the way it does:

* **Inline or object store.** Checkpoints up to ``inline_max_bytes`` (raw size)
  are kept base64 in the row itself (``storage="inline"``): one INSERT, nothing
  else to back up. Larger ones go to an :class:`~repositories.object_store.ObjectStore`
  (a local directory by default, or S3) and the row keeps ``storage_uri``. The
  object is written before the row, so a row never points at a missing object.
* **Integrity before deserialization.** Every row records ``size_bytes`` and the
  ``sha256`` of the raw bytes. Loading recomputes the hash *before* anything is
  deserialized and raises :class:`ChecksumMismatchError` on a mismatch.
  Unpickling runs arbitrary code chosen by whoever wrote the bytes, so pickle and
  joblib payloads are only unpickled once they are known to be the bytes this
  store wrote (the hash lives in the table, not next to the object). This guards
  against a corrupted or tampered object store or blob; whoever can write rows
  to the table itself can also write a matching hash, so table write access
  must stay as trusted as the code that loads the checkpoints.
* **Listing never loads blobs.** Metadata reads select explicit columns, never
  ``model_binary``/``agent_binary``.
* **A change is a new row.** Deployment changes re-insert the whole row (blob
  included) with a strictly newer ``updated_at``; reads use ``FINAL``. Deletion
  is a lightweight ``DELETE FROM``, then the object is removed.
* **One implementation, two tables.** :class:`CheckpointRepository` is generic;
  :class:`ModelCheckpointRepository` and :class:`AgentCheckpointRepository` only
  name their columns and add their own ``save_checkpoint`` keywords.

``agent_checkpoints`` has no ``checkpoint_kind`` column: an agent checkpoint's
kind is kept in its ``metrics_json`` under :data:`KIND_METRIC_KEY` and taken out
of ``metrics`` again when read.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import io
import json
import logging
import math
import numbers
import pickle
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import Field

from repositories.base import Repository, next_version, utcnow
from repositories.errors import InvalidInputError, NotFoundError, RepositoryError
from repositories.object_store import ObjectStore, ObjectStoreError, object_store_from_uri
from repositories.records import MAX_NAME_LENGTH, CheckpointInfo, Record, UtcDatetime
from repositories.runs import AgentRunRepository, TrainingRunRepository, _RunRepository, _uuid
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
"""Where an agent checkpoint's kind lives in ``metrics_json`` (no column for it)."""

SERIALIZED_FORMATS = frozenset({ModelFormat.PICKLE, ModelFormat.JOBLIB})
"""Formats this module serializes and deserializes; the others are library-native bytes."""

DEPLOY_STAGES = (DeploymentStatus.STAGING, DeploymentStatus.PRODUCTION)
LIVE_STATUSES = frozenset(DEPLOY_STAGES)

FILE_EXTENSIONS: dict[ModelFormat, str] = {
    ModelFormat.PICKLE: "pkl",
    ModelFormat.JOBLIB: "joblib",
    ModelFormat.ONNX: "onnx",
    ModelFormat.XGBOOST_UBJSON: "ubj",
    ModelFormat.XGBOOST_JSON: "json",
    ModelFormat.LIGHTGBM_TEXT: "txt",
    ModelFormat.CATBOOST_CBM: "cbm",
    ModelFormat.SB3_ZIP: "zip",
    ModelFormat.RAW: "bin",
}

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1


# --------------------------------------------------------------------------- errors
class CorruptCheckpointError(RepositoryError):
    """The stored bytes of a checkpoint cannot be trusted; nothing was deserialized."""


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
    """Metadata shared by both checkpoint tables (never the bytes)."""

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

    def to_info(self) -> CheckpointInfo:
        """The table-neutral :class:`~repositories.records.CheckpointInfo`."""
        return CheckpointInfo(
            checkpoint_id=self.checkpoint_id,
            run_id=self.run_id,
            name=self.name,
            kind=self.kind.value,
            step=self.step,
            format=self.format.value,
            size_bytes=self.size_bytes,
            sha256=self.sha256,
            storage=self.storage.value,
            storage_uri=self.storage_uri,
            metrics=dict(self.metrics),
            deployment_status=self.deployment_status,
            deployed_at=self.deployed_at,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


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
    kind_column: ClassVar[str | None]
    """None: the kind is kept in ``metrics_json`` (see :data:`KIND_METRIC_KEY`)."""
    step_columns: ClassVar[tuple[tuple[str, int], ...]]
    """(column, maximum) of the progress counters, most significant first."""

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

    # ------------------------------------------------------------------ columns
    @property
    def _info_columns(self) -> list[Any]:
        return [c for c in self.table.columns if c.name != self.binary_column]

    def _blob_columns(self) -> list[Any]:
        c = self.table.c
        return [
            c.checkpoint_id,
            c.run_id,
            c[self.format_column],
            c.size_bytes,
            c.sha256,
            c.storage,
            c.storage_uri,
            c[self.binary_column],
        ]

    # ------------------------------------------------------------------ save
    def _save(
        self,
        run_id: uuid.UUID | str,
        obj_or_bytes: Any,
        format: ModelFormat | str,
        metrics: Mapping[str, Any] | None,
        *,
        kind: CheckpointKind | str,
        steps: Mapping[str, Any],
        columns: Mapping[str, Any],
    ) -> InfoT:
        """Validate everything, write the bytes (object first), then the row.

        ``run_id`` must be a known run: the subclasses look it up first.
        """
        fmt = _enum(ModelFormat, format, "format")
        checkpoint_kind = _enum(CheckpointKind, kind, "kind")
        counters = {
            name: _counter(steps.get(name, 0), name, high) for name, high in self.step_columns
        }
        values = _metrics(metrics)
        if KIND_METRIC_KEY in values:  # read back as the pre-0002 kind, so reserved
            raise InvalidInputError(f"metrics: {KIND_METRIC_KEY!r} is reserved, pass kind= instead")
        run_key = _uuid(run_id, "run_id")
        payload = _serialize(obj_or_bytes, fmt)

        checkpoint_id = uuid.uuid4()
        now = utcnow()
        stored = dict(values)
        if self.kind_column is None:
            stored[KIND_METRIC_KEY] = checkpoint_kind.value
        row: dict[str, Any] = {
            "checkpoint_id": checkpoint_id,
            "run_id": run_key,
            **columns,
            **counters,
            self.format_column: fmt.value,
            "size_bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "metrics_json": json.dumps(stored, sort_keys=True, allow_nan=True),
            "deployment_status": DeploymentStatus.NOT_DEPLOYED.value,
            "deployed_at": None,
            "signature": "",
            "created_at": _millis(now),
            "updated_at": now,
        }
        if self.kind_column is not None:
            row[self.kind_column] = checkpoint_kind.value
        for name in self.record.metric_fields:  # type: ignore[attr-defined]
            value = values.get(name)
            row[name] = None if value is None else float(value)

        uri = ""
        if len(payload) <= self.inline_max_bytes:
            row.update(storage=StorageKind.INLINE.value, storage_uri="")
            row[self.binary_column] = base64.b64encode(payload).decode("ascii")
        else:
            store = self.store
            ext = FILE_EXTENSIONS[fmt]
            uri = store.put(f"{self.table.name}/{run_key}/{checkpoint_id}.{ext}", payload)
            row.update(storage=store.kind.value, storage_uri=uri)
            row[self.binary_column] = ""
        try:
            self._insert_rows([row])
        except BaseException:
            if uri:
                self._delete_object(checkpoint_id, uri)
            raise
        return self._to_info(row)

    # ------------------------------------------------------------------ load
    def load_checkpoint(self, checkpoint_id: uuid.UUID | str) -> bytes:
        """The checkpoint's bytes, verified against the recorded SHA-256."""
        return self._verified_bytes(self._blob_row(checkpoint_id))

    def load_object(self, checkpoint_id: uuid.UUID | str) -> Any:
        """Deserialize a pickle/joblib checkpoint, only after its hash is verified.

        Unpickling executes code named in the bytes, so tampered or corrupted
        bytes must never reach it: :class:`ChecksumMismatchError` is raised first.
        Library-native formats are refused: load their bytes with
        :meth:`load_checkpoint` and hand them to the library.
        """
        row = self._blob_row(checkpoint_id)
        fmt = ModelFormat(row[self.format_column])
        if fmt not in SERIALIZED_FORMATS:
            raise InvalidInputError(
                f"checkpoint {row['checkpoint_id']} is {fmt.value}, a library-native format: "
                "use load_checkpoint() and the library's own loader"
            )
        data = self._verified_bytes(row)
        if fmt is ModelFormat.PICKLE:
            return pickle.loads(data)
        joblib = _import_joblib()
        return joblib.load(io.BytesIO(data))

    def _blob_row(self, checkpoint_id: uuid.UUID | str) -> Mapping[str, Any]:
        key = _uuid(checkpoint_id, "checkpoint_id")
        rows = self._select(
            self.table.c.checkpoint_id == key, columns=self._blob_columns(), limit=1
        )
        if not rows:
            raise NotFoundError(f"{self.table.name}: no checkpoint with checkpoint_id {key}")
        return rows[0]

    def _verified_bytes(self, row: Mapping[str, Any]) -> bytes:
        checkpoint_id = row["checkpoint_id"]
        if row["storage"] == StorageKind.INLINE.value:
            try:
                data = base64.b64decode(row[self.binary_column], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise CorruptCheckpointError(
                    f"checkpoint {checkpoint_id}: inline bytes are not valid base64 ({exc})"
                ) from None
        else:
            data = self._store_for(checkpoint_id, row["storage_uri"]).get(row["storage_uri"])
        actual = hashlib.sha256(data).hexdigest()
        if actual != row["sha256"]:
            raise ChecksumMismatchError(checkpoint_id, row["sha256"], actual, len(data))
        return data

    def _store_for(self, checkpoint_id: uuid.UUID, uri: str) -> ObjectStore:
        store = self.store
        if not store.owns(uri):
            raise ObjectStoreError(
                f"checkpoint {checkpoint_id} is stored at {uri}, which {store!r} does not "
                "serve; open the repository with the store it was saved to"
            )
        return store

    # ------------------------------------------------------------------ metadata
    def _to_info(self, row: Mapping[str, Any]) -> InfoT:
        data = {k: v for k, v in row.items() if k != self.binary_column}
        raw = data.pop("metrics_json", "") or "{}"
        metrics = json.loads(raw) if isinstance(raw, str) else dict(raw)
        legacy_kind = metrics.pop(KIND_METRIC_KEY, CheckpointKind.INTERMEDIATE)  # before 0002
        if self.kind_column is None:
            data["checkpoint_kind"] = legacy_kind
        data["metrics"] = metrics
        return self.record.model_validate(data)  # type: ignore[return-value]

    def get(self, checkpoint_id: uuid.UUID | str) -> InfoT:
        """Metadata of one checkpoint (no bytes); NotFoundError if unknown."""
        key = _uuid(checkpoint_id, "checkpoint_id")
        rows = self._select(self.table.c.checkpoint_id == key, columns=self._info_columns, limit=1)
        if not rows:
            raise NotFoundError(f"{self.table.name}: no checkpoint with checkpoint_id {key}")
        return self._to_info(rows[0])

    def list(
        self,
        run_id: uuid.UUID | str,
        *,
        kind: CheckpointKind | str | None = None,
        deployment_status: DeploymentStatus | str | None = None,
    ) -> list[InfoT]:
        """A run's checkpoints, oldest first (by training progress), without bytes."""
        key = self.runs.require(run_id)
        wanted_kind = None if kind is None else _enum(CheckpointKind, kind, "kind")
        wanted_status = (
            None
            if deployment_status is None
            else _enum(DeploymentStatus, deployment_status, "deployment_status")
        )
        c = self.table.c
        where = [c.run_id == key]
        if wanted_kind is not None:
            where.append(c.checkpoint_kind == wanted_kind.value)
        if wanted_status is not None:
            where.append(c.deployment_status == wanted_status.value)
        infos = [self._to_info(r) for r in self._select(*where, columns=self._info_columns)]
        return sorted(infos, key=lambda i: (*i.order_key, str(i.checkpoint_id)))

    def latest(self, run_id: uuid.UUID | str) -> InfoT | None:
        """The most advanced checkpoint of a run (step, then save time); None if none."""
        infos = self.list(run_id)
        return infos[-1] if infos else None

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
        infos = self.list(run_id)
        if not infos:
            return None
        scored = [(i.metric(metric), i) for i in infos]
        scored = [(v, i) for v, i in scored if v is not None]
        if not scored:
            known = sorted(
                {k for i in infos for k in i.metrics}
                | {f for i in infos for f in i.metric_fields if getattr(i, f) is not None}
            )
            raise InvalidInputError(
                f"metric {metric!r}: not recorded on any checkpoint of run {infos[0].run_id} "
                f"(known: {', '.join(known) or 'none'})"
            )
        pick = min if mode == "min" else max
        return pick(scored, key=lambda pair: pair[0])[1]

    # ------------------------------------------------------------------ deployment
    def deploy(self, checkpoint_id: uuid.UUID | str, stage: DeploymentStatus | str) -> InfoT:
        """Put a checkpoint in ``staging`` or ``production``.

        The checkpoint that held that stage for the same name (model name, or
        agent type) moves to ``archived``. Written as new rows (whole rows, blob
        included, since FINAL keeps only the newest) in one INSERT.
        """
        target = _stage(stage)
        key = _uuid(checkpoint_id, "checkpoint_id")
        c = self.table.c
        current = self._select(c.checkpoint_id == key, limit=1)
        if not current:
            raise NotFoundError(f"{self.table.name}: no checkpoint with checkpoint_id {key}")
        row = dict(current[0])
        if row["deployment_status"] == target.value:
            return self._to_info(row)
        holders = self._select(
            c[self.name_column] == row[self.name_column],
            c.deployment_status == target.value,
            c.checkpoint_id != key,
        )
        now = utcnow()
        changed = []
        for holder in holders:
            archived = dict(holder)
            archived["deployment_status"] = DeploymentStatus.ARCHIVED.value
            archived["updated_at"] = next_version(_as_utc(holder["updated_at"]))
            changed.append(archived)
        row.update(
            deployment_status=target.value,
            deployed_at=_millis(now),
            updated_at=next_version(_as_utc(row["updated_at"])),
        )
        changed.append(row)
        self._insert_rows(changed)
        return self._to_info(row)

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
        """Remove a checkpoint: every version of its row, then its object.

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

    def _delete_rows_and_objects(self, run_id: uuid.UUID, infos: list[InfoT]) -> None:
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

    def _companion_uris(self, info: InfoT) -> list[str]:
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
    ) -> list[uuid.UUID]:
        """Delete all but the ``keep_last`` newest checkpoints of ``kind`` in a run.

        Always kept: checkpoints that are or were deployed (staging, production,
        archived: the rollback history) and, when ``metric`` is given, the run's
        best checkpoint by it. Returns the ids deleted.
        """
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
            raise InvalidInputError(f"keep_last: expected an int >= 0 (got {keep_last!r})")
        wanted = _enum(CheckpointKind, kind, "kind")
        infos = self.list(run_id)
        protected = {
            i.checkpoint_id
            for i in infos
            if i.deployment_status is not DeploymentStatus.NOT_DEPLOYED
        }
        if metric is not None:
            best = self.best(run_id, metric, mode)
            if best is not None:
                protected.add(best.checkpoint_id)
        candidates = [i for i in reversed(infos) if i.kind is wanted]
        doomed = [i for i in candidates[keep_last:] if i.checkpoint_id not in protected]
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
    kind_column = "checkpoint_kind"
    step_columns = (("iteration", UINT32_MAX),)

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
        serialized here for ``pickle`` and ``joblib`` only. ``model_name`` (what
        deployment is keyed on) defaults to the run's name; ``model_type`` is the
        run's. Metrics named like a metric column also fill that column.
        """
        run = self.runs.get(run_id)
        name = run.run_name if model_name is None else model_name
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
            raise InvalidInputError(
                f"model_name: expected 1 to {MAX_NAME_LENGTH} characters (got {name!r:.80})"
            )
        return self._save(
            run.run_id,
            obj_or_bytes,
            format,
            metrics,
            kind=kind,
            steps={"iteration": iteration},
            columns={"model_name": name, "model_type": run.model_type.value},
        )


class AgentCheckpointRepository(CheckpointRepository[AgentCheckpointInfo]):
    """RL agent checkpoints (``agent_checkpoints``)."""

    model = AgentCheckpointModel
    record = AgentCheckpointInfo
    run_repository = AgentRunRepository
    binary_column = "agent_binary"
    format_column = "agent_format"
    name_column = "agent_type"
    kind_column = "checkpoint_kind"
    step_columns = (("episode_number", UINT32_MAX), ("timestep", UINT64_MAX))

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
        replay_buffer_uri: str = "",
    ) -> AgentCheckpointInfo:
        """Save an agent of an RL run (SB3 agents: the bytes of ``model.save()``'s zip).

        ``agent_type`` is the run's; deployment is keyed on it. ``replay_buffer_uri``
        (off-policy resume) is recorded, and its object is deleted with the checkpoint.
        """
        run = self.runs.get(run_id)
        if not isinstance(replay_buffer_uri, str):
            raise InvalidInputError(
                f"replay_buffer_uri: expected a string (got {replay_buffer_uri!r})"
            )
        return self._save(
            run.run_id,
            obj_or_bytes,
            format,
            metrics,
            kind=kind,
            steps={"episode_number": episode_number, "timestep": timestep},
            columns={"agent_type": run.agent_type.value, "replay_buffer_uri": replay_buffer_uri},
        )

    def _companion_uris(self, info: AgentCheckpointInfo) -> list[str]:
        """The replay buffer goes with its checkpoint: nothing else can resume from it."""
        return [info.replay_buffer_uri] if info.replay_buffer_uri else []


# --------------------------------------------------------------------------- helpers
E = TypeVar("E", bound=Any)


def _enum(enum: type[E], value: Any, field: str) -> E:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum)  # type: ignore[attr-defined]
        raise InvalidInputError(f"{field}: expected one of {allowed} (got {value!r})") from None


def _stage(value: Any) -> DeploymentStatus:
    try:
        stage = DeploymentStatus(value)
    except ValueError:
        stage = None
    if stage not in DEPLOY_STAGES:
        allowed = ", ".join(s.value for s in DEPLOY_STAGES)
        raise InvalidInputError(f"stage: expected one of {allowed} (got {value!r})")
    return stage  # type: ignore[return-value]


def _counter(value: Any, field: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInputError(f"{field}: expected an integer (got {value!r})")
    if not 0 <= int(value) <= high:
        raise InvalidInputError(f"{field}: must be within [0, {high}] (got {value})")
    return int(value)


def _metrics(metrics: Mapping[str, Any] | None) -> dict[str, float | int | None]:
    """Metric names to numbers (NaN and inf kept: a diverged loss is a result)."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise InvalidInputError(
            f"metrics: expected a mapping of name to number (got {type(metrics).__name__})"
        )
    out: dict[str, float | int | None] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"metrics: names must be non-empty strings (got {name!r})")
        if value is None:
            out[name] = None
        elif isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidInputError(f"metrics.{name}: expected a number (got {value!r:.80})")
        elif isinstance(value, numbers.Integral):
            out[name] = int(value)
        else:
            out[name] = float(value)
    return out


def _serialize(obj: Any, fmt: ModelFormat) -> bytes:
    if isinstance(obj, bytes | bytearray | memoryview):
        data = bytes(obj)
    elif fmt is ModelFormat.PICKLE:
        try:
            data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"cannot pickle {type(obj).__name__}: {exc}") from None
    elif fmt is ModelFormat.JOBLIB:
        buffer = io.BytesIO()
        try:
            _import_joblib().dump(obj, buffer)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"cannot joblib-dump {type(obj).__name__}: {exc}") from None
        data = buffer.getvalue()
    else:
        raise InvalidInputError(
            f"format {fmt.value!r} is library-native: pass the bytes the library writes "
            f"(got a {type(obj).__name__}); only pickle and joblib objects are serialized here"
        )
    if not data:
        raise InvalidInputError("checkpoint bytes are empty")
    return data


def _import_joblib() -> Any:
    try:
        import joblib
    except ImportError:
        raise InvalidInputError("format 'joblib' needs joblib: pip install joblib") from None
    return joblib


def _millis(value: dt.datetime) -> dt.datetime:
    """Timestamp columns hold milliseconds: what we return equals what is read back."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


__all__ = [
    "DEFAULT_INLINE_MAX_BYTES",
    "KIND_METRIC_KEY",
    "AgentCheckpointInfo",
    "AgentCheckpointRepository",
    "CheckpointRecord",
    "CheckpointRepository",
    "ChecksumMismatchError",
    "CorruptCheckpointError",
    "ModelCheckpointInfo",
    "ModelCheckpointRepository",
]
