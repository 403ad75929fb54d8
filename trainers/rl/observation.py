"""Scaled observations: what the agent sees instead of FinRL's raw state.

FinRL's state is ``[cash, prices, holdings, indicators]`` in raw units: cash near
1e6 beside indicators of order 1 saturates a tanh actor on its first layer (issue 14).
The scaled observation is

* cash / initial_amount;
* per ticker, holdings * price / initial_amount (the position's size, in units of the
  starting cash);
* every indicator z-scored with the mean and standard deviation of the run's training
  period (a constant indicator gets std 1).

Prices themselves are left out: a price level lets an agent memorize the training path.
The statistics (:class:`ObservationScaling`) are fitted once on the training period, are
stored in the run's ``env_config_json["observation_scaling"]`` and read back from there on
resume, evaluation and deploy, so the same agent always sees the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnvWrapper

from trainers.rl.fast_vec_env import FastVecEnv

OBSERVATIONS = ("scaled", "finrl")
"""``scaled``: see the module docstring; ``finrl``: FinRL's raw state, as float32."""


@dataclass(frozen=True)
class ObservationScaling:
    """The statistics of the scaled observation, fitted on a training period."""

    stock_dim: int
    initial_amount: float
    tech_mean: tuple[float, ...]
    tech_std: tuple[float, ...]

    @property
    def dim(self) -> int:
        return 1 + self.stock_dim + len(self.tech_mean)

    @classmethod
    def fit(cls, tech: np.ndarray, stock_dim: int, initial_amount: float) -> ObservationScaling:
        """From the training period's indicators, ``(days, indicators * tickers)`` in
        FinRL's layout."""
        tech = np.asarray(tech, dtype=np.float64)
        mean = tech.mean(axis=0)
        std = tech.std(axis=0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        return cls(int(stock_dim), float(initial_amount), tuple(mean.tolist()), tuple(std.tolist()))

    def transform(self, states: np.ndarray) -> np.ndarray:
        """FinRL states (one, or one per row) -> scaled observations, float32."""
        x = np.asarray(states, dtype=np.float64)
        n = self.stock_dim
        out = np.empty((*x.shape[:-1], self.dim), dtype=np.float64)
        out[..., 0] = x[..., 0] / self.initial_amount
        out[..., 1 : 1 + n] = x[..., 1 : 1 + n] * x[..., 1 + n : 1 + 2 * n] / self.initial_amount
        out[..., 1 + n :] = (x[..., 1 + 2 * n :] - np.asarray(self.tech_mean)) / np.asarray(
            self.tech_std
        )
        return out.astype(np.float32)

    def space(self) -> spaces.Box:
        return spaces.Box(low=-np.inf, high=np.inf, shape=(self.dim,), dtype=np.float32)

    def to_json(self) -> dict[str, Any]:
        return {
            "stock_dim": self.stock_dim,
            "initial_amount": self.initial_amount,
            "tech_mean": list(self.tech_mean),
            "tech_std": list(self.tech_std),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ObservationScaling:
        try:
            return cls(
                int(data["stock_dim"]),
                float(data["initial_amount"]),
                tuple(float(v) for v in data["tech_mean"]),
                tuple(float(v) for v in data["tech_std"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"observation_scaling: not a stored scaling ({data!r:.200})") from exc


class ScaledObservation(gym.ObservationWrapper):
    """One env (FinRL's or the fast one) with the scaled observation."""

    def __init__(self, env: gym.Env, scaling: ObservationScaling) -> None:
        super().__init__(env)
        self.scaling = scaling
        self.observation_space = scaling.space()

    def observation(self, observation: Any) -> np.ndarray:
        return self.scaling.transform(np.asarray(observation, dtype=np.float64))


class VecScaledObservation(VecEnvWrapper):
    """:class:`~trainers.rl.fast_vec_env.FastVecEnv` with the scaled observation, computed
    from its float64 states (the same numbers as :class:`ScaledObservation`)."""

    def __init__(self, venv: FastVecEnv, scaling: ObservationScaling) -> None:
        super().__init__(venv, observation_space=scaling.space())
        self.scaling = scaling
        self.fast = venv

    def reset(self) -> np.ndarray:
        self.venv.reset()
        return self.scaling.transform(self.fast.states())

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        _, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            if "terminal_observation" in info:
                info["terminal_observation"] = self.scaling.transform(info["terminal_observation"])
        return self.scaling.transform(self.fast.states()), rewards, dones, infos


__all__ = ["OBSERVATIONS", "ObservationScaling", "ScaledObservation", "VecScaledObservation"]
