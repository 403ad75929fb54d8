"""``run_metrics``: metrics of any name, one row per (run, key, step).

The seed's series tables have a fixed column per metric (``train_loss``,
``sharpe_ratio``...); a user's own loop logs ``val_auc`` or ``grad_norm/layer3``.
A long-format table takes any key for runs of both kinds, the way W&B, MLflow
and Aim store them. The conventions are those of the other detail tables: monthly
partitions, Replacing on the natural key (a re-logged step is read once, FINAL),
and the same retention.
"""

from __future__ import annotations

from suho_models.base import (
    UUID,
    Base,
    Float64,
    Label,
    Timestamp,
    UInt64,
    column,
    detailed_series_engine,
    retention_ttl,
)


class RunMetric(Base):
    """One value of one key at one step of a supervised or RL run."""

    __tablename__ = "run_metrics"
    __table_args__ = (
        detailed_series_engine(order_by=("run_id", "key", "step"), ttl=retention_ttl()),
        {"comment": "Metrics of any name per run and step (long format), rows expire by TTL"},
    )

    run_id = column(UUID, "Run the value belongs to (supervised or RL)", primary_key=True)
    key = column(Label, "Metric name as logged, e.g. val_auc", primary_key=True)
    step = column(UInt64, "Step the value was logged at, from 0", primary_key=True)
    value = column(Float64, "The value (NaN and infinities kept)")
    recorded_at = column(Timestamp, "When it was logged: drives TTL and row version")
