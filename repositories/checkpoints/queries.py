"""Reading checkpoints: one, a run's, its newest and its best, never their bytes.

Every read goes through the repository's :class:`~repositories.query.Query`
(FINAL, sorting-key filters in PREWHERE) and selects explicit columns, never
``model_binary``/``agent_binary``.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping
from typing import Any, Generic, Literal

from sqlalchemy import func

from repositories.checkpoints.placement import CheckpointPlacement
from repositories.checkpoints.records import InfoT, checked
from repositories.errors import InvalidInputError, NotFoundError, as_uuid
from suho_models.enums import CheckpointKind, DeploymentStatus


class CheckpointQueries(CheckpointPlacement[InfoT], Generic[InfoT]):
    """The reads of a checkpoint table."""

    def _meta_row(self, checkpoint_id: uuid.UUID | str) -> Mapping[str, Any]:
        key = as_uuid(checkpoint_id, "checkpoint_id")
        rows = self._select(self.table.c.checkpoint_id == key, columns=self._info_columns, limit=1)
        if not rows:
            raise NotFoundError(f"{self.table.name}: no checkpoint with checkpoint_id {key}")
        row: Mapping[str, Any] = rows[0]
        return row

    def get(self, checkpoint_id: uuid.UUID | str) -> InfoT:
        """Metadata of one checkpoint (no bytes); NotFoundError if unknown."""
        return self._to_info(self._meta_row(checkpoint_id))

    def list(
        self,
        run_id: uuid.UUID | str,
        *,
        kind: CheckpointKind | str | None = None,
        deployment_status: DeploymentStatus | str | None = None,
    ) -> list[InfoT]:
        """A run's checkpoints, oldest first (by training progress), without bytes."""
        key = self.runs.require(run_id)
        c = self.table.c
        where = [c.run_id == key]
        if kind is not None:
            where.append(c[self.kind_column] == checked(CheckpointKind, kind, "kind").value)
        if deployment_status is not None:
            status = checked(DeploymentStatus, deployment_status, "deployment_status")
            where.append(c.deployment_status == status.value)
        rows = self._select(*where, columns=self._info_columns, order_by=self._progress())
        return [self._to_info(r) for r in rows]

    def _progress(self, *, descending: bool = False) -> builtins.list[Any]:
        """Training progress as an ORDER BY: what "oldest" and "newest" mean."""
        c = self.table.c
        columns = [*(c[name] for name in self.step_columns), c.created_at, c.checkpoint_id]
        return [col.desc() if descending else col.asc() for col in columns]

    def latest(self, run_id: uuid.UUID | str) -> InfoT | None:
        """The most advanced checkpoint of a run (step, then save time); None if none."""
        key = self.runs.require(run_id)
        rows = self._select(
            self.table.c.run_id == key,
            columns=self._info_columns,
            order_by=self._progress(descending=True),
            limit=1,
        )
        return self._to_info(rows[0]) if rows else None

    def best(
        self, run_id: uuid.UUID | str, metric: str, mode: Literal["min", "max"] = "min"
    ) -> InfoT | None:
        """The run's checkpoint with the lowest (``min``) or highest (``max``) metric.

        ``metric`` is a metric column (``val_loss``, ``mean_reward``, ...) or a key
        of ``metrics``. Checkpoints without the metric, or with NaN, are skipped;
        ties go to the earliest checkpoint. None when the run has no checkpoints;
        InvalidInputError when none of them has the metric (likely a typo).
        """
        if mode not in ("min", "max"):
            raise InvalidInputError(f"mode: expected 'min' or 'max' (got {mode!r})")
        if not isinstance(metric, str) or not metric:
            raise InvalidInputError(f"metric: expected a metric name (got {metric!r})")
        key = self.runs.require(run_id)
        c = self.table.c
        value = (
            c[metric]
            if metric in self.record.metric_fields
            # Not JSONExtract: metrics_json keeps NaN/inf as Python writes them, which a
            # strict JSON parser refuses for the whole document.
            else func.toFloat64OrNull(
                func.trimBoth(func.simpleJSONExtractRaw(c.metrics_json, metric))
            )
        )
        rows = self._select(
            c.run_id == key,
            value.is_not(None),
            func.isNaN(value) == 0,
            columns=self._info_columns,
            order_by=[value.asc() if mode == "min" else value.desc(), *self._progress()],
            limit=1,
        )
        if rows:
            return self._to_info(rows[0])
        infos = self.list(run_id)
        if not infos:
            return None
        known = sorted(  # no checkpoint has it: name the metrics they do have
            {k for i in infos for k in i.metrics}
            | {f for i in infos for f in i.metric_fields if getattr(i, f) is not None}
        )
        raise InvalidInputError(
            f"metric {metric!r}: not recorded on any checkpoint of run {infos[0].run_id} "
            f"(known: {', '.join(known) or 'none'})"
        )
