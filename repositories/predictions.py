"""``model_predictions``: what ``suho predict`` writes, one row per (checkpoint,
symbol, time).

* **Idempotent re-runs.** The table is a ReplacingMergeTree on (checkpoint_id,
  symbol, timestamp) versioned by ``created_at``: a checkpoint predicting the same
  rows again replaces its rows, reads use FINAL.
* **At most 100 partitions per INSERT.** Partitions are months of ``timestamp``;
  ``Database.insert_arrow`` splits a batch spanning more.
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
import pyarrow.compute as pc

from repositories.arrow_schema import UUID_ARROW_TYPE, arrow_schema
from repositories.base import Repository, utcnow
from repositories.errors import InvalidInputError
from repositories.records import Record, UtcDatetime
from suho_models import ModelPrediction

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
        of ``run_id``; returns the row count. Nothing is written if any row is bad.

        The ids and the version time are the same on every row: they go as constants
        (one literal each in the INSERT), not as n copies."""
        data = self._arrow(frame)
        schema = arrow_schema(ModelPrediction)
        constants = {
            "checkpoint_id": pa.scalar(uuid.UUID(str(checkpoint_id)).bytes, UUID_ARROW_TYPE),
            "run_id": pa.scalar(uuid.UUID(str(run_id)).bytes, UUID_ARROW_TYPE),
            "created_at": pa.scalar(utcnow(), schema.field("created_at").type),
        }
        # Reads use FINAL, so the engine need not also collapse keys within each block.
        settings = {"optimize_on_insert": "0"}
        self.db.insert_arrow(self.table.name, data, constants=constants, settings=settings)
        return int(data.num_rows)

    @staticmethod
    def _arrow(frame: pd.DataFrame) -> pa.Table:
        """The varying columns, checked (columnar: no Python object per row)."""
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise InvalidInputError(f"predictions: missing column(s) {', '.join(missing)}")
        if len(frame) == 0:
            raise InvalidInputError("predictions: no rows to write")
        symbols = _symbols(frame["symbol"])
        if symbols.null_count or pc.any(pc.equal(pc.utf8_length(symbols), 0)).as_py():
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
        schema = arrow_schema(ModelPrediction)
        columns = [
            symbols,
            pa.array(times.dt.as_unit("ms"), schema.field("timestamp").type),
            pa.array(prediction, pa.float64()),
            pa.array(probability.to_numpy(), pa.float64(), from_pandas=True),
        ]
        return pa.table(columns, names=list(COLUMNS))

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


def _symbols(values: pd.Series) -> pa.Array:
    """Symbols as an Arrow string column: categories and strings convert in C; anything
    else (numbers from a CSV) through ``str``."""
    try:
        array = pa.array(values, from_pandas=True)
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            array = pc.cast(array, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        array = pa.array(values.astype(str).to_numpy(dtype=object), pa.string())
    return array.cast(pa.string())


__all__ = ["Prediction", "PredictionRepository"]
