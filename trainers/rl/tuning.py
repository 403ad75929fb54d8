"""Optuna tuning of RL agents, with search spaces modelled on RL Zoo's
``hyperparams_opt.py``.

Shared by every algorithm: ``gamma = 1 - one_minus_gamma`` with
``one_minus_gamma ~ loguniform(1e-4, 0.03)`` and ``learning_rate ~
loguniform(1e-5, 2e-3)``. Then per algorithm:

* PPO: n_steps, batch_size (capped at n_steps), clip_range, n_epochs,
  gae_lambda (``1 - loguniform(1e-4, 0.1)``), ent_coef, net_arch;
* A2C: n_steps, gae_lambda, ent_coef;
* SAC: batch_size, tau, train_freq (``gradient_steps = train_freq``), net_arch;
* TD3 / DDPG: the same plus action noise (type and std).

Choices of n_steps and train_freq above a trial's timesteps are left out (the
trial could not use them). ``RLTuningConfig.search_space`` overrides any
parameter's distribution.

Each trial trains on the first part of the train period and is evaluated
(deterministically, mean step reward) on its last ``validation_ratio`` of days,
``evaluations`` times; the intermediate values feed Optuna's median pruner. The
trade period is never seen. Every trial, pruned and failed ones too, goes to
``rl_hyperparameters`` with its effective parameters (JSON), mean reward,
Sharpe ratio, timesteps, episodes and state. The study is stored like the
supervised trainer's (``trainers.study.study_storage``: a journal file per run
unless ``storage`` is set), so a resumed run continues a killed study: only the
missing trials run, and no trial is logged twice.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from repositories.kinds import RL
from suho_models.enums import AgentType, TrialState
from trainers.rl.agents import OFF_POLICY, build_model
from trainers.rl.config import RLConfig
from trainers.rl.environment import make_vec_env
from trainers.rl.evaluation import evaluate_agent
from trainers.rl.finrl_env import MarketData, split_periods
from trainers.rl.metrics import PerformanceMetrics
from trainers.study import (
    StudySpec,
    TrialLog,
    load_study,
    log_once,
    optimize_remaining,
    suggest,
    trial_state,
    worker_of,
)

_ON_POLICY_STEPS = [32, 64, 128, 256, 512, 1024, 2048]
_TRAIN_FREQS = [1, 4, 8, 16, 32, 64, 128, 256, 512]


def _cat(choices: list[Any]) -> dict[str, Any]:
    return {"type": "categorical", "choices": choices}


def _logf(low: float, high: float) -> dict[str, Any]:
    return {"type": "float", "low": low, "high": high, "log": True}


SHARED_SPACE: dict[str, dict[str, Any]] = {
    "one_minus_gamma": _logf(1e-4, 0.03),
    "learning_rate": _logf(1e-5, 2e-3),
}

SEARCH_SPACES: dict[AgentType, dict[str, dict[str, Any]]] = {
    AgentType.PPO: {
        **SHARED_SPACE,
        "n_steps": _cat(_ON_POLICY_STEPS),
        "batch_size": _cat([32, 64, 128, 256, 512]),
        "clip_range": _cat([0.1, 0.2, 0.3, 0.4]),
        "n_epochs": _cat([1, 5, 10, 20]),
        "one_minus_gae_lambda": _logf(1e-4, 0.1),
        "ent_coef": _logf(1e-8, 0.1),
        "net_arch": _cat(["tiny", "small", "medium"]),
    },
    AgentType.A2C: {
        **SHARED_SPACE,
        "n_steps": _cat(_ON_POLICY_STEPS),
        "one_minus_gae_lambda": _logf(1e-4, 0.1),
        "ent_coef": _logf(1e-8, 0.1),
    },
    AgentType.SAC: {
        **SHARED_SPACE,
        "batch_size": _cat([16, 32, 64, 128, 256, 512, 1024, 2048]),
        "tau": _cat([0.001, 0.005, 0.01, 0.02, 0.05, 0.08]),
        "train_freq": _cat(_TRAIN_FREQS),
        "net_arch": _cat(["small", "medium", "big"]),
    },
    AgentType.TD3: {
        **SHARED_SPACE,
        "batch_size": _cat([16, 32, 64, 100, 128, 256, 512, 1024, 2048]),
        "tau": _cat([0.001, 0.005, 0.01, 0.02, 0.05, 0.08]),
        "train_freq": _cat(_TRAIN_FREQS),
        "net_arch": _cat(["small", "medium", "big"]),
        "noise_type": _cat(["ornstein-uhlenbeck", "normal", None]),
        "noise_std": {"type": "float", "low": 0.0, "high": 1.0},
    },
}
SEARCH_SPACES[AgentType.DDPG] = dict(SEARCH_SPACES[AgentType.TD3])


def search_space(
    agent: AgentType | str,
    timesteps: int,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The Optuna distributions for ``agent``: RL Zoo's, fitted to ``timesteps``, then
    ``overrides``."""
    space = {name: dict(spec) for name, spec in SEARCH_SPACES[AgentType(agent)].items()}
    for name in ("n_steps", "train_freq"):
        if name in space:
            choices = space[name]["choices"]
            fitting = [c for c in choices if c <= timesteps] or [min(choices)]
            space[name] = _cat(fitting)
    space.update(overrides or {})
    return space


def to_params(agent: AgentType | str, sampled: dict[str, Any]) -> dict[str, Any]:
    """Optuna's sampled values as the algorithm's (JSON-friendly) parameters."""
    agent = AgentType(agent)
    params = dict(sampled)
    if "one_minus_gamma" in params:
        params["gamma"] = 1.0 - params.pop("one_minus_gamma")
    if "one_minus_gae_lambda" in params:
        params["gae_lambda"] = 1.0 - params.pop("one_minus_gae_lambda")
    if agent is AgentType.PPO and "batch_size" in params and "n_steps" in params:
        params["batch_size"] = min(params["batch_size"], params["n_steps"])
    if agent in OFF_POLICY and "train_freq" in params:
        params["gradient_steps"] = params["train_freq"]
    if "noise_type" in params and params["noise_type"] is None:
        params.pop("noise_std", None)
    return params


class TrialEvalCallback(BaseCallback):
    """Evaluates every ``eval_every`` steps, reports to Optuna, stops a pruned trial."""

    def __init__(
        self,
        trial: Any,
        evaluate: Callable[[], PerformanceMetrics],
        eval_every: int,
        evaluations: int,
        pruning: bool,
    ) -> None:
        super().__init__(verbose=0)
        self.trial = trial
        self.evaluate = evaluate
        self.eval_every = eval_every
        self.evaluations = evaluations
        self.pruning = pruning
        self.done = 0
        self.episodes = 0
        self.pruned = False
        self.last: PerformanceMetrics | None = None

    def _on_step(self) -> bool:
        self.episodes += int(self.locals["dones"][0])
        if self.n_calls % self.eval_every or self.done >= self.evaluations:
            return True
        self.last = self.evaluate()
        self.done += 1
        value = self.last.mean_reward
        if math.isfinite(value):
            self.trial.report(value, self.done)
        if self.pruning and self.trial.should_prune():
            self.pruned = True
            return False
        return True


def study_spec(
    config: RLConfig,
    market: MarketData,
    run_id: uuid.UUID,
    trials: TrialLog,
    on_trial: Callable[[int], None] | None = None,
) -> StudySpec:
    """The run's study: objective, trial logging and options (one process or workers)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tuning = config.tuning
    agent = config.agent
    steps = tuning.timesteps or config.timesteps
    eval_every = max(1, steps // tuning.evaluations)
    fit, valid = split_periods(market.train, trade_ratio=tuning.validation_ratio)
    study_name = tuning.study_name or f"{run_id}"
    space = search_space(agent, steps, tuning.search_space)

    def objective(trial: optuna.Trial) -> float:
        sampled = {name: suggest(trial, name, spec) for name, spec in space.items()}
        params = {**config.agent_params, **to_params(agent, sampled)}
        trial.set_user_attr("params", params)
        model = build_model(
            agent,
            make_vec_env(fit, market, config),
            params,
            timesteps=steps,
            seed=config.seed + trial.number,
            device=config.device,
        )
        model.set_logger(Logger(folder=None, output_formats=[]))
        callback = TrialEvalCallback(
            trial,
            lambda: evaluate_agent(model, valid, market, config).metrics,
            eval_every,
            tuning.evaluations,
            tuning.pruning,
        )
        model.learn(total_timesteps=steps, callback=callback)
        trial.set_user_attr("total_timesteps", int(model.num_timesteps))
        trial.set_user_attr("total_episodes", callback.episodes)
        if callback.pruned:
            last = callback.last
            trial.set_user_attr("mean_reward", last.mean_reward if last else None)
            trial.set_user_attr("sharpe_ratio", _finite(last.sharpe_ratio) if last else None)
            raise optuna.TrialPruned()
        metrics = evaluate_agent(model, valid, market, config).metrics
        trial.set_user_attr("sharpe_ratio", _finite(metrics.sharpe_ratio))
        return metrics.mean_reward

    def record(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        state = trial_state(frozen)
        attrs = frozen.user_attrs
        worker = worker_of(frozen)
        mean = frozen.value if state is TrialState.COMPLETE else attrs.get("mean_reward")
        trials.log_trial(
            run_id,
            {
                "trial_number": frozen.number,
                "study_name": study_name,
                "agent_type": agent,
                "hyperparameters": json.dumps(attrs.get("params", frozen.params), default=str),
                "mean_reward": _finite(mean),
                "sharpe_ratio": attrs.get("sharpe_ratio"),
                "total_timesteps": attrs.get("total_timesteps", 0),
                "total_episodes": attrs.get("total_episodes", 0),
                "state": state,
                "duration_seconds": frozen.duration.total_seconds() if frozen.duration else 0.0,
                "worker_host": worker["host"],
                "worker_pid": worker["pid"],
            },
        )
        if on_trial is not None:
            on_trial(frozen.number)

    options = {
        "direction": RL.direction,
        "sampler": optuna.samplers.TPESampler(seed=config.seed),
        "pruner": optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    }
    return StudySpec(study_name, objective, record, options)


def best_params(study: Any, config: RLConfig) -> dict[str, Any]:
    """The best trial's parameters, or ``config.agent_params`` when none completed."""
    import optuna

    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return dict(config.agent_params)
    return dict(study.best_trial.user_attrs["params"])


def tune(
    config: RLConfig,
    market: MarketData,
    run_id: uuid.UUID,
    trials: TrialLog,
    on_trial: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run the study; returns the best trial's parameters (over ``config.agent_params``),
    or ``config.agent_params`` when no trial completed."""
    spec = study_spec(config, market, run_id, trials, on_trial)
    tuning = config.tuning
    study = load_study(run_id, tuning.storage, study_name=spec.name, **spec.options)
    optimize_remaining(
        study,
        spec.objective,
        tuning.trials,
        tuning.timeout_seconds,
        log_once(spec.record, trials.finished_trials(run_id)),
    )
    return best_params(study, config)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


__all__ = [
    "SEARCH_SPACES",
    "SHARED_SPACE",
    "TrialEvalCallback",
    "best_params",
    "search_space",
    "study_spec",
    "to_params",
    "tune",
]
