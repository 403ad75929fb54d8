"""Copy metrics of any name that match the seed's series columns into those tables.

A client that logs ``train_loss`` or ``step_reward`` under ``run_metrics`` should
not leave ``training_metrics`` / ``reward_history`` empty: the seed's queries, views
and the UI read those. So every sealed buffer of a run's metric logger passes
through :func:`series_copy`: calls that logged a column of the kind's series table
become rows there too (``step`` as the iteration or timestep), written as columns
(no per-call validation: the values were checked when logged). Calls the table
cannot hold (a step past UInt32, an RL call without the rewards the table
requires, a non-integer episode number) are left out with a warning:
``run_metrics`` has them.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import numpy as np

from repositories.errors import InvalidInputError
from repositories.records import MetricPoint, RewardPoint
from repositories.run_metrics import LoggedCalls, Sink
from repositories.series import RewardHistoryRepository, TrainingMetricRepository

log = logging.getLogger(__name__)

TRAINING_METRIC_KEYS = frozenset(MetricPoint.model_fields) - {"iteration_number", "recorded_at"}
"""Keys that also go to ``training_metrics`` (at iteration_number = step)."""

REWARD_KEYS = frozenset(RewardPoint.model_fields) - {"timestep_number", "recorded_at"}
"""Keys that also go to ``reward_history`` (at timestep_number = step) ..."""

REWARD_REQUIRED = ("step_reward", "episode_cumulative_reward")
"""... for the calls that have these (the table's required values; episode_number is
0 unless logged)."""

_INTEGER_KEYS = frozenset({"episode_number", "env_index", "is_episode_end"})
_MAX_ITERATION = 2**32 - 1


def series_copy(
    series: TrainingMetricRepository | RewardHistoryRepository, run_id: uuid.UUID
) -> Sink:
    """The sink that copies a run's matching calls into its series table."""
    if isinstance(series, TrainingMetricRepository):
        training = series
        return lambda calls: _copy_training(training, run_id, calls)
    rewards = series
    return lambda calls: _copy_rewards(rewards, run_id, calls)


def _copy_training(series: TrainingMetricRepository, run_id: uuid.UUID, calls: LoggedCalls) -> None:
    steps, given = calls.columns_for(TRAINING_METRIC_KEYS)
    columns: dict[str, Any] = dict(given)
    if not steps:
        return
    step_array = np.asarray(steps, dtype=np.uint64)
    keep = step_array <= _MAX_ITERATION
    if "iteration_duration_ms" in columns:
        durations = np.asarray(_floats(columns["iteration_duration_ms"], 0.0))
        keep &= ~(durations < 0)
        columns["iteration_duration_ms"] = durations
    _write(series, run_id, "iteration_number", step_array, keep, columns)


def _copy_rewards(series: RewardHistoryRepository, run_id: uuid.UUID, calls: LoggedCalls) -> None:
    steps, given = calls.columns_for(REWARD_KEYS)
    columns: dict[str, Any] = dict(given)
    if not steps or not all(k in columns for k in REWARD_REQUIRED):
        return
    keep = np.ones(len(steps), dtype=bool)
    for key in REWARD_REQUIRED:
        keep &= np.array([v is not None for v in columns[key]], dtype=bool)
    for key in _INTEGER_KEYS & columns.keys():
        values = np.asarray(_floats(columns[key], 0.0))
        whole = (values >= 0) & (values == np.floor(values))
        keep &= whole
        columns[key] = np.where(whole, values, 0).astype(np.uint32)
    columns.setdefault("episode_number", np.zeros(len(steps), dtype=np.uint32))
    _write(series, run_id, "timestep_number", np.asarray(steps, dtype=np.uint64), keep, columns)


def _write(
    series: TrainingMetricRepository | RewardHistoryRepository,
    run_id: uuid.UUID,
    step_column: str,
    steps: np.ndarray,
    keep: np.ndarray,
    columns: dict[str, Any],
) -> None:
    dropped = int((~keep).sum())
    if dropped:
        log.warning(
            "run %s: %d call(s) not copied to %s (out of its range); run_metrics has them",
            run_id,
            dropped,
            series.table.name,
        )
    if not keep.any():
        return
    selected = {step_column: steps[keep]}
    for key, values in columns.items():
        array = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
        selected[key] = array[keep] if array.dtype != object else array[keep].tolist()
    try:
        series.log_columns(run_id, selected)
    except InvalidInputError as exc:
        log.warning("run %s: not copied to %s: %s", run_id, series.table.name, exc)


def _floats(values: list[Any], missing: float) -> list[float]:
    return [missing if v is None else float(v) for v in values]
