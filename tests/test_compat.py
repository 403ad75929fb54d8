"""Each fix in suho_models.db.compat, with a check that the stock library fails."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from clickhouse_sqlalchemy import select
from clickhouse_sqlalchemy.drivers.native.base import ClickHouseDialect_native
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.exc import CompileError

from suho_models import HyperparameterTrial, TrainingMetric, TrainingRun
from suho_models.db import Database, migrations
from suho_models.db.compat import ClickHouseAlembicImpl, final_prewhere

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _captured_sql(db: Database) -> list[str]:
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_orm_final_reaches_the_database(db: Database) -> None:
    seen = _captured_sql(db)
    with db.session() as session:
        session.execute(select(TrainingRun).final().where(TrainingRun.status == "running")).all()
    assert "FINAL" in seen[-1]


def test_stock_compiler_drops_orm_final() -> None:
    """Why the fix exists: the stock dialect compiles ORM selects without FINAL."""
    stmt = select(TrainingRun).final()
    stock = str(stmt.compile(dialect=ClickHouseDialect_native()))
    ours = str(stmt.compile(dialect=create_engine("clickhouse+native://h:1/x").dialect))
    assert "FINAL" not in stock
    assert "FINAL" in ours


def test_final_prewhere_filters_before_the_merge(db: Database) -> None:
    run_id = uuid.uuid4()
    seen = _captured_sql(db)
    stmt = final_prewhere(
        select(TrainingMetric.iteration_number), TrainingMetric.run_id == run_id
    ).where(TrainingMetric.train_loss > 0.5)
    with db.engine.connect() as conn:
        assert conn.execute(stmt).all() == []
    sql = " ".join(seen[-1].split())
    assert "FROM training_metrics FINAL PREWHERE training_metrics.run_id = %(run_id_1)s " in sql
    assert sql.endswith("WHERE training_metrics.train_loss > %(train_loss_1)s")
    # Through the ORM's rebuilt select too, and inside a subquery: PREWHERE stays
    # with the FINAL of its own select.
    with db.session() as session:
        session.execute(final_prewhere(select(TrainingMetric), TrainingMetric.run_id == run_id))
    assert "FINAL PREWHERE training_metrics.run_id" in " ".join(seen[-1].split())
    inner = final_prewhere(
        select(TrainingMetric.iteration_number), TrainingMetric.iteration_number > 3
    ).subquery()
    outer = select(inner.c.iteration_number).select_from(inner).final()
    sql = " ".join(str(outer.compile(dialect=db.engine.dialect)).split())
    assert sql.count("PREWHERE") == 1 and "FINAL PREWHERE training_metrics.iteration_number" in sql
    assert sql.endswith(") AS anon_1 FINAL")


def test_prewhere_without_final_is_refused(db: Database) -> None:
    stmt = select(TrainingMetric.iteration_number)
    stmt._prewhere_criteria = (TrainingMetric.run_id == uuid.uuid4(),)
    with pytest.raises(CompileError, match="PREWHERE criteria without FINAL"):
        stmt.compile(dialect=db.engine.dialect)


def test_orm_flush_without_preset_keys_works(db: Database) -> None:
    """Keys are generated client-side, so the ORM can flush rows that lack them."""
    with db.session() as session:
        trial = HyperparameterTrial(
            run_id=uuid.uuid4(),
            trial_number=1,
            study_name="",
            hyperparameters="{}",
            scores=[],
            tuning_method="optuna",
            state="complete",
            duration_seconds=1.0,
            recorded_at=NOW,
        )
        session.add(trial)
        session.add(
            TrainingMetric(
                run_id=uuid.uuid4(),
                iteration_number=1,
                train_loss=0.5,
                iteration_duration_ms=1.0,
                recorded_at=NOW,
            )
        )
        session.commit()
        assert isinstance(trial.trial_id, uuid.UUID)
    assert (
        db.scalar(
            "SELECT count() FROM hyperparameters_log WHERE trial_id = %(t)s", {"t": trial.trial_id}
        )
        == 1
    )


def test_insert_without_a_key_default_is_broken(db: Database) -> None:
    """Why the models give generated keys a client-side default: an INSERT that
    leaves the key out is sent without the column, and ClickHouse fills in the nil
    UUID, on both backends; every key-less row would collapse into one key."""
    from clickhouse_sqlalchemy import engines, types
    from sqlalchemy import Column, MetaData, Table

    table = Table(
        "no_default",
        MetaData(),
        Column("id", types.UUID, primary_key=True),
        Column("x", types.UInt8),
        engines.MergeTree(order_by="id"),
    )
    table.create(db.engine)
    with db.engine.connect() as conn:
        conn.execute(table.insert(), [{"x": 1}, {"x": 2}])
    assert db.execute("SELECT toString(id), x FROM no_default ORDER BY x") == [
        (str(uuid.UUID(int=0)), 1),
        (str(uuid.UUID(int=0)), 2),
    ]


def test_pk_constraint_has_a_name_key(db: Database) -> None:
    pk = inspect(db.engine).get_pk_constraint("training_runs")
    assert "name" in pk
    assert pk["constrained_columns"]


def test_alembic_impl_registered_for_clickhouse() -> None:
    from alembic.ddl.impl import _impls

    assert _impls["clickhouse"] is ClickHouseAlembicImpl
    with pytest.raises(ImportError, match="_compare_columns"):
        import clickhouse_sqlalchemy.alembic.dialect  # noqa: F401 - broken on alembic >= 1.15


def test_version_table_is_valid_on_clickhouse_26(db: Database) -> None:
    ddl = db.scalar("SHOW CREATE TABLE alembic_version")
    assert "ENGINE = MergeTree" in ddl and "ORDER BY tuple()" in ddl
    # Alembic moved the single row with a synchronous mutation, no duplicate left.
    assert db.execute("SELECT version_num FROM alembic_version") == [(migrations.head_revision(),)]


def test_reflected_timezone_has_no_quotes(db: Database) -> None:
    columns = {c["name"]: c["type"] for c in inspect(db.engine).get_columns("training_metrics")}
    assert columns["recorded_at"].timezone == "UTC"


def test_stock_native_dialect_registration_is_replaced() -> None:
    engine = create_engine("clickhouse+native://localhost:1/x")
    assert type(engine.dialect).__module__ == "suho_models.db.dialect"
    assert isinstance(engine.dialect, ClickHouseDialect_native)
