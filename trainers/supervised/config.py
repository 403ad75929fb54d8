"""Configuration of a supervised training run: a pydantic model, from code, a
YAML/TOML file, or CLI options."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from suho_models.enums import ModelFormat, ModelType, TaskType
from trainers.config_file import config_model, validate_config_file
from trainers.data.spec import DEFAULT_TARGETS, FeatureSpec
from trainers.walk_forward import WalkForwardConfig


@config_model
class SelectionConfig(BaseModel):
    """Feature selection, applied on the training split only (no leakage)."""

    model_config = ConfigDict(extra="forbid")

    variance_threshold: float = Field(default=1e-12, ge=0)
    """Drop features whose training variance is at most this."""
    correlation_threshold: float | None = Field(default=0.98, gt=0, le=1)
    """Of two features correlated above this (absolute), drop the later one."""
    top_k: int | None = Field(default=None, gt=0)
    """Keep the k most important features of a quick model fit (None: keep all)."""


@config_model
class TuningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trials: int = Field(default=0, ge=0)
    """Optuna trials; 0 trains once with the default parameters."""
    timeout_seconds: float | None = Field(default=None, gt=0)
    storage: str | None = None
    """Optuna storage URL. None: a journal file per run under <data_dir>/optuna, so a
    killed study resumes; a shared database URL lets workers run in parallel."""
    study_name: str | None = None
    search_space: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Overrides per parameter: {"max_depth": {"type": "int", "low": 3, "high": 6}},
    {"eta": {"type": "float", "low": 0.01, "high": 0.2, "log": true}},
    {"booster": {"type": "categorical", "choices": ["gbtree"]}}."""
    pruning: bool = True


@config_model
class SupervisedConfig(BaseModel):
    """Everything a supervised run needs; stored with the run as JSON."""

    model_config = ConfigDict(extra="forbid")

    model_type: ModelType = ModelType.LIGHTGBM
    target: str = "target_direction"
    task: TaskType | None = None
    """None: classification for integer targets with two values, else regression."""
    run_name: str | None = None
    model_name: str | None = None
    """Deployment name of the model (default: '<target>-<model_type>')."""
    features: FeatureSpec = Field(default_factory=FeatureSpec)
    source: str = "ml_features"
    """A table in the same ClickHouse, or a path to a .parquet / .csv file."""
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    symbols: list[str] | None = None
    split_ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    cv_folds: int = Field(default=3, ge=2)
    cv_gap: int = Field(default=0, ge=0)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    rounds: int = Field(default=300, gt=0)
    early_stopping: int | None = Field(default=30, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the library's parameters."""
    checkpoint_every: int | None = Field(default=100, gt=0)
    """Save the model so far every N iterations for recovery (the seed: every 100)."""
    keep_checkpoints: int = Field(default=3, ge=1)
    """Intermediate checkpoints kept per run (plus the best and any deployed one)."""
    model_format: ModelFormat | None = None
    """None: the library's native format."""
    seed: int = 42
    threads: int | None = Field(default=None, gt=0)
    """Threads of the boosting library (None: the cores free to this process, by its
    CPU affinity). Given, it fills the library's own parameter in ``params``."""
    progress: bool = True
    walk_forward: WalkForwardConfig | None = None
    """Also evaluate K walk-forward folds after training (None: the test split only)."""
    bar_size: str | None = None
    """Recorded by the run: the data's bar size (``1h``, ``1d``, ...), from the table
    ``suho data import`` wrote or from the bars (None: not bars)."""
    calendar: str | None = None
    """Recorded by the run with ``bar_size``: equities, fx or crypto."""
    """Also evaluate K walk-forward folds after training (None: the test split only)."""

    @field_validator("model_type", mode="before")
    @classmethod
    def _a_model_we_train(cls, value: Any) -> Any:
        from trainers.supervised.boosters import BOOSTERS

        supported = [m.value for m in BOOSTERS]
        if (value.value if isinstance(value, ModelType) else value) not in supported:
            raise ValueError(f"not a model we train (supported: {', '.join(supported)})")
        return value

    @model_validator(mode="after")
    def _threads_reach_the_library(self) -> SupervisedConfig:
        if self.threads is None:
            return self
        from trainers.supervised.boosters import booster_for

        key = booster_for(self.model_type).thread_param
        given = self.params.get(key)
        if given is not None and given != self.threads:
            raise ValueError(
                f"threads={self.threads} and params.{key}={given!r} disagree: give one of them"
            )
        self.params = {**self.params, key: self.threads}
        return self

    @model_validator(mode="after")
    def _target_is_not_a_feature(self) -> SupervisedConfig:
        """The target is the one target column required: with the default target list,
        ``target_direction`` alone must not require ``target_return`` too (other
        ``target_*`` columns stay out of the features by the reserved patterns)."""
        targets = self.features.target_columns
        if self.target not in targets or list(targets) == list(DEFAULT_TARGETS):
            self.features = self.features.model_copy(update={"target_columns": [self.target]})
        return self

    @property
    def resolved_model_name(self) -> str:
        return self.model_name or f"{self.target}-{self.model_type.value}"

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> SupervisedConfig:
        return validate_config_file(cls, path, overrides)


SplitName = Literal["train", "val", "test"]
