"""The registry of run kinds, data layer: one :class:`KindProfile` per kind holds
what a consumer needs to know about its runs, so consumers look facts up instead of
branching on the kind.

A third kind of run is one more profile here (its tables' repositories, records and
facts), one in :mod:`trainers.kinds` (config and trainer) and one in
:mod:`suho.kinds` (how the UI and the MLflow mirror show it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

from repositories.checkpoints import (
    AgentCheckpointInfo,
    AgentCheckpointRepository,
    CheckpointRepository,
    ModelCheckpointInfo,
    ModelCheckpointRepository,
)
from repositories.errors import InvalidInputError, NotFoundError
from repositories.object_store import ObjectStore
from repositories.records import (
    AgentFinalMetrics,
    AgentTrainingRun,
    RLTrial,
    SupervisedFinalMetrics,
    TrainingRun,
    Trial,
)
from repositories.runs import AgentRunRepository, RunRepository, TrainingRunRepository
from repositories.series import (
    MetricLogger,
    RewardHistoryRepository,
    RewardLogger,
    TrainingMetricRepository,
)
from repositories.trials import HyperparameterTrialRepository, RLTrialRepository, TrialRepository
from suho_models.db import Database
from suho_models.enums import CheckpointKind, ModelFormat


class RunKind(StrEnum):
    SUPERVISED = "supervised"
    RL = "rl"


RunRecord = TrainingRun | AgentTrainingRun
CheckpointInfo = ModelCheckpointInfo | AgentCheckpointInfo
TrialRecord = Trial | RLTrial
SeriesLogger = MetricLogger | RewardLogger

R = TypeVar("R", bound="RunRecord")
I = TypeVar("I", bound="CheckpointInfo")  # noqa: E741
T = TypeVar("T", bound="TrialRecord")
L = TypeVar("L")

Direction = Literal["minimize", "maximize"]

FINAL_KINDS = (CheckpointKind.FINAL, CheckpointKind.BEST)
"""Kinds that mean "the model the run ended with": ``best`` is the legacy name of
supervised runs stored before ``final`` existed; it is read, never written."""


@dataclass(frozen=True)
class CurveSpec:
    """A chartable series table of a kind: its x column and the series on it."""

    name: str
    x: str
    series: tuple[str, ...]
    episode_ends_only: bool = False


@dataclass(frozen=True)
class Placement:
    """Where a checkpoint sits in its run: the columns of either table (a kind reads
    the ones it has)."""

    iteration: int = 0
    episode_number: int = 0
    timestep: int = 0
    model_name: str | None = None
    replay_buffer: bytes | None = None


SaveCheckpoint = Callable[
    [
        Any,
        uuid.UUID | str,
        object,
        ModelFormat | str,
        Mapping[str, object] | None,
        CheckpointKind | str,
        Placement,
    ],
    Any,
]
"""``(repository, run_id, data, format, metrics, kind, placement) -> info``."""


@dataclass(frozen=True)
class KindProfile(Generic[R, I, T, L]):
    """Everything the data layer knows about one kind of run."""

    kind: RunKind
    label: str
    """How messages name it ("supervised", "RL")."""
    run_record: type[R]
    checkpoint_record: type[I]
    trial_record: type[T]
    logger_type: type[L]
    runs: type[RunRepository[Any]]
    checkpoints: type[CheckpointRepository[Any]]
    trials: type[TrialRepository[Any]]
    series: type[TrainingMetricRepository | RewardHistoryRepository]
    save: SaveCheckpoint
    """Saves a checkpoint through the kind's repository with its placement columns."""
    series_position: Callable[[I], int]
    """The x of the series a checkpoint was taken at: the rows past it are trimmed on
    resume."""
    type_column: str
    """The run column naming the model or agent type (what deployment is keyed on)."""
    direction: Direction
    """The direction of the kind's tuning objective."""
    ranking_metric: str
    """The run column the seed's query ranks by (and ``deploy_best`` by default)."""
    seed_query: str
    """The name of the seed's query of this kind (``/api/seed/<name>``)."""
    seed_rows: Callable[[Any, int], list[dict[str, Any]]]
    """Runs the seed's query on the kind's run repository (``limit`` rows)."""
    seed_columns: tuple[str, ...]
    """The columns the seed's query shows."""
    curves: tuple[CurveSpec, ...]
    """Its series tables, the first one the default chart."""
    describing_columns: tuple[str, ...]
    """Run columns that say what was trained (tags of a mirrored run)."""
    final_metrics: type[SupervisedFinalMetrics | AgentFinalMetrics]
    """The run's result columns (what ``complete`` takes)."""
    step_placement: Literal["iteration", "timestep"]
    """Where a checkpoint taken at a logged step goes (``save_checkpoint``'s keyword)."""
    target_column: str | None
    """The run column naming what it predicts (None: the kind has none)."""
    features_column: str | None
    """The run column listing the model's input features (None: the kind has none)."""
    total_columns: tuple[str, ...] = ()
    """Run columns besides ``final_*`` that hold an ended run's results."""

    @property
    def objective_column(self) -> str:
        """The trial column holding the tuning objective."""
        return self.trials.objective_column

    def curve(self, name: str) -> CurveSpec | None:
        return next((c for c in self.curves if c.name == name), None)

    def repositories(
        self, db: Database, store: ObjectStore | None = None
    ) -> tuple[
        RunRepository[Any],
        CheckpointRepository[Any],
        TrialRepository[Any],
        TrainingMetricRepository | RewardHistoryRepository,
    ]:
        return self.runs(db), self.checkpoints(db, store), self.trials(db), self.series(db)


def _save_model(
    repo: Any,
    run_id: uuid.UUID | str,
    data: object,
    format: ModelFormat | str,
    metrics: Mapping[str, object] | None,
    kind: CheckpointKind | str,
    at: Placement,
) -> Any:
    return repo.save_checkpoint(
        run_id, data, format, metrics, iteration=at.iteration, kind=kind, model_name=at.model_name
    )


def _save_agent(
    repo: Any,
    run_id: uuid.UUID | str,
    data: object,
    format: ModelFormat | str,
    metrics: Mapping[str, object] | None,
    kind: CheckpointKind | str,
    at: Placement,
) -> Any:
    return repo.save_checkpoint(
        run_id,
        data,
        format,
        metrics,
        episode_number=at.episode_number,
        timestep=at.timestep,
        kind=kind,
        replay_buffer=at.replay_buffer,
    )


def _iteration(info: ModelCheckpointInfo) -> int:
    return info.iteration


def _timestep(info: AgentCheckpointInfo) -> int:
    return info.timestep


SUPERVISED: KindProfile[TrainingRun, ModelCheckpointInfo, Trial, MetricLogger] = KindProfile(
    kind=RunKind.SUPERVISED,
    label="supervised",
    run_record=TrainingRun,
    checkpoint_record=ModelCheckpointInfo,
    trial_record=Trial,
    logger_type=MetricLogger,
    runs=TrainingRunRepository,
    checkpoints=ModelCheckpointRepository,
    trials=HyperparameterTrialRepository,
    series=TrainingMetricRepository,
    save=_save_model,
    series_position=_iteration,
    type_column="model_type",
    direction="minimize",  # mean cross-validation loss
    ranking_metric="final_test_accuracy",
    seed_query="compare_model_performance",
    seed_rows=lambda runs, limit: runs.compare_model_performance(limit),
    seed_columns=("run_name", "model_type", "final_test_accuracy", "final_f1_score"),
    curves=(
        CurveSpec(
            "metrics",
            "iteration_number",
            (
                "train_loss",
                "val_loss",
                "train_accuracy",
                "val_accuracy",
                "learning_rate",
                "gradient_norm",
            ),
        ),
    ),
    describing_columns=("model_type", "task_type", "target_variable"),
    final_metrics=SupervisedFinalMetrics,
    step_placement="iteration",
    target_column="target_variable",
    features_column="features_used",
)

RL: KindProfile[AgentTrainingRun, AgentCheckpointInfo, RLTrial, RewardLogger] = KindProfile(
    kind=RunKind.RL,
    label="RL",
    run_record=AgentTrainingRun,
    checkpoint_record=AgentCheckpointInfo,
    trial_record=RLTrial,
    logger_type=RewardLogger,
    runs=AgentRunRepository,
    checkpoints=AgentCheckpointRepository,
    trials=RLTrialRepository,
    series=RewardHistoryRepository,
    save=_save_agent,
    series_position=_timestep,
    type_column="agent_type",
    direction="maximize",  # mean episode reward on the validation period
    ranking_metric="final_sharpe_ratio",
    seed_query="best_rl_agents",
    seed_rows=lambda runs, limit: runs.best_agents(limit),
    seed_columns=("run_name", "agent_type", "final_sharpe_ratio", "final_total_return"),
    curves=(
        CurveSpec(
            "episodes",
            "episode_number",
            ("episode_final_reward", "sharpe_ratio", "account_value"),
            episode_ends_only=True,
        ),
        CurveSpec(
            "steps",
            "timestep_number",
            (
                "step_reward",
                "episode_cumulative_reward",
                "account_value",
                "policy_loss",
                "value_loss",
            ),
        ),
    ),
    describing_columns=("agent_type", "reward_function_type", "tickers"),
    final_metrics=AgentFinalMetrics,
    step_placement="timestep",
    target_column=None,
    features_column=None,
    total_columns=("total_timesteps", "total_episodes"),
)

AnyProfile = (
    KindProfile[TrainingRun, ModelCheckpointInfo, Trial, MetricLogger]
    | KindProfile[AgentTrainingRun, AgentCheckpointInfo, RLTrial, RewardLogger]
)

PROFILES: dict[RunKind, AnyProfile] = {p.kind: p for p in (SUPERVISED, RL)}
"""Every kind's profile, in the order listings show them."""


def profile_of(kind: RunKind | str) -> AnyProfile:
    """The profile of ``kind``; a clear error for an unknown one."""
    try:
        return PROFILES[RunKind(kind)]
    except ValueError:
        raise InvalidInputError(
            f"kind: expected one of {', '.join(RunKind)} (got {kind!r})"
        ) from None


def curve_owner(name: str) -> tuple[AnyProfile, CurveSpec]:
    """The kind a curve belongs to, and the curve."""
    for profile in PROFILES.values():
        spec = profile.curve(name)
        if spec is not None:
            return profile, spec
    names = [c.name for p in PROFILES.values() for c in p.curves]
    raise InvalidInputError(f"curve: expected one of {', '.join(names)} (got {name!r})")


def kind_of_run(db: Database, run_id: uuid.UUID | str) -> AnyProfile:
    """The profile of the kind that holds ``run_id``; NotFoundError if none does."""
    for profile in PROFILES.values():
        if profile.runs(db).exists(run_id):
            return profile
    raise NotFoundError(f"no supervised or RL run with run_id {run_id}")


def kind_of_checkpoint(db: Database, checkpoint_id: uuid.UUID | str) -> AnyProfile:
    """The profile of the kind whose checkpoints hold ``checkpoint_id``."""
    for profile in PROFILES.values():
        try:
            profile.checkpoints(db).get(checkpoint_id)
        except NotFoundError:
            continue
        return profile
    raise NotFoundError(f"no model or agent checkpoint with checkpoint_id {checkpoint_id}")


__all__ = [
    "FINAL_KINDS",
    "PROFILES",
    "RL",
    "SUPERVISED",
    "AnyProfile",
    "CheckpointInfo",
    "CurveSpec",
    "Direction",
    "KindProfile",
    "Placement",
    "RunKind",
    "RunRecord",
    "SeriesLogger",
    "TrialRecord",
    "curve_owner",
    "kind_of_checkpoint",
    "kind_of_run",
    "profile_of",
]
