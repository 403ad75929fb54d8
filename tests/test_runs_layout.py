"""Revision 0010's layout returns exactly what the old one did: the same random runs
(many versions in random order: pending, running, heartbeats, an end; metrics set late,
resumes, retried duplicates, deletes; merges held so the versions stay apart) written
into a store at 0009 (``ORDER BY run_id``) and one at head (``ORDER BY (created_at,
run_id)``), then every read the UI, the CLI and the repositories make compared. The
rebuild itself keeps every row version. On both backends; the cluster's in
tests/cluster/test_runs_at_scale.py."""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from repositories.runs import AgentRunRepository, TrainingRunRepository
from repositories.ui_queries import RunBrowser
from suho_models.db import Database, migrations
from tests.conftest import fresh_database_name

BEFORE = "0009_signing_epoch"
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


def write_random_runs(
    db: Database,
    seed: int,
    runs: int = 40,
    deletes: bool = True,
    nodes: list[Database] | None = None,
) -> None:
    """``nodes``: a cluster's nodes, ``db`` its entry point: rows go in through the
    Distributed tables, merges are held and rows deleted in each node's local table."""
    rng = random.Random(seed)
    local = [(n, "{}_local") for n in nodes] if nodes else [(db, "{}")]
    for table in METRICS:
        for node, name in local:
            hold_merges(node, name.format(table))
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
            for node, name in local:
                for r in doomed[:2]:  # one version of a run (its older ones become current)
                    node.execute(
                        f"DELETE FROM {name.format(table)} WHERE run_id = "
                        f"{_literal(r['run_id'])} AND updated_at = {_literal(r['updated_at'])}"
                    )
                node.execute(
                    f"DELETE FROM {name.format(table)} "
                    f"WHERE run_id = {_literal(doomed[2]['run_id'])}"
                )
        stored, current = (
            int(db.scalar(f"SELECT count() FROM {table}{f}")) for f in ("", " FINAL")
        )
        assert stored > 2 * current, (table, stored, current)  # versions left to get wrong


def _other_url(url: str) -> str:
    """A second fresh database beside ``url``'s, on the same backend."""
    head, _, _ = url.rpartition("/")
    return f"{head}/{fresh_database_name()}"


@pytest.fixture(params=[1, 2, 3])
def stores(url: str, request: pytest.FixtureRequest) -> Iterator[tuple[Database, Database]]:
    """(before, head): the same random runs in the layout of 0009 and of head."""
    before_url = _other_url(url)
    migrations.upgrade(before_url, BEFORE)
    migrations.upgrade(url)
    pair = (Database(before_url), Database(url))
    try:
        for db in pair:
            write_random_runs(db, seed=request.param)
        yield pair
    finally:
        for db in pair:
            db.close()


def page_sql(table: str, view: dict[str, Any]) -> str:
    """A runs page as a FINAL statement, the way ``RunBrowser.page`` reads it."""
    where = [f"status = '{view['status']}'"] if view.get("status") else []
    if "type" in view:
        where.append(f"{TYPE[table]} = '{view['type']}'")
    if "name" in view:
        where.append(f"positionCaseInsensitiveUTF8(run_name, '{view['name']}') > 0")
    sort = view.get("sort", SECOND[table] if view.get("second") else METRICS[table])
    order = "DESC" if view.get("descending", True) else "ASC"
    return (
        f"SELECT run_id, run_name, status, {TYPE[table]}, created_at, updated_at, "
        f"{METRICS[table]}, {SECOND[table]} FROM {table} FINAL"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {sort} {order}, run_id LIMIT {view.get('limit', 10)} "
        f"OFFSET {view.get('offset', 0)}"
    )


VIEWS: list[dict[str, Any]] = [
    {"status": "completed"},  # the seed's default view: completed, best first
    {"sort": "created_at"},
    {"second": True, "descending": False},
    {"status": "failed", "second": True},
    {"status": "running", "sort": "created_at", "descending": False},
    {"status": "completed", "type": "xgboost"},
    {"status": "completed", "name": "run-1"},
    {"offset": 7, "limit": 5},
    {"offset": 30, "limit": 50},
    {"status": "completed", "limit": 1},
]


def assert_same_reads(before: Database, head: Database) -> None:
    """Every view, every count and the seed's queries: the same in both layouts."""
    for table in METRICS:
        for view in VIEWS:
            sql = page_sql(table, view)
            assert _same(head.execute(sql), before.execute(sql)), (table, view)
        for status in ("completed", "running", "failed", "cancelled", "pending"):
            count = f"SELECT count() FROM {table} FINAL WHERE status = '{status}'"
            assert head.scalar(count) == before.scalar(count), (table, status)
    for name, query in SEED_FINAL.items():
        assert _same(head.execute(query), before.execute(query)), name


SEED_FINAL = {
    "compare_model_performance": (
        "SELECT run_id, run_name, model_type, final_test_accuracy, final_f1_score "
        "FROM training_runs FINAL WHERE status = 'completed' "
        "ORDER BY final_test_accuracy DESC, run_id LIMIT 10"
    ),
    "best_rl_agents": (
        "SELECT run_id, run_name, agent_type, final_sharpe_ratio, final_total_return "
        "FROM agent_training_runs FINAL WHERE status = 'completed' "
        "ORDER BY final_sharpe_ratio DESC, run_id LIMIT 10"
    ),
}


def test_every_read_is_the_same_in_both_layouts(stores: tuple[Database, Database]) -> None:
    assert_same_reads(*stores)


@pytest.mark.parametrize("kind", ["supervised", "rl"])
def test_the_ui_pages_and_repositories_read_what_the_old_layout_held(
    stores: tuple[Database, Database], kind: str
) -> None:
    """The code paths themselves (on head) against the FINAL statement on 0009."""
    before, head = stores
    browser = RunBrowser(head, kind)
    table = browser.runs.table.name
    for view in VIEWS:
        page = browser.page(
            status=view.get("status"),
            type=view.get("type"),
            name=view.get("name"),
            sort=view.get("sort", SECOND[table] if view.get("second") else METRICS[table]),
            descending=view.get("descending", True),
            limit=view.get("limit", 10),
            offset=view.get("offset", 0),
        )
        expected = before.execute_mappings(page_sql(table, view))
        assert [r["run_id"] for r in page.rows] == [r["run_id"] for r in expected], view
        assert [r["status"] for r in page.rows] == [r["status"] for r in expected]
    seed = (
        TrainingRunRepository(head).compare_model_performance()
        if kind == "supervised"
        else AgentRunRepository(head).best_agents()
    )
    name = "compare_model_performance" if kind == "supervised" else "best_rl_agents"
    assert _same([tuple(r.values()) for r in seed], before.execute(SEED_FINAL[name]))


def test_the_rebuild_keeps_every_version(url: str) -> None:
    migrations.upgrade(url, BEFORE)
    db = Database(url)
    try:
        write_random_runs(db, seed=7)
        stored = {t: sorted(map(repr, db.execute(f"SELECT * FROM {t}"))) for t in METRICS}
        reads = {t: [db.execute(page_sql(t, v)) for v in VIEWS] for t in METRICS}
        migrations.upgrade(url)
        assert {t: sorted(map(repr, db.execute(f"SELECT * FROM {t}"))) for t in METRICS} == stored
        for t in METRICS:
            assert all(
                _same(db.execute(page_sql(t, v)), r) for v, r in zip(VIEWS, reads[t], strict=True)
            )
            key = db.scalar(
                f"SELECT sorting_key FROM system.tables WHERE database = currentDatabase() "
                f"AND name = '{t}'"
            )
            assert key == "created_at, run_id"
        # the bloom-filter index on run_id is built for the copied rows: a lookup by id
        # skips the granules without it
        run_id = db.scalar("SELECT run_id FROM training_runs LIMIT 1")
        plan = "\n".join(
            r[0]
            for r in db.execute(
                f"EXPLAIN indexes = 1 SELECT * FROM training_runs WHERE run_id = '{run_id}'"
            )
        )
        assert "run_id_bloom" in plan
    finally:
        db.close()


def _same(a: list[Any], b: list[Any]) -> bool:
    """Row for row, NaN equal to NaN."""

    def norm(row: Any) -> list[Any]:
        return [
            "nan" if isinstance(v, float) and math.isnan(v) else v
            for v in (row.values() if hasattr(row, "values") else row)
        ]

    return [norm(r) for r in a] == [norm(r) for r in b]
