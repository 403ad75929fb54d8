"""The one read path (repositories.query): FINAL, PREWHERE for key filters, WHERE
for the rest, and the SQL text it compiles to, on both backends."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import event

from repositories.checkpoints import ModelCheckpointRepository
from repositories.query import Query, Source
from repositories.runs import TrainingRunRepository
from repositories.series import TrainingMetricRepository
from suho_models import TrainingRun
from suho_models.db import Database
from suho_models.db.compat import literal_sql


def _captured_sql(db: Database) -> list[str]:
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: seen.append(" ".join(a[2].split())))
    return seen


def _new_run(db: Database) -> uuid.UUID:
    runs = TrainingRunRepository(db)
    return runs.create({"run_name": "q", "model_type": "xgboost", "target_variable": "y"}).run_id


def test_key_filters_go_before_final_and_the_rest_after(db: Database) -> None:
    """A non-key filter before FINAL's merge would find the outdated 'pending' row."""
    runs = TrainingRunRepository(db)
    run_id = _new_run(db)
    runs.start(run_id)
    c = TrainingRun.__table__.c
    query = runs.read(c.run_id == run_id, c.status == "pending", columns=[c.status])
    sql = " ".join(query.sql().split())
    assert f"FINAL PREWHERE training_runs.run_id = '{run_id}' WHERE training_runs.status = " in sql
    assert query.rows() == []
    assert [r["status"] for r in runs.read(c.run_id == run_id, columns=[c.status]).rows()] == [
        "running"
    ]


def test_a_plain_merge_tree_is_read_without_final(db: Database) -> None:
    db.execute("CREATE TABLE plain (k UInt32, v String) ENGINE = MergeTree ORDER BY k")
    db.execute("INSERT INTO plain VALUES (1, 'a'), (2, 'b')")
    source = Source.of_existing("plain", ["k", "v"], engine="MergeTree", sorting_key="k")
    query = Query(db, source).where(source.table.c.k == 2)
    assert "FINAL" not in query.sql() and "PREWHERE" not in query.sql()
    assert query.rows() == [{"k": 2, "v": "b"}]
    assert query.count() == 1


def test_literal_sql_renders_values_exactly(db: Database) -> None:
    """The text form sends the same values as the bound statement."""
    c = TrainingRun.__table__.c
    at = dt.datetime(2026, 11, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
    stmt = (
        Query(db, Source.of_model(TrainingRun))
        .columns(c.run_id)
        .where(
            c.run_name == "it's 100% \\ 'quoted'", c.updated_at == at, c.run_id.in_([uuid.uuid4()])
        )
    )
    sql = literal_sql(stmt.statement, db.engine.dialect)
    assert "'it\\'s 100% \\\\ \\'quoted\\''" in sql
    assert "'2026-11-01 10:00:00.123456'" in sql
    assert "%(" not in sql and "POSTCOMPILE" not in sql
    assert db.query_arrow(sql).num_rows == 0  # the text runs as it is


def test_the_learning_curve_statement_is_public_and_is_what_is_sent(db: Database) -> None:
    metrics = TrainingMetricRepository(db)
    run_id = _new_run(db)
    metrics.log_many(run_id, [{"iteration_number": i, "train_loss": 1.0 / i} for i in (1, 2, 3)])
    sql = metrics.learning_curve_query(run_id).sql()
    assert "FROM training_metrics FINAL PREWHERE training_metrics.run_id = " in " ".join(
        sql.split()
    )
    seen = _captured_sql(db)
    curve = metrics.learning_curve(run_id)
    assert [p.iteration_number for p in curve] == [1, 2, 3]
    assert len(seen) == 1 and "PREWHERE training_metrics.run_id" in seen[0]
    assert metrics.learning_curve_arrow(run_id).num_rows == 3
    assert [r[0] for r in db.execute(sql)] == [1, 2, 3]


def test_list_sends_one_query_and_count_only_when_asked(db: Database) -> None:
    runs = TrainingRunRepository(db)
    for _ in range(3):
        _new_run(db)
    seen = _captured_sql(db)
    assert len(runs.list(limit=2)) == 2
    assert len([s for s in seen if "training_runs" in s]) == 1
    rows, total = runs.list_and_count(limit=1)
    assert (len(rows), total) == (1, 3)


def test_checkpoint_kind_and_status_filters_run_in_clickhouse(db: Database) -> None:
    checkpoints = ModelCheckpointRepository(db)
    run_id = _new_run(db)
    kept = checkpoints.save_checkpoint(run_id, b"a", "raw", kind="best", model_name="m")
    checkpoints.save_checkpoint(run_id, b"b", "raw", kind="intermediate", model_name="m")
    seen = _captured_sql(db)
    assert [i.checkpoint_id for i in checkpoints.list(run_id, kind="best")] == [kept.checkpoint_id]
    (select,) = [s for s in seen if s.startswith("SELECT") and "model_checkpoints" in s]
    assert "WHERE model_checkpoints.checkpoint_kind = " in select
    assert checkpoints.list(run_id, deployment_status="production") == []
