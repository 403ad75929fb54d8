"""Copy metrics of any name that match the seed's series columns into those tables.

A client that logs ``train_loss`` or ``step_reward`` under ``run_metrics`` should
not leave ``training_metrics`` / ``reward_history`` empty: the seed's queries, views
and the UI read those. So every sealed buffer of a run's metric logger passes
through :func:`series_copy`: calls that logged a column of the kind's series table
become rows there too (``step`` as the iteration or timestep). A call the table
cannot hold (a step past UInt32, an RL call without the rewards the table
requires, a negative duration) is skipped with a warning: ``run_metrics`` has it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from repositories.errors import InvalidInputError, validate
from repositories.records import MetricPoint, RewardPoint
from repositories.run_metrics import LoggedCalls, Sink
from repositories.series import RewardHistoryRepository, TrainingMetricRepository

log = logging.getLogger(__name__)

TRAINING_METRIC_KEYS = frozenset(MetricPoint.model_fields) - {"iteration_number", "recorded_at"}
"""Keys that also go to ``training_metrics`` (at iteration_number = step)."""

REWARD_KEYS = frozenset(RewardPoint.model_fields) - {"timestep_number", "recorded_at"}
"""Keys that also go to ``reward_history`` (at timestep_number = step) ..."""

REWARD_REQUIRED = frozenset({"step_reward", "episode_cumulative_reward"})
"""... when a call has these (the table's required values; episode_number is 0
unless logged)."""

_INTEGER_KEYS = frozenset({"episode_number", "env_index", "is_episode_end"})


def series_copy(
    series: TrainingMetricRepository | RewardHistoryRepository, run_id: uuid.UUID
) -> Sink:
    """The sink that copies a run's matching calls into its series table."""
    if isinstance(series, TrainingMetricRepository):
        return lambda calls: _copy(series, run_id, calls, MetricPoint, "iteration_number")
    return lambda calls: _copy(series, run_id, calls, RewardPoint, "timestep_number")


def _copy(
    series: TrainingMetricRepository | RewardHistoryRepository,
    run_id: uuid.UUID,
    calls: LoggedCalls,
    record: type[MetricPoint] | type[RewardPoint],
    step_field: str,
) -> None:
    keys = TRAINING_METRIC_KEYS if record is MetricPoint else REWARD_KEYS
    points: list[Any] = []
    for step, values in calls.calls(keys):
        if record is RewardPoint and not values.keys() >= REWARD_REQUIRED:
            continue
        row: dict[str, Any] = {step_field: step}
        if record is RewardPoint:
            row["episode_number"] = 0  # unless the call logged it
        for key in keys.intersection(values):
            value = values[key]
            row[key] = int(value) if key in _INTEGER_KEYS and float(value).is_integer() else value
        try:
            points.append(validate(record, row))
        except InvalidInputError as exc:
            log.warning(
                "run %s: step %s not copied to %s: %s", run_id, step, series.table.name, exc
            )
    if points:
        series.log_many(run_id, points)
