"""Configuration of an RL run: a pydantic model, from code, a YAML/TOML file, or
CLI options (:meth:`RLConfig.from_cli_options` drops options left unset)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from suho_models.enums import AgentType, RewardFunctionType
from trainers.config_file import config_model, validate_config_file
from trainers.data.spec import FeatureSpec
from trainers.walk_forward import WalkForwardConfig

log = logging.getLogger(__name__)

DEFAULT_INDICATORS: tuple[str, ...] = (
    "macd_norm",
    "bb_pctb_20",
    "bb_width_20",
    "rsi_28",
    "cci_20",
    "natr_14",
    "close_sma_20_ratio",
    "close_sma_50_ratio",
)
"""Stationary counterparts of FinRL's default ``INDICATORS`` (macd, boll_ub, boll_lb,
rsi_30, cci_30, dx_30, close_30_sma, close_60_sma): MACD / close, Bollinger %B and
width, close / SMA, ``natr_14`` for dx_30. No price level: a price lets an agent
memorize the training path, and the trade period starts outside its range. 8 keep the
state small (2 tickers: 19 scaled values) and training fast."""

RESUME_OVERRIDABLE = frozenset(
    {
        "timesteps",
        "checkpoint_every_episodes",
        "keep_checkpoints",
        "verbose",
        "torch_threads",
        "save_replay_buffer",
    }
)
"""Fields a resumed run may change; everything else comes from the stored config."""


@config_model
class RLTuningConfig(BaseModel):
    """Optuna tuning before training (trials train on the first part of the train
    period and are evaluated on its last ``validation_ratio``; the trade period
    stays unseen)."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(default=0, ge=0)
    """Optuna trials; 0 trains once with ``agent_params``."""
    timesteps: int | None = Field(default=None, gt=0)
    """Training steps per trial (None: the run's ``timesteps``)."""
    evaluations: int = Field(default=4, ge=1)
    """Intermediate evaluations per trial: the points where pruning may stop it."""
    validation_ratio: float = Field(default=0.25, gt=0, lt=1)
    timeout_seconds: float | None = Field(default=None, gt=0)
    storage: str | None = None
    """Optuna storage URL. None: ``SUHO_OPTUNA_STORAGE``, else a journal file per run under
    <data_dir>/optuna, so a killed study resumes (``trainers.study``)."""
    study_name: str | None = None
    search_space: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Overrides per Optuna parameter, e.g. {"n_steps": {"type": "categorical",
    "choices": [64, 128]}} or {"learning_rate": {"type": "float", "low": 1e-4,
    "high": 1e-3, "log": true}}."""
    pruning: bool = True


@config_model
class RLConfig(BaseModel):
    """Everything an RL run needs; stored with the run as JSON (resume reads it back)."""

    model_config = ConfigDict(extra="forbid")

    agent: AgentType = AgentType.PPO
    timesteps: int = Field(default=100_000, gt=0)
    """Environment steps to train (on-policy algorithms round up to whole rollouts)."""
    reward: RewardFunctionType = RewardFunctionType.LOG_RETURN
    """log_return: additive, scale-free; scaled by ``log_return_scaling``."""
    reward_scaling: float = Field(default=1e-4, gt=0)
    """Scale of portfolio_value_change (FinRL's reward_scaling)."""
    log_return_scaling: float = Field(default=100.0, gt=0)
    """Scale of log_return: 100 makes a 1% day a reward near 1 (unscaled, rewards of
    order 1e-3 leave SAC's Q-values to its entropy term)."""
    dsr_eta: float = Field(default=0.01, gt=0, le=1)
    """Adaptation rate of differential_sharpe."""
    drawdown_penalty: float = Field(default=0.1, ge=0)
    """Weight of the drawdown in drawdown_penalized."""
    checkpoint_every_episodes: int = Field(default=100, gt=0)
    """Save the agent every K training episodes (the seed's 100)."""
    keep_checkpoints: int = Field(default=3, ge=1)
    """Intermediate checkpoints kept per run (with their replay buffers); deployed ones
    and the final agent are always kept."""
    resume: uuid.UUID | None = None
    """Continue this crashed or interrupted run from its latest checkpoint."""
    run_name: str | None = None

    source: str = "ml_features"
    """A table in the same ClickHouse, or a path to a .parquet / .csv file."""
    features: FeatureSpec = Field(default_factory=lambda: FeatureSpec(target_columns=[]))
    """Time and symbol columns (and, with ``indicators=None``, which features)."""
    indicators: list[str] | None = Field(default_factory=lambda: list(DEFAULT_INDICATORS))
    """Feature columns in the state (None: every feature ``features`` selects)."""
    symbols: list[str] | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    trade_start: dt.datetime | None = None
    """First time of the held-out trade period (None: the last ``trade_ratio`` of days)."""
    trade_ratio: float = Field(default=0.2, gt=0, lt=1)
    max_dropped_days: float = Field(default=0.5, ge=0, le=1)
    """Largest share of the loaded days that rows with NaN features (or a missing
    ticker) may remove before the run is refused; any removal is logged."""

    env: Literal["fast", "finrl"] = "fast"
    """``fast``: the numpy env with FinRL's dynamics (``trainers.rl.fast_env``, checked
    bit-identical by the golden tests); ``finrl``: FinRL's own ``StockTradingEnv``."""
    n_envs: int = Field(default=1, ge=1, le=256)
    """Environments stepped side by side (PPO/A2C's ``n_steps`` is per env: PPO's default
    becomes 2048 // n_envs, the same 2,048-step rollout)."""
    sizing: Literal["notional", "hmax"] = "notional"
    """``notional``: an action of 1 trades ``position_fraction / n_tickers`` of the account
    value in each ticker, whatever its price; ``hmax``: FinRL's literal ``action * hmax``
    shares for every ticker."""
    position_fraction: float = Field(default=1.0, gt=0, le=1)
    hmax: int = Field(default=100, gt=0)
    """Most shares traded per ticker and step with ``sizing="hmax"`` (FinRL's hmax)."""
    observation: Literal["scaled", "finrl"] = "scaled"
    """``scaled``: cash and positions relative to the starting cash, indicators z-scored
    on the training period, no prices (``trainers.rl.observation``); ``finrl``: FinRL's
    raw state."""
    initial_amount: float = Field(default=1_000_000.0, gt=0)
    buy_cost_pct: float = Field(default=0.001, ge=0, lt=1)
    sell_cost_pct: float = Field(default=0.001, ge=0, lt=1)
    periods_per_year: float | None = Field(default=None, gt=0)
    """Annualization of Sharpe & co: bars per year. None: from the data (the bar size and
    calendar ``suho data import`` recorded with the table, else inferred from the bars:
    hourly FX is 6,240, daily equities 252); a run records the figure it used."""

    agent_params: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the algorithm's defaults (see ``trainers.rl.agents``)."""
    tuned_params: dict[str, Any] | None = None
    """Set by tuning: the parameters trained with; a resumed run does not tune again."""
    tuning: RLTuningConfig = Field(default_factory=RLTuningConfig)
    save_replay_buffer: bool = True
    """Off-policy checkpoints also store the replay buffer (exact resume)."""
    seed: int = 42
    torch_threads: int | None = Field(default=1, gt=0)
    """torch.set_num_threads for the run (1 was fastest for small MLPs on 2 cores)."""
    device: str = "cpu"
    verbose: int = Field(default=0, ge=0, le=2)
    walk_forward: WalkForwardConfig | None = None
    """Also train and evaluate a fresh agent on K walk-forward folds (None: the trade
    period only)."""

    @model_validator(mode="after")
    def _indicators_unique(self) -> RLConfig:
        if self.indicators is not None:
            if not self.indicators:
                raise ValueError("indicators: give at least one column, or None for all")
            dupes = sorted({c for c in self.indicators if self.indicators.count(c) > 1})
            if dupes:
                raise ValueError(f"indicators lists {dupes} more than once")
        return self

    @property
    def reward_params(self) -> dict[str, float]:
        """Keyword arguments of the reward wrapper for ``reward``."""
        if self.reward is RewardFunctionType.PORTFOLIO_VALUE_CHANGE:
            return {"scaling": self.reward_scaling}
        if self.reward is RewardFunctionType.LOG_RETURN:
            return {"scaling": self.log_return_scaling}
        if self.reward is RewardFunctionType.DIFFERENTIAL_SHARPE:
            return {"eta": self.dsr_eta}
        if self.reward is RewardFunctionType.DRAWDOWN_PENALIZED:
            return {"penalty": self.drawdown_penalty}
        return {}

    @property
    def effective_agent_params(self) -> dict[str, Any]:
        return dict(self.tuned_params) if self.tuned_params is not None else dict(self.agent_params)

    def for_resume(self, stored: RLConfig) -> RLConfig:
        """The stored config of the run being resumed, with the overridable fields this
        config sets explicitly; other explicit differences are logged and ignored."""
        updates: dict[str, Any] = {"resume": self.resume}
        for name in self.model_fields_set - {"resume"}:
            mine, theirs = getattr(self, name), getattr(stored, name)
            if mine == theirs:
                continue
            if name in RESUME_OVERRIDABLE:
                updates[name] = mine
            else:
                log.warning("resume: %s comes from the stored run (ignoring %r)", name, mine)
        return stored.model_copy(update=updates)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> RLConfig:
        return validate_config_file(cls, path, overrides)

    @classmethod
    def from_cli_options(
        cls, options: Mapping[str, Any], config_file: str | Path | None = None
    ) -> RLConfig:
        """Build from CLI options: None means "not given" and is dropped, so a file's
        values (or, on resume, the stored run's) are not overridden by CLI defaults.
        ``tune`` is short for ``tuning.trials``."""
        given = {k: v for k, v in options.items() if v is not None}
        if "tune" in given:
            given.setdefault("tuning", {})["trials"] = given.pop("tune")
        if config_file is not None:
            return cls.from_file(config_file, **given)
        return cls.model_validate(given)


__all__ = ["DEFAULT_INDICATORS", "RESUME_OVERRIDABLE", "RLConfig", "RLTuningConfig"]
