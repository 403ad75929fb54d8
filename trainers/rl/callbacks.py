"""The SB3 hooks that track a run: reward_history rows, learning losses, checkpoints.

Per-step cost is kept to a few microseconds (an environment step of FinRL's env
is about a millisecond): the callback reads the step's reward, done flag and
account value, keeps the episode's running sum and appends one row to the
batch writer (no I/O, no validation beyond the logger's). Work per episode
(the episode Sharpe) and per checkpoint (serialization) happens only then.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger
from stable_baselines3.common.type_aliases import TrainFrequencyUnit

from repositories.series import RewardLogger
from suho_models.enums import AgentType
from trainers.rl.agents import LOSS_KEYS
from trainers.rl.metrics import DEFAULT_PERIODS_PER_YEAR, episode_sharpe


class LossWriter(KVWriter):
    """An SB3 logger output that keeps the latest policy and value loss.

    SB3 writes to it on every log dump; :class:`RewardHistoryCallback` also feeds it
    the logger's current values at each rollout start (right after ``train()``),
    so rows carry the losses of the latest update, not of the latest dump.
    """

    def __init__(self, agent: AgentType | str) -> None:
        self.policy_key, self.value_key = LOSS_KEYS[AgentType(agent)]
        self.policy_loss: float | None = None
        self.value_loss: float | None = None

    def write(
        self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0
    ) -> None:
        value = key_values.get(self.policy_key)
        if value is not None:
            self.policy_loss = float(value)
        value = key_values.get(self.value_key)
        if value is not None:
            self.value_loss = float(value)

    def close(self) -> None:
        pass


def attach_loss_writer(model: Any, agent: AgentType | str, verbose: int = 0) -> LossWriter:
    """Give ``model`` a logger whose outputs are a :class:`LossWriter` (and stdout if verbose)."""
    writer = LossWriter(agent)
    formats: list[KVWriter] = [writer]
    if verbose:
        formats.append(HumanOutputFormat(sys.stdout))
    model.set_logger(Logger(folder=None, output_formats=formats))
    return writer


@dataclass(frozen=True)
class EpisodeResult:
    """One finished training episode."""

    episode_number: int
    timestep: int
    reward: float
    sharpe_ratio: float | None
    account_value: float | None


class RewardHistoryCallback(BaseCallback):
    """Writes one ``reward_history`` row per environment step (single env).

    Every row: step reward, episode cumulative reward, account value, latest
    losses. The episode's last row also has ``episode_final_reward``, the
    episode's Sharpe ratio of the account value and ``is_episode_end=1``. Every
    ``checkpoint_every`` episodes ``on_checkpoint(self)`` runs (the trainer saves
    the agent there). ``first_episode`` continues the numbering on resume.
    """

    def __init__(
        self,
        rewards: RewardLogger,
        losses: LossWriter,
        *,
        first_episode: int = 1,
        periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
        checkpoint_every: int | None = None,
        on_checkpoint: Callable[[RewardHistoryCallback], None] | None = None,
    ) -> None:
        super().__init__(verbose=0)
        self.rewards = rewards
        self.losses = losses
        self.periods_per_year = periods_per_year
        self.checkpoint_every = checkpoint_every
        self.on_checkpoint = on_checkpoint
        self.episode = first_episode
        self.episodes_done = first_episode - 1
        self.cumulative = 0.0
        self.steps_logged = 0
        self.recent: list[EpisodeResult] = []
        """Episodes finished since the last checkpoint."""
        self._log = rewards.log

    def _on_rollout_start(self) -> None:
        logger = self.model.logger
        self.losses.write(logger.name_to_value, logger.name_to_excluded, self.num_timesteps)

    def _on_step(self) -> bool:
        local = self.locals
        reward = float(local["rewards"][0])
        info = local["infos"][0]
        self.cumulative += reward
        self.steps_logged += 1
        losses = self.losses
        if not local["dones"][0]:
            self._log(
                self.episode,
                self.model.num_timesteps,
                step_reward=reward,
                episode_cumulative_reward=self.cumulative,
                account_value=info.get("account_value"),
                policy_loss=losses.policy_loss,
                value_loss=losses.value_loss,
                is_episode_end=0,
            )
            return True
        self._end_episode(reward, info)
        return True

    def _end_episode(self, reward: float, info: dict[str, Any]) -> None:
        values = info.get("episode_account_values")
        sharpe = None
        if values is not None:
            sharpe = episode_sharpe(values, self.periods_per_year)
            sharpe = None if math.isnan(sharpe) else sharpe
        timestep = self.model.num_timesteps
        account_value = info.get("account_value")
        self._log(
            self.episode,
            timestep,
            step_reward=reward,
            episode_cumulative_reward=self.cumulative,
            episode_final_reward=self.cumulative,
            sharpe_ratio=sharpe,
            account_value=account_value,
            policy_loss=self.losses.policy_loss,
            value_loss=self.losses.value_loss,
            is_episode_end=1,
        )
        self.recent.append(
            EpisodeResult(self.episode, timestep, self.cumulative, sharpe, account_value)
        )
        self.episodes_done = self.episode
        self.episode += 1
        self.cumulative = 0.0
        every = self.checkpoint_every
        if every and self.on_checkpoint is not None and self.episodes_done % every == 0:
            self.on_checkpoint(self)
            self.recent = []

    def checkpoint_metrics(self) -> dict[str, float | None]:
        """Performance at a checkpoint: the episodes finished since the previous one."""
        rewards = [e.reward for e in self.recent]
        sharpes = [e.sharpe_ratio for e in self.recent if e.sharpe_ratio is not None]
        last = self.recent[-1] if self.recent else None
        return {
            "mean_reward": sum(rewards) / len(rewards) if rewards else None,
            "sharpe_ratio": sum(sharpes) / len(sharpes) if sharpes else None,
            "episodes_averaged": len(rewards),
            "last_episode_reward": last.reward if last else None,
            "last_account_value": last.account_value if last else None,
        }


class StopAtTimestep(BaseCallback):
    """Ends ``learn()`` at exactly ``total`` environment steps.

    SB3 collects whole rollouts (PPO/A2C: ``n_steps``; off-policy: ``train_freq``
    steps), so a run resumed between rollout boundaries would overshoot. Stopping
    inside a rollout skips only that partial rollout's update; at a rollout's own
    last step it lets SB3 finish (update included) and stop by itself.
    """

    def __init__(self, total: int) -> None:
        super().__init__(verbose=0)
        self.total = total

    def _on_step(self) -> bool:
        if self.model.num_timesteps < self.total:
            return True
        local = self.locals
        if "n_rollout_steps" in local:  # on-policy: n_steps counts the steps before this one
            return local["n_steps"] + 1 >= local["n_rollout_steps"]
        freq = local.get("train_freq")
        if freq is None or freq.unit is not TrainFrequencyUnit.STEP:
            return False
        return local["num_collected_steps"] >= freq.frequency


__all__ = [
    "EpisodeResult",
    "LossWriter",
    "RewardHistoryCallback",
    "StopAtTimestep",
    "attach_loss_writer",
]
