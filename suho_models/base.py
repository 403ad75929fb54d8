"""Declarative base and the ClickHouse table conventions all eight tables share.

This is where the ClickHouse decisions live (engines, version columns, TTL), so
that models stay declarations and trainers never see an engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clickhouse_sqlalchemy import engines, get_declarative_base, types
from sqlalchemy import Column, MetaData, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.schema import ColumnCollectionConstraint
from sqlalchemy.types import TypeEngine

DETAILED_RETENTION_MONTHS = 6
"""Months that per-iteration / per-step rows are kept; summaries are kept forever.

The one place the retention period is set: the models and the migrations that
write the TTL both read it.
"""

metadata = MetaData()
if TYPE_CHECKING:

    class Base(DeclarativeBase):
        """How the checker sees the base below (``declarative_base`` is typed ``Any``):
        the same declarative API, ``__table__`` and the keyword constructor."""

else:
    Base = get_declarative_base(metadata=metadata)

# --------------------------------------------------------------------------- column types
UUID = types.UUID
Str = types.String
Label = types.LowCardinality(types.String())
"""Small closed vocabularies (status, type): dictionary-encoded, cheap to filter."""
UInt8 = types.UInt8
UInt32 = types.UInt32
UInt64 = types.UInt64
Float64 = types.Float64
NullableFloat = types.Nullable(types.Float64())
NullableUInt32 = types.Nullable(types.UInt32())
Timestamp = types.DateTime64(3, "UTC")
"""Event time in UTC, millisecond precision."""
Version = types.DateTime64(6, "UTC")
"""ReplacingMergeTree version: microseconds, kept strictly increasing per key by the writers."""
NullableTimestamp = types.Nullable(types.DateTime64(3, "UTC"))
StrList = types.Array(types.String())
FloatList = types.Array(types.Float64())


def column(
    type_: TypeEngine[Any] | type[TypeEngine[Any]],
    comment: str,
    *,
    codec: str | None = None,
    **kw: Any,
) -> Column[Any]:
    """A column whose SQLAlchemy nullability follows the ClickHouse type.

    ClickHouse has no NOT NULL, only ``Nullable(T)``; declaring it honestly keeps
    Alembic autogenerate from proposing spurious ``alter_column(nullable=...)``.
    """
    instance = type_() if isinstance(type_, type) else type_
    kw.setdefault("nullable", isinstance(instance, types.Nullable))
    if codec:
        kw["clickhouse_codec"] = codec
    return Column(instance, comment=comment, **kw)


# --------------------------------------------------------------------------- engines
def current_row_engine(
    order_by: tuple[str, ...], version: str = "updated_at", **settings: int
) -> engines.ReplacingMergeTree:
    """Rows that change (status, deployment): every change is a new row with a
    newer version; readers see one row per key through FINAL or argMax.
    """
    return engines.ReplacingMergeTree(version=version, order_by=order_by, **settings)


class SkipIndex(ColumnCollectionConstraint):
    """A data-skipping index (``INDEX name col TYPE t GRANULARITY g``) in a model's
    CREATE TABLE: clickhouse-sqlalchemy has no construct for one, and the drift check
    compares the whole CREATE, so the models must say it as the revisions do."""

    __visit_name__ = "skip_index"
    inherit_cache = True

    def __init__(self, name: str, column: str, index_type: str, granularity: int = 1) -> None:
        super().__init__(column, name=name)
        self.index_type = index_type
        self.granularity = granularity


@compiles(SkipIndex)
def _compile_skip_index(element: SkipIndex, compiler: Any, **kw: Any) -> str:
    columns = ", ".join(compiler.preparer.quote(c.name) for c in element.columns)
    return (
        f"INDEX {element.name} {columns} TYPE {element.index_type} "
        f"GRANULARITY {element.granularity}"
    )


def run_id_bloom() -> SkipIndex:
    """Lookups by run_id on a runs table, whose key no longer starts with it (0010)."""
    return SkipIndex("run_id_bloom", "run_id", "bloom_filter")


RUNS_LAYOUT: dict[str, Any] = {
    "order_by": ("created_at", "run_id"),
    "index_granularity": 1024,
    "min_compress_block_size": 4096,
    "max_compress_block_size": 65536,
}
"""The runs tables' layout since revision 0010 (its docstring says why): ordered by
creation, so parts written at different times do not overlap and FINAL merges only
what is still changing; small granules, so a read of a few runs by key reads little."""


DEDUPLICATION_WINDOW = 1000
"""``non_replicated_deduplication_window`` of the series tables: how many recent
insert blocks a table remembers, so that the batch writer's retry of a batch (same
``insert_deduplication_token``) is dropped instead of stored twice. ClickHouse's
default for non-replicated tables is 0, which ignores tokens."""


def detailed_series_engine(
    order_by: tuple[str, ...], ttl: str, time_column: str = "recorded_at"
) -> engines.ReplacingMergeTree:
    """High-volume time series: monthly partitions (cheap TTL drops, pruning by
    time), ordered for per-run reads, and Replacing on the natural key so a
    re-logged iteration or step (after a resume) is read once.

    Only the batch writer inserts here, every block under a token of its own, so the
    deduplication window drops retries only. (A window also drops a token-less block
    identical to a recent one: harmless for Replacing rows, except when re-inserting
    rows just deleted, which is why the other tables have none.)
    """
    return engines.ReplacingMergeTree(
        version=time_column,
        partition_by=text(f"toYYYYMM({time_column})"),
        order_by=order_by,
        ttl=text(ttl),
        non_replicated_deduplication_window=DEDUPLICATION_WINDOW,
    )


def sorting_key_columns(table: Any) -> frozenset[str]:
    """Names of the columns in a table's ORDER BY. Every version of a row shares
    them, so only filters on these may run before FINAL's merge (PREWHERE)."""
    order_by = getattr(getattr(table, "engine", None), "order_by", None)
    if order_by is None:
        return frozenset()
    return frozenset(e.name for e in order_by.get_expressions_or_columns() if isinstance(e, Column))


PLAIN_MERGE_TREE_ENGINES = frozenset({"MergeTree", "ReplicatedMergeTree", "SharedMergeTree"})


def engine_merges_versions(engine: str) -> bool:
    """Whether a table with this engine (``system.tables.engine``) is read with FINAL:
    the *MergeTree engines that replace, collapse, sum or aggregate rows when parts
    merge. Plain MergeTree rejects FINAL; views and other engines are read as they are."""
    return engine.endswith("MergeTree") and engine not in PLAIN_MERGE_TREE_ENGINES


def sorting_key_names(sorting_key: str) -> frozenset[str]:
    """Plain column names in a ``system.tables.sorting_key`` string (``"symbol, time"``);
    expressions such as ``toDate(time)`` are left out."""
    names = (part.strip().strip("`") for part in sorting_key.split(","))
    return frozenset(n for n in names if n.isidentifier())


def retention_ttl(time_column: str = "recorded_at", keep_where: str | None = None) -> str:
    """The TTL clause for detailed rows; ``keep_where`` spares summary rows forever."""
    clause = f"{time_column} + toIntervalMonth({DETAILED_RETENTION_MONTHS})"
    if keep_where:
        clause += f" DELETE WHERE NOT ({keep_where})"
    return clause
