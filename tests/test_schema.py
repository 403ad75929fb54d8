"""Contract tests of the schema: migrations, engines, TTL, round trips, FINAL.

Every test here runs on the embedded engine and on the local server.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from clickhouse_sqlalchemy import select

import suho_models
from suho_models import (
    AgentCheckpoint,
    AgentTrainingRun,
    HyperparameterTrial,
    ModelCheckpoint,
    RewardStep,
    RLHyperparameterTrial,
    TrainingMetric,
    TrainingRun,
)
from suho_models.db import Database, SchemaOutOfDateError, migrations

NOW = dt.datetime.now(dt.UTC).replace(microsecond=123000)


def table_names(db: Database) -> set[str]:
    rows = db.execute("SELECT name FROM system.tables WHERE database = currentDatabase()")
    return {r[0] for r in rows}


def test_upgrade_creates_all_eight_tables_with_engines_and_comments(db: Database) -> None:
    assert set(suho_models.TABLE_NAMES) <= table_names(db)
    rows = db.execute(
        "SELECT name, engine, sorting_key, partition_key, comment FROM system.tables "
        "WHERE database = currentDatabase() AND name != 'alembic_version'"
    )
    info = {r[0]: r[1:] for r in rows}
    assert info["training_runs"][:2] == ("ReplacingMergeTree", "created_at, run_id")
    assert info["training_metrics"][:3] == (
        "ReplacingMergeTree",
        "run_id, iteration_number",
        "toYYYYMM(recorded_at)",
    )
    assert info["reward_history"][1] == "run_id, episode_number, timestep_number"
    assert all(comment for *_, comment in info.values())
    uncommented = db.execute(
        "SELECT table, name FROM system.columns WHERE database = currentDatabase() "
        "AND table != 'alembic_version' AND comment = ''"
    )
    assert uncommented == []


def test_show_create_table_has_ttl(db: Database) -> None:
    metrics = db.scalar("SHOW CREATE TABLE training_metrics")
    assert "TTL recorded_at + toIntervalMonth(6)" in metrics
    rewards = db.scalar("SHOW CREATE TABLE reward_history")
    assert "WHERE NOT (is_episode_end = 1)" in rewards
    for summary in ("training_runs", "agent_training_runs", "hyperparameters_log"):
        assert "TTL" not in db.scalar(f"SHOW CREATE TABLE {summary}")


def test_upgrade_downgrade_upgrade(url: str) -> None:
    migrations.upgrade(url)
    db = Database(url)
    try:
        assert db.current_revision() == migrations.head_revision()
        migrations.downgrade(url, "base")
        assert not set(suho_models.TABLE_NAMES) & table_names(db)
        assert db.current_revision() is None
        migrations.upgrade(url)
        assert set(suho_models.TABLE_NAMES) <= table_names(db)
        assert db.current_revision() == migrations.head_revision()
    finally:
        db.close()


def test_autogenerate_after_upgrade_is_empty(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": migrations.include_name})
        diff = compare_metadata(context, suho_models.metadata)
    assert diff == []


def test_schema_check_fails_fast_behind_head(url: str) -> None:
    db = Database(url)
    db.create_database_if_missing()
    try:
        with pytest.raises(SchemaOutOfDateError, match="run `suho db upgrade`"):
            db.verify_schema()
        migrations.upgrade(url)
        db.verify_schema()
        migrations.downgrade(url, "base")
        fresh = Database(url)
        with pytest.raises(SchemaOutOfDateError, match="none"):
            fresh.verify_schema()
        fresh.close()
    finally:
        db.close()


# --------------------------------------------------------------------------- round trips
def _full_rows() -> list[object]:
    run_id, agent_run = uuid.uuid4(), uuid.uuid4()
    later = NOW + dt.timedelta(microseconds=1)
    common_run = dict(
        status="completed",
        started_at=NOW,
        completed_at=NOW + dt.timedelta(milliseconds=1),
        duration_seconds=1.5,
        error_message="line1\nline2 'quoted' \\ back",
        git_commit_hash="a" * 40,
        config_json='{"a": [1, 2]}',
        created_at=NOW,
        updated_at=later,
        heartbeat_at=NOW,
    )
    return [
        TrainingRun(
            run_id=run_id,
            run_name="résumé ✓ '; DROP TABLE training_runs; --",
            model_type="xgboost",
            task_type="classification",
            target_variable="target_direction",
            features_used=["rsi_14", "macd", "it's"],
            train_start=NOW,
            train_end=NOW,
            val_start=NOW,
            val_end=NOW,
            test_start=NOW,
            test_end=NOW,
            train_ratio=0.7,
            val_ratio=0.15,
            test_ratio=0.15,
            train_rows=2**40,
            val_rows=0,
            test_rows=3,
            final_train_loss=float("nan"),
            final_val_loss=float("inf"),
            final_test_loss=float("-inf"),
            final_train_accuracy=0.5,
            final_val_accuracy=None,
            final_test_accuracy=1.0,
            final_f1_score=0.25,
            final_auc_score=0.75,
            final_precision=0.1,
            final_recall=0.2,
            final_rmse=None,
            final_mae=None,
            final_r2=None,
            final_direction_accuracy=None,
            **common_run,
        ),
        ModelCheckpoint(
            checkpoint_id=uuid.uuid4(),
            run_id=run_id,
            model_name="direction",
            model_type="xgboost",
            iteration=100,
            checkpoint_kind="best",
            model_format="xgboost_ubjson",
            model_binary="QUJD",
            size_bytes=3,
            sha256="f" * 64,
            storage="inline",
            storage_uri="",
            train_loss=0.1,
            val_loss=None,
            val_accuracy=0.9,
            metrics_json="{}",
            deployment_status="production",
            deployed_at=NOW,
            created_at=NOW,
            updated_at=later,
            signature="ab" * 32,
        ),
        TrainingMetric(
            run_id=run_id,
            iteration_number=4_000_000_000,
            train_loss=float("nan"),
            val_loss=None,
            train_accuracy=0.5,
            val_accuracy=0.25,
            learning_rate=0.1,
            gradient_norm=None,
            iteration_duration_ms=0.125,
            recorded_at=NOW,
        ),
        HyperparameterTrial(
            trial_id=uuid.uuid4(),
            run_id=run_id,
            study_name="s",
            trial_number=7,
            hyperparameters='{"max_depth": 6}',
            objective_value=None,
            scores=[0.5, float("nan")],
            tuning_method="optuna",
            state="pruned",
            duration_seconds=2.0,
            recorded_at=NOW,
            worker_host="tuner-1",
            worker_pid=4242,
        ),
        AgentTrainingRun(
            run_id=agent_run,
            run_name="ppo-1",
            agent_type="ppo",
            state_dim=111,
            action_dim=4,
            reward_function_type="log_return",
            tickers=["EURUSD", "XAUUSD"],
            initial_amount=1_000_000.0,
            buy_cost_pct=0.001,
            sell_cost_pct=0.001,
            env_config_json="{}",
            train_start=NOW,
            train_end=None,
            trade_start=NOW,
            trade_end=NOW,
            total_timesteps=2**50,
            total_episodes=12,
            final_mean_reward=-0.5,
            final_sharpe_ratio=1.25,
            final_total_return=0.1,
            final_max_drawdown=-0.2,
            final_annual_volatility=0.3,
            final_sortino_ratio=None,
            final_calmar_ratio=0.5,
            **common_run,
        ),
        AgentCheckpoint(
            checkpoint_id=uuid.uuid4(),
            run_id=agent_run,
            agent_type="ppo",
            episode_number=100,
            timestep=25_000,
            agent_format="sb3_zip",
            agent_binary="",
            replay_buffer_uri="",
            size_bytes=10**9,
            sha256="0" * 64,
            storage="s3",
            storage_uri="s3://b/k.zip",
            mean_reward=1.0,
            sharpe_ratio=None,
            metrics_json="{}",
            deployment_status="archived",
            deployed_at=None,
            created_at=NOW,
            updated_at=later,
            checkpoint_kind="final",
            signature="",
        ),
        RewardStep(
            run_id=agent_run,
            episode_number=3,
            timestep_number=2**40,
            env_index=7,
            step_reward=-1.5e-300,
            episode_cumulative_reward=float("inf"),
            episode_final_reward=2.5,
            sharpe_ratio=1.1,
            account_value=1e6,
            policy_loss=None,
            value_loss=0.5,
            is_episode_end=1,
            recorded_at=NOW,
        ),
        RLHyperparameterTrial(
            trial_id=uuid.uuid4(),
            run_id=agent_run,
            study_name="rl",
            trial_number=0,
            agent_type="sac",
            learning_rate=3e-4,
            gamma=0.99,
            clip_range=None,
            batch_size=256,
            n_steps=None,
            ent_coef=None,
            tau=0.005,
            hyperparameters="{}",
            mean_reward=None,
            sharpe_ratio=float("nan"),
            total_timesteps=1000,
            total_episodes=2,
            state="failed",
            duration_seconds=0.0,
            recorded_at=NOW,
            worker_host="tuner-1",
            worker_pid=4242,
        ),
    ]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_every_table_round_trips_every_column_exactly(db: Database) -> None:
    rows = _full_rows()
    with db.session() as session:
        session.add_all(rows)  # an ORM flush, one INSERT per table
        session.commit()
    for original in rows:
        model = type(original)
        columns = model.__table__.columns
        with db.session() as session:
            key = [getattr(original, c.name) for c in model.__table__.primary_key.columns]
            stmt = select(model).final()
            for col, value in zip(model.__table__.primary_key.columns, key, strict=True):
                stmt = stmt.where(col == value)
            loaded = session.execute(stmt).scalars().one()
        for col in columns:
            expected, actual = getattr(original, col.name), getattr(loaded, col.name)
            assert _same(expected, actual), (model.__tablename__, col.name, expected, actual)
        # Types really are Python types, not strings.
        assert isinstance(
            loaded.created_at if hasattr(loaded, "created_at") else loaded.recorded_at, dt.datetime
        )


def test_typed_values_from_raw_sql(db: Database) -> None:
    row = db.execute(
        "SELECT toUUID(%(u)s) AS uid, toDateTime64('2026-11-01 10:00:00.250', 3, 'UTC') AS ts, "
        "toDecimal64('12.3400', 4) AS d, ['a', 'b'] AS l, map('k', 1.5) AS m, "
        "CAST(NULL AS Nullable(Float64)) AS n",
        {"u": "7f2d7f0e-0000-4000-8000-000000000001"},
    )[0]
    assert row.uid == uuid.UUID("7f2d7f0e-0000-4000-8000-000000000001")
    assert row.ts == dt.datetime(2026, 11, 1, 10, 0, 0, 250000, tzinfo=dt.UTC)
    assert row.d == Decimal("12.3400")
    assert row.l == ["a", "b"]
    assert row.m == {"k": 1.5}
    assert row.n is None


# --------------------------------------------------------------------------- FINAL
def _run_version(run_id: uuid.UUID, status: str, at: dt.datetime) -> TrainingRun:
    return TrainingRun(
        run_id=run_id,
        run_name="r",
        model_type="lightgbm",
        task_type="regression",
        status=status,
        target_variable="target_return",
        features_used=[],
        train_ratio=0.7,
        val_ratio=0.15,
        test_ratio=0.15,
        train_rows=0,
        val_rows=0,
        test_rows=0,
        config_json="{}",
        error_message="",
        git_commit_hash="",
        created_at=NOW,
        updated_at=at,
    )


def test_replacing_rows_read_once_with_final(db: Database) -> None:
    run_id = uuid.uuid4()
    statuses = ["pending", "running", "completed"]
    for i, status in enumerate(statuses):  # three separate inserts, no merge between
        with db.session() as session:
            session.add(_run_version(run_id, status, NOW + dt.timedelta(seconds=i)))
            session.commit()
    with db.session() as session:
        raw = session.execute(select(TrainingRun.status).where(TrainingRun.run_id == run_id))
        assert sorted(raw.scalars()) == sorted(statuses)  # duplicates are physical
        current = (
            session.execute(select(TrainingRun).final().where(TrainingRun.run_id == run_id))
            .scalars()
            .all()
        )
    assert [r.status for r in current] == ["completed"]


# --------------------------------------------------------------------------- TTL
def test_ttl_drops_exactly_the_expired_detail_rows(db: Database) -> None:
    old = NOW - dt.timedelta(days=200)  # past the 6-month retention
    recent = NOW - dt.timedelta(days=30)
    run_id = uuid.uuid4()
    metrics = [
        TrainingMetric(
            run_id=run_id,
            iteration_number=i,
            train_loss=1.0,
            iteration_duration_ms=1.0,
            recorded_at=ts,
        )
        for i, ts in [(1, old), (2, old), (3, recent), (4, NOW)]
    ]
    rewards = [
        RewardStep(
            run_id=run_id,
            episode_number=ep,
            timestep_number=step,
            step_reward=0.1,
            episode_cumulative_reward=0.1,
            is_episode_end=end,
            recorded_at=ts,
        )
        for ep, step, end, ts in [
            (1, 1, 0, old),
            (1, 2, 1, old),  # old episode: its summary row survives
            (2, 3, 0, recent),
            (2, 4, 1, recent),  # recent episode: both survive
        ]
    ]
    with db.session() as session:
        session.add_all(metrics + rewards)
        session.commit()
    db.execute("OPTIMIZE TABLE training_metrics FINAL")
    db.execute("OPTIMIZE TABLE reward_history FINAL")
    kept_iterations = [
        r[0]
        for r in db.execute(
            "SELECT iteration_number FROM training_metrics ORDER BY iteration_number"
        )
    ]
    kept_steps = [
        r[0]
        for r in db.execute("SELECT timestep_number FROM reward_history ORDER BY timestep_number")
    ]
    assert kept_iterations == [3, 4]
    assert kept_steps == [2, 3, 4]
