"""Reward functions as small gymnasium wrappers around FinRL's trading env.

Every wrapper derives the reward from the account value the environment keeps
(``env.unwrapped.asset_memory``: cash plus holdings at close, one entry per
trading day), so all reward types see the same quantity and can be checked by
hand. Each wrapper also

* turns FinRL's list observation into a ``float32`` array (what SB3 and
  ``check_env`` expect),
* puts ``info["account_value"]`` on every step, and on the last step of an
  episode ``info["episode_account_values"]``, a copy of the episode's account
  values taken before ``DummyVecEnv``'s auto-reset wipes ``asset_memory``.

FinRL's terminal step is a no-op: it trades nothing, adds no account value and
re-emits the previous step's reward. Here a step that adds no account value
gets reward 0, leaves every running statistic unchanged, and carries
``info["no_op"] = True``; on every other step the portfolio-value reward equals
FinRL's own.

Reward types (``agent_training_runs.reward_function_type``):

* ``portfolio_value_change`` (FinRL's default): ``(V_t - V_{t-1}) * scaling``.
* ``log_return``: ``ln(V_t / V_{t-1}) * scaling``.
* ``differential_sharpe`` (Moody & Saffell 1998): with the simple return
  ``R_t`` and exponential moments ``A`` and ``B`` (rate ``eta``, both 0 at the
  episode start), ``D_t = (B_{t-1} dA_t - A_{t-1} dB_t / 2) / (B_{t-1} -
  A_{t-1}^2)^{3/2}`` where ``dA_t = R_t - A_{t-1}`` and ``dB_t = R_t^2 -
  B_{t-1}``; 0 while the variance estimate ``B - A^2`` is not positive. Then
  ``A_t = A_{t-1} + eta dA_t`` and ``B_t = B_{t-1} + eta dB_t``.
* ``drawdown_penalized``: ``ln(V_t / V_{t-1}) - penalty * DD_t`` with the
  current drawdown ``DD_t = 1 - V_t / max_{s<=t} V_s``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from suho_models.enums import RewardFunctionType


class AccountValueReward(gym.Wrapper):
    """Base wrapper: array observations, account values in ``info``, reward from values."""

    reward_type: ClassVar[RewardFunctionType]

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._memory: list[Any] = []
        self._value = 0.0
        self._length = 0

    # The account-value list of the wrapped env; FinRL rebinds it on reset.
    def _account_memory(self) -> list[Any]:
        return self.env.unwrapped.asset_memory  # type: ignore[attr-defined, no-any-return]

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._memory = self._account_memory()
        self._length = len(self._memory)
        self._value = float(self._memory[-1])
        self._start_episode(self._value)
        info["account_value"] = self._value
        return np.asarray(obs, dtype=np.float32), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = self.env.step(action)
        memory = self._memory
        if len(memory) > self._length:
            self._length = len(memory)
            previous, value = self._value, float(memory[-1])
            self._value = value
            reward = self._reward(previous, value)
        else:  # FinRL's terminal no-op: nothing traded, no new value
            reward = 0.0
            info["no_op"] = True
        info["account_value"] = self._value
        if terminated or truncated:
            info["episode_account_values"] = np.asarray(memory, dtype=np.float64)
        return np.asarray(obs, dtype=np.float32), reward, terminated, truncated, info

    # ------------------------------------------------------------------ subclass hooks
    def _start_episode(self, value: float) -> None:
        """Reset running statistics at the start of an episode."""

    def _reward(self, previous: float, value: float) -> float:
        raise NotImplementedError

    def reward_params(self) -> dict[str, float]:
        """Parameters of the reward, recorded with the run's environment config."""
        return {}


class PortfolioValueChange(AccountValueReward):
    """FinRL's default: change of the account value times ``scaling``."""

    reward_type = RewardFunctionType.PORTFOLIO_VALUE_CHANGE

    def __init__(self, env: gym.Env, scaling: float = 1e-4) -> None:
        super().__init__(env)
        self.scaling = float(scaling)

    def _reward(self, previous: float, value: float) -> float:
        return (value - previous) * self.scaling

    def reward_params(self) -> dict[str, float]:
        return {"scaling": self.scaling}


class LogReturn(AccountValueReward):
    """Log return of the account value: additive over an episode, scale-free."""

    reward_type = RewardFunctionType.LOG_RETURN

    def __init__(self, env: gym.Env, scaling: float = 1.0) -> None:
        super().__init__(env)
        self.scaling = float(scaling)

    def _reward(self, previous: float, value: float) -> float:
        return math.log(value / previous) * self.scaling

    def reward_params(self) -> dict[str, float]:
        return {"scaling": self.scaling}


class DifferentialSharpe(AccountValueReward):
    """Moody & Saffell's differential Sharpe ratio: each step's marginal effect on an
    exponentially weighted Sharpe ratio, so the agent is paid for risk-adjusted return."""

    reward_type = RewardFunctionType.DIFFERENTIAL_SHARPE

    def __init__(self, env: gym.Env, eta: float = 0.01, scaling: float = 1.0) -> None:
        super().__init__(env)
        if not 0 < eta <= 1:
            raise ValueError(f"eta: must be within (0, 1] (got {eta})")
        self.eta = float(eta)
        self.scaling = float(scaling)
        self.a = 0.0
        self.b = 0.0

    def _start_episode(self, value: float) -> None:
        self.a = 0.0
        self.b = 0.0

    def _reward(self, previous: float, value: float) -> float:
        r = value / previous - 1.0
        a, b = self.a, self.b
        delta_a = r - a
        delta_b = r * r - b
        variance = b - a * a
        reward = (b * delta_a - 0.5 * a * delta_b) / variance**1.5 if variance > 1e-12 else 0.0
        self.a = a + self.eta * delta_a
        self.b = b + self.eta * delta_b
        return reward * self.scaling

    def reward_params(self) -> dict[str, float]:
        return {"eta": self.eta, "scaling": self.scaling}


class DrawdownPenalized(AccountValueReward):
    """Log return minus ``penalty`` times the current drawdown from the episode's peak."""

    reward_type = RewardFunctionType.DRAWDOWN_PENALIZED

    def __init__(self, env: gym.Env, penalty: float = 0.1, scaling: float = 1.0) -> None:
        super().__init__(env)
        if penalty < 0:
            raise ValueError(f"penalty: must be >= 0 (got {penalty})")
        self.penalty = float(penalty)
        self.scaling = float(scaling)
        self.peak = 0.0

    def _start_episode(self, value: float) -> None:
        self.peak = value

    def _reward(self, previous: float, value: float) -> float:
        self.peak = max(self.peak, value)
        drawdown = 1.0 - value / self.peak
        return (math.log(value / previous) - self.penalty * drawdown) * self.scaling

    def reward_params(self) -> dict[str, float]:
        return {"penalty": self.penalty, "scaling": self.scaling}


class VecLogReturn(VecEnvWrapper):
    """:class:`LogReturn` over a batched env whose infos carry ``account_value`` (the
    fast env's): the same rewards, computed for all envs at once (``np.log``, which may
    differ from ``math.log`` in the last bit); a terminal no-op gets 0."""

    def __init__(self, venv: VecEnv, scaling: float = 1.0) -> None:
        super().__init__(venv)
        self.scaling = float(scaling)
        self._previous = np.zeros(venv.num_envs)

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        memories = self.venv.env_method("asset_memory")
        self._previous = np.array([float(m[-1]) for m in memories])
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, _, dones, infos = self.venv.step_wait()
        values = np.array([info["account_value"] for info in infos])
        rewards = np.log(values / self._previous) * self.scaling
        self._previous = values
        if dones.any():
            rewards[dones] = 0.0
            for i in np.flatnonzero(dones).tolist():
                self._previous[i] = float(infos[i]["episode_account_values"][0])
        return obs, rewards.astype(np.float32), dones, infos

    def reward_params(self) -> dict[str, float]:
        return {"scaling": self.scaling}


REWARD_WRAPPERS: dict[RewardFunctionType, type[AccountValueReward]] = {
    cls.reward_type: cls
    for cls in (PortfolioValueChange, LogReturn, DifferentialSharpe, DrawdownPenalized)
}


def wrap_reward(
    env: gym.Env, reward: RewardFunctionType | str, **params: SupportsFloat
) -> AccountValueReward:
    """``env`` wrapped with the reward of that type (``params``: its keyword arguments)."""
    cls = REWARD_WRAPPERS[RewardFunctionType(reward)]
    return cls(env, **{k: float(v) for k, v in params.items()})


__all__ = [
    "REWARD_WRAPPERS",
    "AccountValueReward",
    "DifferentialSharpe",
    "DrawdownPenalized",
    "LogReturn",
    "PortfolioValueChange",
    "VecLogReturn",
    "wrap_reward",
]
