"""SQLAlchemy models of the suho_analytics training tables: the seed's eight, and
``run_metrics`` (revision 0007) for metrics of any name."""

from suho_models.base import DETAILED_RETENTION_MONTHS, Base, metadata
from suho_models.metrics import RunMetric
from suho_models.rl import AgentCheckpoint, AgentTrainingRun, RewardStep, RLHyperparameterTrial
from suho_models.supervised import (
    HyperparameterTrial,
    ModelCheckpoint,
    TrainingMetric,
    TrainingRun,
)

ALL_MODELS = (
    TrainingRun,
    ModelCheckpoint,
    TrainingMetric,
    HyperparameterTrial,
    AgentTrainingRun,
    AgentCheckpoint,
    RewardStep,
    RLHyperparameterTrial,
    RunMetric,
)
TABLE_NAMES = tuple(m.__tablename__ for m in ALL_MODELS)

__all__ = [
    "ALL_MODELS",
    "DETAILED_RETENTION_MONTHS",
    "TABLE_NAMES",
    "AgentCheckpoint",
    "AgentTrainingRun",
    "Base",
    "HyperparameterTrial",
    "ModelCheckpoint",
    "RLHyperparameterTrial",
    "RewardStep",
    "RunMetric",
    "TrainingMetric",
    "TrainingRun",
    "metadata",
]
