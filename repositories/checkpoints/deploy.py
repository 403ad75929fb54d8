"""The deploy state machine, and what may be deleted.

One checkpoint per name (model name, or agent type) holds each stage (staging,
production); deploying another moves the holder to ``archived``. Every change is
a new row version (:meth:`~.placement.CheckpointPlacement._new_version`). A
deployed checkpoint, or one that was (the rollback history), survives pruning, and
a live one is deleted only when forced.
"""

from __future__ import annotations

import builtins
import uuid
from typing import Generic, Literal

from repositories.base import utcnow
from repositories.checkpoints.placement import millis
from repositories.checkpoints.records import (
    LIVE_STATUSES,
    InfoT,
    PruneRequest,
    deploy_stage,
    valid,
)
from repositories.checkpoints.trust import SignedCheckpoints
from repositories.errors import InvalidInputError
from suho_models.enums import CheckpointKind, DeploymentStatus


class CheckpointRepository(SignedCheckpoints[InfoT], Generic[InfoT]):
    """Checkpoints of one table: save (subclasses), load, list, deploy, sign, prune.

    The layers, each in its module: :class:`~.placement.CheckpointPlacement` (bytes
    and rows), :class:`~.queries.CheckpointQueries` (reads),
    :class:`~.trust.SignedCheckpoints` (the trust policy) and this one (deployment,
    deletion, pruning).
    """

    # ------------------------------------------------------------------ deployment
    def deploy(self, checkpoint_id: uuid.UUID | str, stage: DeploymentStatus | str) -> InfoT:
        """Put a checkpoint in ``staging`` or ``production``.

        The checkpoint that held that stage for the same name (model name, or
        agent type) moves to ``archived``. Written as new row versions, copied
        inside ClickHouse (blob included, since FINAL keeps only the newest).
        """
        target = deploy_stage(stage)
        row = self._meta_row(checkpoint_id)
        if row["deployment_status"] == target.value:
            return self._to_info(row)
        c = self.table.c
        holders = self._select(
            c[self.name_column] == row[self.name_column],
            c.deployment_status == target.value,
            c.checkpoint_id != row["checkpoint_id"],
            columns=self._info_columns,
        )
        for holder in holders:
            self._new_version(holder, {"deployment_status": DeploymentStatus.ARCHIVED.value})
        return self._new_version(
            row, {"deployment_status": target.value, "deployed_at": millis(utcnow())}
        )

    def deployed(
        self, name_or_type: str, stage: DeploymentStatus | str = DeploymentStatus.PRODUCTION
    ) -> InfoT | None:
        """The checkpoint currently in ``stage`` for a model name / agent type, or None."""
        target = deploy_stage(stage)
        c = self.table.c
        rows = self._select(
            c[self.name_column] == str(name_or_type),
            c.deployment_status == target.value,
            columns=self._info_columns,
            order_by=[c.deployed_at.desc(), c.updated_at.desc()],
            limit=1,
        )
        return self._to_info(rows[0]) if rows else None

    # ------------------------------------------------------------------ delete / prune
    def delete(self, checkpoint_id: uuid.UUID | str, *, force: bool = False) -> InfoT:
        """Remove a checkpoint: every version of its row, then its objects.

        A checkpoint in staging or production is refused unless ``force``: deleting
        it would leave the stage pointing at nothing. The row goes first, so no
        row ever points at a missing object; an object left behind by a failed
        delete is only logged.
        """
        info = self.get(checkpoint_id)
        if info.deployment_status in LIVE_STATUSES and not force:
            raise InvalidInputError(
                f"checkpoint {info.checkpoint_id} is in {info.deployment_status.value}: "
                "deploy another one first, or pass force=True"
            )
        self._delete_rows_and_objects(info.run_id, [info])
        return info

    def prune(
        self,
        run_id: uuid.UUID | str,
        keep_last: int = 3,
        kind: CheckpointKind | str = CheckpointKind.INTERMEDIATE,
        *,
        metric: str | None = None,
        mode: Literal["min", "max"] = "min",
    ) -> builtins.list[uuid.UUID]:
        """Delete all but the ``keep_last`` newest checkpoints of ``kind`` in a run.

        Always kept: checkpoints that are or were deployed (staging, production,
        archived: the rollback history) and, when ``metric`` is given, the run's
        best checkpoint by it. Returns the ids deleted.
        """
        request = valid(PruneRequest, "prune", keep_last=keep_last, kind=kind, mode=mode)
        infos = self.list(run_id)
        protected = {
            i.checkpoint_id
            for i in infos
            if i.deployment_status is not DeploymentStatus.NOT_DEPLOYED
        }
        if metric is not None:
            best = self.best(run_id, metric, request.mode)
            if best is not None:
                protected.add(best.checkpoint_id)
        candidates = [i for i in reversed(infos) if i.kind is request.kind]
        doomed = [i for i in candidates[request.keep_last :] if i.checkpoint_id not in protected]
        if doomed:
            self._delete_rows_and_objects(doomed[0].run_id, doomed)
        return [i.checkpoint_id for i in doomed]
