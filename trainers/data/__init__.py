"""Feature data layer for the trainers: synthetic ``ml_features``, column roles, splits."""

from trainers.data.spec import FeatureSpec, FeatureSpecError, ResolvedColumns
from trainers.data.split import PartInfo, Split, chronological_split, time_series_cv
from trainers.data.synth import (
    FEATURE_COLUMNS,
    OHLCV_COLUMNS,
    TARGET_COLUMNS,
    WARMUP_PERIODS,
    compute_features,
    feature_columns,
    generate_ml_features,
    simulate_ohlcv,
)

__all__ = [
    "FEATURE_COLUMNS",
    "OHLCV_COLUMNS",
    "TARGET_COLUMNS",
    "WARMUP_PERIODS",
    "FeatureSpec",
    "FeatureSpecError",
    "PartInfo",
    "ResolvedColumns",
    "Split",
    "chronological_split",
    "compute_features",
    "feature_columns",
    "generate_ml_features",
    "simulate_ohlcv",
    "time_series_cv",
]
