"""Query latency at scale: the seed queries, a learning curve and a run's current row.

Data (generated in bulk inside ClickHouse, ``INSERT ... SELECT ... FROM numbers()``,
into a freshly migrated database):

* ``training_runs`` and ``agent_training_runs``: ``--runs`` runs each, created
  evenly over the last 150 days, with one row per status version as the
  repositories write them: ``pending``, ``running``, then ``completed`` (85 %) or
  ``failed`` (10 %); 5 % are still ``running``. Each version is its own INSERT,
  so the three versions sit in three parts and ``FINAL`` has real work to do
  (ClickHouse does not merge three parts on its own; checked, see the results).
* ``training_metrics``: ``--iterations`` rows per supervised run, recorded while
  the run trained (so within the last ~5 months: the table's 6-month TTL keeps
  them), monthly partitions as in the schema. 1 % of the runs were "resumed"
  and re-logged their last 10 % of iterations later, so FINAL also matters here.
  One more run has ``--long-iterations`` points (100,000: MLflow's reference read).

What is measured, on the embedded default (chDB in process) and on the local
server (``LocalServer``, the same engine in a subprocess, clickhouse-driver over
TCP; it serves the very same data directory):

* the seed's two queries verbatim, and the repository methods that read
  current rows (``compare_model_performance()``, ``best_agents()``, FINAL);
* one run's learning curve: ``TrainingMetricRepository.learning_curve`` (records),
  ``.learning_curve_arrow`` (Arrow), the raw SQL with FINAL + WHERE (the
  repository's first form) and without FINAL; the same for the long run;
* one run's current row, ``TrainingRunRepository.get``.

Per case: ``--reps`` timed calls after ``--warmup`` calls (median, p95, min), and
the first call in a fresh process ("cold"), once with the database's files
evicted from the OS page cache (``posix_fadvise(DONTNEED)``, our files only) and
once with them cached. Next to the end-to-end times: the engine's own time for
the same SQL, rows and bytes read (server), candidate parts and rows
(``EXPLAIN ESTIMATE``) and ``EXPLAIN indexes = 1``. Then an investigation of what
the FINAL reads cost and what would make them cheaper (PREWHERE on the key, dedup
without FINAL, ``do_not_merge_across_partitions_select_final``, a bloom_filter
skip index, OPTIMIZE, one partition vs many); it changes only the benchmark's own
throw-away database. The machine may be shared: each timed phase first waits
(``--quiet-wait``) until other processes use at most ``--max-others`` of the CPUs.

Usage: ``python bench/bench_queries.py [--runs N] [--iterations M] [--quick] [--results-dir DIR]``.
Results go to ``bench/results/queries.json`` and ``queries.md`` (``--quick``
writes nothing unless ``--results-dir`` is given).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from harness import (
    Results,
    add_quiet_arguments,
    add_results_arguments,
    num,
    others_share,
    size,
    summary,
    table,
    wait_for_quiet,
)
from sqlalchemy import event

from repositories import queries
from repositories.runs import AgentRunRepository, TrainingRunRepository
from repositories.series import TrainingMetricRepository
from suho_models.db import Database, migrations
from suho_models.db.chdb_dbapi import render
from suho_models.db.server import LocalServer

DATABASE = "bench_q"
SPAN_DAYS = 150
"""Runs are created evenly over this many days before generation (TTL is 6 months)."""
TARGET_SEED_MS = 50.0
TARGET_CURVE_MS = 100.0
MLFLOW_REFERENCE_MS = 220.0
MLFLOW_REFERENCE = (
    "MLflow needs about 220 ms to return a 100k-point metric history from a 75M-row "
    "metrics table (quoted reference, not run here)"
)

CURVE_COLUMNS = (
    "iteration_number, train_loss, val_loss, train_accuracy, val_accuracy, "
    "learning_rate, gradient_norm, iteration_duration_ms"
)
CURVE_SQL_WHERE = (
    f"SELECT {CURVE_COLUMNS}, recorded_at FROM training_metrics FINAL "
    "WHERE run_id = %(run_id)s ORDER BY iteration_number"
)
"""The curve as the repository first read it: FINAL with the run as a WHERE."""
CURVE_SQL_NO_FINAL = (
    f"SELECT {CURVE_COLUMNS}, recorded_at FROM training_metrics "
    "WHERE run_id = %(run_id)s ORDER BY iteration_number"
)
GET_SQL_WHERE = "SELECT * FROM training_runs FINAL WHERE run_id = %(run_id)s LIMIT 2"
"""One run as the repository first read it: FINAL with the run as a WHERE."""

CASES = (
    "compare_model_performance.verbatim",
    "compare_model_performance.repository",
    "best_rl_agents.verbatim",
    "best_rl_agents.repository",
    "learning_curve.repository",
    "learning_curve.arrow",
    "learning_curve.sql_final_where",
    "learning_curve.sql_no_final",
    "learning_curve.repository_resumed_run",
    "run_get.repository",
    "run_get.sql_final_where",
    "learning_curve.repository_long_run",
    "learning_curve.arrow_long_run",
)
"""The measured calls, the keys of the JSON results. The long run has
``--long-iterations`` points (100,000: the size of MLflow's reference read)."""
OWN_SQL: dict[str, tuple[str, str]] = {
    "compare_model_performance.verbatim": (queries.COMPARE_MODEL_PERFORMANCE.rstrip(";"), "run"),
    "best_rl_agents.verbatim": (queries.BEST_RL_AGENTS.rstrip().rstrip(";"), "run"),
    "learning_curve.sql_final_where": (CURVE_SQL_WHERE, "run"),
    "learning_curve.sql_no_final": (CURVE_SQL_NO_FINAL, "run"),
    "run_get.sql_final_where": (GET_SQL_WHERE, "run"),
}
"""Cases that send the benchmark's own SQL -> (that SQL, the run it reads). Every other
case calls a repository method, and its statement is the one that call sends
(:func:`sent_statement`), so a change in the repository is measured as such."""

WHERE_FINAL = "FINAL + WHERE run_id (the earlier repository SQL)"
PREWHERE_FINAL = "FINAL + PREWHERE run_id"
REPOSITORY = "the repository's statement"

TARGETS = {
    "compare_model_performance.verbatim": TARGET_SEED_MS,
    "compare_model_performance.repository": TARGET_SEED_MS,
    "best_rl_agents.verbatim": TARGET_SEED_MS,
    "best_rl_agents.repository": TARGET_SEED_MS,
    "learning_curve.repository": TARGET_CURVE_MS,
    "learning_curve.arrow": TARGET_CURVE_MS,
    "learning_curve.sql_final_where": TARGET_CURVE_MS,
    "learning_curve.repository_resumed_run": TARGET_CURVE_MS,
}


# --------------------------------------------------------------------------- helpers
def sent_statement(db: Database, call: Callable[[], Any]) -> tuple[str, Any]:
    """The one statement ``call`` sends, with its parameters, as the driver gets it
    (SQLAlchemy's cursor events; ``Database.query_arrow`` for the Arrow reads). Raises
    unless exactly one was sent: a benchmark must not measure a statement it guessed.

    Issue 11: replace by the repositories' public way to get a compiled statement
    once it exists; until then this observes what the public methods send."""
    sent: list[tuple[str, Any]] = []

    def before_cursor_execute(*args: Any) -> None:
        _conn, _cursor, statement, parameters, _context, _executemany = args
        sent.append((statement, parameters))

    query_arrow = db.query_arrow

    def observed_query_arrow(sql: str, params: dict[str, Any] | None = None) -> Any:
        sent.append((sql, params))
        return query_arrow(sql, params)

    event.listen(db.engine, "before_cursor_execute", before_cursor_execute)
    db.query_arrow = observed_query_arrow
    try:
        call()
    finally:
        event.remove(db.engine, "before_cursor_execute", before_cursor_execute)
        del db.query_arrow
    if len(sent) != 1:
        raise RuntimeError(f"expected the call to send one statement, it sent {sent!r}")
    return sent[0]


def _uniform(salt: int) -> str:
    """A reproducible uniform [0, 1) per run, from the run number ``r``."""
    return f"(sipHash64(r, {salt}) / 18446744073709551616.0)"


def evict_from_page_cache(path: Path) -> int:
    """Evict every file under ``path`` from the OS page cache (a sync, then
    ``POSIX_FADV_DONTNEED``), so that a cold call reads its data from disk. Only our
    own files: the machine's page cache stays as it is for everything else."""
    os.sync()
    evicted = 0
    for f in path.rglob("*"):
        if not f.is_file() or f.is_symlink():
            continue
        try:
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            evicted += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return evicted


def _table_sizes(db: Database) -> dict[str, Any]:
    rows = db.execute_mappings(
        "SELECT table, count() AS parts, uniqExact(partition) AS partitions, "
        "sum(rows) AS rows, sum(bytes_on_disk) AS bytes_on_disk, "
        "sum(data_compressed_bytes) AS compressed_bytes, "
        "sum(data_uncompressed_bytes) AS uncompressed_bytes "
        "FROM system.parts WHERE active AND database = currentDatabase() "
        "AND table IN ('training_runs', 'agent_training_runs', 'training_metrics') "
        "GROUP BY table ORDER BY table"
    )
    return {r.pop("table"): {k: int(v) for k, v in r.items()} for r in rows}


def _parts_by_partition(db: Database, table: str) -> dict[str, Any]:
    rows = db.execute(
        "SELECT partition, count(), sum(rows) FROM system.parts "
        "WHERE active AND database = currentDatabase() AND table = %(t)s "
        "GROUP BY partition ORDER BY partition",
        {"t": table},
    )
    return {p: {"parts": int(n), "rows": int(r)} for p, n, r in rows}


def _running_merges(db: Database) -> int:
    return int(db.scalar("SELECT count() FROM system.merges WHERE database = currentDatabase()"))


def wait_for_merges(db: Database, timeout_s: float, quiet_s: int = 3) -> float:
    """Wait until no merge has run for ``quiet_s`` seconds; returns the wait."""
    start = time.perf_counter()
    quiet = 0
    while time.perf_counter() - start < timeout_s:
        quiet = quiet + 1 if _running_merges(db) == 0 else 0
        if quiet >= quiet_s:
            break
        time.sleep(1)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- generation
RUN_CHUNK = 10_000
"""Runs written together in creation order (``write_order="chunked"``): about what a
team creates in a day or two at the million-run scale."""


def _runs_source(prefix: str, n: int, start: int, lo: int = 0, hi: int | None = None) -> str:
    """Runs ``lo`` to ``hi`` of ``n`` (created evenly over ``SPAN_DAYS``)."""
    span_ms = SPAN_DAYS * 86_400_000
    hi = n if hi is None else hi
    return (
        f"(SELECT number AS r, reinterpretAsUUID(sipHash128('{prefix}', r)) AS rid, "
        f"toDateTime64({start}, 3, 'UTC') + toIntervalMillisecond(intDiv(r * {span_ms}, {n})) "
        f"AS created FROM numbers({lo}, {hi - lo}))"
    )


def _write_runs(
    db: Database,
    table: str,
    prefix: str,
    n: int,
    start: int,
    common: dict[str, str],
    versions: list[tuple[str, dict[str, str], str]],
    write_order: str,
) -> dict[str, float]:
    """``bulk``: each status version of every run in one INSERT (three parts spanning
    all runs: FINAL's worst case). ``chunked``: as runs are really written, in creation
    order, ``RUN_CHUNK`` runs at a time with their versions (later runs, later parts)."""
    if write_order == "bulk":
        return _insert_versions(db, table, _runs_source(prefix, n, start), common, versions)
    if write_order != "chunked":
        raise ValueError(f"write_order: expected bulk or chunked (got {write_order!r})")
    seconds: dict[str, float] = {}
    for lo in range(0, n, RUN_CHUNK):
        source = _runs_source(prefix, n, start, lo, min(n, lo + RUN_CHUNK))
        for name, s in _insert_versions(db, table, source, common, versions).items():
            seconds[name] = seconds.get(name, 0.0) + s
    return seconds


def _insert_versions(
    db: Database,
    table: str,
    source: str,
    common: dict[str, str],
    versions: list[tuple[str, dict[str, str], str]],
) -> dict[str, float]:
    """One INSERT ... SELECT per status version (so one part per version)."""
    seconds = {}
    for name, extra, where in versions:
        cols = {**common, **extra}
        sql = (
            f"INSERT INTO {table} ({', '.join(cols)}) "
            f"SELECT {', '.join(cols.values())} FROM {source}"
            + (f" WHERE {where}" if where else "")
        )
        t = time.perf_counter()
        db.execute(sql)
        seconds[name] = time.perf_counter() - t
    return seconds


def _generate_training_runs(
    db: Database, n: int, m: int, start: int, write_order: str = "chunked"
) -> dict[str, float]:
    u = _uniform
    regression = "r % 4 = 0"
    completed = "r % 20 NOT IN (1, 2)"
    common = {
        "run_id": "rid",
        "model_type": "['xgboost', 'lightgbm', 'catboost', 'sklearn', 'other'][r % 5 + 1]",
        "run_name": "concat(['xgb', 'lgbm', 'cb', 'sk', 'other'][r % 5 + 1], '-', toString(r))",
        "task_type": f"if({regression}, 'regression', 'classification')",
        "target_variable": "'target_return_1h'",
        "features_used": "arrayMap(i -> concat('feature_', toString(i)), range(20 + r % 30))",
        "train_start": "created - toIntervalDay(730)",
        "train_end": "created - toIntervalDay(220)",
        "val_start": "created - toIntervalDay(220)",
        "val_end": "created - toIntervalDay(110)",
        "test_start": "created - toIntervalDay(110)",
        "test_end": "created - toIntervalDay(1)",
        "train_ratio": "0.7",
        "val_ratio": "0.15",
        "test_ratio": "0.15",
        "train_rows": "70000 + r % 1000",
        "val_rows": "15000",
        "test_rows": "15000",
        "config_json": (
            'concat(\'{"colsample_bytree": 0.8, "learning_rate": \', '
            "toString(0.01 + (r % 10) / 100), ', \"max_depth\": ', toString(3 + r % 8), "
            f'\', "n_estimators": {m}, "seed": \', toString(r), \', "subsample": 0.8}}\')'
        ),
        "git_commit_hash": "lower(hex(sipHash128('commit', intDiv(r, 500))))",
        "created_at": "created",
    }
    started = "created + toIntervalSecond(1)"
    finished = f"created + toIntervalSecond({m + 2})"
    metric = f"if({completed}, {{}}, NULL)"
    classification = f"if({completed} AND NOT {regression}, {{}}, NULL)"
    reg = f"if({completed} AND {regression}, {{}}, NULL)"
    terminal = {
        "status": f"if({completed}, 'completed', 'failed')",
        "started_at": started,
        "completed_at": finished,
        "duration_seconds": f"{m + 1}.0",
        "error_message": f"if({completed}, '', 'RuntimeError: CUDA out of memory')",
        "final_train_loss": metric.format(f"0.05 + 0.2 * {u(1)}"),
        "final_val_loss": metric.format(f"0.1 + 0.3 * {u(2)}"),
        "final_test_loss": metric.format(f"0.1 + 0.35 * {u(3)}"),
        "final_train_accuracy": classification.format(f"0.6 + 0.39 * {u(4)}"),
        "final_val_accuracy": classification.format(f"0.5 + 0.45 * {u(5)}"),
        "final_test_accuracy": classification.format(f"0.5 + 0.45 * {u(6)}"),
        "final_f1_score": classification.format(f"0.4 + 0.5 * {u(7)}"),
        "final_auc_score": classification.format(f"0.5 + 0.45 * {u(8)}"),
        "final_precision": classification.format(f"0.4 + 0.5 * {u(9)}"),
        "final_recall": classification.format(f"0.4 + 0.5 * {u(10)}"),
        "final_rmse": reg.format(f"0.01 + 0.05 * {u(11)}"),
        "final_mae": reg.format(f"0.005 + 0.03 * {u(12)}"),
        "final_r2": reg.format(f"-0.1 + 0.4 * {u(13)}"),
        "final_direction_accuracy": reg.format(f"0.45 + 0.15 * {u(14)}"),
        "updated_at": f"toDateTime64({finished}, 6, 'UTC')",
    }
    return _write_runs(
        db,
        "training_runs",
        "train",
        n,
        start,
        common,
        [
            (
                "pending",
                {"status": "'pending'", "updated_at": "toDateTime64(created, 6, 'UTC')"},
                "",
            ),
            (
                "running",
                {
                    "status": "'running'",
                    "started_at": started,
                    "updated_at": f"toDateTime64({started}, 6, 'UTC')",
                },
                "",
            ),
            ("terminal", terminal, "r % 20 != 0"),
        ],
        write_order,
    )


def _generate_agent_runs(
    db: Database, n: int, start: int, write_order: str = "chunked"
) -> dict[str, float]:
    u = _uniform
    completed = "r % 20 NOT IN (1, 2)"
    common = {
        "run_id": "rid",
        "agent_type": "['ppo', 'a2c', 'ddpg', 'sac', 'td3'][r % 5 + 1]",
        "run_name": "concat(['ppo', 'a2c', 'ddpg', 'sac', 'td3'][r % 5 + 1], '-', toString(r))",
        "status": "'pending'",
        "state_dim": "1 + 30 * 10",
        "action_dim": "30",
        "reward_function_type": (
            "['portfolio_value_change', 'log_return', 'differential_sharpe', "
            "'drawdown_penalized'][r % 4 + 1]"
        ),
        "tickers": "arrayMap(i -> concat('TICK', toString(i)), range(10 + r % 21))",
        "initial_amount": "1000000.0",
        "buy_cost_pct": "0.001",
        "sell_cost_pct": "0.001",
        "env_config_json": (
            'concat(\'{"hmax": 100, "reward_scaling": 0.0001, "tech_indicators": '
            '["macd", "rsi_30", "cci_30", "dx_30"], "seed": \', toString(r), \'}\')'
        ),
        "train_start": "created - toIntervalDay(1500)",
        "train_end": "created - toIntervalDay(400)",
        "trade_start": "created - toIntervalDay(400)",
        "trade_end": "created - toIntervalDay(1)",
        "config_json": (
            'concat(\'{"batch_size": 64, "learning_rate": 0.0003, "n_steps": 2048, '
            "\"seed\": ', toString(r), '}')"
        ),
        "git_commit_hash": "lower(hex(sipHash128('commit', intDiv(r, 500))))",
        "created_at": "created",
    }
    started = "created + toIntervalSecond(1)"
    finished = "created + toIntervalSecond(3600)"
    metric = f"if({completed}, {{}}, NULL)"
    terminal = {
        "status": f"if({completed}, 'completed', 'failed')",
        "started_at": started,
        "completed_at": finished,
        "duration_seconds": "3599.0",
        "error_message": f"if({completed}, '', 'ValueError: NaN in observation')",
        "total_timesteps": "100000 + r % 50000",
        "total_episodes": "50 + r % 25",
        "final_mean_reward": metric.format(f"-50 + 150 * {u(1)}"),
        "final_sharpe_ratio": metric.format(f"-1 + 4 * {u(2)}"),
        "final_total_return": metric.format(f"-0.3 + 0.9 * {u(3)}"),
        "final_max_drawdown": metric.format(f"-0.05 - 0.4 * {u(4)}"),
        "final_annual_volatility": metric.format(f"0.1 + 0.3 * {u(5)}"),
        "final_sortino_ratio": metric.format(f"-1 + 5 * {u(6)}"),
        "final_calmar_ratio": metric.format(f"-1 + 4 * {u(7)}"),
        "updated_at": f"toDateTime64({finished}, 6, 'UTC')",
    }
    return _write_runs(
        db,
        "agent_training_runs",
        "agent",
        n,
        start,
        common,
        [
            ("pending", {"updated_at": "toDateTime64(created, 6, 'UTC')"}, ""),
            (
                "running",
                {
                    "status": "'running'",
                    "started_at": started,
                    "updated_at": f"toDateTime64({started}, 6, 'UTC')",
                },
                "",
            ),
            ("terminal", terminal, "r % 20 != 0"),
        ],
        write_order,
    )


METRIC_COLUMNS = (
    "run_id, iteration_number, train_loss, val_loss, train_accuracy, val_accuracy, "
    "learning_rate, gradient_norm, iteration_duration_ms, recorded_at"
)


def _metrics_select(
    n: int, rows_source: str, start: int, salt: int, delay_s: int, span_days: int
) -> str:
    """Rows of ``training_metrics`` from a source with run ``r``, iteration ``it``."""
    span_ms = span_days * 86_400_000
    return (
        "SELECT reinterpretAsUUID(sipHash128('train', r)), toUInt32(it), "
        "exp(-it / 300.0) + n1 * 0.05, exp(-it / 350.0) + 0.1 + n2 * 0.05, "
        "1 - exp(-it / 300.0) * 0.5 - n1 * 0.02, 1 - exp(-it / 350.0) * 0.5 - n2 * 0.02, "
        "0.01 + (r % 10) / 100, if(r % 5 = 0, NULL, n3 * 2), 5 + n4 * 10, "
        f"toDateTime64({start}, 3, 'UTC') + toIntervalMillisecond("
        f"intDiv(r * {span_ms}, {n}) + 1000 + it * 1000 + {delay_s * 1000}) "
        f"FROM (SELECT r, it, intHash64(number + {salt}) AS h, (h % 1000) / 1000.0 AS n1, "
        "(intDiv(h, 1000) % 1000) / 1000.0 AS n2, (intDiv(h, 1000000) % 1000) / 1000.0 AS n3, "
        f"(intDiv(h, 1000000000) % 1000) / 1000.0 AS n4 FROM {rows_source})"
    )


def _generate_metrics(
    db: Database,
    table: str,
    n: int,
    m: int,
    start: int,
    span_days: int = SPAN_DAYS,
    resumed: bool = True,
) -> dict[str, Any]:
    """``n * m`` rows, plus the re-logged tail of every 100th run (``r % 100 = 7``)."""
    settings = " SETTINGS max_insert_threads = 2"
    out: dict[str, Any] = {}
    t = time.perf_counter()
    source = (
        f"(SELECT intDiv(number, {m}) AS r, number % {m} + 1 AS it, number FROM numbers({n * m}))"
    )
    db.execute(
        f"INSERT INTO {table} ({METRIC_COLUMNS}) "
        + _metrics_select(n, source, start, 0, 0, span_days)
        + settings
    )
    out["main_s"] = time.perf_counter() - t
    out["main_rows"] = n * m
    if resumed:
        tail = m - (m * 9) // 10
        resumed_runs = (n + 92) // 100
        source = (
            f"(SELECT 7 + 100 * intDiv(number, {tail}) AS r, "
            f"{m - tail + 1} + number % {tail} AS it, number "
            f"FROM numbers({resumed_runs * tail}) WHERE r < {n})"
        )
        t = time.perf_counter()
        db.execute(
            f"INSERT INTO {table} ({METRIC_COLUMNS}) "
            + _metrics_select(n, source, start, 1 << 40, 3600, span_days)
            + settings
        )
        out["resumed_s"] = time.perf_counter() - t
        out["resumed_rows"] = int(db.scalar(f"SELECT count() FROM {table}")) - n * m
    return out


def phase_generate(args: argparse.Namespace) -> dict[str, Any]:
    url = args.url
    n, m = args.runs, args.iterations
    t = time.perf_counter()
    migrations.upgrade(url)
    out: dict[str, Any] = {"migrate_s": time.perf_counter() - t}
    db = Database(url)
    try:
        start = int(time.time()) - SPAN_DAYS * 86_400
        out["created_from"] = datetime.fromtimestamp(start, UTC).isoformat()
        t = time.perf_counter()
        out["training_runs"] = _generate_training_runs(db, n, m, start)
        out["agent_training_runs"] = _generate_agent_runs(db, n, start)
        out["runs_s"] = time.perf_counter() - t
        t = time.perf_counter()
        out["training_metrics"] = _generate_metrics(db, "training_metrics", n, m, start)
        long_n = args.long_iterations
        source = f"(SELECT toUInt64({n}) AS r, number + 1 AS it, number FROM numbers({long_n}))"
        t = time.perf_counter()
        db.execute(
            f"INSERT INTO training_metrics ({METRIC_COLUMNS}) "
            # Run number n: its recorded_at would start now; shift it into the past.
            + _metrics_select(n, source, start, 2 << 40, -(long_n + 3600), SPAN_DAYS)
        )
        out["long_run_s"] = time.perf_counter() - t
        out["metrics_s"] = out["long_run_s"] + sum(
            v for k, v in out["training_metrics"].items() if k.endswith("_s")
        )
        out["merges_running_after_insert"] = _running_merges(db)
        out["parts_after_insert"] = _table_sizes(db)
        out["settle_s"] = wait_for_merges(db, args.settle_timeout)
        out["sizes"] = _table_sizes(db)
        out["training_metrics_partitions"] = _parts_by_partition(db, "training_metrics")
        out["status_counts"] = {
            table: dict(
                db.execute(
                    f"SELECT status, count() FROM {table} FINAL GROUP BY status ORDER BY status"
                )
            )
            for table in ("training_runs", "agent_training_runs")
        }
        out["status_versions_raw"] = {
            table: int(db.scalar(f"SELECT count() FROM {table}"))
            for table in ("training_runs", "agent_training_runs")
        }
        mid = (n // 2) // 100 * 100
        picks = {"run": mid + 5, "resumed_run": mid + 7 if mid + 7 < n else 7}
        picks["long_run"] = n
        out["ids"] = {
            name: str(db.scalar(f"SELECT reinterpretAsUUID(sipHash128('train', toUInt64({r})))"))
            for name, r in picks.items()
        }
        out["run_numbers"] = picks
        out["runs"], out["iterations"], out["long_iterations"] = n, m, long_n
    finally:
        db.close()
    return out


# --------------------------------------------------------------------------- measurement
class Bench:
    """The database, the repositories and the measured calls."""

    def __init__(
        self, url: str, ids: dict[str, str], iterations: int, long_iterations: int
    ) -> None:
        t = time.perf_counter()
        self.db = Database(url)
        self.runs = TrainingRunRepository(self.db)  # verifies the schema: first connection
        self.agents = AgentRunRepository(self.db)
        self.metrics = TrainingMetricRepository(self.db)
        self.open_s = time.perf_counter() - t
        self.ids = ids
        self.iterations = iterations
        self.long_iterations = long_iterations
        self._statements: dict[str, tuple[str, Any]] = {}

    def call(self, case: str) -> Any:
        """Run one case once; checks what came back."""
        db, run, m = self.db, self.ids["run"], self.iterations
        if case == "compare_model_performance.verbatim":
            out = db.execute_mappings(queries.COMPARE_MODEL_PERFORMANCE)
            assert len(out) == 10, out
        elif case == "compare_model_performance.repository":
            out = self.runs.compare_model_performance()
            assert len(out) == 10, out
        elif case == "best_rl_agents.verbatim":
            out = db.execute_mappings(queries.BEST_RL_AGENTS)
            assert len(out) == 10, out
        elif case == "best_rl_agents.repository":
            out = self.agents.best_agents()
            assert len(out) == 10, out
        elif case == "learning_curve.repository":
            out = self.metrics.learning_curve(run)
            assert len(out) == m, len(out)
        elif case == "learning_curve.arrow":
            out = self.metrics.learning_curve_arrow(run)
            assert out.num_rows == m, out.num_rows
        elif case == "learning_curve.sql_final_where":
            out = db.execute(CURVE_SQL_WHERE, {"run_id": run})
            assert len(out) == m, len(out)
        elif case == "learning_curve.sql_no_final":
            out = db.execute(CURVE_SQL_NO_FINAL, {"run_id": run})
            assert len(out) == m, len(out)
        elif case == "learning_curve.repository_resumed_run":
            out = self.metrics.learning_curve(self.ids["resumed_run"])
            assert len(out) == m, len(out)
        elif case == "learning_curve.repository_long_run":
            out = self.metrics.learning_curve(self.ids["long_run"])
            assert len(out) == self.long_iterations, len(out)
        elif case == "learning_curve.arrow_long_run":
            out = self.metrics.learning_curve_arrow(self.ids["long_run"])
            assert out.num_rows == self.long_iterations, out.num_rows
        elif case == "run_get.repository":
            out = self.runs.get(run)
            assert out.status.value == "completed", out.status
        elif case == "run_get.sql_final_where":
            out = db.execute_mappings(GET_SQL_WHERE, {"run_id": run})
            assert len(out) == 1 and out[0]["status"] == "completed", out
        else:
            raise ValueError(case)
        return out

    def statement(self, case: str) -> tuple[str, Any]:
        """The SQL the case sends and its parameters: the benchmark's own, or what the
        repository call sent (observed once, after the timed calls' warm-up)."""
        if case in OWN_SQL:
            sql, run = OWN_SQL[case]
            return sql, {"limit": 10, "run_id": self.ids[run]}
        if case not in self._statements:
            self._statements[case] = sent_statement(self.db, lambda: self.call(case))
        return self._statements[case]

    def rendered(self, case: str) -> str:
        return render(*self.statement(case))

    def engine(self, case: str) -> dict[str, Any]:
        """Send the case's statement bare through the driver: the engine's own time
        and (server only) what it read."""
        rendered = self.rendered(case)
        with self.db.engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            t = time.perf_counter()
            if self.db.is_embedded:
                result = raw.client.query(rendered)
                wall = time.perf_counter() - t
                # chDB's summary counts result rows as "read_rows": no read counters here.
                return {
                    "wall_s": wall,
                    "engine_s": int(result.summary["elapsed_ns"]) / 1e9,
                    "read_rows": None,
                    "read_bytes": None,
                }
            client = raw.transport
            client.execute(rendered)
            wall = time.perf_counter() - t
            progress = client.last_query.progress
            elapsed_ns = getattr(progress, "elapsed_ns", 0)
            return {
                "wall_s": wall,
                "engine_s": elapsed_ns / 1e9 if elapsed_ns else None,
                "read_rows": int(progress.rows),
                "read_bytes": int(progress.bytes),
            }

    def estimate(self, case: str) -> dict[str, int]:
        return _estimate(self.db, self.rendered(case))

    def explain(self, case: str) -> str:
        rows = self.db.execute("EXPLAIN indexes = 1 " + self.rendered(case))
        return "\n".join(r[0] for r in rows)

    def close(self) -> None:
        self.db.close()


def _estimate(db: Database, sql: str) -> dict[str, int]:
    """Parts, rows and granules the primary key leaves to read (``EXPLAIN ESTIMATE``)."""
    rows = db.execute_mappings("EXPLAIN ESTIMATE " + sql)
    return {k: sum(int(r[k]) for r in rows) for k in ("parts", "rows", "marks")}


def phase_cold(args: argparse.Namespace) -> dict[str, Any]:
    gen = json.loads(Path(args.gen).read_text())
    bench = Bench(args.url, gen["ids"], gen["iterations"], gen["long_iterations"])
    try:
        t = time.perf_counter()
        bench.call(args.case)
        first = time.perf_counter() - t
        t = time.perf_counter()
        bench.call(args.case)
        second = time.perf_counter() - t
        return {"open_s": bench.open_s, "first_s": first, "second_s": second}
    finally:
        bench.close()


def phase_measure(args: argparse.Namespace) -> dict[str, Any]:
    """``reps`` rounds over all cases (so that load from elsewhere falls on all of
    them alike); each timed call is followed by its bare statement (so both see the
    same conditions). ``warmup`` untimed rounds first."""
    gen = json.loads(Path(args.gen).read_text())
    bench = Bench(args.url, gen["ids"], gen["iterations"], gen["long_iterations"])
    try:
        out: dict[str, Any] = {"open_s": bench.open_s, "merges_at_start": _running_merges(bench.db)}
        for _ in range(args.warmup):
            for case in CASES:
                bench.call(case)
                bench.engine(case)
        gc.collect()
        seconds: dict[str, list[float]] = {case: [] for case in CASES}
        bare: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
        for _ in range(args.reps):
            for case in CASES:
                t = time.perf_counter()
                bench.call(case)
                seconds[case].append(time.perf_counter() - t)
                bare[case].append(bench.engine(case))
        cases: dict[str, Any] = {}
        for case in CASES:
            engine_s = [b["engine_s"] for b in bare[case]]
            c = summary(seconds[case])
            c["sql"] = bench.rendered(case)
            c["bare_statement_driver"] = summary([b["wall_s"] for b in bare[case]])
            if all(e is not None for e in engine_s):
                c["engine"] = summary(engine_s)
                c["outside_engine_median_ms"] = float(
                    np.median(
                        [(a - e) * 1000 for a, e in zip(seconds[case], engine_s, strict=True)]
                    )
                )
            else:
                c["engine"] = None
                c["outside_engine_median_ms"] = None
            last = bare[case][-1]
            c["read_rows"], c["read_bytes"] = last["read_rows"], last["read_bytes"]
            c["estimate"] = bench.estimate(case)
            c["explain"] = bench.explain(case)
            cases[case] = c
            engine_ms = c["engine"]["median_ms"] if c["engine"] else float("nan")
            print(
                f"  {case:42s} median {c['median_ms']:8.2f} ms (engine {engine_ms:6.2f} ms)",
                flush=True,
            )
        out["cases"] = cases
        if not bench.db.is_embedded and args.http_port:
            out["alternatives"] = _arrow_alternatives(bench, args)
        out["merges_at_end"] = _running_merges(bench.db)
        out["sizes"] = _table_sizes(bench.db)
        return out
    finally:
        bench.close()


def _arrow_alternatives(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """The long run's curve as Arrow from the server by routes other than the
    repository's (its URL names the HTTP port, so ClickHouse writes the Arrow):
    what a URL without ``http_port`` gets, and the native driver's numpy mode."""
    import pyarrow as pa

    sql = bench.rendered("learning_curve.arrow_long_run")
    native = Database(bench.db.url.difference_update_query(["http_port"]))

    def native_numpy() -> pa.Table:
        with bench.db.engine.connect() as conn:
            client = conn.connection.dbapi_connection.transport
            cols, types = client.execute(
                sql, with_column_types=True, columnar=True, settings={"use_numpy": True}
            )
        return pa.table({name: pa.array(col) for (name, _), col in zip(types, cols, strict=True)})

    routes: dict[str, Callable[[], pa.Table]] = {
        "native driver, Python objects into Arrow (a URL without http_port)": (
            lambda: native.query_arrow(sql)
        ),
        "native driver with use_numpy, then Arrow": native_numpy,
    }
    out: dict[str, Any] = {}
    try:
        for name, fn in routes.items():
            for _ in range(args.warmup):
                fn()
            seconds = []
            for _ in range(args.reps):
                t = time.perf_counter()
                table = fn()
                seconds.append(time.perf_counter() - t)
            assert table.num_rows == bench.long_iterations, table.num_rows
            out[name] = summary(seconds)
    finally:
        native.close()
    return out


# --------------------------------------------------------------------------- investigation
class Variants:
    """Timed alternatives of one statement, checked to return the same rows."""

    def __init__(self, db: Database, reps: int, warmup: int) -> None:
        self.db = db
        self.reps = reps
        self.warmup = warmup

    def once(self, sql: str) -> list[tuple]:
        with self.db.engine.connect() as conn:
            return list(conn.connection.dbapi_connection.client.query(sql).result_rows)

    def compare(self, variants: dict[str, str], reference: str) -> dict[str, Any]:
        """Time the variants interleaved (one call of each per round), so that load
        from elsewhere on the machine falls on all of them alike."""
        rows: dict[str, list[tuple]] = {}
        walls: dict[str, list[float]] = {name: [] for name in variants}
        engines: dict[str, list[float]] = {name: [] for name in variants}
        with self.db.engine.connect() as conn:
            client = conn.connection.dbapi_connection.client
            for i in range(self.warmup + self.reps):
                for name, sql in variants.items():
                    t = time.perf_counter()
                    result = client.query(sql)
                    wall = time.perf_counter() - t
                    if i >= self.warmup:
                        walls[name].append(wall)
                        engines[name].append(int(result.summary["elapsed_ns"]) / 1e9)
                    rows[name] = list(result.result_rows)
        out: dict[str, Any] = {}
        for name, sql in variants.items():
            out[name] = {
                "sql": sql,
                "wall": summary(walls[name]),
                "engine": summary(engines[name]),
                "rows": len(rows[name]),
                "estimate": _estimate(self.db, sql),
                "same_rows_as_reference": (
                    None if name == reference else rows[name] == rows[reference]
                ),
            }
            print(f"    {name:56s} engine {out[name]['engine']['median_ms']:8.2f} ms", flush=True)
        return out


def _curve_variants(table: str, run_id: str, repository: str | None = None) -> dict[str, str]:
    """Ways to read one run's curve from ``table``; ``repository``: the rendered
    statement ``learning_curve`` sends (for ``training_metrics`` only)."""
    where = f"run_id = '{run_id}'"
    cols = f"{CURVE_COLUMNS}, recorded_at"
    v = {
        WHERE_FINAL: (f"SELECT {cols} FROM {table} FINAL WHERE {where} ORDER BY iteration_number"),
        PREWHERE_FINAL: (
            f"SELECT {cols} FROM {table} FINAL PREWHERE {where} ORDER BY iteration_number"
        ),
    }
    v.update(
        {
            "FINAL + optimize_move_to_prewhere_if_final=1": (
                f"SELECT {cols} FROM {table} FINAL WHERE {where} ORDER BY iteration_number "
                "SETTINGS optimize_move_to_prewhere_if_final = 1"
            ),
            "FINAL + do_not_merge_across_partitions_select_final=1": (
                f"SELECT {cols} FROM {table} FINAL WHERE {where} ORDER BY iteration_number "
                "SETTINGS do_not_merge_across_partitions_select_final = 1"
            ),
            "FINAL + PREWHERE + do_not_merge_across_partitions": (
                f"SELECT {cols} FROM {table} FINAL PREWHERE {where} ORDER BY iteration_number "
                "SETTINGS do_not_merge_across_partitions_select_final = 1"
            ),
            "no FINAL, LIMIT 1 BY iteration (newest recorded_at)": (
                f"SELECT {cols} FROM {table} WHERE {where} "
                "ORDER BY iteration_number, recorded_at DESC LIMIT 1 BY iteration_number"
            ),
            "no FINAL (inexact: duplicates after a resume)": (
                f"SELECT {cols} FROM {table} WHERE {where} ORDER BY iteration_number"
            ),
        }
    )
    if repository is not None:
        v[REPOSITORY] = repository
    return v


def _get_variants(run_id: str, repository: str) -> dict[str, str]:
    """Ways to read one run's current row; ``repository``: what ``runs.get`` sends."""
    where = f"run_id = '{run_id}'"
    return {
        WHERE_FINAL: f"SELECT * FROM training_runs FINAL WHERE {where} LIMIT 2",
        PREWHERE_FINAL: f"SELECT * FROM training_runs FINAL PREWHERE {where} LIMIT 2",
        REPOSITORY: repository,
        "no FINAL, ORDER BY updated_at DESC LIMIT 1": (
            f"SELECT * FROM training_runs WHERE {where} ORDER BY updated_at DESC LIMIT 1"
        ),
    }


def _seed_variants(repository: str) -> dict[str, str]:
    """Compare Model Performance: what ``compare_model_performance()`` sends, and
    variants of it."""
    final = repository
    cols = ("run_name", "model_type", "final_test_accuracy", "final_f1_score")
    return {
        REPOSITORY: final,
        "no FINAL (the seed's statement, plus run_id)": final.replace(" FINAL", ""),
        "no FINAL, LIMIT 1 BY run_id": final.replace(" FINAL", "").replace(
            "LIMIT 10", "LIMIT 1 BY run_id LIMIT 10"
        ),
        "argMax per run_id, no FINAL": (
            "SELECT run_id, "
            + ", ".join(f"argMax({c}, updated_at) AS cur_{c}" for c in cols)
            + " FROM training_runs GROUP BY run_id HAVING argMax(status, updated_at) = 'completed' "
            "ORDER BY cur_final_test_accuracy DESC, run_id LIMIT 10"
        ),
        "FINAL + optimize_move_to_prewhere_if_final=1": (
            final + " SETTINGS optimize_move_to_prewhere_if_final = 1"
        ),
    }


def _status_check(v: Variants) -> dict[str, Any]:
    """Whether optimize_move_to_prewhere_if_final moves a non-key condition before FINAL."""
    sql = "SELECT count() FROM training_runs FINAL WHERE status = 'running'"
    plain = v.once(sql)
    moved = v.once(sql + " SETTINGS optimize_move_to_prewhere_if_final = 1")
    return {
        "sql": sql,
        "running_runs": int(plain[0][0]),
        "with_optimize_move_to_prewhere_if_final": int(moved[0][0]),
    }


def _skip_index_experiment(db: Database, v: Variants, run_id: str) -> dict[str, Any]:
    """Add and materialize ``INDEX run_id_bf run_id TYPE bloom_filter GRANULARITY 1``,
    time the curve with it, drop it again."""
    out: dict[str, Any] = {}
    t = time.perf_counter()
    db.execute(
        "ALTER TABLE training_metrics ADD INDEX run_id_bf run_id TYPE bloom_filter(0.01) "
        "GRANULARITY 1"
    )
    db.execute("ALTER TABLE training_metrics MATERIALIZE INDEX run_id_bf")
    out["materialize_s"] = time.perf_counter() - t
    size = db.execute(
        "SELECT data_compressed_bytes FROM system.data_skipping_indices "
        "WHERE database = currentDatabase() AND table = 'training_metrics' AND name = 'run_id_bf'"
    )
    out["index_bytes"] = int(size[0][0]) if size else None
    base = _curve_variants("training_metrics", run_id)
    final, prewhere = base[WHERE_FINAL], base[PREWHERE_FINAL]
    inexact = " SETTINGS use_skip_indexes_if_final_exact_mode = 0"
    out["curve"] = v.compare(
        {
            WHERE_FINAL: final,
            PREWHERE_FINAL: prewhere,
            "FINAL, use_skip_indexes_if_final_exact_mode=0": final + inexact,
            "FINAL + PREWHERE, use_skip_indexes_if_final_exact_mode=0": prewhere + inexact,
            "no FINAL, LIMIT 1 BY iteration": base[
                "no FINAL, LIMIT 1 BY iteration (newest recorded_at)"
            ],
        },
        WHERE_FINAL,
    )
    db.execute("ALTER TABLE training_metrics DROP INDEX run_id_bf")
    return out


def phase_investigate(args: argparse.Namespace) -> dict[str, Any]:
    gen = json.loads(Path(args.gen).read_text())
    ids = gen["ids"]
    n, m = gen["runs"], gen["iterations"]
    db = Database(args.url)
    v = Variants(db, args.reps, args.warmup)
    runs, metrics = TrainingRunRepository(db), TrainingMetricRepository(db)

    def sent(call: Callable[[], Any]) -> str:
        return render(*sent_statement(db, call))

    def curve(run: str) -> dict[str, str]:
        repository = sent(lambda: metrics.learning_curve(ids[run]))
        return _curve_variants("training_metrics", ids[run], repository)

    def get() -> dict[str, str]:
        return _get_variants(ids["run"], sent(lambda: runs.get(ids["run"])))

    def seed() -> dict[str, str]:
        return _seed_variants(sent(runs.compare_model_performance))

    out: dict[str, Any] = {}
    try:
        print("  learning curve, as generated", flush=True)
        out["curve"] = v.compare(curve("run"), WHERE_FINAL)
        print("  learning curve of a resumed run, as generated", flush=True)
        out["curve_resumed"] = v.compare(curve("resumed_run"), WHERE_FINAL)
        print("  learning curve of the long run, as generated", flush=True)
        out["curve_long"] = v.compare(curve("long_run"), WHERE_FINAL)
        print("  current row of a run", flush=True)
        out["get"] = v.compare(get(), WHERE_FINAL)
        print("  Compare Model Performance", flush=True)
        out["seed"] = v.compare(seed(), REPOSITORY)
        out["prewhere_if_final_check"] = _status_check(v)

        if not args.skip_one_partition:
            print("  the same metrics in ONE monthly partition", flush=True)
            db.execute("CREATE TABLE training_metrics_one_month AS training_metrics")
            now = datetime.now(UTC)
            month = datetime(now.year, now.month, 1, tzinfo=UTC)
            previous = datetime(
                month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1, tzinfo=UTC
            )
            one: dict[str, Any] = {}
            t = time.perf_counter()
            # The same runs and rows, all recorded within 25 days of the previous month.
            one["generate"] = _generate_metrics(
                db,
                "training_metrics_one_month",
                n,
                m,
                int(previous.timestamp()) + 3600,
                span_days=25,
                resumed=False,
            )
            one["generate_s"] = time.perf_counter() - t
            one["settle_s"] = wait_for_merges(db, args.settle_timeout)
            one["partitions"] = _parts_by_partition(db, "training_metrics_one_month")
            one["curve"] = v.compare(
                _curve_variants("training_metrics_one_month", ids["run"]),
                WHERE_FINAL,
            )
            out["one_partition"] = one
            db.execute("DROP TABLE training_metrics_one_month SYNC")

        if not args.skip_skip_index:
            print("  a bloom_filter skip index on run_id", flush=True)
            out["skip_index"] = _skip_index_experiment(db, v, ids["run"])

        print("  after OPTIMIZE TABLE ... FINAL", flush=True)
        optimized: dict[str, Any] = {"optimize_s": {}}
        for table in ("training_runs", "agent_training_runs", "training_metrics"):
            t = time.perf_counter()
            db.execute(f"OPTIMIZE TABLE {table} FINAL")
            optimized["optimize_s"][table] = time.perf_counter() - t
        optimized["sizes"] = _table_sizes(db)
        optimized["curve"] = v.compare(curve("run"), WHERE_FINAL)
        optimized["get"] = v.compare(get(), WHERE_FINAL)
        optimized["seed"] = v.compare(seed(), REPOSITORY)
        out["optimized"] = optimized
    finally:
        db.close()
    return out


# --------------------------------------------------------------------------- orchestration
class Runner:
    """Runs the phases in child processes: a chDB data directory is locked to one
    process, and a fresh process is what makes a call cold."""

    def __init__(self, args: argparse.Namespace, work: Path, results: Results) -> None:
        self.args = args
        self.results = results
        self.work = work
        self.data = work / "data"
        self.embedded_url = f"clickhouse+chdb:///{self.data}/{DATABASE}"
        self.gen_path = work / "generation.json"
        self.env = {**os.environ, "SUHO_DATA_DIR": str(work / "suho")}
        self._n = 0

    def child(self, phase: str, url: str, *extra: str) -> dict[str, Any]:
        self._n += 1
        result = self.work / f"{phase}-{self._n}.json"
        a = self.args
        cmd = [
            sys.executable, str(Path(__file__).resolve()), "--phase", phase,
            "--url", url, "--gen", str(self.gen_path), "--result-file", str(result),
            "--runs", str(a.runs), "--iterations", str(a.iterations),
            "--long-iterations", str(a.long_iterations),
            "--reps", str(a.reps), "--warmup", str(a.warmup), "--cold-reps", str(a.cold_reps),
            "--settle-timeout", str(a.settle_timeout), *extra,
        ]  # fmt: skip
        if a.skip_one_partition:
            cmd.append("--skip-one-partition")
        if a.skip_skip_index:
            cmd.append("--skip-skip-index")
        proc = subprocess.run(cmd, env=self.env, check=False)
        if proc.returncode != 0 or not result.exists():
            raise RuntimeError(f"phase {phase} {' '.join(extra)} failed (exit {proc.returncode})")
        return json.loads(result.read_text())

    def cold(self, url_for: Callable[[], contextlib.AbstractContextManager[str]]) -> dict:
        """First call of each case in a fresh process (for the server, a fresh server
        too), ``--cold-reps`` times, cases taken in turn."""
        out: dict[str, Any] = {case: {} for case in CASES}
        modes = ["data_evicted", "page_cache_warm"]
        for mode in modes:
            for _ in range(self.args.cold_reps):
                for case in CASES:
                    if mode == "data_evicted":
                        evict_from_page_cache(self.data)
                    with url_for() as url:
                        one = self.child("cold", url, "--case", case)
                    cell = out[case].setdefault(mode, {"first_s": [], "second_s": [], "open_s": []})
                    for key in cell:
                        cell[key].append(one[key])
                    print(
                        f"  cold {mode:18s} {case:42s} {one['first_s'] * 1000:8.1f} ms",
                        flush=True,
                    )
        return out

    def quiet(self, phase: str) -> None:
        """Before a timed phase: wait for the machine to be quiet; records what was seen."""
        seen = wait_for_quiet(self.args.max_others, self.args.quiet_wait)
        self.results["quiet"][phase] = seen
        print(
            f"  (waited {seen['waited_s']:.0f}s for a quiet machine: "
            f"others used {seen['others_share']:.0%} of the CPUs)",
            flush=True,
        )

    @contextlib.contextmanager
    def embedded(self) -> Iterator[str]:
        yield self.embedded_url

    @contextlib.contextmanager
    def server(self) -> Iterator[str]:
        with LocalServer(self.data, start_timeout=120) as server:
            yield server.native_url(DATABASE)

    def run(self) -> None:
        a, results = self.args, self.results
        results["parameters"]["span_days"] = SPAN_DAYS
        results["mlflow_reference_ms"] = MLFLOW_REFERENCE_MS
        results["mlflow_reference"] = MLFLOW_REFERENCE
        results["quiet"] = {"generate": {"waited_s": 0.0, "others_share": others_share(1.0)}}
        print(f"[generate] {a.runs:,} runs x {a.iterations:,} iterations ...", flush=True)
        t = time.perf_counter()
        gen = self.child("generate", self.embedded_url)
        gen["wall_s"] = time.perf_counter() - t
        self.gen_path.write_text(json.dumps(gen))
        results["generation"] = gen
        print(f"[generate] done in {gen['wall_s']:.1f}s", flush=True)

        print("[embedded] cold calls ...", flush=True)
        self.quiet("embedded")
        cold = self.cold(self.embedded)
        print("[embedded] warm calls ...", flush=True)
        results["embedded"] = {"url": "clickhouse+chdb", "cold": cold}
        self.quiet("embedded_warm")
        results["embedded"].update(self.child("measure", self.embedded_url))

        if not a.skip_server:
            try:
                print("[server] cold calls ...", flush=True)
                self.quiet("server")
                cold = self.cold(self.server)
                print("[server] warm calls ...", flush=True)
                results["server"] = {"url": "clickhouse+native", "cold": cold}
                with LocalServer(self.data, start_timeout=120) as server:
                    self.quiet("server_warm")
                    url = server.native_url(DATABASE)
                    results["server"].update(
                        self.child("measure", url, "--http-port", str(server.http_port))
                    )
            except Exception as exc:  # report, keep the other numbers
                results["server"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                print(f"[server] failed: {exc}", flush=True)

        if not a.skip_investigation:
            print("[investigate] ...", flush=True)
            self.quiet("investigation")
            results["investigation"] = self.child("investigate", self.embedded_url)


# --------------------------------------------------------------------------- report
def _pk_selection(explain: str) -> str:
    """'parts a/b, granules c/d' of the PrimaryKey index in EXPLAIN indexes = 1."""
    lines = explain.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "PrimaryKey":
            parts = granules = "?"
            for follow in lines[i + 1 : i + 8]:
                text = follow.strip()
                if text.startswith("Parts:"):
                    parts = text.split(":", 1)[1].strip()
                elif text.startswith("Granules:"):
                    granules = text.split(":", 1)[1].strip()
            return f"parts {parts}, granules {granules}"
    return "full scan (no primary key condition)"


def _cold_ms(data: dict[str, Any], case: str, mode: str) -> float | None:
    samples = data.get("cold", {}).get(case, {}).get(mode)
    return float(np.median(samples["first_s"])) * 1000 if samples else None


def _latency_table(data: dict[str, Any]) -> list[str]:
    header = ["call", "median ms", "p95 ms", "min ms", "cold ms, data evicted"]
    header += ["cold ms, page cache warm", "engine median ms", "outside the engine ms"]
    header += ["candidate parts / rows", "rows read", "bytes read", "primary key selects"]
    rows = []
    for case in CASES:
        c = data["cases"][case]
        est = c["estimate"]
        rows.append(
            [
                f"`{case}`",
                f"{c['median_ms']:.1f}",
                f"{c['p95_ms']:.1f}",
                f"{c['min_ms']:.1f}",
                num(_cold_ms(data, case, "data_evicted")),
                num(_cold_ms(data, case, "page_cache_warm")),
                num(c["engine"]["median_ms"] if c["engine"] else None),
                num(c["outside_engine_median_ms"]),
                f"{est['parts']} / {est['rows']:,}",
                num(c["read_rows"], ",d"),
                size(c["read_bytes"]),
                _pk_selection(c["explain"]),
            ]
        )
    return table(header, rows)


def _variant_table(variants: dict[str, Any]) -> list[str]:
    header = ["variant", "engine median ms", "end-to-end median ms", "p95 ms", "rows"]
    header += ["candidate parts / rows", "same rows as the reference"]
    rows = []
    for name, v in variants.items():
        same = {True: "yes", False: "**no**", None: "(reference)"}[v["same_rows_as_reference"]]
        est = v["estimate"]
        rows.append(
            [
                name,
                f"{v['engine']['median_ms']:.1f}",
                f"{v['wall']['median_ms']:.1f}",
                f"{v['wall']['p95_ms']:.1f}",
                f"{v['rows']:,}",
                f"{est['parts']} / {est['rows']:,}",
                same,
            ]
        )
    return table(header, rows)


def _targets_table(r: Results) -> list[str]:
    rows = []
    for backend in ("embedded", "server"):
        cases = r.data.get(backend, {}).get("cases")
        if not cases:
            continue
        for case, target in TARGETS.items():
            c = cases[case]
            rows.append(
                [backend, f"`{case}`", f"< {target:.0f}", f"{c['median_ms']:.1f}"]
                + [f"{c['p95_ms']:.1f}"]
            )
        for case in ("learning_curve.repository_long_run", "learning_curve.arrow_long_run"):
            c = cases[case]
            rows.append(
                [backend, f"`{case}`", f"MLflow {MLFLOW_REFERENCE_MS:.0f} (quoted)"]
                + [f"{c['median_ms']:.1f}", f"{c['p95_ms']:.1f}"]
            )
    return table(["backend", "call", "target ms", "median ms", "p95 ms"], rows, numeric_from=2)


def _markdown(r: Results) -> list[str]:
    p, gen = r["parameters"], r["generation"]
    tm = gen["training_metrics"]
    lines = r.header("Query latency at scale")
    lines += [
        "What each case and column means: the module docstring of `bench/bench_queries.py`. "
        f"MLflow reference: {r['mlflow_reference']}.",
        "",
        "## Data",
        "",
        *table(
            ["table", "rows stored", "parts", "partitions", "on disk", "uncompressed"],
            [
                [f"`{t}`", f"{s['rows']:,}", s["parts"], s["partitions"]]
                + [size(s["bytes_on_disk"]), size(s["uncompressed_bytes"])]
                for t, s in gen["sizes"].items()
            ],
        ),
        "",
        *table(
            ["step", "seconds", "rows"],
            [
                ["migrate", f"{gen['migrate_s']:.1f}", "–"],
                ["both run tables", f"{gen['runs_s']:.1f}", "–"],
                ["`training_metrics`", f"{tm['main_s']:.1f}", f"{tm['main_rows']:,}"],
                ["re-logged (resumed runs)", f"{tm.get('resumed_s', 0):.1f}"]
                + [f"{tm.get('resumed_rows', 0):,}"],
                ["the long run", f"{gen['long_run_s']:.1f}", f"{gen['long_iterations']:,}"],
                ["waiting for merges", f"{gen['settle_s']:.1f}", "–"],
                ["all, process start to exit", f"{gen['wall_s']:.0f}", "–"],
            ],
        ),
        "",
        *table(
            ["table", "current rows (FINAL) by status", "stored versions"],
            [
                [f"`{t}`", gen["status_counts"][t], gen["status_versions_raw"][t]]
                for t in ("training_runs", "agent_training_runs")
            ],
        ),
        "",
        *table(
            ["`training_metrics` partition", "parts", "rows"],
            [
                [k, v["parts"], f"{v['rows']:,}"]
                for k, v in gen["training_metrics_partitions"].items()
            ],
        ),
        "",
        "## Latency",
        "",
        f"{p['reps']} timed calls per case after {p['warmup']} warm-up calls; cold: median of "
        f"{p['cold_reps']} fresh processes per cell.",
        "",
    ]
    for backend, title in (("embedded", "Embedded (chDB in process)"), ("server", "Local server")):
        data = r.data.get(backend)
        if not data:
            continue
        lines += [f"### {title}", ""]
        if "error" in data:
            lines += [f"Failed: {data['error']}", ""]
            continue
        lines += _latency_table(data)
        if data.get("alternatives"):
            lines += [
                "",
                *table(
                    ["the long run's curve as Arrow", "median ms", "p95 ms"],
                    [
                        [name, f"{st['median_ms']:.1f}", f"{st['p95_ms']:.1f}"]
                        for name, st in data["alternatives"].items()
                    ],
                ),
            ]
        lines += [
            "",
            *table(
                ["opening the database ms", "merges running at start", "at end"],
                [[f"{data['open_s'] * 1000:.0f}", data["merges_at_start"], data["merges_at_end"]]],
                numeric_from=0,
            ),
            "",
        ]
    lines += ["## Against the targets", "", *_targets_table(r), ""]
    inv = r.data.get("investigation")
    if inv:
        lines += _investigation_markdown(inv)
    return lines


def _investigation_markdown(inv: dict[str, Any]) -> list[str]:
    lines = [
        "## Investigation (embedded, the benchmark's own database)",
        "",
        "### One run's learning curve, as generated",
        "",
        *_variant_table(inv["curve"]),
        "",
        "### The same for a run that was resumed (re-logged iterations)",
        "",
        *_variant_table(inv["curve_resumed"]),
        "",
        "### The long run's learning curve",
        "",
        *_variant_table(inv["curve_long"]),
        "",
        "### One run's current row (`get`)",
        "",
        *_variant_table(inv["get"]),
        "",
        "### Compare Model Performance",
        "",
        *_variant_table(inv["seed"]),
        "",
    ]
    chk = inv["prewhere_if_final_check"]
    lines += [
        *table(
            ["statement", "rows counted", "with optimize_move_to_prewhere_if_final = 1"],
            [
                [f"`{chk['sql']}`", f"{chk['running_runs']:,}"]
                + [f"{chk['with_optimize_move_to_prewhere_if_final']:,}"]
            ],
        ),
        "",
    ]
    one = inv.get("one_partition")
    if one:
        lines += [
            "### The same metrics in one monthly partition",
            "",
            *table(
                ["rows", "generated s", "merges settled after s", "parts per partition"],
                [
                    [f"{one['generate']['main_rows']:,}", f"{one['generate']['main_s']:.1f}"]
                    + [f"{one['settle_s']:.1f}"]
                    + [", ".join(f"{k}: {v['parts']}" for k, v in one["partitions"].items())]
                ],
                numeric_from=0,
            ),
            "",
            *_variant_table(one["curve"]),
            "",
        ]
    si = inv.get("skip_index")
    if si:
        lines += [
            "### A `bloom_filter(0.01)` skip index on `run_id` (as generated)",
            "",
            *table(
                ["ADD + MATERIALIZE INDEX s", "index on disk"],
                [[f"{si['materialize_s']:.1f}", size(si["index_bytes"])]],
                numeric_from=0,
            ),
            "",
            *_variant_table(si["curve"]),
            "",
        ]
    opt = inv.get("optimized")
    if opt:
        lines += [
            "### After `OPTIMIZE TABLE ... FINAL`",
            "",
            *table(
                ["table", "OPTIMIZE s", "parts after"],
                [
                    [f"`{t}`", f"{sec:.1f}", opt["sizes"][t]["parts"]]
                    for t, sec in opt["optimize_s"].items()
                ],
            ),
            "",
            "Learning curve:",
            "",
            *_variant_table(opt["curve"]),
            "",
            "Current row:",
            "",
            *_variant_table(opt["get"]),
            "",
            "Compare Model Performance:",
            "",
            *_variant_table(opt["seed"]),
            "",
        ]
    return lines


# --------------------------------------------------------------------------- main
PHASES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "generate": phase_generate,
    "cold": phase_cold,
    "measure": phase_measure,
    "investigate": phase_investigate,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs per run table")
    parser.add_argument("--iterations", type=int, default=1_000, help="metric rows per run")
    parser.add_argument(
        "--long-iterations", type=int, default=100_000, help="points of the one long run"
    )
    parser.add_argument("--reps", type=int, default=20, help="timed calls per case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before them")
    parser.add_argument("--cold-reps", type=int, default=3, help="fresh processes per cold cell")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--skip-investigation", action="store_true")
    parser.add_argument(
        "--skip-one-partition", action="store_true", help="skip regenerating into one partition"
    )
    parser.add_argument(
        "--skip-skip-index", action="store_true", help="skip the bloom_filter index trial"
    )
    add_quiet_arguments(parser, threshold=0.3, patience_s=300.0)
    parser.add_argument("--settle-timeout", type=float, default=600.0, help="max merge wait, s")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data here")
    add_results_arguments(parser, "queries", "small smoke run (2,000 x 100)")
    # Internal: one phase in a child process.
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--gen", help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--http-port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:
        out = PHASES[args.phase](args)
        args.result_file.write_text(json.dumps(out))
        return 0

    if args.quick:
        args.runs, args.iterations = min(args.runs, 2_000), min(args.iterations, 100)
        args.reps, args.warmup = min(args.reps, 5), min(args.warmup, 1)
        args.cold_reps = min(args.cold_reps, 1)
        args.long_iterations = min(args.long_iterations, 10_000)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-queries-"))
    work.mkdir(parents=True, exist_ok=True)
    results = Results(args)
    try:
        Runner(args, work, results).run()
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    results.write(_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
