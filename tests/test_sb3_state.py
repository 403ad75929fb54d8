"""``sb3_state``: an agent rebuilt from weights and JSON acts and trains on exactly as
SB3's own zip (which unpickles objects) restores it.

For each algorithm: train a little, save both ways, reload both, then compare
deterministic actions and, after training both further with the same seed (off-policy:
from the same restored replay buffer), every policy parameter, optimizer state and counter.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from repositories.serialization import CheckpointBytes, CorruptCheckpointError
from suho_models.enums import AgentType, ModelFormat

PARAMS: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 64, "batch_size": 32, "net_arch": "tiny", "activation_fn": "relu"},
    "a2c": {"n_steps": 16},
    "sac": {"learning_starts": 50, "batch_size": 32},
    "td3": {"learning_starts": 50, "batch_size": 32, "noise_type": "ornstein-uhlenbeck"},
    "ddpg": {"learning_starts": 50, "batch_size": 32},
}


def pendulum() -> Any:
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    return DummyVecEnv([lambda: gym.make("Pendulum-v1")])


def state_of(model: Any) -> dict[str, Any]:
    params = model.get_parameters()
    return {
        f"{part}.{key}": value
        for part, state in params.items()
        for key, value in _flatten(state).items()
    }


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list | tuple):
        return {f"{prefix}{i}": v for i, v in enumerate(value)}
    return {prefix: value}


def assert_same(a: Any, b: Any) -> None:
    import torch

    sa, sb = state_of(a), state_of(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        x, y = sa[key], sb[key]
        same = torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
        assert same, key
    for attr in ("num_timesteps", "_n_updates", "_episode_num", "_current_progress_remaining"):
        assert getattr(a, attr) == getattr(b, attr), attr


@pytest.mark.slow
@pytest.mark.parametrize("agent", [a.value for a in AgentType])
def test_sb3_state_restores_what_the_zip_restores(agent: str) -> None:
    import torch

    from trainers.rl.agents import (
        OFF_POLICY,
        build_model,
        load_model,
        model_to_bytes,
        replay_buffer_to_bytes,
        restore_replay_buffer,
    )

    torch.set_num_threads(1)
    model = build_model(agent, pendulum(), PARAMS[agent], timesteps=600, seed=3)
    model.learn(200)
    state = model_to_bytes(model)
    zipped = io.BytesIO()
    model.save(zipped)

    rebuilt = load_model(agent, CheckpointBytes(state, ModelFormat.SB3_STATE), pendulum())
    reference = load_model(
        agent, CheckpointBytes(zipped.getvalue(), ModelFormat.SB3_ZIP, trusted=True), pendulum()
    )
    detached = load_model(agent, state)  # no env: deployment, reports
    obs = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    expected = model.predict(obs, deterministic=True)[0]
    for loaded in (rebuilt, reference, detached):
        np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)
    assert_same(rebuilt, reference)

    if AgentType(agent) in OFF_POLICY:
        buffer = replay_buffer_to_bytes(model)
        for loaded in (rebuilt, reference):
            restore_replay_buffer(loaded, CheckpointBytes(buffer, ModelFormat.RAW))
            assert loaded.replay_buffer.pos == model.replay_buffer.pos == 200
            np.testing.assert_array_equal(
                loaded.replay_buffer.observations, model.replay_buffer.observations
            )
    for loaded in (rebuilt, reference):  # resume, as the trainer does
        loaded._last_obs = None
        loaded.set_random_seed(11)
        loaded.learn(150, reset_num_timesteps=False)
    assert_same(rebuilt, reference)
    assert rebuilt.num_timesteps > 200


@pytest.mark.parametrize("agent", ["ppo"])
def test_sb3_state_refuses_other_payloads(agent: str) -> None:
    import torch

    from trainers.rl.agents import build_model, load_model, model_to_bytes

    torch.set_num_threads(1)
    state = model_to_bytes(build_model(agent, pendulum(), PARAMS[agent], timesteps=100, seed=1))
    with pytest.raises(CorruptCheckpointError, match="holds a ppo agent, not sac"):
        load_model("sac", state)
    with pytest.raises(CorruptCheckpointError, match="weights-only"):
        load_model(agent, b"not torch at all")
    with pytest.raises(ValueError, match="build arguments are unknown"):
        from stable_baselines3 import PPO

        model_to_bytes(PPO("MlpPolicy", pendulum(), n_steps=64, batch_size=32))
