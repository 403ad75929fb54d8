"""The SB3 hooks that track a run: reward_history rows, learning losses, checkpoints.

Per-step cost is kept to a few microseconds per batch of envs (a fast env-step is
tens of microseconds): the callback copies the step's rewards, done flags and
account values of all envs into numpy buffers and keeps the episodes' running sums;
the buffers go to the batch writer as columns (``log_columns``: no per-row Python
work). Work per episode (the episode Sharpe) and per checkpoint (serialization)
happens only then.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
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


class _RowBuffer:
    """``reward_history`` columns of many env-steps, handed to the writer in one
    ``log_columns`` call (per-row Python work would cost more than a fast env step)."""

    COLUMNS = (
        ("episode_number", np.int64),
        ("timestep_number", np.int64),
        ("env_index", np.int64),
        ("step_reward", np.float64),
        ("episode_cumulative_reward", np.float64),
        ("episode_final_reward", np.float64),
        ("sharpe_ratio", np.float64),
        ("account_value", np.float64),
        ("policy_loss", np.float64),
        ("value_loss", np.float64),
        ("is_episode_end", np.uint8),
    )
    NULLABLE = frozenset(
        {"episode_final_reward", "sharpe_ratio", "account_value", "policy_loss", "value_loss"}
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.arrays = {name: np.empty(capacity, dtype=dtype) for name, dtype in self.COLUMNS}
        self.size = 0

    def columns(self) -> dict[str, Any]:
        n = self.size
        out: dict[str, Any] = {}
        for name, values in self.arrays.items():
            part = values[:n]
            if name in self.NULLABLE:
                # a copy: Arrow would share the numpy buffer, which the next rows overwrite
                out[name] = pa.array(part.copy(), mask=np.isnan(part), type=pa.float64())
            else:
                out[name] = part.copy()
        return out


class RewardHistoryCallback(BaseCallback):
    """Writes one ``reward_history`` row per step of every environment.

    Every row: step reward, episode cumulative reward, account value, latest
    losses, the env's index. The episode's last row also has
    ``episode_final_reward``, the episode's Sharpe ratio of the account value and
    ``is_episode_end=1``. With N envs, one SB3 step is N env-steps: they get the
    global step numbers ``num_timesteps - N + 1 .. num_timesteps`` in env order, so
    a run's step numbers stay unique and count every env-step (1 env: the step
    number is ``num_timesteps``, as before). Episodes are numbered per run: each env's
    episode gets the next number when it starts (the envs of a run share one frame,
    so they start and end together and the numbers follow env order).

    Every ``checkpoint_every`` finished episodes (all envs counted) ``on_checkpoint(self)``
    runs after the step's rows are handed to the writer (the trainer flushes and
    saves the agent there). ``first_episode`` continues the numbering on resume.
    Rows are kept in numpy buffers and logged columnar per ``buffer_rows`` rows, at a
    checkpoint, when training ends, and ``drain_seconds`` after the previous hand-over
    (so a live chart sees its points within about a second, whatever the run's speed).
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
        buffer_rows: int = 8192,
        drain_seconds: float = 0.25,
    ) -> None:
        super().__init__(verbose=0)
        self.rewards = rewards
        self.losses = losses
        self.periods_per_year = periods_per_year
        self.checkpoint_every = checkpoint_every
        self.on_checkpoint = on_checkpoint
        self.first_episode = first_episode
        self.episodes_done = first_episode - 1
        self.steps_logged = 0
        self.recent: list[EpisodeResult] = []
        """Episodes finished since the last checkpoint."""
        self.buffer_rows = buffer_rows
        self.drain_seconds = drain_seconds
        self._drain_at = time.monotonic() + drain_seconds
        self._buffer: _RowBuffer | None = None
        self._episode: np.ndarray | None = None
        self._cumulative: np.ndarray | None = None

    def _init_callback(self) -> None:
        n = self.training_env.num_envs
        self._episode = self.first_episode + np.arange(n, dtype=np.int64)
        self._next_episode = self.first_episode + n
        self._cumulative = np.zeros(n)
        self._index = np.arange(n, dtype=np.int64)
        self._buffer = _RowBuffer(max(self.buffer_rows // n, 1) * n)

    def _on_rollout_start(self) -> None:
        logger = self.model.logger
        self.losses.write(logger.name_to_value, logger.name_to_excluded, self.num_timesteps)

    def _on_step(self) -> bool:
        local = self.locals
        rewards = np.asarray(local["rewards"], dtype=np.float64).reshape(-1)
        dones = np.asarray(local["dones"], dtype=bool).reshape(-1)
        infos = local["infos"]
        n = len(rewards)
        buffer = self._buffer
        assert buffer is not None and self._cumulative is not None and self._episode is not None
        if buffer.size + n > buffer.capacity:
            self.drain()
        cumulative = self._cumulative
        cumulative += rewards
        a, b = buffer.size, buffer.size + n
        cols = buffer.arrays
        timestep = self.model.num_timesteps
        cols["episode_number"][a:b] = self._episode
        cols["timestep_number"][a:b] = timestep - n + 1 + self._index
        cols["env_index"][a:b] = self._index
        cols["step_reward"][a:b] = rewards
        cols["episode_cumulative_reward"][a:b] = cumulative
        cols["account_value"][a:b] = [info.get("account_value", math.nan) for info in infos]
        losses = self.losses
        cols["policy_loss"][a:b] = math.nan if losses.policy_loss is None else losses.policy_loss
        cols["value_loss"][a:b] = math.nan if losses.value_loss is None else losses.value_loss
        cols["is_episode_end"][a:b] = dones
        cols["episode_final_reward"][a:b] = np.where(dones, cumulative, math.nan)
        cols["sharpe_ratio"][a:b] = math.nan
        buffer.size = b
        self.steps_logged += n
        if dones.any():
            self._end_episodes(np.flatnonzero(dones), infos, a, timestep - n + 1)
        if time.monotonic() >= self._drain_at:
            self.drain()
        return True

    def _end_episodes(self, envs: np.ndarray, infos: list[Any], row: int, first_step: int) -> None:
        assert self._buffer is not None and self._cumulative is not None
        assert self._episode is not None
        sharpes = self._buffer.arrays["sharpe_ratio"]
        before = self.episodes_done
        for i in envs.tolist():
            info = infos[i]
            values = info.get("episode_account_values")
            sharpe = None
            if values is not None:
                sharpe = episode_sharpe(values, self.periods_per_year)
                sharpe = None if math.isnan(sharpe) else sharpe
            if sharpe is not None:
                sharpes[row + i] = sharpe
            episode = int(self._episode[i])
            self.recent.append(
                EpisodeResult(
                    episode,
                    first_step + i,
                    float(self._cumulative[i]),
                    sharpe,
                    info.get("account_value"),
                )
            )
            self._cumulative[i] = 0.0
            self._episode[i] = self._next_episode
            self._next_episode += 1
            self.episodes_done = max(self.episodes_done, episode)
        every = self.checkpoint_every
        if (
            every
            and self.on_checkpoint is not None
            and self.episodes_done // every > before // every
        ):
            self.drain()
            self.on_checkpoint(self)
            self.recent = []

    def drain(self) -> None:
        """Hand the buffered rows to the writer (also after a crash: the trainer does)."""
        buffer = self._buffer
        self._drain_at = time.monotonic() + self.drain_seconds
        if buffer is None or not buffer.size:
            return
        self.rewards.log_columns(buffer.columns())
        buffer.size = 0

    def _on_training_end(self) -> None:
        self.drain()

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
            return bool(local["n_steps"] + 1 >= local["n_rollout_steps"])
        freq = local.get("train_freq")
        if freq is None or freq.unit is not TrainFrequencyUnit.STEP:
            return False
        return bool(local["num_collected_steps"] >= freq.frequency)


__all__ = [
    "EpisodeResult",
    "LossWriter",
    "RewardHistoryCallback",
    "StopAtTimestep",
    "attach_loss_writer",
]
