"""The fast path of the runs pages and the seed's queries returns exactly what FINAL
returns: runs with many versions written in random order (pending, running,
heartbeats, an end; metrics set late, resumes, retried duplicates, deletes), read in
every shape the UI, the CLI and the repositories read them. On both backends."""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import repositories.current_rows as current_rows
import repositories.ui_queries as ui_queries
from repositories.current_rows import first_current_rows
from repositories.query import Query
from repositories.runs import AgentRunRepository, TrainingRunRepository
from repositories.ui_queries import RunBrowser
from suho_models.db import Database

T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
METRICS = {"training_runs": "final_test_accuracy", "agent_training_runs": "final_sharpe_ratio"}
SECOND = {"training_runs": "final_f1_score", "agent_training_runs": "final_total_return"}
TYPE = {"training_runs": "model_type", "agent_training_runs": "agent_type"}


def _value(rng: random.Random) -> float | None:
    """Few distinct values (ties), NULL and NaN: what the ordering must agree on."""
    return rng.choice([None, math.nan, 0.5, 0.5, 0.61, 0.7, 0.7, 0.83, 0.9, rng.random()])


def _versions(rng: random.Random, table: str, i: int) -> list[dict[str, Any]]:
    run_id = uuid.UUID(int=rng.getrandbits(128))
    created = T0 + dt.timedelta(minutes=rng.randrange(0, 60 * 24 * 90))
    base = {
        "run_id": str(run_id),
        "run_name": f"run-{i}",
        TYPE[table]: rng.choice(["xgboost", "lightgbm", "ppo"]),
        "created_at": created,
    }
    statuses = ["pending", "running"]
    statuses += ["running"] * rng.randrange(0, 3)  # heartbeats
    end = rng.choice(["completed", "completed", "failed", "cancelled", None])
    if end:
        statuses.append(end)
        if end != "completed" and rng.random() < 0.4:  # resumed, then ended again
            statuses += ["running", rng.choice(["completed", "failed"])]
    if statuses[-1] == "completed" and rng.random() < 0.3:
        statuses.append("completed")  # metrics set late: a newer completed version
    rows = []
    for n, status in enumerate(statuses):
        terminal = status in ("completed", "failed", "cancelled")
        rows.append(
            {
                **base,
                "status": status,
                METRICS[table]: _value(rng) if terminal else None,
                SECOND[table]: _value(rng) if terminal else None,
                "updated_at": created + dt.timedelta(seconds=n, microseconds=rng.randrange(999)),
            }
        )
    return rows


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, dt.datetime):
        return f"'{value:%Y-%m-%d %H:%M:%S.%f}'"
    return "'" + str(value).replace("'", "\\'") + "'"


def hold_merges(db: Database, table: str) -> None:
    """No merges (parts over 1 byte are never merged) and, with ``optimize_on_insert =
    0``, no merge on insert: the versions stay apart, as between background merges, so
    every read has outdated versions to get wrong. Unlike SYSTEM STOP MERGES this
    leaves mutations, and so lightweight DELETE, running."""
    db.execute(
        f"ALTER TABLE {table} MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = 1, "
        "max_bytes_to_merge_at_min_space_in_pool = 1"
    )


def write_random_runs(db: Database, seed: int, runs: int = 40, deletes: bool = True) -> None:
    rng = random.Random(seed)
    for table in METRICS:
        hold_merges(db, table)
        rows = [r for i in range(runs) for r in _versions(rng, table, i)]
        rows += rng.sample(rows, k=len(rows) // 10)  # retried inserts: the same rows again
        rng.shuffle(rows)  # versions arrive in any order, over several parts
        columns = list(rows[0])
        for at in range(0, len(rows), max(1, len(rows) // 6)):
            batch = rows[at : at + max(1, len(rows) // 6)]
            values = ", ".join(
                "(" + ", ".join(_literal(r[c]) for c in columns) + ")" for r in batch
            )
            db.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"SETTINGS optimize_on_insert = 0 VALUES {values}"
            )
        if deletes:
            doomed = rng.sample(rows, k=3)
            for r in doomed[:2]:  # one version of a run (its older ones become current)
                db.execute(
                    f"DELETE FROM {table} WHERE run_id = {_literal(r['run_id'])} "
                    f"AND updated_at = {_literal(r['updated_at'])}"
                )
            db.execute(f"DELETE FROM {table} WHERE run_id = {_literal(doomed[2]['run_id'])}")
        stored, current = (
            int(db.scalar(f"SELECT count() FROM {table}{f}")) for f in ("", " FINAL")
        )
        assert stored > 2 * current, (table, stored, current)  # versions left to get wrong


@pytest.fixture(params=[1, 2, 3])
def store(db: Database, request: pytest.FixtureRequest) -> Iterator[Database]:
    write_random_runs(db, seed=request.param)
    yield db


@pytest.fixture(
    params=[(1, 8), (1, 20_000), (64, 20_000)],
    ids=["fallback-to-final", "growing", "default"],
)
def rounds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """(first candidates, cap): one candidate first, so pages need more rounds; a cap of
    8, so most end in the plain FINAL read; and the defaults."""
    first, cap = request.param
    monkeypatch.setattr(current_rows, "FIRST_CANDIDATES", first)
    monkeypatch.setattr(current_rows, "MAX_CANDIDATES", cap)


def _plain(db: Database) -> Any:
    """What the fast path replaces: the FINAL read, paged in ClickHouse."""

    def page(query: Any, *, key: str, limit: int, offset: int = 0) -> list[Any]:
        return list(query.limit(limit).offset(offset).rows())

    return page


VIEWS: list[dict[str, Any]] = [
    {},  # the seed's default view: completed, best first
    {"status": None, "sort": "created_at"},
    {"status": None, "second": True, "descending": False},
    {"status": "failed", "second": True},
    {"status": "running", "sort": "created_at", "descending": False},
    {"type": "xgboost"},
    {"name": "run-1"},
    {"status": None, "offset": 7, "limit": 5},
    {"status": None, "offset": 30, "limit": 50},
    {"limit": 1},
]


@pytest.mark.parametrize("kind", ["supervised", "rl"])
def test_every_page_is_the_final_page(
    store: Database, rounds: None, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = RunBrowser(store, kind)
    table = browser.runs.table.name
    for view in VIEWS:
        args: dict[str, Any] = {
            "status": view.get("status", "completed"),
            "sort": view.get("sort", SECOND[table] if view.get("second") else METRICS[table]),
            "descending": view.get("descending", True),
            "limit": view.get("limit", 10),
            "offset": view.get("offset", 0),
        }
        for extra in ("type", "name"):
            if extra in view:
                args[extra] = view[extra]
        fast = browser.page(**args)
        with monkeypatch.context() as m:
            m.setattr(ui_queries, "first_current_rows", _plain(store))
            final = browser.page(**args)
        assert _same(fast.rows, final.rows), (view, fast.rows, final.rows)
        assert fast.total == final.total


def test_the_seed_queries_and_best_run_are_the_final_ones(store: Database, rounds: None) -> None:
    for limit in (1, 3, 10, 100):
        fast = TrainingRunRepository(store).compare_model_performance(limit)
        final = store.execute_mappings(
            "SELECT run_id, run_name, model_type, final_test_accuracy, final_f1_score "
            "FROM training_runs FINAL WHERE status = 'completed' "
            "ORDER BY final_test_accuracy DESC, run_id LIMIT %(n)s",
            {"n": limit},
        )
        assert _same(fast, final)
        fast = AgentRunRepository(store).best_agents(limit)
        final = store.execute_mappings(
            "SELECT run_id, run_name, agent_type, final_sharpe_ratio, final_total_return "
            "FROM agent_training_runs FINAL WHERE status = 'completed' "
            "ORDER BY final_sharpe_ratio DESC, run_id LIMIT %(n)s",
            {"n": limit},
        )
        assert _same(fast, final)


def test_listing_is_the_final_listing(store: Database, rounds: None) -> None:
    repo = TrainingRunRepository(store)
    c = repo.table.c
    for status in (None, "completed", "running"):
        for offset, limit in ((0, 5), (3, 4), (0, 1000)):
            where = [] if status is None else [c.status == status]
            ordered = repo.read(*where).order_by(c.final_f1_score.desc(), c.run_id)
            fast = first_current_rows(ordered, key="run_id", limit=limit, offset=offset)
            final = ordered.limit(limit).offset(offset).rows()
            assert _same(fast, final), (status, offset, limit)


def _same(a: list[Any], b: list[Any]) -> bool:
    """Row for row, NaN equal to NaN."""

    def norm(row: Any) -> dict[str, Any]:
        return {
            k: ("nan" if isinstance(v, float) and math.isnan(v) else v)
            for k, v in dict(row).items()
        }

    return [norm(r) for r in a] == [norm(r) for r in b]


def test_the_runs_tables_take_the_fast_path(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a silent fallback: the first read is without FINAL, the second is FINAL and
    keyed by the candidates only."""
    write_random_runs(db, seed=4, runs=10, deletes=False)
    sent: list[str] = []
    real = Query.rows

    def spy(self: Query) -> Any:
        sent.append(self.sql())
        return real(self)

    monkeypatch.setattr(Query, "rows", spy)
    repo = TrainingRunRepository(db)
    c = repo.table.c
    first_current_rows(repo.read().order_by(c.created_at, c.run_id), key="run_id", limit=3)
    assert len(sent) == 2, sent
    assert "FINAL" not in sent[0] and "LIMIT 64" in sent[0]
    assert "FINAL" in sent[1] and "PREWHERE" in sent[1] and "run_id IN" in sent[1]
