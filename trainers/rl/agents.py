"""The five Stable-Baselines3 algorithms: defaults, construction, (de)serialization.

Parameters stay JSON-friendly everywhere they are stored (config_json, the
tuning trials): ``net_arch`` is a name (``tiny``/``small``/``medium``/``big``,
RL Zoo's) or an explicit list, ``activation_fn`` a name, action noise is
``noise_type`` (``normal``/``ornstein-uhlenbeck``/None) plus ``noise_std``.
:func:`build_model` turns them into SB3 objects.

Defaults are FinRL's ``config.py`` ones (``PPO_PARAMS``, ``A2C_PARAMS``, ...),
with DDPG/TD3 exploring with normal action noise of std 0.1 as FinRL's
tutorials do. An off-policy replay buffer is never larger than the run's
timesteps (it could not fill up, and it is saved with every checkpoint).

Learning metrics: SB3 logs these keys, which the reward-history callback maps to
``reward_history.policy_loss`` / ``value_loss`` (see :data:`LOSS_KEYS`):

=========  ==========================  ===================
algorithm  policy_loss                 value_loss
=========  ==========================  ===================
PPO        train/policy_gradient_loss  train/value_loss
A2C        train/policy_loss           train/value_loss
DDPG, TD3  train/actor_loss            train/critic_loss
SAC        train/actor_loss            train/critic_loss
=========  ==========================  ===================

TD3 and DDPG log ``train/actor_loss`` only on policy-update steps (``policy_delay``);
in between the last value is kept.
"""

from __future__ import annotations

import io
import pickle
import zlib
from typing import Any

import numpy as np

from suho_models.enums import AgentType

ON_POLICY = frozenset({AgentType.PPO, AgentType.A2C})
OFF_POLICY = frozenset({AgentType.DDPG, AgentType.SAC, AgentType.TD3})

LOSS_KEYS: dict[AgentType, tuple[str, str]] = {
    AgentType.PPO: ("train/policy_gradient_loss", "train/value_loss"),
    AgentType.A2C: ("train/policy_loss", "train/value_loss"),
    AgentType.DDPG: ("train/actor_loss", "train/critic_loss"),
    AgentType.TD3: ("train/actor_loss", "train/critic_loss"),
    AgentType.SAC: ("train/actor_loss", "train/critic_loss"),
}
"""SB3 logger key of the policy (actor) loss and of the value (critic) loss, per algorithm."""

DEFAULT_PARAMS: dict[AgentType, dict[str, Any]] = {
    AgentType.PPO: {"n_steps": 2048, "ent_coef": 0.01, "learning_rate": 0.00025, "batch_size": 64},
    AgentType.A2C: {"n_steps": 5, "ent_coef": 0.01, "learning_rate": 0.0007},
    AgentType.DDPG: {
        "batch_size": 128,
        "buffer_size": 50_000,
        "learning_rate": 0.001,
        "noise_type": "normal",
        "noise_std": 0.1,
    },
    AgentType.TD3: {
        "batch_size": 100,
        "buffer_size": 1_000_000,
        "learning_rate": 0.001,
        "noise_type": "normal",
        "noise_std": 0.1,
    },
    AgentType.SAC: {
        "batch_size": 64,
        "buffer_size": 100_000,
        "learning_rate": 0.0001,
        "learning_starts": 100,
        "ent_coef": "auto_0.1",
    },
}

NET_ARCHS: dict[str, list[int]] = {
    "tiny": [64],
    "small": [64, 64],
    "medium": [256, 256],
    "big": [400, 300],
}
"""RL Zoo's network sizes; on-policy algorithms get separate pi/vf networks of that shape."""

ACTIVATIONS = ("tanh", "relu", "elu", "leaky_relu")


def algorithm_class(agent: AgentType | str) -> type:
    """The SB3 class of an agent type (imported on first use: torch is heavy)."""
    import stable_baselines3 as sb3

    return {
        AgentType.PPO: sb3.PPO,
        AgentType.A2C: sb3.A2C,
        AgentType.DDPG: sb3.DDPG,
        AgentType.TD3: sb3.TD3,
        AgentType.SAC: sb3.SAC,
    }[AgentType(agent)]


def default_params(agent: AgentType | str) -> dict[str, Any]:
    return dict(DEFAULT_PARAMS[AgentType(agent)])


def model_kwargs(
    agent: AgentType | str, params: dict[str, Any], *, n_actions: int, timesteps: int
) -> dict[str, Any]:
    """SB3 constructor keywords from JSON-friendly ``params`` (merged over the defaults)."""
    from torch import nn

    agent = AgentType(agent)
    kwargs = {**default_params(agent), **params}
    policy_kwargs = dict(kwargs.pop("policy_kwargs", None) or {})
    net_arch = kwargs.pop("net_arch", None)
    if net_arch is not None:
        layers = NET_ARCHS[net_arch] if isinstance(net_arch, str) else net_arch
        if agent in ON_POLICY and isinstance(layers, list):
            layers = {"pi": list(layers), "vf": list(layers)}
        policy_kwargs["net_arch"] = layers
    activation = kwargs.pop("activation_fn", None)
    if activation is not None:
        policy_kwargs["activation_fn"] = {
            "tanh": nn.Tanh,
            "relu": nn.ReLU,
            "elu": nn.ELU,
            "leaky_relu": nn.LeakyReLU,
        }[activation]
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs

    noise_type = kwargs.pop("noise_type", None)
    noise_std = float(kwargs.pop("noise_std", 0.1))
    if noise_type is not None and agent in (AgentType.DDPG, AgentType.TD3):
        from stable_baselines3.common.noise import (
            NormalActionNoise,
            OrnsteinUhlenbeckActionNoise,
        )

        noise_cls = {
            "normal": NormalActionNoise,
            "ornstein-uhlenbeck": OrnsteinUhlenbeckActionNoise,
        }
        kwargs["action_noise"] = noise_cls[noise_type](
            mean=np.zeros(n_actions), sigma=noise_std * np.ones(n_actions)
        )
    if agent in OFF_POLICY:
        kwargs["buffer_size"] = int(min(kwargs.get("buffer_size", 1_000_000), max(timesteps, 1)))
    return kwargs


def build_model(
    agent: AgentType | str,
    env: Any,
    params: dict[str, Any],
    *,
    timesteps: int,
    seed: int | None = None,
    device: str = "cpu",
    verbose: int = 0,
) -> Any:
    """A new SB3 model with an MLP policy on ``env`` (a VecEnv)."""
    kwargs = model_kwargs(
        agent, params, n_actions=int(env.action_space.shape[0]), timesteps=timesteps
    )
    cls = algorithm_class(agent)
    return cls("MlpPolicy", env, seed=seed, device=device, verbose=verbose, **kwargs)


def model_to_bytes(model: Any) -> bytes:
    """SB3's zip (``model.save``) as bytes: what goes into ``agent_checkpoints``."""
    buffer = io.BytesIO()
    model.save(buffer)
    return buffer.getvalue()


def load_model(
    agent: AgentType | str, data: bytes, env: Any | None = None, device: str = "cpu"
) -> Any:
    """A model from SB3 zip bytes (verified by the checkpoint store before this runs:
    SB3's zip holds cloudpickled objects)."""
    return algorithm_class(agent).load(io.BytesIO(data), env=env, device=device)


def replay_buffer_to_bytes(model: Any) -> bytes:
    """The replay buffer pickled as SB3's ``save_replay_buffer`` does, zlib-compressed
    (the unfilled part of the preallocated arrays is zeros)."""
    return zlib.compress(pickle.dumps(model.replay_buffer, protocol=pickle.HIGHEST_PROTOCOL), 1)


def restore_replay_buffer(model: Any, data: bytes) -> None:
    """Install a buffer from :func:`replay_buffer_to_bytes` (bytes verified by the caller)."""
    from stable_baselines3.common.buffers import ReplayBuffer

    buffer = pickle.loads(zlib.decompress(data))  # noqa: S301 - hash-checked bytes we wrote
    if not isinstance(buffer, ReplayBuffer):
        raise TypeError(f"not a replay buffer: {type(buffer).__name__}")
    buffer.device = model.device
    model.replay_buffer = buffer


__all__ = [
    "DEFAULT_PARAMS",
    "LOSS_KEYS",
    "NET_ARCHS",
    "OFF_POLICY",
    "ON_POLICY",
    "algorithm_class",
    "build_model",
    "default_params",
    "load_model",
    "model_kwargs",
    "model_to_bytes",
    "replay_buffer_to_bytes",
    "restore_replay_buffer",
]
