"""Choosing what to deploy: the best completed agent (or model) by a run metric."""

from __future__ import annotations

from typing import Any

from repositories.checkpoints import AgentCheckpointRepository
from repositories.errors import InvalidInputError, NotFoundError
from repositories.runs import AgentRunRepository
from suho_models.db import Database
from suho_models.enums import RunStatus

LOWER_IS_BETTER = frozenset({"final_annual_volatility"})
"""Metrics where smaller is better (drawdowns are stored as negative returns)."""


def best_agent_checkpoint(db: Database, by: str = "final_sharpe_ratio") -> Any:
    """The latest checkpoint of the best completed agent run by ``by``."""
    runs = AgentRunRepository(db)
    if not by.startswith("final_") or by not in runs.table.c:
        raise InvalidInputError(f"by: not a final metric of agent_training_runs (got {by!r})")
    ranked = [
        r
        for r in runs.list(
            status=RunStatus.COMPLETED,
            order_by=by,
            descending=by not in LOWER_IS_BETTER,
            limit=None,
        )
        if getattr(r, by) is not None
    ]
    checkpoints = AgentCheckpointRepository(db)
    for run in ranked:
        latest = checkpoints.latest(run.run_id)
        if latest is not None:
            return latest
    raise NotFoundError(f"no completed agent run with a checkpoint and a {by}")
