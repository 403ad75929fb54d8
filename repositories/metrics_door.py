"""The door's methods for metrics of any name (``run_metrics``), a base of
:class:`~repositories.tracking.RunTrackingService` kept in a module of its own."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from repositories.run_metrics import RunMetricLogger, RunMetricRepository, RunMetricSummary
from repositories.series import RewardHistoryRepository, TrainingMetricRepository
from repositories.series_copy import series_copy
from suho_models.db import Database


class MetricsDoor:
    """Metrics of any name for runs of the service's kind."""

    db: Database
    _runs: Any
    _series: TrainingMetricRepository | RewardHistoryRepository

    def metric_logger(self, run_id: uuid.UUID | str, **options: Any) -> RunMetricLogger:
        """A buffered logger of metrics of any name for a run of this kind
        (``options``: max_values, max_seconds, first_step). Calls that log a column of
        this kind's series table are copied there too."""
        key: uuid.UUID = self._runs.require(run_id)
        return RunMetricRepository(self.db).logger(
            key, sink=series_copy(self._series, key), **options
        )

    def metric_keys(self, run_id: uuid.UUID | str) -> list[RunMetricSummary]:
        """Every metric key a run logged, with its count, last step and last value."""
        return RunMetricRepository(self.db).keys(run_id)

    def metric_series(self, run_id: uuid.UUID | str, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` of one key of a run, in step order."""
        return RunMetricRepository(self.db).series(run_id, key)

    def metric_steps(self, run_id: uuid.UUID | str, prefix: str) -> dict[int, dict[str, float]]:
        """The keys under ``prefix`` of a run, one read: ``{step: {name: value}}``."""
        return RunMetricRepository(self.db).by_step(run_id, prefix)

    def runs_with_params(self, params: Mapping[str, Any], **filters: Any) -> list[Any]:
        """Runs whose config holds every value of ``params`` (``{"max_depth": 6}``,
        dotted names reach into nested objects), with ``list_runs``' other filters."""
        return list(self._runs.list(params=params, **filters))
