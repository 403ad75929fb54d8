"""Walk-forward folds of an RL run: a fresh agent trained on each fold's past (the
run's algorithm, parameters and timesteps; its own observation scaling, fitted on that
past only) and evaluated greedily on the next block beside buy-and-hold and the trend
rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from trainers.rl.agents import build_model
from trainers.rl.config import RLConfig
from trainers.rl.environment import make_vec_env
from trainers.rl.evaluation import evaluate_agent
from trainers.rl.finrl_env import MarketData, reindex_days
from trainers.walk_forward import WalkForwardConfig, fold_indices


def walk_forward_folds(
    market: MarketData,
    config: RLConfig,
    params: dict[str, Any],
    wf: WalkForwardConfig,
    on_fold: Callable[[], None] | None = None,
) -> list[dict[str, float | None]]:
    """Each fold's Sharpe, returns, trading activity and baselines, in fold order."""
    data = pd.concat([market.train, market.trade], ignore_index=True)
    shared = {k: v for k, v in market.extra.items() if k != "observation_scaling"}
    results = []
    for number, (train_idx, test_idx) in enumerate(fold_indices(data["date"], wf), start=1):
        fold = MarketData(
            train=reindex_days(data.iloc[train_idx]),
            trade=reindex_days(data.iloc[test_idx]),
            tickers=market.tickers,
            indicators=market.indicators,
            extra=dict(shared),
        )
        env = make_vec_env(fold.train, fold, config)
        model = build_model(
            config.agent,
            env,
            params,
            timesteps=config.timesteps,
            seed=config.seed + number,
            device=config.device,
        )
        model.learn(total_timesteps=config.timesteps)
        evaluation = evaluate_agent(model, fold.trade, fold, config)
        results.append(
            {
                **evaluation.metrics.to_dict(),
                **evaluation.activity.to_dict(),
                **evaluation.baseline_metrics(),
                "train_bars": float(fold.train_days),
                "test_bars": float(fold.trade_days),
            }
        )
        env.close()
        if on_fold is not None:
            on_fold()
    return results
