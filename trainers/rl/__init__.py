"""Reinforcement-learning (FinRL) training tracked in ClickHouse.

``RLTrainer(RLConfig(agent="ppo", timesteps=N), db).run()`` trains an SB3 agent on
FinRL's stock-trading env built from ``ml_features``, logs every step to
``reward_history``, checkpoints to ``agent_checkpoints``, tunes into
``rl_hyperparameters`` and completes ``agent_training_runs`` with the trade
period's metrics. Heavy libraries (torch, SB3, FinRL) load with the submodules
that need them, not with this package.
"""

from typing import Any

from trainers.rl.config import DEFAULT_INDICATORS, RLConfig, RLTuningConfig

__all__ = ["DEFAULT_INDICATORS", "RLConfig", "RLTrainer", "RLTrainingResult", "RLTuningConfig"]


def __getattr__(name: str) -> Any:
    """``from trainers.rl import RLTrainer`` imports torch and SB3 only when asked."""
    if name in ("RLTrainer", "RLTrainingResult"):
        from trainers.rl import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
