"""The RL (FinRL) training service, following the seed's workflow:

create agent_training_run -> tune (rl_hyperparameters) -> train, logging
reward_history per step and saving agent_checkpoints every K episodes ->
evaluate on the held-out trade period -> save the final agent and complete the
run with its final_* metrics. Runs are tracked through ``RunTrackingService``:
``running`` (with heartbeats) while it trains; any exception marks it ``failed``
(and re-raises), Ctrl-C and SIGTERM ``cancelled``.

Resume (``RLConfig(resume=RUN_ID)``) continues a failed, cancelled, or crashed
(still ``running``: the process died without a word) run from its latest
checkpoint, with the run's stored configuration and periods. Episode and
timestep numbering continue. ``reward_history`` stays exact: before the
checkpoint is written, every row up to its step is flushed (so it is durable
when the checkpoint claims it), and on resume the rows a crashed process logged
past the checkpoint are deleted before training goes on, so readers see exactly
the steps of the final trajectory, each once.

Timesteps: SB3 learns in whole rollouts, so a run of ``timesteps`` takes them
rounded up to whole rollouts (:func:`planned_timesteps`). A resumed run stops at
exactly that total too, the total the uninterrupted run would have taken (it
would overshoot otherwise, its rollouts starting at the checkpoint's step).

Resume of PPO/A2C, exactly. Checkpoints are taken at episode ends, which fall inside
a rollout; the saved agent holds the weights of the last update, not the rollout
buffer. The steps collected since that update (up to ``n_steps * n_envs`` of them) are
in ``reward_history`` (they were taken) but the resumed run never learns from them: it
resets the envs and starts a new rollout at the checkpoint's step, so its rollout
boundaries sit ``checkpoint_step mod rollout`` later than the uninterrupted run's and
its updates differ from there on (same seed offset, different data). The total of
env-steps is the same (``StopAtTimestep``); the last, partial rollout is not learned.
With N envs each SB3 step is N env-steps: ``num_timesteps`` and the checkpoint's
step count env-steps; the envs of a run share one frame, so their episodes end
together and a checkpoint never falls inside one env's episode while another's ends.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from repositories.checkpoints import AgentCheckpointInfo
from repositories.kinds import RL
from repositories.object_store import ObjectStore
from repositories.records import AgentTrainingRun, RLTrial
from repositories.series import RewardLogger
from repositories.tracking import RunTrackingService, SeriesNotStoredError
from suho_models.db import Database
from suho_models.enums import AgentType, CheckpointKind, ModelFormat
from trainers.baselines import never_traded, rl_verdict
from trainers.progress import Progress
from trainers.rl.agents import (
    OFF_POLICY,
    build_model,
    load_model,
    model_to_bytes,
    replay_buffer_to_bytes,
    restore_replay_buffer,
)
from trainers.rl.callbacks import RewardHistoryCallback, StopAtTimestep, attach_loss_writer
from trainers.rl.config import RLConfig
from trainers.rl.environment import (
    env_config_json,
    load_market,
    make_vec_env,
    use_stored_scaling,
)
from trainers.rl.evaluation import Evaluation, evaluate_agent
from trainers.rl.finrl_env import MarketData
from trainers.rl.metrics import DEFAULT_PERIODS_PER_YEAR
from trainers.rl.walk_forward import walk_forward_folds
from trainers.walk_forward import describe_walk_forward, fold_means, log_folds, summarise

log = logging.getLogger(__name__)

AgentTracking = RunTrackingService[AgentTrainingRun, AgentCheckpointInfo, RLTrial, RewardLogger]


def run_fields(config: RLConfig) -> dict[str, Any]:
    """The run row a configuration makes (before training fills in the rest)."""
    return {
        "run_name": config.run_name or f"{config.agent.value}-{int(time.time())}",
        "agent_type": config.agent,
        "reward_function_type": config.reward,
        "initial_amount": config.initial_amount,
        "buy_cost_pct": config.buy_cost_pct,
        "sell_cost_pct": config.sell_cost_pct,
        "config_json": config.model_dump_json(),
    }


@dataclass
class RLTrainingResult:
    """What a run produced, beyond its stored record."""

    run: AgentTrainingRun
    model: Any
    evaluation: Evaluation
    market: MarketData
    params: dict[str, Any]
    """The algorithm parameters trained with (tuned ones included)."""
    checkpoint_id: uuid.UUID | None
    """The final checkpoint (kind ``final``)."""
    checkpoints: list[uuid.UUID] = field(default_factory=list)
    """Intermediate checkpoints saved by this process and still kept, oldest first."""
    resumed_from: AgentCheckpointInfo | None = None
    walk_forward: dict[str, float] = field(default_factory=dict)
    """``walk_forward_<metric>_mean`` / ``_std`` (empty without ``--walk-forward``)."""

    @property
    def equity_curve(self) -> pd.DataFrame:
        """Trade period: date, the agent's account value, buy-and-hold's."""
        return self.evaluation.equity


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for the block (small MLPs: 1 is fastest)."""
    if n is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def rollout_params(config: RLConfig) -> dict[str, Any]:
    """The algorithm parameters trained with: PPO's ``n_steps`` is per env, so unless set
    it becomes ``2048 // n_envs`` (the same 2,048-step rollout at any width)."""
    params = config.effective_agent_params
    if config.agent is AgentType.PPO and "n_steps" not in params and config.n_envs > 1:
        params["n_steps"] = max(2048 // config.n_envs, 2)
    return params


def planned_timesteps(model: Any, timesteps: int) -> int | None:
    """The steps an uninterrupted ``learn(timesteps)`` takes: rounded up to whole
    rollouts (PPO/A2C: ``n_steps`` per env; off-policy: ``train_freq`` steps).
    None when it cannot be known (off-policy ``train_freq`` in episodes)."""
    from stable_baselines3.common.type_aliases import TrainFrequencyUnit

    n_envs = getattr(model, "n_envs", 1) or 1
    if hasattr(model, "n_steps"):
        chunk = model.n_steps * n_envs
    else:
        freq = model.train_freq
        if freq.unit is not TrainFrequencyUnit.STEP:
            return None
        chunk = freq.frequency * n_envs
    return int(math.ceil(timesteps / chunk) * chunk)


class _ProgressCallback(BaseCallback):
    """Advances the progress bar once per rollout: redrawing per step costs more than a step."""

    def __init__(self, advance: Any, shown: int) -> None:
        super().__init__(verbose=0)
        self.advance = advance
        self.shown = shown

    def _on_rollout_end(self) -> None:
        self.advance(self.num_timesteps - self.shown)
        self.shown = self.num_timesteps

    def _on_step(self) -> bool:
        return True


class RLTrainer:
    """``RLTrainer(config, db).run()`` trains (or resumes), tracks and returns the run.

    ``progress`` shows a progress bar of the training steps (``suho train rl``
    does unless ``--quiet``).
    """

    def __init__(
        self,
        config: RLConfig,
        db: Database | None = None,
        *,
        store: ObjectStore | None = None,
        progress: bool = False,
        tracking: AgentTracking | None = None,
    ) -> None:
        self.config = config
        self.db = db or Database()
        self.tracking: AgentTracking = tracking or RunTrackingService(self.db, RL, store=store)
        self.progress = Progress(progress)

    # ------------------------------------------------------------------ public
    def run(self) -> RLTrainingResult:
        if self.config.resume is not None:
            return self._resume(self.config.resume)
        config = self.config
        run = self.tracking.create(run_fields(config))
        run = self.tracking.start(run.run_id)
        with self.tracking.guard(run.run_id), torch_threads(config.torch_threads):
            return self._train(run, config, None)

    # ------------------------------------------------------------------ lifecycle
    def _resume(self, run_id: uuid.UUID) -> RLTrainingResult:
        run, latest = self.tracking.resume(run_id)
        with self.tracking.guard(run.run_id):
            stored = RLConfig.model_validate_json(run.config_json)
            config = self.config.for_resume(stored)
            recorded = config.model_copy(update={"resume": None})
            if recorded != stored:
                run = self.tracking.update(run_id, config_json=recorded.model_dump_json())
            with torch_threads(config.torch_threads):
                return self._train(run, config, latest)

    # ------------------------------------------------------------------ steps
    def _train(
        self, run: AgentTrainingRun, config: RLConfig, resume_from: AgentCheckpointInfo | None
    ) -> RLTrainingResult:
        run_id = run.run_id
        resuming = config.resume is not None
        market = self.market(run, config, resuming=resuming)
        config = self._annualised(run_id, config, market)
        config = self._tuned(run_id, config, market)
        params = rollout_params(config)

        env = make_vec_env(market.train, market, config)
        if resume_from is not None:
            model = self._restore(resume_from, env, config)
            first_episode = resume_from.episode_number + 1
        else:
            model = build_model(
                config.agent,
                env,
                params,
                timesteps=config.timesteps,
                seed=config.seed,
                device=config.device,
            )
            first_episode = 1
        losses = attach_loss_writer(model, config.agent, config.verbose)

        saved: list[uuid.UUID] = []
        # resuming: the rows past the checkpoint go (after a dead writer's spool files
        # are replayed), so the table holds the final trajectory's steps once each
        rewards = self.tracking.open_series(run_id, resume_from, resuming=resuming)
        callback: RewardHistoryCallback | None = None
        try:

            def on_checkpoint(callback: RewardHistoryCallback) -> None:
                info = self._checkpoint(run_id, config, model, callback, rewards)
                if info is not None:
                    saved.append(info.checkpoint_id)
                    pruned = self.tracking.prune(run_id, keep_last=config.keep_checkpoints)
                    saved[:] = [i for i in saved if i not in pruned]

            callback = RewardHistoryCallback(
                rewards,
                losses,
                first_episode=first_episode,
                periods_per_year=config.periods_per_year or DEFAULT_PERIODS_PER_YEAR,
                checkpoint_every=config.checkpoint_every_episodes,
                on_checkpoint=on_checkpoint,
            )
            planned = planned_timesteps(model, config.timesteps)
            total = config.timesteps if planned is None else planned
            remaining = total - model.num_timesteps
            if resume_from is not None and resume_from.kind is CheckpointKind.FINAL:
                remaining = 0  # training had finished; only evaluation and completion remain
            if remaining > 0:
                with self.progress.task("training", total) as advance:
                    advance(model.num_timesteps)
                    callbacks = [callback, _ProgressCallback(advance, model.num_timesteps)]
                    if planned is not None:
                        callbacks.append(StopAtTimestep(planned))
                    model.learn(
                        total_timesteps=remaining,
                        callback=CallbackList(callbacks),
                        reset_num_timesteps=resume_from is None,
                    )
            episodes = callback.episodes_done
        finally:
            try:
                if callback is not None:
                    callback.drain()  # the rows of the steps taken, even after a crash
            finally:
                # Raises RowsNotStoredError (the run then ends failed, with the count)
                # when rows could be neither inserted nor spooled.
                if not rewards.close():
                    log.warning(
                        "run %s: some reward_history rows could not be inserted yet; they "
                        "are spooled under %s and replayed by the next writer",
                        run_id,
                        rewards.writer.spool_dir,
                    )

        evaluation = evaluate_agent(model, market.trade, market, config)
        metrics = evaluation.metrics
        final_id = None
        walk_forward: dict[str, float] = {}
        if resume_from is not None and resume_from.kind is CheckpointKind.FINAL:
            final_id = resume_from.checkpoint_id  # it crashed after saving it
        else:
            if config.walk_forward is not None:
                walk_forward = self._walk_forward(run_id, config, market, params)
            final_id = self.tracking.save_checkpoint(
                run_id,
                model_to_bytes(model),
                ModelFormat.SB3_STATE,
                {
                    **metrics.to_dict(),
                    **evaluation.activity.to_dict(),
                    **evaluation.baseline_metrics(),
                    **walk_forward,
                },
                episode_number=episodes,
                timestep=int(model.num_timesteps),
                kind=CheckpointKind.FINAL,
            ).checkpoint_id
        summary = {**metrics.to_dict(), **evaluation.activity.to_dict(),
                   **evaluation.baseline_metrics()}  # fmt: skip
        log.info("run %s: %s", run_id, rl_verdict(summary))
        if (warning := never_traded(summary)) is not None:
            log.warning("run %s: %s", run_id, warning)
        final = metrics.final_columns()
        final.update(total_timesteps=int(model.num_timesteps), total_episodes=episodes)
        completed = self.tracking.complete(run_id, final)
        return RLTrainingResult(
            completed, model, evaluation, market, params, final_id, saved, resume_from, walk_forward
        )

    def _walk_forward(
        self, run_id: uuid.UUID, config: RLConfig, market: MarketData, params: dict[str, Any]
    ) -> dict[str, float]:
        """K folds over the train and trade periods; each fold's figures go to the run's
        metrics (``walk_forward/*``), their mean and spread to the final checkpoint."""
        wf = config.walk_forward
        assert wf is not None
        with self.progress.task("walk-forward", wf.folds) as advance:
            folds = walk_forward_folds(market, config, params, wf, on_fold=lambda: advance())
        with self.tracking.metric_logger(run_id) as logger:
            log_folds(logger, folds)
        summary = summarise(folds)
        verdict = rl_verdict(fold_means(summary))
        log.info("run %s: %s; mean over folds: %s", run_id, describe_walk_forward(summary), verdict)
        return summary

    def market(
        self, run: AgentTrainingRun, config: RLConfig, *, resuming: bool = False, store: bool = True
    ) -> MarketData:
        """The run's market data; a resumed run keeps its periods and its observation
        scaling. ``store``: record the environment and periods on the run (a tuning
        worker, one of many, writes nothing)."""
        periods: dict[str, Any] = {}
        if resuming and run.train_start is not None:
            periods = {
                "start": run.train_start,
                "end": run.trade_end,
                "trade_start": run.trade_start,
            }
        market = load_market(config, self.db, **periods)
        if resuming:
            use_stored_scaling(market, run.env_config_json)
        if store:
            stored_env = env_config_json(market, config)
            self.tracking.update(
                run.run_id,
                state_dim=stored_env["observation_space"],
                action_dim=market.action_dim,
                tickers=market.tickers,
                env_config_json=stored_env,
                **market.period_fields(),
            )
        return market

    def _annualised(self, run_id: uuid.UUID, config: RLConfig, market: MarketData) -> RLConfig:
        """The run's bars per year, from the data unless given, recorded in its config
        (a resumed run keeps the figure it started with)."""
        per_year = market.extra.get("annualisation")
        if config.periods_per_year is not None or per_year is None:
            return config
        log.info("annualising with %s", per_year.describe())
        resolved = config.model_copy(update={"periods_per_year": per_year.periods_per_year})
        self.tracking.update(
            run_id, config_json=resolved.model_copy(update={"resume": None}).model_dump_json()
        )
        return resolved

    def _tuned(self, run_id: uuid.UUID, config: RLConfig, market: MarketData) -> RLConfig:
        """Tune once per run: the result is recorded in the run's config (tuned_params)."""
        if not config.tuning.trials or config.tuned_params is not None:
            return config
        from trainers.rl.tuning import tune

        params = tune(config, market, run_id, self.tracking)
        tuned = config.model_copy(update={"tuned_params": params})
        self.tracking.update(
            run_id, config_json=tuned.model_copy(update={"resume": None}).model_dump_json()
        )
        return tuned

    def _restore(self, info: AgentCheckpointInfo, env: Any, config: RLConfig) -> Any:
        model = load_model(
            config.agent,
            self.tracking.load_checkpoint(info.checkpoint_id),
            env,
            config.device,
            params=config.effective_agent_params,
            timesteps=config.timesteps,
        )
        model._last_obs = None  # the env is new: learn() starts with a reset, a new episode
        if config.agent in OFF_POLICY and info.replay_buffer_uri:
            buffer = self.tracking.load_replay_buffer(info.checkpoint_id)
            if buffer is not None:  # a URI names one
                restore_replay_buffer(model, buffer)
        model.set_random_seed(config.seed + int(model.num_timesteps))
        log.info(
            "resuming run %s from checkpoint %s (episode %d, step %d)",
            info.run_id,
            info.checkpoint_id,
            info.episode_number,
            info.timestep,
        )
        return model

    def _checkpoint(
        self,
        run_id: uuid.UUID,
        config: RLConfig,
        model: Any,
        callback: RewardHistoryCallback,
        rewards: RewardLogger,
    ) -> AgentCheckpointInfo | None:
        """Save the agent at an episode end; rows up to this step are flushed first, so a
        checkpoint never claims steps the table does not hold."""
        timestep = int(model.num_timesteps)
        buffer = None
        if config.agent in OFF_POLICY and config.save_replay_buffer:
            buffer = replay_buffer_to_bytes(model)
        try:
            info = self.tracking.save_checkpoint(
                run_id,
                model_to_bytes(model),
                ModelFormat.SB3_STATE,
                callback.checkpoint_metrics(),
                episode_number=callback.episodes_done,
                timestep=timestep,
                kind=CheckpointKind.INTERMEDIATE,
                replay_buffer=buffer,
                flush=rewards,
            )
        except SeriesNotStoredError:
            log.warning(
                "run %s: reward rows not yet stored, checkpoint at %d skipped", run_id, timestep
            )
            return None
        log.info(
            "run %s: checkpoint at episode %d, step %d", run_id, callback.episodes_done, timestep
        )
        return info


__all__ = [
    "AgentTracking",
    "RLTrainer",
    "RLTrainingResult",
    "planned_timesteps",
    "rollout_params",
    "run_fields",
    "torch_threads",
]
