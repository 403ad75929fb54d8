"""Closed vocabularies shared by the ORM models, the records and the CLI.

Stored as ``LowCardinality(String)``, not ``Enum8``: a new model type or state is a
code change, not a table rewrite, and the records validate values before any
write.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class ModelType(StrEnum):
    XGBOOST = "xgboost"
    LIGHTGBM = "lightgbm"
    CATBOOST = "catboost"
    SKLEARN = "sklearn"
    OTHER = "other"


class TaskType(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class AgentType(StrEnum):
    PPO = "ppo"
    A2C = "a2c"
    DDPG = "ddpg"
    SAC = "sac"
    TD3 = "td3"


class RewardFunctionType(StrEnum):
    PORTFOLIO_VALUE_CHANGE = "portfolio_value_change"
    LOG_RETURN = "log_return"
    DIFFERENTIAL_SHARPE = "differential_sharpe"
    DRAWDOWN_PENALIZED = "drawdown_penalized"


class ModelFormat(StrEnum):
    PICKLE = "pickle"
    JOBLIB = "joblib"
    ONNX = "onnx"
    XGBOOST_UBJSON = "xgboost_ubjson"
    XGBOOST_JSON = "xgboost_json"
    LIGHTGBM_TEXT = "lightgbm_text"
    CATBOOST_CBM = "catboost_cbm"
    TORCH_STATE_DICT = "torch_state_dict"
    """A PyTorch ``state_dict`` (tensors only), loaded with ``weights_only=True``."""
    SB3_ZIP = "sb3_zip"
    SB3_STATE = "sb3_state"
    """SB3 weights, optimizer states and counters (torch, tensors only) plus the JSON
    that rebuilds the model: loads without running code, unlike ``sb3_zip``."""
    RAW = "raw"


class TuningMethod(StrEnum):
    OPTUNA = "optuna"
    GRID_SEARCH = "grid_search"
    RANDOM_SEARCH = "random_search"


class TrialState(StrEnum):
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"


class DeploymentStatus(StrEnum):
    NOT_DEPLOYED = "not_deployed"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class CheckpointKind(StrEnum):
    INTERMEDIATE = "intermediate"
    BEST = "best"
    FINAL = "final"


class StorageKind(StrEnum):
    INLINE = "inline"
    LOCAL = "local"
    S3 = "s3"
