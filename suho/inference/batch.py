"""``suho predict``: a deployed model or agent over a feature table or file, into
``model_predictions`` or a Parquet file.

Everything is predicted before anything is written, so a bad row (or a model that
cannot take the input) leaves the table as it was. Every row names the checkpoint
that made it; a re-run replaces its rows (see :mod:`repositories.predictions`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from repositories.errors import InvalidInputError
from repositories.features import FeatureTable
from suho.inference.models import AgentModel, LoadedModel, SupervisedModel
from suho_models.db import Database
from trainers.progress import Progress

CHUNK_ROWS = 250_000
"""Rows per predict call: the progress bar's step. Large, as each call has a fixed
cost (a DMatrix, the thread pool): 100k-row steps were 5-10% slower than one call."""


@dataclass
class BatchResult:
    predictions: pd.DataFrame
    """checkpoint_id, run_id, symbol, timestamp, prediction, probability."""
    written_to: str


def _is_file(source: str) -> bool:
    return source.endswith((".parquet", ".csv"))


def read_rows(
    db: Database | None,
    model: LoadedModel,
    source: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    symbols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The model's columns (plus time and symbol) from ``source``, filtered; the names
    are checked against the source's before any row is read."""
    time, symbol = model.time_column, model.symbol_column
    signature = model.signature
    wanted = [time, symbol, *[f for f in signature.features if f not in (time, symbol)]]
    if _is_file(source):
        path = Path(source)
        if not path.exists():
            raise InvalidInputError(f"source: no such file {source!r}")
        if path.suffix == ".parquet":
            signature.check_names(pq.read_schema(path).names, extra=(time, symbol))
            frame = pd.read_parquet(path, columns=wanted)
        else:
            frame = pd.read_csv(path)
            signature.check_names([str(c) for c in frame.columns], extra=(time, symbol))
            frame = frame[wanted]
        frame[time] = pd.to_datetime(frame[time], utc=True)
        if start is not None:
            frame = frame[frame[time] >= pd.Timestamp(start)]
        if end is not None:
            frame = frame[frame[time] <= pd.Timestamp(end)]
        if symbols:
            frame = frame[frame[symbol].astype(str).isin(list(symbols))]
        return frame.sort_values([time, symbol]).reset_index(drop=True)
    if db is None:
        raise InvalidInputError("source: a table source needs a database")
    table = FeatureTable(db, source, time, symbol)
    try:  # no metadata query beyond the read's own
        return table.read(wanted, start, end, symbols)
    except InvalidInputError:  # a missing column: say which, and the nearest present
        signature.check_names(list(table.schema()), extra=(time, symbol))
        raise


def predict_rows(model: LoadedModel, rows: pd.DataFrame, progress: bool = False) -> pd.DataFrame:
    """Predictions for ``rows`` (in their order), naming the checkpoint on every row.

    Columnar throughout: the symbol and time columns are passed on as they were read
    (Arrow-backed strings stay Arrow), the ids are one category each, not n strings.
    """
    if len(rows) == 0:
        raise InvalidInputError("source: no rows to predict (check --from, --to, --symbols)")
    time, symbol = model.time_column, model.symbol_column
    if isinstance(model, AgentModel):
        acted = model.act_on_features(rows)
        symbols, times = acted["symbol"], acted["timestamp"]
        prediction, probability = acted["action"].to_numpy(), np.full(len(acted), np.nan)
    else:
        prediction, probability = _supervised(model, rows, progress)
        symbols, times = rows[symbol], pd.to_datetime(rows[time], utc=True)
    if not _is_text(symbols):
        symbols = symbols.astype(str)  # numbers from a CSV
    n = len(prediction)
    ids = {  # one category, not n strings
        name: pd.Categorical.from_codes(np.zeros(n, np.int8), [str(value)])
        for name, value in (("checkpoint_id", model.checkpoint_id), ("run_id", model.run_id))
    }
    return pd.DataFrame(
        {
            **ids,
            "symbol": symbols.array,
            "timestamp": times.array,  # tz-aware as it is (to_numpy() boxes every value)
            "prediction": prediction,
            "probability": probability,
        },
        copy=False,
    )


def _is_text(values: pd.Series) -> bool:
    """Strings or categories of strings (an object column is checked in C)."""
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype):
        return True
    if isinstance(dtype, pd.CategoricalDtype):
        return _is_text(pd.Series(dtype.categories))
    return pd.api.types.is_object_dtype(dtype) and bool(pd.api.types.is_string_dtype(values))


def _supervised(
    model: SupervisedModel, rows: pd.DataFrame, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, probability) per row; NaN probabilities for a regressor."""
    X = model.signature.matrix(rows)  # the whole input checked before any prediction
    scores = np.empty(len(X), dtype=np.float64)
    with Progress(progress).task(f"predicting {len(X):,} rows", len(X)) as advance:
        for start in range(0, len(X), CHUNK_ROWS):
            chunk = X[start : start + CHUNK_ROWS]
            scores[start : start + len(chunk)] = model.booster.predict(
                model.model, chunk, model.task
            )
            advance(len(chunk))
    if model.task.value == "classification":
        return (scores >= 0.5).astype(np.float64), scores
    return scores, np.full(len(scores), np.nan)


def run_batch(
    db: Database | None,
    model: LoadedModel,
    source: str,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    symbols: Sequence[str] | None = None,
    output: Path | None = None,
    progress: bool = False,
) -> BatchResult:
    """Read, predict, then write (to ``output`` if given, else ``model_predictions``)."""
    if output is not None and output.suffix != ".parquet":
        raise InvalidInputError(f"output: expected a .parquet file (got {str(output)!r})")
    rows = read_rows(db, model, source, start, end, symbols)
    predictions = predict_rows(model, rows, progress)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        predictions.to_parquet(output, index=False)
        return BatchResult(predictions, str(output))
    if db is None:
        raise InvalidInputError("output: writing to model_predictions needs a database")
    from repositories.predictions import PredictionRepository

    PredictionRepository(db).write(model.checkpoint_id, model.run_id, predictions)
    return BatchResult(predictions, "model_predictions")


__all__ = ["BatchResult", "predict_rows", "read_rows", "run_batch"]
