"""``run_metrics`` (revision 0007): metrics of any name, through the buffered logger."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest

from repositories.errors import InvalidInputError, NotFoundError
from repositories.run_metrics import MAX_KEY_LENGTH, RunMetricRepository
from repositories.tracking import RunTrackingService
from suho_models.db import Database


def _run(db: Database, kind: str = "supervised") -> uuid.UUID:
    service = RunTrackingService(db, kind)
    if kind == "supervised":
        spec = dict(run_name="r", model_type="xgboost", target_variable="y")
    else:
        spec = dict(run_name="r", agent_type="ppo")
    return service.create(spec).run_id


def test_any_key_round_trips_for_both_kinds(db: Database) -> None:
    repo = RunMetricRepository(db)
    for kind in ("supervised", "rl"):
        run_id = _run(db, kind)
        with repo.logger(run_id) as logger:
            for i in range(50):
                logger.log({"val_auc": i / 100, "grad_norm/layer3": float(i)}, step=i)
            logger.log({"only_once": 7})
        assert repo.series(run_id, "val_auc") == [(i, i / 100) for i in range(50)]
        keys = {k.key: k for k in repo.keys(run_id)}
        assert sorted(keys) == ["grad_norm/layer3", "only_once", "val_auc"]
        assert keys["only_once"].last_step == 50 and keys["only_once"].last_value == 7.0
        assert keys["val_auc"].count == 50 and repo.count(run_id) == 101


def test_steps_count_on_and_a_relogged_step_is_read_once(db: Database) -> None:
    repo = RunMetricRepository(db)
    run_id = _run(db)
    with repo.logger(run_id) as logger:
        assert [logger.log({"loss": 1.0}) for _ in range(3)] == [0, 1, 2]
        assert logger.log({"loss": 5.0}, step=10) == 10
        assert logger.log({"loss": 6.0}) == 11
    repo.log_many(run_id, {"loss": 0.5}, step=1)  # a later write of step 1 replaces it
    assert repo.series(run_id, "loss") == [(0, 1.0), (1, 0.5), (2, 1.0), (10, 5.0), (11, 6.0)]


def test_mixed_key_sets_numpy_values_and_non_finite_values(db: Database) -> None:
    repo = RunMetricRepository(db)
    run_id = _run(db)
    with repo.logger(run_id, max_values=7) as logger:  # several seals
        for i in range(20):
            values = {"a": np.float32(i), "b": np.int64(i)} if i % 2 else {"c": i, "a": True}
            logger.log(values, step=i)
        logger.log({"nan": math.nan, "inf": math.inf, "ninf": -math.inf}, step=20)
    assert repo.series(run_id, "a") == [(i, float(i) if i % 2 else 1.0) for i in range(20)]
    assert [s for s, _ in repo.series(run_id, "c")] == list(range(0, 20, 2))
    (_, nan), (_, inf), (_, ninf) = (repo.series(run_id, k)[0] for k in ("nan", "inf", "ninf"))
    assert math.isnan(nan) and inf == math.inf and ninf == -math.inf


@pytest.mark.parametrize(
    ("values", "step", "message"),
    [
        ({"loss": "0.5"}, None, "metric 'loss': expected a number \\(got '0.5'"),
        ({"loss": None}, None, "metric 'loss': expected a number \\(got None"),
        ({"loss": [1.0, 2.0]}, None, "metric 'loss': expected a number"),
        ({"loss": 1.0}, -1, "step: expected a non-negative integer \\(got -1\\)"),
        ({"loss": 1.0}, 1.5, "step: expected a non-negative integer \\(got 1.5\\)"),
        ({"loss": 1.0}, True, "step: expected a non-negative integer \\(got True\\)"),
        ({"": 1.0}, None, "metric key: must not be empty"),
        ({"x" * (MAX_KEY_LENGTH + 1): 1.0}, None, f"at most {MAX_KEY_LENGTH} characters"),
        ({7: 1.0}, None, "metric key: expected a string \\(got 7\\)"),
        ({f"k{i}": 1.0 for i in range(10_000)}, None, "at most 1000 keys per call"),
        ([("loss", 1.0)], None, "expected a dict"),
    ],
)
def test_bad_input_is_refused_whole_and_nothing_is_stored(
    db: Database, values: object, step: object, message: str
) -> None:
    repo = RunMetricRepository(db)
    run_id = _run(db)
    with repo.logger(run_id) as logger:
        logger.log({"loss": 2.0, "ok": 1.0}, step=0)
        with pytest.raises(InvalidInputError, match=message):
            logger.log({"ok": 3.0, **values} if isinstance(values, dict) else values, step)
        assert logger.log({"loss": 1.0}) == 1  # the refused call took no step
    assert repo.series(run_id, "loss") == [(0, 2.0), (1, 1.0)]
    assert repo.series(run_id, "ok") == [(0, 1.0)]


def test_log_after_close_and_unknown_run_are_refused(db: Database) -> None:
    repo = RunMetricRepository(db)
    with pytest.raises(NotFoundError, match="no supervised or RL run"):
        repo.logger(uuid.uuid4())
    logger = repo.logger(_run(db))
    logger.close()
    with pytest.raises(InvalidInputError, match="log after finish"):
        logger.log({"loss": 1.0})


def test_per_row_logger_seals_by_time_keeps_order_and_refuses_bad_rows(db: Database) -> None:
    """The README's per-row logger: buffered columnar calls, sealed ``max_seconds``
    after the first without a flush; unusual values take the checked path in order."""
    import time

    from repositories.batch_writer import InvalidRowError
    from repositories.series import TrainingMetricRepository

    run_id = _run(db)
    repo = TrainingMetricRepository(db)
    with repo.logger(run_id, max_seconds=0.2) as log:
        log.log(0, train_loss=1.0)
        log.log(1, train_loss=np.float64(0.5))  # numpy: the writer's checked path
        log.log(2, train_loss=0.25, val_loss=0.3)
        with pytest.raises(InvalidRowError, match="val_auc"):
            log.log(3, val_auc=0.7)
        with pytest.raises(InvalidRowError, match="train_loss"):
            log.log(3, train_loss="high")
        deadline = time.monotonic() + 20
        while repo.count(run_id) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert repo.count(run_id) == 3  # written without flush or close
    curve = [(p.iteration_number, p.train_loss, p.val_loss) for p in repo.learning_curve(run_id)]
    assert curve == [(0, 1.0, None), (1, 0.5, None), (2, 0.25, 0.3)]
