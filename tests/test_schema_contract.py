"""The schema contract: models versus the migrated database (the whole CREATE),
and typed records versus table columns, for all eight tables."""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
import uuid

import pytest
from pydantic import BaseModel

import suho_models
from repositories.base import Repository, row_of
from repositories.checkpoints import AgentCheckpointRepository, ModelCheckpointRepository
from repositories.errors import SchemaMismatchError
from repositories.records import TrainingRun
from repositories.run_metrics import RunMetricRepository
from repositories.runs import AgentRunRepository, TrainingRunRepository
from repositories.series import RewardHistoryRepository, TrainingMetricRepository
from repositories.trials import HyperparameterTrialRepository, RLTrialRepository
from suho_models.db import Database, migrations
from suho_models.db.drift import schema_drift


# --------------------------------------------------------------------------- CREATE TABLE
def test_migrated_tables_are_created_as_the_models_say(db: Database) -> None:
    """Engine, ORDER BY, PARTITION BY, TTL, codecs, comments and column types."""
    assert schema_drift(db) == {}


def test_drift_in_ttl_codec_or_comment_is_reported(db: Database) -> None:
    db.execute("ALTER TABLE training_metrics MODIFY TTL recorded_at + toIntervalMonth(3)")
    db.execute("ALTER TABLE model_checkpoints MODIFY COLUMN model_binary CODEC(ZSTD(1))")
    db.execute("ALTER TABLE training_runs MODIFY COMMENT 'changed by hand'")
    drift = schema_drift(db)
    assert sorted(drift) == ["model_checkpoints", "training_metrics", "training_runs"]
    assert "-TTL recorded_at + toIntervalMonth(3)" in drift["training_metrics"]
    assert "+TTL recorded_at + toIntervalMonth(6)" in drift["training_metrics"]
    assert "CODEC(ZSTD(1))" in drift["model_checkpoints"]
    assert "-COMMENT 'changed by hand'" in drift["training_runs"]


def test_a_missing_table_is_reported(db: Database) -> None:
    db.execute("DROP TABLE rl_hyperparameters SYNC")
    assert schema_drift(db) == {"rl_hyperparameters": f"missing from database {db.database_name}"}


def test_revision_0001_is_frozen(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """0001 writes its engines out: today's engine helpers may change, it may not."""
    import suho_models.base as base

    def changed(*args: object, **kwargs: object) -> object:
        raise AssertionError("revision 0001 called an engine helper of suho_models.base")

    for name in ("current_row_engine", "detailed_series_engine", "retention_ttl"):
        monkeypatch.setattr(base, name, changed)
    migrations.upgrade(url, "0001_training_tables")
    db = Database(url)
    try:
        assert db.current_revision() == "0001_training_tables"
        ttl = db.scalar("SHOW CREATE TABLE reward_history")
        assert "TTL recorded_at + toIntervalMonth(6) WHERE NOT (is_episode_end = 1)" in ttl
    finally:
        db.close()


# --------------------------------------------------------------------------- records
REPOSITORIES: tuple[type[Repository], ...] = (
    TrainingRunRepository,
    ModelCheckpointRepository,
    TrainingMetricRepository,
    HyperparameterTrialRepository,
    AgentRunRepository,
    AgentCheckpointRepository,
    RewardHistoryRepository,
    RLTrialRepository,
    RunMetricRepository,
)

SUPPLIED_BY_THE_WRITE = {
    # One logger per run: the points carry no run_id, the writer adds it.
    "training_metrics": {"run_id"},
    "reward_history": {"run_id"},
    "run_metrics": {"run_id"},
    # Listing never loads blobs; metrics_json is read back as the ``metrics`` dict.
    "model_checkpoints": {"model_binary", "metrics_json"},
    "agent_checkpoints": {"agent_binary", "metrics_json"},
}
DECODED_FIELDS = {"model_checkpoints": {"metrics"}, "agent_checkpoints": {"metrics"}}
STAMPED_ON_WRITE = {
    # None in a point means "now": the writer stamps it, the column is never NULL.
    ("training_metrics", "recorded_at"),
    ("reward_history", "recorded_at"),
    ("run_metrics", "recorded_at"),
}

PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "UUID": (uuid.UUID,),
    "String": (str,),
    "LowCardinality(String)": (str,),
    "UInt8": (int,),
    "UInt16": (int,),
    "UInt32": (int,),
    "UInt64": (int,),
    "Float64": (float,),
    "DateTime64(3, 'UTC')": (dt.datetime,),
    "DateTime64(6, 'UTC')": (dt.datetime,),
    "Array(String)": (list, str),
    "Array(Float64)": (list, float),
}
"""ClickHouse type (without Nullable) -> the Python type a record field must have
(for arrays: list, then the element type)."""


def _unwrap(annotation: typing.Any) -> tuple[bool, tuple[type, ...]]:
    """(optional?, (outer type, element type...)) of a pydantic field annotation."""
    optional = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        optional = type(None) in args
        (annotation,) = [a for a in args if a is not type(None)]
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is list:
        (element,) = typing.get_args(annotation)
        while typing.get_origin(element) is typing.Annotated:
            element = typing.get_args(element)[0]
        return optional, (list, element)
    return optional, (annotation,)


def _conforms(actual: tuple[type, ...], expected: tuple[type, ...]) -> bool:
    if len(actual) != len(expected):
        return False
    for a, e in zip(actual, expected, strict=True):
        if e is int and a is bool:  # UInt8 flags (is_episode_end) are bools in records
            continue
        if e is str and isinstance(a, type) and issubclass(a, enum.Enum):
            if not issubclass(a, str):
                return False
            continue
        if not (isinstance(a, type) and issubclass(a, e)):
            return False
    return True


@pytest.mark.parametrize("repository", REPOSITORIES, ids=lambda r: r.model.__tablename__)
def test_record_fields_and_table_columns_match(repository: type[Repository]) -> None:
    """Names, nullability and types, for all eight tables."""
    table = repository.model.__table__
    record: type[BaseModel] = repository.record
    name = table.name
    columns = {c.name: c for c in table.columns}
    fields = set(record.model_fields) - DECODED_FIELDS.get(name, set())
    assert fields | SUPPLIED_BY_THE_WRITE.get(name, set()) == set(columns), name
    assert not fields & SUPPLIED_BY_THE_WRITE.get(name, set()), name
    problems = []
    for field in sorted(fields):
        column = columns[field]
        optional, python = _unwrap(record.model_fields[field].annotation)
        type_sql = str(column.type)
        nullable = type_sql.startswith("Nullable(")
        assert nullable == column.nullable, (name, field)  # the model's own declaration
        if optional != nullable and (name, field) not in STAMPED_ON_WRITE:
            problems.append(f"{field}: record optional={optional}, column {type_sql}")
        inner = type_sql[len("Nullable(") : -1] if nullable else type_sql
        if not _conforms(python, PYTHON_TYPES[inner]):
            problems.append(f"{field}: record {python}, column {type_sql}")
    assert problems == [], (name, problems)


def test_all_eight_tables_have_a_repository() -> None:
    assert {r.model.__tablename__ for r in REPOSITORIES} == set(suho_models.TABLE_NAMES)


# --------------------------------------------------------------------------- writes
def _run(**extra: object) -> dict[str, object]:
    now = dt.datetime.now(dt.UTC)
    return dict(
        run_id=uuid.uuid4(),
        run_name="r",
        model_type="xgboost",
        target_variable="y",
        status="pending",
        created_at=now,
        updated_at=now,
        **extra,
    )


class _RunWithNote(TrainingRun):
    note: str = "would be lost"


class _RunWithoutConfig(BaseModel):
    run_id: uuid.UUID
    run_name: str


def test_a_row_is_exactly_the_tables_columns() -> None:
    table = suho_models.TrainingRun.__table__
    row = row_of(TrainingRun.model_validate(_run()), table)
    assert set(row) == {c.name for c in table.columns}
    with pytest.raises(SchemaMismatchError, match="training_runs: fields without a column: note"):
        row_of(_RunWithNote.model_validate(_run()), table)
    with pytest.raises(SchemaMismatchError, match=r"columns not supplied: action_dim, .*tickers"):
        row_of(
            _RunWithoutConfig(run_id=uuid.uuid4(), run_name="r"),
            suho_models.AgentTrainingRun.__table__,
        )


def test_repository_refuses_a_record_field_without_a_column(db: Database) -> None:
    """The old ``_to_row`` dropped the field silently, and the INSERT went through."""
    runs = TrainingRunRepository(db)
    with pytest.raises(SchemaMismatchError, match="note"):
        runs._to_row(_RunWithNote.model_validate(_run()))
    assert runs._count() == 0
