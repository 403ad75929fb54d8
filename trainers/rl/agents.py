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
import json
import pickle
import zlib
from typing import Any

import numpy as np

from repositories.serialization import (
    CheckpointBytes,
    CorruptCheckpointError,
    UntrustedCheckpointError,
    dumps_arrays,
    dumps_tensors,
    loads_arrays,
    loads_tensors,
    require_trusted,
)
from suho_models.enums import AgentType, ModelFormat

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


def algorithm_class(agent: AgentType | str) -> type[Any]:
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
    """A new SB3 model with an MLP policy on ``env`` (a VecEnv).

    The model remembers how it was built (``suho_build``): ``sb3_state``
    checkpoints store that instead of pickled objects, and rebuild from it.
    """
    kwargs = model_kwargs(
        agent, params, n_actions=int(env.action_space.shape[0]), timesteps=timesteps
    )
    cls = algorithm_class(agent)
    model = cls("MlpPolicy", env, seed=seed, device=device, verbose=verbose, **kwargs)
    _remember_build(model, agent, params, timesteps)
    return model


def _remember_build(
    model: Any, agent: AgentType | str, params: dict[str, Any], timesteps: int
) -> None:
    build = {"agent": AgentType(agent).value, "params": params, "timesteps": int(timesteps)}
    json.dumps(build)  # JSON-friendly by contract: fail now, not at the first checkpoint
    model.suho_build = build


# --------------------------------------------------------------------------- sb3_state
SB3_STATE_VERSION = 1
_ARRAY_ATTRIBUTES = ("_last_obs", "_last_original_obs", "_last_episode_starts")
_EPISODE_BUFFERS = ("ep_info_buffer", "ep_success_buffer")
"""Monitor statistics (episode reward/length/time dicts, success flags), for logging."""
_NOT_RESTORED = frozenset({"suho_build", "policy_aliases"})


def model_to_bytes(model: Any) -> bytes:
    """The model as ``sb3_state``: what goes into ``agent_checkpoints``.

    Tensors only (``torch.save`` of state dicts, optimizers included, and of the
    torch variables SB3 itself saves apart), the build arguments and every plain
    number/string attribute SB3 pickles (counters, progress, seed), as JSON: the
    same state SB3's zip restores, in a form that loads without running code.
    """
    import torch
    from stable_baselines3.common.save_util import recursive_getattr

    build = getattr(model, "suho_build", None)
    if build is None:
        raise ValueError(
            "model_to_bytes: the model was not made by build_model or load_model, so its "
            "build arguments are unknown"
        )
    state_dicts, variable_names = model._get_torch_save_params()
    excluded = set(model._excluded_save_params()) | set(state_dicts) | set(variable_names)
    scalars = {
        k: v
        for k, v in vars(model).items()
        if k not in excluded and k not in _NOT_RESTORED and _plain(v)
    }
    arrays = {
        k: torch.from_numpy(np.array(v))
        for k in _ARRAY_ATTRIBUTES
        if isinstance(v := getattr(model, k, None), np.ndarray)
    }
    noise = getattr(model, "action_noise", None)
    if noise is not None and isinstance(getattr(noise, "noise_prev", None), np.ndarray):
        arrays["action_noise.noise_prev"] = torch.from_numpy(np.array(noise.noise_prev))
    episodes = {
        name: None if (value := getattr(model, name, None)) is None else list(value)
        for name in _EPISODE_BUFFERS
    }
    variables = {}
    for name in variable_names:
        value = recursive_getattr(model, name)
        if value is not None:
            variables[name] = value.detach().cpu()
    meta = {
        "version": SB3_STATE_VERSION,
        "build": build,
        "observation_space": _space_json(model.observation_space),
        "action_space": _space_json(model.action_space),
        "scalars": scalars,
        "episodes": episodes,
    }
    return dumps_tensors(
        {
            "meta": json.dumps(meta, allow_nan=True),
            "params": model.get_parameters(),
            "variables": variables,
            "arrays": arrays,
            "spaces": _space_tensors(model.observation_space, model.action_space),
        }
    )


def load_model(
    agent: AgentType | str,
    data: bytes,
    env: Any | None = None,
    device: str = "cpu",
    *,
    params: dict[str, Any] | None = None,
    timesteps: int | None = None,
) -> Any:
    """A model from checkpoint bytes: ``sb3_state`` (rebuilt, runs no stored code) or a
    signed ``sb3_zip`` (SB3's own ``load``, which unpickles objects from the zip).

    ``data`` is what the checkpoint store's ``load_checkpoint`` returned: its format
    is the row's. Plain bytes are read as ``sb3_state`` only. ``params`` and
    ``timesteps`` (what ``build_model`` was given) let a model loaded from a zip be
    saved as ``sb3_state`` (resuming a run saved before it existed).
    """
    fmt = data.format if isinstance(data, CheckpointBytes) else ModelFormat.SB3_STATE
    if fmt is ModelFormat.SB3_ZIP:
        trusted = require_trusted(data, fmt, "agent checkpoint")
        model = algorithm_class(agent).load(io.BytesIO(trusted), env=env, device=device)
        if params is not None and timesteps is not None:  # saved again as sb3_state
            _remember_build(model, agent, params, timesteps)
        return model
    if fmt is not ModelFormat.SB3_STATE:
        raise UntrustedCheckpointError(
            f"agent checkpoint {getattr(data, 'checkpoint_id', '')}: format {fmt.value} is "
            "not an SB3 agent format (sb3_state or sb3_zip)"
        )
    return _rebuild(AgentType(agent), loads_tensors(data, device), env, device)


def _rebuild(agent: AgentType, state: Any, env: Any | None, device: str) -> Any:
    from collections import deque

    from stable_baselines3.common.save_util import recursive_setattr

    meta = json.loads(state["meta"]) if isinstance(state, dict) else None
    if not isinstance(meta, dict) or meta.get("version") != SB3_STATE_VERSION:
        raise CorruptCheckpointError("not an sb3_state payload (no version 1 metadata)")
    build = meta["build"]
    if AgentType(build["agent"]) is not agent:
        raise CorruptCheckpointError(f"sb3_state holds a {build['agent']} agent, not {agent.value}")
    observation_space, action_space = _spaces(meta, state["spaces"])
    cls = algorithm_class(agent)
    kwargs = model_kwargs(
        agent,
        build["params"],
        n_actions=int(action_space.shape[0]),
        timesteps=build["timesteps"],
    )
    model = cls("MlpPolicy", env, device=device, _init_setup_model=False, **kwargs)
    if env is None:
        model.observation_space, model.action_space = observation_space, action_space
    else:
        from stable_baselines3.common.utils import check_for_correct_spaces

        check_for_correct_spaces(model.env, observation_space, action_space)
    scalars = dict(meta["scalars"])
    if env is not None:
        scalars["n_envs"] = model.env.num_envs
    model.__dict__.update(scalars)  # before setup, as SB3's load does
    model._setup_model()
    model.set_parameters(state["params"], exact_match=True, device=device)
    for name, value in state["variables"].items():
        recursive_setattr(model, f"{name}.data", value.data)
    for name, tensor in state["arrays"].items():
        array = tensor.numpy()
        if name == "action_noise.noise_prev":
            if model.action_noise is not None:
                model.action_noise.noise_prev = array
        else:
            setattr(model, name, array)
    for name, items in meta["episodes"].items():
        if items is not None:
            setattr(model, name, deque(items, maxlen=model._stats_window_size))
    if model.use_sde:
        model.policy.reset_noise()
    _remember_build(model, agent, build["params"], build["timesteps"])
    return model


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _space_json(space: Any) -> dict[str, Any]:
    from gymnasium import spaces

    if not isinstance(space, spaces.Box):
        raise ValueError(f"sb3_state stores Box spaces only (got {type(space).__name__})")
    return {"type": "box", "shape": list(space.shape), "dtype": str(space.dtype)}


def _space_tensors(observation_space: Any, action_space: Any) -> dict[str, Any]:
    import torch

    return {
        f"{which}.{bound}": torch.from_numpy(np.array(getattr(space, bound)))
        for which, space in (("observation", observation_space), ("action", action_space))
        for bound in ("low", "high")
    }


def _spaces(meta: dict[str, Any], tensors: dict[str, Any]) -> tuple[Any, Any]:
    from gymnasium import spaces

    out = []
    for which in ("observation", "action"):
        desc = meta[f"{which}_space"]
        out.append(
            spaces.Box(
                low=tensors[f"{which}.low"].numpy(),
                high=tensors[f"{which}.high"].numpy(),
                shape=tuple(desc["shape"]),
                dtype=np.dtype(desc["dtype"]),
            )
        )
    return out[0], out[1]


# --------------------------------------------------------------------------- replay buffers
_BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def replay_buffer_to_bytes(model: Any) -> bytes:
    """The filled part of the replay buffer as ``.npz`` arrays (no pickle)."""
    buffer = model.replay_buffer
    filled = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {
        name: getattr(buffer, name)[:filled]
        for name in _BUFFER_ARRAYS
        if isinstance(getattr(buffer, name, None), np.ndarray)
    }
    arrays["state"] = np.array([buffer.pos, int(buffer.full), buffer.buffer_size], dtype=np.int64)
    return dumps_arrays(arrays)


def restore_replay_buffer(model: Any, data: bytes) -> None:
    """Install a buffer from :func:`replay_buffer_to_bytes`, or a signed legacy pickle
    (``data`` from the checkpoint store's ``load_replay_buffer``)."""
    from stable_baselines3.common.buffers import ReplayBuffer

    if isinstance(data, CheckpointBytes) and data.format is ModelFormat.PICKLE:
        trusted = require_trusted(data, ModelFormat.PICKLE, "replay buffer")
        buffer = pickle.loads(zlib.decompress(trusted))  # noqa: S301 - signed checkpoint
        if not isinstance(buffer, ReplayBuffer):
            raise TypeError(f"not a replay buffer: {type(buffer).__name__}")
        buffer.device = model.device
        model.replay_buffer = buffer
        return
    arrays = loads_arrays(data)
    buffer = model.replay_buffer
    pos, full, size = (int(v) for v in arrays.pop("state"))
    if size != buffer.buffer_size:
        raise CorruptCheckpointError(
            f"replay buffer of {size} transitions, the model's holds {buffer.buffer_size}"
        )
    filled = size if full else pos
    for name, saved in arrays.items():
        target = getattr(buffer, name, None)
        if name not in _BUFFER_ARRAYS or not isinstance(target, np.ndarray):
            raise CorruptCheckpointError(f"replay buffer: unexpected array {name!r}")
        if saved.shape != (filled, *target.shape[1:]) or saved.dtype != target.dtype:
            raise CorruptCheckpointError(
                f"replay buffer {name}: {saved.dtype}{saved.shape}, the model's is "
                f"{target.dtype}{target.shape}"
            )
        target[:filled] = saved
    buffer.pos, buffer.full = pos, bool(full)


__all__ = [
    "DEFAULT_PARAMS",
    "LOSS_KEYS",
    "NET_ARCHS",
    "OFF_POLICY",
    "ON_POLICY",
    "SB3_STATE_VERSION",
    "algorithm_class",
    "build_model",
    "default_params",
    "load_model",
    "model_kwargs",
    "model_to_bytes",
    "replay_buffer_to_bytes",
    "restore_replay_buffer",
]
