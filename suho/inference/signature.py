"""The input contract of a deployed model: the feature columns its run selected, in
model order, all numeric.

A model was trained on ``X[features_used]`` as float64. Handing it columns by
position is how a misspelt or reordered column silently becomes a wrong
prediction, so input is matched by *name*: missing or mistyped columns are refused
(naming them, with the closest names present), extra columns are ignored and the
recorded order is restored.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa

from repositories.errors import InvalidInputError

Tabular: TypeAlias = (
    pd.DataFrame | pa.Table | Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]
)
"""A frame, an Arrow table, columns ``{name: values}`` or records ``[{name: value}]``."""


def as_frame(data: Tabular) -> pd.DataFrame:
    """Any accepted input as a DataFrame (no copy of a DataFrame)."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pa.Table):
        return data.to_pandas()
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame({str(k): list(v) for k, v in data.items()})
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"input: columns must be equal-length lists ({exc})") from None
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        if not all(isinstance(r, Mapping) for r in data):
            raise InvalidInputError("input: records must each be a mapping of column -> value")
        return pd.DataFrame.from_records(list(data))
    raise InvalidInputError(
        "input: expected a DataFrame, an Arrow table, columns or records "
        f"(got {type(data).__name__})"
    )


def _is_numeric(series: pd.Series) -> bool:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return not pd.api.types.is_complex_dtype(dtype)
    if pd.api.types.is_object_dtype(dtype):  # JSON nulls next to numbers: numbers and None only
        return all(v is None or isinstance(v, int | float) for v in series.tolist())
    return False


@dataclass(frozen=True)
class FeatureSignature:
    """Feature names in model order; every one numeric (int, float or bool)."""

    features: tuple[str, ...]
    allow_nan: bool = True
    """The boosters take NaN as "missing", as in training; agents' states cannot."""

    def check_names(self, present: Sequence[str], extra: Sequence[str] = ()) -> None:
        """Raises naming every feature (and ``extra`` column) not in ``present``, with
        the closest name present."""
        wanted = [*self.features, *[e for e in extra if e not in self.features]]
        missing = [f for f in wanted if f not in present]
        if not missing:
            return
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, list(present), n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InvalidInputError(
            f"input: missing feature column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(hints)}; the model needs {len(self.features)} columns: "
            f"{', '.join(self.features)}"
        )

    def check(self, data: Tabular) -> pd.DataFrame:
        """``data`` reduced to the features, in model order; raises naming every
        missing or non-numeric column (nothing is predicted from a partial match)."""
        frame = as_frame(data)
        if len(frame) == 0:
            raise InvalidInputError("input: no rows to predict")
        self.check_names([str(c) for c in frame.columns])
        selected = frame[list(self.features)]
        wrong = [
            f"{c!r} ({selected[c].dtype})" for c in self.features if not _is_numeric(selected[c])
        ]
        if wrong:
            raise InvalidInputError(
                f"input: feature column{'s' if len(wrong) > 1 else ''} {', '.join(wrong)} "
                "must be numeric (int, float or bool)"
            )
        return selected

    def matrix(self, data: Tabular) -> np.ndarray:
        """The float64 matrix the model was trained on, checked."""
        X = self._plain_matrix(data)
        if X is None:
            X = self.check(data).to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(X) if self.allow_nan else ~np.isfinite(X)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            what = "infinite values" if self.allow_nan else "NaN or infinite values"
            raise InvalidInputError(
                f"input: column {self.features[col]!r} has {what} "
                f"(first at row {row}: {X[row, col]!r}); the model cannot take them"
            )
        return X

    def _plain_matrix(self, data: Tabular) -> np.ndarray | None:
        """Records or columns of plain numbers (what a JSON body holds) straight to the
        matrix, as the DataFrame route would make it: that route costs about 1 ms for
        one row, most of a ``suho serve`` request. None for anything else, or anything
        to refuse, which the DataFrame route then names."""
        if isinstance(data, Mapping):
            lengths = {len(v) if isinstance(v, list | tuple) else -1 for v in data.values()}
            if lengths & {-1, 0} or len(lengths) != 1 or not all(f in data for f in self.features):
                return None
            columns = [data[f] for f in self.features]
            if not all(_plain(v) for column in columns for v in column):
                return None
            return np.array(columns, dtype=np.float64).reshape(len(columns), -1).T
        if not isinstance(data, list) or not all(type(r) is dict for r in data):
            return None
        present = set().union(*data)
        if not all(f in present for f in self.features):
            return None
        rows = [[r.get(f) for f in self.features] for r in data]
        if not all(_plain(v) for row in rows for v in row):
            return None
        return np.array(rows, dtype=np.float64).reshape(len(rows), len(self.features))


_PLAIN = frozenset({float, int, bool, type(None)})


def _plain(value: Any) -> bool:
    """A JSON number, boolean or null (as the DataFrame route takes them)."""
    return type(value) in _PLAIN and not (type(value) is int and abs(value) >= 2**63)


__all__ = ["FeatureSignature", "Tabular", "as_frame"]
