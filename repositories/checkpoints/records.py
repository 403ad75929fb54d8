"""What a checkpoint is, as read and as written: its records, its row, the checked
requests of ``save_checkpoint`` and ``prune``, and the names both tables share.

A record never holds the bytes (listing never loads blobs); a row is exactly the
table's columns (:func:`~repositories.base.row_of`), the blob column empty: the
bytes travel apart (:mod:`repositories.checkpoints.placement`).
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import uuid
from typing import Annotated, Any, ClassVar, Literal, TypeVar

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

from repositories.errors import InvalidInputError, describe_validation_error
from repositories.records import AgentTypeName, ModelTypeName, Record, UtcDatetime
from repositories.serialization import OBJECT_FORMATS, CorruptCheckpointError
from suho_models.enums import (
    CheckpointKind,
    DeploymentStatus,
    ModelFormat,
    StorageKind,
)
from suho_models.settings import Settings

DEFAULT_INLINE_MAX_BYTES: int = Settings.model_fields["checkpoint_inline_max_bytes"].default
"""Raw checkpoints up to this size (100 MiB, the seed's threshold) are stored inline."""

KIND_METRIC_KEY = "checkpoint_kind"
"""Where an agent checkpoint's kind lived in ``metrics_json`` before 0002 (reserved)."""

SERIALIZED_FORMATS = OBJECT_FORMATS
"""Formats this module serializes and deserializes; the others are library-native bytes."""

DEPLOY_STAGES = (DeploymentStatus.STAGING, DeploymentStatus.PRODUCTION)
LIVE_STATUSES = frozenset(DEPLOY_STAGES)

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1


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
    model_type: ModelTypeName
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

    agent_type: AgentTypeName
    episode_number: int
    timestep: int
    agent_format: ModelFormat
    replay_buffer_uri: str = ""
    mean_reward: float | None = None
    sharpe_ratio: float | None = None

    @property
    def name(self) -> str:
        return str(self.agent_type)

    @property
    def step(self) -> int:
        return self.episode_number

    @property
    def format(self) -> ModelFormat:
        return self.agent_format

    @property
    def order_key(self) -> tuple[Any, ...]:
        return (self.episode_number, self.timestep, self.created_at)


# --------------------------------------------------------------------------- rows
class CheckpointRow(Record):
    """The columns both checkpoint tables have, as one INSERT writes them."""

    checkpoint_id: uuid.UUID
    run_id: uuid.UUID
    checkpoint_kind: CheckpointKind
    size_bytes: int
    sha256: str
    storage: StorageKind
    storage_uri: str
    metrics_json: str
    deployment_status: DeploymentStatus
    deployed_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    signature: str


class ModelCheckpointRow(CheckpointRow):
    """A ``model_checkpoints`` row; ``model_binary`` stays empty here (the bytes travel
    apart, or live in the object store)."""

    model_name: str
    model_type: ModelTypeName
    iteration: int
    model_format: ModelFormat
    model_binary: str = ""
    train_loss: float | None
    val_loss: float | None
    val_accuracy: float | None


class AgentCheckpointRow(CheckpointRow):
    """An ``agent_checkpoints`` row; ``agent_binary`` stays empty here."""

    agent_type: AgentTypeName
    episode_number: int
    timestep: int
    agent_format: ModelFormat
    agent_binary: str = ""
    replay_buffer_uri: str
    mean_reward: float | None
    sharpe_ratio: float | None


InfoT = TypeVar("InfoT", bound=CheckpointRecord)
M = TypeVar("M", bound=BaseModel)


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


class SaveRequest(BaseModel):
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


class ModelSave(SaveRequest):
    iteration: Counter32 = 0


class AgentSave(SaveRequest):
    episode_number: Counter32 = 0
    timestep: Counter64 = 0


class PruneRequest(BaseModel):
    keep_last: Annotated[int, Strict(), Field(ge=0)]
    kind: CheckpointKind
    mode: Literal["min", "max"]


def valid(model: type[M], what: str, **values: Any) -> M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_error(exc, what)) from None


def checked(type_: Any, value: Any, field: str) -> Any:
    """One value checked against a type; the error names the field and the value."""
    try:
        return TypeAdapter(type_).validate_python(value)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise InvalidInputError(f"{field}: {reason} (got {value!r:.80})") from None


def deploy_stage(value: Any) -> DeploymentStatus:
    try:
        stage = DeploymentStatus(value)
    except ValueError:
        stage = None
    if stage not in DEPLOY_STAGES:
        allowed = ", ".join(s.value for s in DEPLOY_STAGES)
        raise InvalidInputError(f"stage: expected one of {allowed} (got {value!r})")
    return stage
