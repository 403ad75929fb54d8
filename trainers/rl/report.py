"""The trade-period equity curve of a stored run, for reports.

Nothing stores the curve itself: it is recomputed from what the run recorded:
its configuration, its periods (so new rows in the feature table do not move
it), and its final agent, evaluated deterministically as at the end of
training, which gives the same curve and the same ``final_*`` metrics.
"""

from __future__ import annotations

import uuid

import numpy as np

from repositories.errors import NotFoundError
from repositories.kinds import RL
from repositories.object_store import ObjectStore
from repositories.records import AgentTrainingRun
from repositories.tracking import RunTrackingService
from suho_models.db import Database
from trainers.rl.agents import load_model
from trainers.rl.config import RLConfig
from trainers.rl.environment import load_market, use_stored_scaling
from trainers.rl.evaluation import Evaluation, evaluate_agent
from trainers.rl.trainer import torch_threads


def is_trainer_run(run: AgentTrainingRun) -> bool:
    """Whether :class:`RLTrainer` made the run (a config and periods it can replay), not
    the client on someone's own SB3 loop."""
    from pydantic import ValidationError

    try:
        RLConfig.model_validate_json(run.config_json or "{}")
    except ValidationError:
        return False
    return run.trade_start is not None and bool(run.env_config_json)


def trade_evaluation(
    db: Database, run_id: uuid.UUID | str, *, store: ObjectStore | None = None
) -> Evaluation:
    """Re-run a run's final agent (its latest checkpoint if it has no final one) on
    its trade period: equity vs buy-and-hold (``.equity``) and the metrics."""
    tracking = RunTrackingService(db, RL, store=store)
    run = tracking.get(run_id)
    config = RLConfig.model_validate_json(run.config_json)
    info = tracking.final_checkpoint(run.run_id)
    if info is None:
        raise NotFoundError(f"run {run.run_id} has no agent checkpoint to evaluate")
    market = load_market(
        config, db, start=run.train_start, end=run.trade_end, trade_start=run.trade_start
    )
    use_stored_scaling(market, run.env_config_json)
    with torch_threads(config.torch_threads):
        model = load_model(run.agent_type, tracking.load_checkpoint(info.checkpoint_id))
        return evaluate_agent(model, market.trade, market, config)


def trade_equity_curves(
    db: Database, run_id: uuid.UUID | str, *, store: ObjectStore | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(agent, buy-and-hold) account values, one per trade-period day."""
    equity = trade_evaluation(db, run_id, store=store).equity
    return equity["account_value"].to_numpy(), equity["buy_and_hold"].to_numpy()


__all__ = ["is_trainer_run", "trade_equity_curves", "trade_evaluation"]
