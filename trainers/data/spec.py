"""Which columns of a feature table play which role (time, symbol, features, targets).

A trainer never guesses: `FeatureSpec.resolve` turns a spec plus a table's columns and dtypes
(a DataFrame, or a schema read from the store before any data is loaded) into an explicit
`ResolvedColumns`, and fails with a `FeatureSpecError` naming the offending column. Price,
volume, target, time and symbol columns are never picked up as features by pattern; they are
features only when listed in ``feature_columns``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["FeatureSpec", "FeatureSpecError", "ResolvedColumns", "is_numeric_dtype"]

DEFAULT_TARGETS: tuple[str, ...] = ("target_direction", "target_return")
DEFAULT_RESERVED: tuple[str, ...] = ("open", "high", "low", "close", "volume", "target_*")

SchemaLike: TypeAlias = pd.DataFrame | Mapping[str, Any] | Iterable[tuple[str, Any]]
"""A frame, ``{column: dtype}``, or ``[(column, dtype), ...]``; dtypes may be numpy/pandas
dtypes or type names, including ClickHouse ones such as ``Nullable(Float64)``."""


class FeatureSpecError(ValueError):
    """A spec that does not fit a table: missing column, non-numeric feature, bad pattern."""


_CH_WRAPPER = re.compile(r"^(?:Nullable|LowCardinality)\((.*)\)$")
_CH_NUMERIC = re.compile(
    r"^(?:U?Int(?:8|16|32|64|128|256)|Float(?:32|64)|BFloat16|Bool|Decimal(?:32|64|128|256)?"
    r"(?:\(.*\))?)$"
)


def is_numeric_dtype(dtype: Any) -> bool:
    """Whether a model can take this column as-is (numbers and booleans, not datetimes)."""
    if isinstance(dtype, str):
        name = dtype.strip()
        while match := _CH_WRAPPER.match(name):
            name = match.group(1).strip()
        if _CH_NUMERIC.match(name):
            return True
        try:
            dtype = pd.api.types.pandas_dtype(name)
        except TypeError:
            return False
    try:
        types = pd.api.types
        return bool(types.is_numeric_dtype(dtype)) and not types.is_complex_dtype(dtype)
    except TypeError:
        return False


def _schema(source: SchemaLike) -> dict[str, Any]:
    if isinstance(source, pd.DataFrame):
        if not source.columns.is_unique:
            dupes = source.columns[source.columns.duplicated()].unique().tolist()
            raise FeatureSpecError(f"duplicate column name(s) in the frame: {dupes}")
        return {str(col): dtype for col, dtype in source.dtypes.items()}
    if isinstance(source, Mapping):
        return {str(col): dtype for col, dtype in source.items()}
    return {str(col): dtype for col, dtype in source}


def _missing(kind: str, column: str, available: Iterable[str]) -> FeatureSpecError:
    cols = list(available)
    hint = difflib.get_close_matches(column, cols, n=3)
    near = f"; did you mean {', '.join(map(repr, hint))}?" if hint else ""
    shown = ", ".join(cols[:12]) + (f", ... ({len(cols)} in all)" if len(cols) > 12 else "")
    return FeatureSpecError(f"{kind} column {column!r} not found{near} (columns: {shown})")


def _non_numeric(kind: str, schema: Mapping[str, Any], columns: Iterable[str]) -> None:
    bad = [(col, schema[col]) for col in columns if not is_numeric_dtype(schema[col])]
    if bad:
        listed = ", ".join(f"{col!r} (dtype {dtype})" for col, dtype in bad)
        plural = "s are" if len(bad) > 1 else " is"
        raise FeatureSpecError(f"{kind} column{plural} not numeric: {listed}")


class ResolvedColumns(BaseModel):
    """The concrete columns a trainer uses, in table order for features."""

    model_config = ConfigDict(frozen=True)

    features: list[str]
    targets: list[str]
    time: str
    symbol: str | None

    @property
    def columns(self) -> list[str]:
        """Every column to load: time, symbol, features, then targets (no duplicates)."""
        ordered = [self.time, *([self.symbol] if self.symbol else []), *self.features]
        return list(dict.fromkeys([*ordered, *self.targets]))


class FeatureSpec(BaseModel):
    """Column roles for a feature table.

    ``feature_columns`` lists features exactly (price/volume columns allowed there). Without
    it, features are every numeric-typed column that matches an ``include`` glob (all columns
    when ``include`` is None), minus ``exclude`` globs, minus time, symbol, targets and the
    ``reserved`` globs (price, volume, ``target_*``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_column: str = "time"
    symbol_column: str | None = "symbol"
    target_columns: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGETS))
    feature_columns: list[str] | None = None
    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    reserved: list[str] = Field(default_factory=lambda: list(DEFAULT_RESERVED))

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        lists = {"target_columns": self.target_columns, "feature_columns": self.feature_columns}
        for name, cols in lists.items():
            cols = cols or []
            dupes = sorted({c for c in cols if cols.count(c) > 1})
            if dupes:
                raise FeatureSpecError(f"{name} lists {dupes} more than once")
        if self.feature_columns is not None:
            if self.include is not None or self.exclude:
                raise FeatureSpecError(
                    "give either feature_columns (an exact list) or include/exclude patterns, "
                    "not both"
                )
            leaked = [c for c in self.feature_columns if c in self.target_columns]
            if leaked:
                raise FeatureSpecError(f"column(s) {leaked} are both targets and features")
        if self.time_column in self.target_columns:
            raise FeatureSpecError(f"time column {self.time_column!r} is also a target")
        if self.symbol_column is not None and self.symbol_column == self.time_column:
            raise FeatureSpecError(f"time and symbol column are both {self.time_column!r}")
        return self

    def _is_reserved(self, column: str) -> bool:
        fixed = {self.time_column, self.symbol_column, *self.target_columns}
        return column in fixed or any(fnmatchcase(column, pat) for pat in self.reserved)

    def resolve(self, source: SchemaLike) -> ResolvedColumns:
        """Resolve roles against a frame or schema; raise `FeatureSpecError` if they don't fit."""
        schema = _schema(source)
        if self.time_column not in schema:
            raise _missing("time", self.time_column, schema)
        if self.symbol_column is not None and self.symbol_column not in schema:
            raise _missing("symbol", self.symbol_column, schema)
        for col in self.target_columns:
            if col not in schema:
                raise _missing("target", col, schema)
        _non_numeric("target", schema, self.target_columns)

        if self.feature_columns is not None:
            for col in self.feature_columns:
                if col not in schema:
                    raise _missing("feature", col, schema)
            features = list(self.feature_columns)
        else:
            features = self._select(schema)
        if not features:
            raise FeatureSpecError(
                f"no feature columns selected (include={self.include}, exclude={self.exclude})"
            )
        _non_numeric("feature", schema, features)
        return ResolvedColumns(
            features=features,
            targets=list(self.target_columns),
            time=self.time_column,
            symbol=self.symbol_column,
        )

    def _select(self, schema: Mapping[str, Any]) -> list[str]:
        candidates = [c for c in schema if not self._is_reserved(c)]
        if self.include is not None:
            for pat in self.include:
                if not any(fnmatchcase(c, pat) for c in candidates):
                    reserved_hits = [c for c in schema if fnmatchcase(c, pat)]
                    why = (
                        f" except reserved column(s) {reserved_hits}: list those in "
                        "feature_columns to use them as features"
                        if reserved_hits
                        else ""
                    )
                    raise FeatureSpecError(f"include pattern {pat!r} matched no column{why}")
            candidates = [c for c in candidates if any(fnmatchcase(c, p) for p in self.include)]
        return [c for c in candidates if not any(fnmatchcase(c, p) for p in self.exclude)]

    def validate_frame(self, df: pd.DataFrame) -> ResolvedColumns:
        """Resolve against ``df`` and check its contents are trainable.

        Checks: datetime time column without nulls, no null symbols, unique (time, symbol),
        no null targets, no infinite feature values (NaN features are allowed: the boosting
        libraries handle them).
        """
        resolved = self.resolve(df)
        time = df[resolved.time]
        if not pd.api.types.is_datetime64_any_dtype(time.dtype):
            raise FeatureSpecError(
                f"time column {resolved.time!r} must be datetime, got dtype {time.dtype}"
            )
        if time.isna().any():
            raise FeatureSpecError(f"time column {resolved.time!r} has {time.isna().sum()} nulls")
        keys = [resolved.time]
        if resolved.symbol is not None:
            nulls = int(df[resolved.symbol].isna().sum())
            if nulls:
                raise FeatureSpecError(f"symbol column {resolved.symbol!r} has {nulls} nulls")
            keys.append(resolved.symbol)
        dup = df.duplicated(keys)
        if dup.any():
            first = df.loc[dup, keys].iloc[0].tolist()
            raise FeatureSpecError(
                f"{int(dup.sum())} duplicate {tuple(keys)} rows, first {tuple(first)}"
            )
        for col in resolved.targets:
            nulls = int(df[col].isna().sum())
            if nulls:
                raise FeatureSpecError(f"target column {col!r} has {nulls} nulls")
        inf_cols = [
            col
            for col in resolved.features
            if np.isinf(df[col].to_numpy(dtype=np.float64, na_value=np.nan)).any()
        ]
        if inf_cols:
            raise FeatureSpecError(f"feature column(s) with infinite values: {inf_cols}")
        return resolved
