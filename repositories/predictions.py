"""``model_predictions``: what ``suho predict`` writes, one row per (checkpoint,
symbol, time).

* **Idempotent re-runs.** The table is a ReplacingMergeTree on (checkpoint_id,
  symbol, timestamp) versioned by ``created_at``: a checkpoint predicting the same
  rows again replaces its rows, reads use FINAL.
* **At most 100 partitions per INSERT.** Partitions are months of ``timestamp``;
  a batch spanning more is split into INSERTs of :data:`MAX_PARTITIONS_PER_INSERT`
  months each (ClickHouse's ``max_partitions_per_insert_block`` default).
* **Checked before anything is written.** The whole frame is validated (every
  value finite, a symbol and a time on every row) before the first INSERT.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from repositories.arrow_schema import arrow_schema, uuid_array
from repositories.base import Repository, utcnow
from repositories.errors import InvalidInputError
from repositories.records import Record, UtcDatetime
from suho_models import ModelPrediction

MAX_PARTITIONS_PER_INSERT = 100
COLUMNS = ("symbol", "timestamp", "prediction", "probability")


class Prediction(Record):
    checkpoint_id: uuid.UUID
    run_id: uuid.UUID
    symbol: str
    timestamp: UtcDatetime
    prediction: float
    probability: float | None = None
    created_at: UtcDatetime


class PredictionRepository(Repository[Prediction]):
    model = ModelPrediction
    record = Prediction

    def write(
        self, checkpoint_id: uuid.UUID | str, run_id: uuid.UUID | str, frame: pd.DataFrame
    ) -> int:
        """Store ``frame``'s rows (columns :data:`COLUMNS`) as made by ``checkpoint_id``
        of ``run_id``; returns the row count. Nothing is written if any row is bad."""
        data = self._arrow(uuid.UUID(str(checkpoint_id)), uuid.UUID(str(run_id)), frame)
        for chunk in self._by_partitions(data):
            self.db.insert_arrow(self.table.name, chunk)
        return int(data.num_rows)

    def _arrow(self, checkpoint_id: uuid.UUID, run_id: uuid.UUID, frame: pd.DataFrame) -> pa.Table:
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise InvalidInputError(f"predictions: missing column(s) {', '.join(missing)}")
        if len(frame) == 0:
            raise InvalidInputError("predictions: no rows to write")
        symbols = frame["symbol"]
        if symbols.isna().any() or (symbols.astype(str) == "").any():
            raise InvalidInputError("predictions: every row needs a symbol")
        times = pd.to_datetime(frame["timestamp"], utc=True)
        if times.isna().any():
            raise InvalidInputError("predictions: every row needs a timestamp")
        prediction = frame["prediction"].to_numpy(dtype=np.float64)
        if not np.isfinite(prediction).all():
            row = int(np.flatnonzero(~np.isfinite(prediction))[0])
            raise InvalidInputError(
                f"predictions: prediction at row {row} is {float(prediction[row])!r}; not stored"
            )
        probability = pd.to_numeric(frame["probability"], errors="raise").astype("float64")
        n = len(frame)
        schema = arrow_schema(ModelPrediction)
        columns = {
            "checkpoint_id": uuid_array([checkpoint_id] * n),
            "run_id": uuid_array([run_id] * n),
            "symbol": pa.array(symbols.astype(str).to_numpy(dtype=object), pa.string()),
            "timestamp": pa.array(times.dt.as_unit("ms"), schema.field("timestamp").type),
            "prediction": pa.array(prediction, pa.float64()),
            "probability": pa.array(probability.to_numpy(), pa.float64(), from_pandas=True),
            "created_at": pa.array([utcnow()] * n, schema.field("created_at").type),
        }
        return pa.table([columns[f.name] for f in schema], schema=schema)

    @staticmethod
    def _by_partitions(data: pa.Table) -> list[pa.Table]:
        """Slices of ``data`` of at most :data:`MAX_PARTITIONS_PER_INSERT` months each."""
        times = data.column("timestamp").to_pandas()
        months = (times.dt.year * 100 + times.dt.month).to_numpy()
        distinct = np.unique(months)
        if len(distinct) <= MAX_PARTITIONS_PER_INSERT:
            return [data]
        chunks = []
        for start in range(0, len(distinct), MAX_PARTITIONS_PER_INSERT):
            wanted = distinct[start : start + MAX_PARTITIONS_PER_INSERT]
            chunks.append(data.filter(pa.array(np.isin(months, wanted))))
        return chunks

    def frame(
        self,
        checkpoint_id: uuid.UUID | str,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        symbols: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """One checkpoint's current predictions (FINAL), ordered by time and symbol."""
        c = self.table.c
        where: list[Any] = [c.checkpoint_id == uuid.UUID(str(checkpoint_id))]
        if start is not None:
            where.append(c.timestamp >= start)
        if end is not None:
            where.append(c.timestamp <= end)
        if symbols:
            where.append(c.symbol.in_(list(symbols)))
        frame = self.read(*where).order_by(c.timestamp, c.symbol).arrow().to_pandas()
        for name in ("checkpoint_id", "run_id"):  # 16 raw bytes on the embedded path
            frame[name] = [
                v if isinstance(v, uuid.UUID) else uuid.UUID(bytes=v) for v in frame[name]
            ]
        return frame

    def count(self, checkpoint_id: uuid.UUID | str) -> int:
        return self._count(self.table.c.checkpoint_id == uuid.UUID(str(checkpoint_id)))


__all__ = ["MAX_PARTITIONS_PER_INSERT", "Prediction", "PredictionRepository"]
