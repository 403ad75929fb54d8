"""Typed records: what goes into and comes out of each table.

Plain pydantic models, independent of SQLAlchemy (as MLflow keeps entities apart
from its ORM models). Floats accept NaN and +-inf on purpose: a diverged loss is
a real training outcome and is stored as such.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PlainValidator,
    StringConstraints,
    model_validator,
)

from suho_models.enums import (
    AgentType,
    ModelType,
    RewardFunctionType,
    RunStatus,
    TaskType,
    TrialState,
    TuningMethod,
)

MAX_NAME_LENGTH = 256

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]
"""Run and model names: stored literally (quotes, SQL, unicode), never executed."""


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


UtcDatetime = Annotated[dt.datetime, AfterValidator(_utc)]
"""Naive datetimes are taken as UTC; aware ones are converted to UTC."""


def _json_object(value: Any) -> str:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    else:
        parsed = value
    if not isinstance(parsed, dict):
        raise ValueError("must be a JSON object")
    try:
        return json.dumps(parsed, sort_keys=True, allow_nan=True, default=str)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not JSON-serializable: {exc}") from None


JsonObject = Annotated[str, BeforeValidator(_json_object)]
"""A JSON object stored as text; a dict or a JSON string is accepted."""


class FrameworkName(str):
    """A model or agent library that is not one of the trainers' own (``pytorch``,
    ``sklearn-pipeline``): a plain string with the ``.value`` the enum members have,
    so code reading ``run.model_type.value`` works for both."""

    __slots__ = ()

    @property
    def value(self) -> str:
        return str(self)


_FRAMEWORK = re.compile(r"[a-z0-9][a-z0-9_.+-]{0,63}")


def _library(enum_type: type[StrEnum]) -> Any:
    def parse(value: Any) -> Any:
        if isinstance(value, enum_type):
            return value
        if isinstance(value, str):
            try:
                return enum_type(value)
            except ValueError:
                if _FRAMEWORK.fullmatch(value):
                    return FrameworkName(value)
        raise ValueError(
            "expected a library name: 1 to 64 lowercase letters, digits and . _ + - "
            f"(e.g. {', '.join(m.value for m in enum_type)}, pytorch)"
        )

    return parse


ModelTypeName = Annotated[str, PlainValidator(_library(ModelType))]
"""``model_type``: the trainers' own (:class:`ModelType`) or any other library's name."""
AgentTypeName = Annotated[str, PlainValidator(_library(AgentType))]
"""``agent_type``: the trainers' own (:class:`AgentType`) or any other library's name."""


class Record(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid", use_enum_values=False)


def _check_ratios(train: float, val: float, test: float) -> None:
    for name, value in (("train_ratio", train), ("val_ratio", val), ("test_ratio", test)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be within [0, 1], got {value}")
    total = train + val + test
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise ValueError(f"split ratios must sum to 1, got {train} + {val} + {test} = {total}")


# --------------------------------------------------------------------------- runs
class SplitInfo(Record):
    """The chronological split a supervised run trained on."""

    train_ratio: float = 0.7
    val_ratio: float = 0.15
    test_ratio: float = 0.15
    train_rows: NonNegativeInt = 0
    val_rows: NonNegativeInt = 0
    test_rows: NonNegativeInt = 0
    train_start: UtcDatetime | None = None
    train_end: UtcDatetime | None = None
    val_start: UtcDatetime | None = None
    val_end: UtcDatetime | None = None
    test_start: UtcDatetime | None = None
    test_end: UtcDatetime | None = None

    @model_validator(mode="after")
    def _ratios_sum_to_one(self) -> SplitInfo:
        _check_ratios(self.train_ratio, self.val_ratio, self.test_ratio)
        return self


class TrainingRunCreate(SplitInfo):
    run_name: Name
    model_type: ModelTypeName
    task_type: TaskType = TaskType.CLASSIFICATION
    target_variable: Name
    features_used: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=list
    )
    config_json: JsonObject = "{}"
    git_commit_hash: str | None = None
    """None: filled from the current git checkout (empty outside one)."""


class SupervisedFinalMetrics(Record):
    final_train_loss: float | None = None
    final_val_loss: float | None = None
    final_test_loss: float | None = None
    final_train_accuracy: float | None = None
    final_val_accuracy: float | None = None
    final_test_accuracy: float | None = None
    final_f1_score: float | None = None
    final_auc_score: float | None = None
    final_precision: float | None = None
    final_recall: float | None = None
    final_rmse: float | None = None
    final_mae: float | None = None
    final_r2: float | None = None
    final_direction_accuracy: float | None = None


class TrainingRun(TrainingRunCreate, SupervisedFinalMetrics):
    run_id: uuid.UUID
    status: RunStatus
    git_commit_hash: str = ""
    started_at: UtcDatetime | None = None
    completed_at: UtcDatetime | None = None
    duration_seconds: float | None = None
    error_message: str = ""
    created_at: UtcDatetime
    updated_at: UtcDatetime
    heartbeat_at: UtcDatetime | None = None


class AgentTrainingRunCreate(Record):
    run_name: Name
    agent_type: AgentTypeName
    reward_function_type: RewardFunctionType = RewardFunctionType.PORTFOLIO_VALUE_CHANGE
    state_dim: NonNegativeInt = 0
    action_dim: NonNegativeInt = 0
    tickers: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)
    initial_amount: float = Field(default=1_000_000.0, gt=0)
    buy_cost_pct: float = Field(default=0.001, ge=0, lt=1)
    sell_cost_pct: float = Field(default=0.001, ge=0, lt=1)
    env_config_json: JsonObject = "{}"
    train_start: UtcDatetime | None = None
    train_end: UtcDatetime | None = None
    trade_start: UtcDatetime | None = None
    trade_end: UtcDatetime | None = None
    config_json: JsonObject = "{}"
    git_commit_hash: str | None = None


class AgentFinalMetrics(Record):
    final_mean_reward: float | None = None
    final_sharpe_ratio: float | None = None
    final_total_return: float | None = None
    final_max_drawdown: float | None = None
    final_annual_volatility: float | None = None
    final_sortino_ratio: float | None = None
    final_calmar_ratio: float | None = None
    total_timesteps: NonNegativeInt | None = None
    total_episodes: NonNegativeInt | None = None


class AgentTrainingRun(AgentTrainingRunCreate, AgentFinalMetrics):
    run_id: uuid.UUID
    status: RunStatus
    git_commit_hash: str = ""
    total_timesteps: NonNegativeInt = 0
    total_episodes: NonNegativeInt = 0
    started_at: UtcDatetime | None = None
    completed_at: UtcDatetime | None = None
    duration_seconds: float | None = None
    error_message: str = ""
    created_at: UtcDatetime
    updated_at: UtcDatetime
    heartbeat_at: UtcDatetime | None = None


# --------------------------------------------------------------------------- series
class MetricPoint(Record):
    """One row of ``training_metrics``."""

    iteration_number: NonNegativeInt
    train_loss: float | None = None
    val_loss: float | None = None
    train_accuracy: float | None = None
    val_accuracy: float | None = None
    learning_rate: float | None = None
    gradient_norm: float | None = None
    iteration_duration_ms: float = Field(default=0.0, ge=0)
    recorded_at: UtcDatetime | None = None


class RewardPoint(Record):
    """One row of ``reward_history``."""

    episode_number: NonNegativeInt
    timestep_number: NonNegativeInt
    env_index: int = Field(default=0, ge=0, le=65535)
    step_reward: float
    episode_cumulative_reward: float
    episode_final_reward: float | None = None
    sharpe_ratio: float | None = None
    account_value: float | None = None
    policy_loss: float | None = None
    value_loss: float | None = None
    is_episode_end: bool = False
    recorded_at: UtcDatetime | None = None


class EpisodeSummary(Record):
    """One episode of a reward curve (the episode-end row)."""

    episode_number: int
    timestep_number: int
    episode_final_reward: float | None
    sharpe_ratio: float | None
    account_value: float | None


# --------------------------------------------------------------------------- trials
class TrialCreate(Record):
    trial_number: NonNegativeInt
    study_name: str = ""
    hyperparameters: JsonObject
    objective_value: float | None = None
    scores: list[float] = Field(default_factory=list)
    tuning_method: TuningMethod = TuningMethod.OPTUNA
    state: TrialState = TrialState.COMPLETE
    duration_seconds: float = Field(default=0.0, ge=0)
    worker_host: str = ""
    """Host of the tuning worker that ran the trial."""
    worker_pid: NonNegativeInt = 0


class Trial(TrialCreate):
    trial_id: uuid.UUID
    run_id: uuid.UUID
    recorded_at: UtcDatetime


RL_COLUMN_PARAMS = (
    "learning_rate",
    "gamma",
    "clip_range",
    "batch_size",
    "n_steps",
    "ent_coef",
    "tau",
)
"""Hyperparameters that get their own column in rl_hyperparameters (the rest stay in JSON)."""


class RLTrialCreate(Record):
    trial_number: NonNegativeInt
    study_name: str = ""
    agent_type: AgentTypeName
    hyperparameters: JsonObject
    mean_reward: float | None = None
    sharpe_ratio: float | None = None
    total_timesteps: NonNegativeInt = 0
    total_episodes: NonNegativeInt = 0
    state: TrialState = TrialState.COMPLETE
    duration_seconds: float = Field(default=0.0, ge=0)
    worker_host: str = ""
    """Host of the tuning worker that ran the trial."""
    worker_pid: NonNegativeInt = 0

    def column_params(self) -> dict[str, Any]:
        params = json.loads(self.hyperparameters)
        out: dict[str, Any] = {}
        for name in RL_COLUMN_PARAMS:
            value = params.get(name)
            out[name] = (
                value if isinstance(value, int | float) and not isinstance(value, bool) else None
            )
        return out


class RLTrial(RLTrialCreate):
    trial_id: uuid.UUID
    run_id: uuid.UUID
    learning_rate: float | None = None
    gamma: float | None = None
    clip_range: float | None = None
    batch_size: int | None = None
    n_steps: int | None = None
    ent_coef: float | None = None
    tau: float | None = None
    recorded_at: UtcDatetime
