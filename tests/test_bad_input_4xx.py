"""Issue 28 §4: bad input is the caller's error (4xx, naming the field), never a 500,
and is refused before any work: every numeric, date and enum input of the API, the
writers' input checks, and enum messages that list the valid values.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from repositories.checkpoints import ModelCheckpointRepository
from repositories.errors import InvalidInputError
from repositories.runs import AgentRunRepository, TrainingRunRepository
from suho.ui.app import create_app
from suho_models import enums
from suho_models.db import Database, migrations
from tests.conftest import fresh_database_name

pytestmark = pytest.mark.parametrize("backend", ["embedded"])

HUGE = "99999999999999999999999"
BAD_NUMBERS = [HUGE, "-" + HUGE, "1e999", "-1e999", "nan", "inf", "-1", "0x10", "1.5"]
BAD_DATES = ["9999-12-31", "0001-01-01", "2300-01-01", "1899-12-31", "2024-13-01", "x"]


@pytest.fixture(scope="module")
def shared(embedded_dir: Path) -> Iterator[Database]:
    """One store for the read-only listing checks (hundreds of requests)."""
    url = f"clickhouse+chdb:///{embedded_dir}/{fresh_database_name()}"
    migrations.upgrade(url)
    db = Database(url)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture(scope="module")
def listing_client(shared: Database) -> TestClient:
    return TestClient(create_app(shared), raise_server_exceptions=False)


@pytest.fixture
def client(db: Database) -> TestClient:
    return TestClient(create_app(db), raise_server_exceptions=False)


def _run(db: Database) -> Any:
    runs = TrainingRunRepository(db)
    return runs.create({"run_name": "r", "model_type": "xgboost", "target_variable": "t"})


def _assert_4xx(response: Any, field: str) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert field in response.text, response.text


LISTING_NUMBERS = [
    *(("offset", v) for v in BAD_NUMBERS),
    *(("limit", v) for v in [*BAD_NUMBERS, "0", "501"]),
    *((bound, v) for bound in ("min", "max") for v in ["nan", "inf", "-1e999", "x", "1,5"]),
]


@pytest.mark.parametrize("listing", ["/api/runs", "/api/agents", "/runs", "/agents"])
@pytest.mark.parametrize(("field", "value"), LISTING_NUMBERS)
def test_listing_numbers_out_of_range_are_4xx(
    listing_client: TestClient, listing: str, field: str, value: str, backend: str
) -> None:
    extra = "&metric=final_test_accuracy" if field in ("min", "max") else ""
    if listing.endswith("agents") and extra:
        extra = "&metric=final_sharpe_ratio"
    _assert_4xx(listing_client.get(f"{listing}?{field}={value}{extra}"), field)


@pytest.mark.parametrize("listing", ["/api/runs", "/api/agents", "/runs"])
@pytest.mark.parametrize("field", ["from", "to"])
@pytest.mark.parametrize("value", BAD_DATES)
def test_listing_dates_out_of_range_are_4xx(
    listing_client: TestClient, listing: str, field: str, value: str, backend: str
) -> None:
    _assert_4xx(listing_client.get(f"{listing}?{field}={value}"), field)


def test_edge_dates_inside_the_range_work(listing_client: TestClient, backend: str) -> None:
    for query in ("from=1900-01-01", "to=2299-12-31", "from=2024-01-01&to=2024-01-31"):
        assert listing_client.get(f"/api/runs?{query}").status_code == 200, query


@pytest.mark.parametrize(
    ("param", "value"),
    [("points", HUGE), ("points", "-5"), ("points", "0"), ("x_from", "nan"), ("x_to", "1e999")],
)
def test_curve_numbers_out_of_range_are_4xx(
    db: Database, client: TestClient, param: str, value: str, backend: str
) -> None:
    run = _run(db)
    response = client.get(f"/api/runs/{run.run_id}/curve?{param}={value}")
    _assert_4xx(response, param)


@pytest.mark.parametrize(
    "fmt",
    ["raw", "onnx", "lightgbm_text", "catboost_cbm", "sb3_state", "xgboost_ubjson", "xgboost_json"],
)
def test_feature_importance_of_a_non_model_checkpoint_is_4xx_at_once(
    db: Database, client: TestClient, fmt: str, backend: str
) -> None:
    run = _run(db)
    repo = ModelCheckpointRepository(db)
    repo.save_checkpoint(run.run_id, uuid.uuid4().bytes * 64, fmt, kind="final", model_name="m")
    started = time.monotonic()
    response = client.get(f"/api/runs/{run.run_id}/feature-importance")
    assert response.status_code == 422, response.text
    assert "format" in response.json()["error"] or "do not load" in response.json()["error"]
    assert time.monotonic() - started < 60  # refused, not parsed for minutes (no timing claim)


# --------------------------------------------------------------------------- enums
ENUMS = [
    e
    for e in vars(enums).values()
    if isinstance(e, type) and issubclass(e, Enum) and e.__module__ == enums.__name__
]


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
def test_every_enum_error_lists_the_valid_values(enum: type[Enum], backend: str) -> None:
    from repositories.errors import enum_value

    with pytest.raises(InvalidInputError) as caught:
        enum_value(enum, "bogus", "field")
    message = str(caught.value)
    assert "'bogus'" in message and "field" in message
    assert all(str(member.value) in message for member in enum), message


@pytest.mark.parametrize(
    ("status_or_filter", "call"),
    [
        ("status", lambda db: TrainingRunRepository(db).list(status="bogus")),
        ("status", lambda db: AgentRunRepository(db).list(status="bogus")),
        # model_type / agent_type take any library's name (the client's runs): no enum.
        (
            "format",
            lambda db: ModelCheckpointRepository(db).save_checkpoint(
                _run(db).run_id, b"x", "bogus"
            ),
        ),  # fmt: skip
    ],
)
def test_enum_inputs_of_the_repositories_list_the_valid_values(
    db: Database, status_or_filter: str, call: Any, backend: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        call(db)
    message = str(caught.value)
    assert "'bogus'" in message, message
    assert "expected one of" in message or "Input should be" in message, message


@pytest.mark.parametrize("listing", ["/api/runs", "/api/agents"])
def test_listing_status_lists_the_valid_values(
    listing_client: TestClient, listing: str, backend: str
) -> None:
    response = listing_client.get(f"{listing}?status=bogus")
    _assert_4xx(response, "status")
    assert all(s.value in response.text for s in enums.RunStatus), response.text


# --------------------------------------------------------------------------- writers
def _writer_cases() -> list[tuple[str, str, Any]]:
    from repositories.arrow_schema import record_bounds
    from repositories.records import MetricPoint, RewardPoint

    cases = []
    for table, record in (("training_metrics", MetricPoint), ("reward_history", RewardPoint)):
        for field, (low, high) in record_bounds(record).items():
            if low is not None:
                cases += [(table, field, low - 5), (table, field, low - 1)]
            if high is not None:
                cases += [(table, field, high + 1)]
            if record.model_fields[field].annotation is float:
                cases += [(table, field, float("-inf"))]  # NaN passes: "not measured"
    return cases


WRITER_CASES = _writer_cases()


def _base_row(table: str) -> dict[str, Any]:
    if table == "training_metrics":
        return {"run_id": uuid.uuid4(), "iteration_number": 1}
    return {"run_id": uuid.uuid4(), "episode_number": 1, "timestep_number": 1,
            "step_reward": 0.0, "episode_cumulative_reward": 0.0}  # fmt: skip


def test_the_issue_examples_are_among_the_writer_cases(backend: str) -> None:
    fields = {(t, f) for t, f, _ in WRITER_CASES}
    assert ("training_metrics", "iteration_duration_ms") in fields
    assert ("reward_history", "is_episode_end") in fields


@pytest.mark.parametrize(("table", "field", "value"), WRITER_CASES)
def test_writers_refuse_what_the_records_refuse(
    db: Database, tmp_path: Any, table: str, field: str, value: Any, backend: str
) -> None:
    from repositories.batch_writer import (
        InvalidRowError,
        reward_history_writer,
        training_metrics_writer,
    )

    make = training_metrics_writer if table == "training_metrics" else reward_history_writer
    with make(db, spool_dir=tmp_path / "spool") as writer:
        row = _base_row(table)
        with pytest.raises(InvalidRowError, match=field):
            writer.log(**{**row, field: value})
        with pytest.raises(InvalidRowError, match=field):
            writer.log_row([{**row, field: value}.get(n) for n in writer.schema.names])
        columns = {k: [v, v] for k, v in row.items()} | {field: [0, value]}
        with pytest.raises(InvalidRowError, match=rf"{field}.*index 1"):
            writer.log_columns(columns)
        writer.log(**row)  # a good row still goes in
    assert db.scalar(f"SELECT count() FROM {table}") == 1
