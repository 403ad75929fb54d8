"""Arrow schemas of the series tables, derived from the models, and the value rules
the batch writer checks at ``log()`` time.

One home for "what may go into a column": the Arrow type (from the SQLAlchemy
model), the default of a column that is not Nullable (from the typed record), and
the check of one Python value against both, so that a bad value is refused when it
is logged, naming the field and the value, instead of being dropped when its batch
is converted.
"""

from __future__ import annotations

import datetime as dt
import json
import numbers
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pyarrow as pa
from clickhouse_sqlalchemy import types as ch
from pydantic import BaseModel
from sqlalchemy.types import TypeEngine

from repositories.errors import InvalidInputError
from repositories.records import MetricPoint, RewardPoint
from suho_models.base import Base
from suho_models.rl import RewardStep
from suho_models.supervised import TrainingMetric

UUID_ARROW_TYPE: pa.DataType = pa.uuid()
"""Arrow type for ClickHouse ``UUID``: the canonical ``arrow.uuid`` extension type,
accepted by both insert paths (embedded Arrow, and clickhouse-driver through
``to_pylist`` -> ``uuid.UUID``), and inserted faster embedded than 36-character
strings. ``fixed_size_binary(16)`` works embedded but not on the native path."""

RECORDED_AT = "recorded_at"
"""The version and partition column: NULL when logged means "now" at sealing."""

_DEFAULT_KEY = b"suho.default"
_BOUNDS_KEY = b"suho.bounds"
_MIN_TIME = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)  # ClickHouse DateTime64's range
_MAX_TIME = dt.datetime(2299, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


class InvalidRowError(InvalidInputError, TypeError):
    """A logged row was refused before it was queued; nothing of it was kept.

    A ``TypeError`` too, as Python raises for an unknown keyword argument."""


class RowsRejectedError(InvalidInputError):
    """Rows were queued but could not be converted at sealing, so they were not stored."""


# --------------------------------------------------------------------------- schemas
def _arrow_type(type_: TypeEngine[Any]) -> tuple[pa.DataType, bool]:
    """(Arrow type, nullable) for a clickhouse-sqlalchemy column type."""
    if isinstance(type_, ch.Nullable):
        inner, _ = _arrow_type(_instance(type_.nested_type))
        return inner, True
    if isinstance(type_, ch.LowCardinality):
        return _arrow_type(_instance(type_.nested_type))
    if isinstance(type_, ch.UUID):
        return UUID_ARROW_TYPE, False
    if isinstance(type_, ch.DateTime64):
        precision = type_.precision if type_.precision is not None else 3
        unit = {0: "s", 3: "ms", 6: "us", 9: "ns"}.get(precision)
        if unit is None:
            raise TypeError(f"no Arrow unit for DateTime64({precision})")
        return pa.timestamp(unit, tz=type_.timezone or "UTC"), False
    if isinstance(type_, ch.Array):
        inner, _ = _arrow_type(_instance(type_.item_type))
        return pa.list_(inner), False
    simple = {
        ch.UInt8: pa.uint8(),
        ch.UInt16: pa.uint16(),
        ch.UInt32: pa.uint32(),
        ch.UInt64: pa.uint64(),
        ch.Int8: pa.int8(),
        ch.Int16: pa.int16(),
        ch.Int32: pa.int32(),
        ch.Int64: pa.int64(),
        ch.Float32: pa.float32(),
        ch.Float64: pa.float64(),
        ch.String: pa.string(),
    }
    for cls, arrow in simple.items():
        if type(type_) is cls:
            return arrow, False
    raise TypeError(f"no Arrow type for ClickHouse type {type_!r}")


def _instance(type_: TypeEngine[Any] | type[TypeEngine[Any]]) -> TypeEngine[Any]:
    return type_() if isinstance(type_, type) else type_


def record_defaults(record: type[BaseModel]) -> dict[str, Any]:
    """Field defaults of a typed record (``None`` defaults left out): the values a
    row takes for a non-Nullable column it does not give."""
    out = {}
    for name, info in record.model_fields.items():
        if not info.is_required() and info.default is not None:
            value = info.default
            out[name] = int(value) if isinstance(value, bool) else value
    return out


Bounds = tuple[float | None, float | None]


def record_bounds(record: type[BaseModel]) -> dict[str, Bounds]:
    """Inclusive (low, high) limits of a typed record's numeric fields (``ge``/``le``
    constraints; 0..1 for a bool stored as UInt8), so that the writers refuse what
    the record refuses (``iteration_duration_ms=-5``, ``is_episode_end=2``)."""
    out: dict[str, Bounds] = {}
    for name, info in record.model_fields.items():
        if info.annotation is bool:
            out[name] = (0, 1)
            continue
        low = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
        high = next((m.le for m in info.metadata if hasattr(m, "le")), None)
        if low is not None or high is not None:
            out[name] = (low, high)
    return out


def arrow_schema(
    model: type[Base],
    defaults: Mapping[str, Any] | None = None,
    bounds: Mapping[str, Bounds] | None = None,
) -> pa.Schema:
    """The Arrow schema of a model's table, column order as declared.

    ``Nullable(T)`` columns are nullable fields. A non-Nullable column with an
    entry in ``defaults`` carries it in its field metadata; the others (except
    ``recorded_at``, "now") must be given in every row. ``bounds`` (from
    :func:`record_bounds`) travel in the metadata too, for :func:`column_rules`.
    """
    defaults = defaults or {}
    bounds = bounds or {}
    fields = []
    for column in model.__table__.columns:
        arrow, nullable = _arrow_type(column.type)
        metadata: dict[bytes, bytes] = {}
        if not nullable and column.name in defaults:
            metadata[_DEFAULT_KEY] = json.dumps(defaults[column.name]).encode()
        if column.name in bounds:
            metadata[_BOUNDS_KEY] = json.dumps(list(bounds[column.name])).encode()
        fields.append(pa.field(column.name, arrow, nullable=nullable, metadata=metadata or None))
    return pa.schema(fields)


def field_default(field: pa.Field) -> Any:
    """The default a schema field carries, or None."""
    raw = (field.metadata or {}).get(_DEFAULT_KEY)
    return None if raw is None else json.loads(raw)


TRAINING_METRICS_SCHEMA: pa.Schema = arrow_schema(
    TrainingMetric, record_defaults(MetricPoint), record_bounds(MetricPoint)
)
"""``training_metrics``: run_id uuid, iteration_number uint32, six nullable float64
metrics, iteration_duration_ms float64 (default 0), recorded_at timestamp[ms, UTC]."""

REWARD_HISTORY_SCHEMA: pa.Schema = arrow_schema(
    RewardStep, record_defaults(RewardPoint), record_bounds(RewardPoint)
)
"""``reward_history``: run_id uuid, episode_number uint32, timestep_number uint64,
float64 rewards, nullable float64 extras, is_episode_end uint8 (default 0), recorded_at."""


# --------------------------------------------------------------------------- value rules
@dataclass(frozen=True)
class ColumnRule:
    """How ``log()`` checks one column's value.

    A value whose class is ``fast`` (and, for integers, inside ``low..high``) is
    taken as it is; any other goes through :meth:`check`, which converts it to the
    form Arrow takes or raises :class:`InvalidRowError` naming the field and value.
    """

    label: str  # "table.column", for messages
    field: pa.Field
    fast: type | None  # None: no fast class (every non-None value is checked)
    low: float | None = None  # an int for integer columns
    high: float | None = None
    default: Any = None
    convert: Callable[[Any], Any] | None = None

    @property
    def may_be_none(self) -> bool:
        """None is stored as it is: NULL, or "now" for recorded_at."""
        return cast(bool, self.field.nullable) or self.field.name == RECORDED_AT

    def check(self, value: Any) -> Any:
        if value is None:
            if self.may_be_none:
                return None
            if self.default is not None:
                return self.default
            raise InvalidRowError(f"{self.label}: required, no value given (got None)")
        if self.convert is None:
            return value
        try:
            return self.convert(value)
        except InvalidRowError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidRowError(f"{self.label}: {exc} (got {value!r:.200})") from None


def column_rules(table: str, schema: pa.Schema) -> list[ColumnRule]:
    return [_rule(f"{table}.{field.name}", field) for field in schema]


def field_bounds(field: pa.Field) -> Bounds:
    """The (low, high) limits a schema field carries, (None, None) when none."""
    raw = (field.metadata or {}).get(_BOUNDS_KEY)
    if raw is None:
        return None, None
    low, high = json.loads(raw)
    return low, high


def _rule(label: str, field: pa.Field) -> ColumnRule:
    t = field.type
    default = field_default(field)
    b_low, b_high = field_bounds(field)
    if pa.types.is_integer(t):
        info = np.iinfo(t.to_pandas_dtype())
        low, high = int(info.min), int(info.max)
        kind = f"{'U' if low == 0 else ''}Int{t.bit_width}"
        if b_low is not None or b_high is not None:
            low = low if b_low is None else max(low, int(b_low))
            high = high if b_high is None else min(high, int(b_high))
            kind = f"{kind} limited to {low}..{high}"
        allow_bool = t.bit_width == 8  # flags such as is_episode_end
        return ColumnRule(
            label,
            field,
            int,
            low,
            high,
            default,
            lambda v: _integer(v, low, high, kind, allow_bool),
        )
    if pa.types.is_floating(t):
        if b_low is None and b_high is None:
            return ColumnRule(label, field, float, default=default, convert=_float)
        return ColumnRule(
            label,
            field,
            float,
            b_low,
            b_high,
            default,
            lambda v: _bounded_float(v, b_low, b_high),
        )
    if t == UUID_ARROW_TYPE:
        return ColumnRule(label, field, uuid.UUID, default=default, convert=_uuid)
    if pa.types.is_timestamp(t):
        return ColumnRule(label, field, None, default=default, convert=_timestamp)
    if pa.types.is_string(t):
        return ColumnRule(label, field, str, default=default, convert=_string)
    return ColumnRule(label, field, None, default=default)  # Arrow checks it at sealing


def _integer(value: Any, low: int, high: int, kind: str, allow_bool: bool) -> int:
    if isinstance(value, bool | np.bool_) and not allow_bool:
        raise TypeError(f"must be an integer, not a bool, for {kind}")
    if isinstance(value, float | np.floating) or not isinstance(value, numbers.Integral):
        raise TypeError(f"must be an integer for {kind}")
    number = int(value)
    if not low <= number <= high:
        raise ValueError(f"out of range for {kind} ({low} to {high})")
    return number


def _float(value: Any) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError("must be a number")
    return float(value)


def _bounded_float(value: Any, low: float | None, high: float | None) -> float:
    number = _float(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"out of range ({_range_text(low, high)})")
    return number  # NaN passes: "not measured", as in the metric columns


def _range_text(low: float | None, high: float | None) -> str:
    if high is None:
        return f">= {low}"
    return f"<= {high}" if low is None else f"{low} to {high}"


_UUID_CACHE: dict[Any, uuid.UUID] = {}


def _uuid(value: Any) -> uuid.UUID:
    """A UUID from a str or 16 bytes; one object per distinct id, which keeps sealing
    fast (it deduplicates by identity)."""
    found = _UUID_CACHE.get(value) if isinstance(value, str | bytes) else None
    if found is not None:
        return found
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, bytes | bytearray):
        if len(value) != 16:
            raise ValueError("must be 16 bytes for a UUID")
        parsed = uuid.UUID(bytes=bytes(value))
    elif isinstance(value, str):
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            raise ValueError("not a UUID") from None
    else:
        raise TypeError("must be a UUID")
    if len(_UUID_CACHE) > 1024:
        _UUID_CACHE.clear()
    _UUID_CACHE[bytes(value) if isinstance(value, bytearray) else value] = parsed
    return parsed


def _timestamp(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise TypeError("must be a datetime")
    aware = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
    if not _MIN_TIME <= aware <= _MAX_TIME:
        raise ValueError("outside DateTime64's range (1900 to 2299)")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("must be a string")
    return value


# --------------------------------------------------------------------------- conversion
def uuid_array(values: list[Any]) -> pa.Array:
    """UUID column from Python values; runs have few distinct ids, so convert each once.

    Deduplicated by object identity (C-speed ``id``; ``UUID.__hash__`` is Python code).
    """
    ids = list(map(id, values))
    storage_type = pa.binary(16)
    if ids and values[0] is not None and ids.count(ids[0]) == len(ids):
        # One logger's rows: the same UUID object throughout (3x less sealing time).
        one = pa.array([_uuid_bytes(values[0])], storage_type)
        storage = one.take(pa.array(np.zeros(len(ids), dtype=np.int64)))
    else:
        mapping = {i: _uuid_bytes(v) for i, v in dict(zip(ids, values, strict=True)).items()}
        storage = pa.array(list(map(mapping.__getitem__, ids)), storage_type)
    return pa.ExtensionArray.from_storage(UUID_ARROW_TYPE, storage)


def _uuid_bytes(value: Any) -> bytes | None:
    return None if value is None else _uuid(value).bytes


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(
        value, str | bytes | uuid.UUID | int | float | dt.datetime | np.generic
    )


def column_to_arrow(values: Any, rule: ColumnRule, length: int) -> pa.Array:
    """A whole column (Arrow, numpy, pandas, list, or a scalar to broadcast) as the
    rule's type; a value that does not fit raises :class:`InvalidRowError` naming it."""
    if is_scalar(values):
        one = column_to_arrow([rule.check(values)], rule, 1)
        return one.take(pa.array(np.zeros(length, dtype=np.int64)))
    try:
        array = _column_to_arrow(values, rule.field.type)
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
        for index, value in enumerate(_python_values(values)):
            try:
                rule.check(value)
            except InvalidRowError as bad:
                raise InvalidRowError(f"{bad} at index {index}") from None
        raise InvalidRowError(f"{rule.label}: {exc}") from None
    if field_bounds(rule.field) != (None, None):  # a type's own range Arrow has checked
        _check_range(array, rule)
    return array


def _check_range(array: pa.Array, rule: ColumnRule) -> None:
    """Whole-column range check (NaN passes, as in :meth:`ColumnRule.check`)."""
    import pyarrow.compute as pc

    inside = pa.array(np.ones(len(array), dtype=bool))
    if rule.low is not None:
        inside = pc.and_(inside, pc.invert(pc.less(array, pa.scalar(rule.low, array.type))))
    if rule.high is not None:
        inside = pc.and_(inside, pc.invert(pc.greater(array, pa.scalar(rule.high, array.type))))
    inside = pc.fill_null(inside, True)  # NULL is the nullability rule's business
    if pc.all(inside).as_py():
        return
    index = pc.index(inside, False).as_py()
    value = array[index].as_py()
    try:
        rule.check(value)
    except InvalidRowError as bad:
        raise InvalidRowError(f"{bad} at index {index}") from None
    raise InvalidRowError(f"{rule.label}: out of range (got {value!r}) at index {index}")


def _python_values(values: Any) -> list[Any]:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return cast(list[Any], values.to_pylist())
    if isinstance(values, np.ndarray):
        return cast(list[Any], values.tolist())
    return list(values)


def _column_to_arrow(values: Any, target: pa.DataType) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if values.type == target:
            return values
        if target == UUID_ARROW_TYPE:
            if values.type == pa.binary(16):
                return pa.ExtensionArray.from_storage(UUID_ARROW_TYPE, values)
            return uuid_array(values.to_pylist())
        return _cast(values, target)
    if target == UUID_ARROW_TYPE:
        return uuid_array(list(values))
    if hasattr(values, "__arrow_array__") or type(values).__module__.startswith("pandas"):
        # pandas: NaN stays NaN and only a missing value (None, pd.NA, NaT) is NULL.
        return _cast(pa.array(values, from_pandas=False), target)
    if isinstance(values, np.ndarray) and values.dtype != object:
        return _cast(pa.array(values, from_pandas=False), target)
    return pa.array(list(values), type=target, from_pandas=False)


def _cast(array: pa.Array, target: pa.DataType) -> pa.Array:
    if array.type == target:
        return array
    if pa.types.is_timestamp(target) and pa.types.is_timestamp(array.type):
        # Finer clocks (ns from numpy) truncate to the column's precision.
        return array.cast(target, safe=False)
    return array.cast(target)


def values_to_arrow(values: list[Any], field: pa.Field) -> pa.Array:
    """A sealed column of checked Python values."""
    if field.type == UUID_ARROW_TYPE:
        return uuid_array(values)
    return pa.array(values, type=field.type, from_pandas=False)
