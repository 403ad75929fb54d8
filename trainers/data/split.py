"""Leak-free chronological splits and time-series cross-validation for panel data.

Both work on unique timestamps, not rows: every symbol's bar at one time lands in the same
part, so no part ever sees a time that belongs to a later part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PartInfo", "Split", "chronological_split", "time_series_cv"]

_PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class PartInfo:
    """What a run records about one part: its time range and size."""

    start: pd.Timestamp
    end: pd.Timestamp
    rows: int
    timestamps: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (ISO-8601 times) for run tracking."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": self.rows,
            "timestamps": self.timestamps,
        }


@dataclass(frozen=True)
class Split:
    """Train/val/test frames (time-sorted, original index kept) with their ranges and sizes."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    ratios: tuple[float, float, float]
    time_column: str
    info: dict[str, PartInfo] = field(repr=False)

    @property
    def train_info(self) -> PartInfo:
        return self.info["train"]

    @property
    def val_info(self) -> PartInfo:
        return self.info["val"]

    @property
    def test_info(self) -> PartInfo:
        return self.info["test"]

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description: ratios plus each part's range and counts."""
        return {"ratios": list(self.ratios), **{k: v.to_dict() for k, v in self.info.items()}}


def split_fields(split: Split) -> dict[str, Any]:
    """A training run's columns for its split: each part's rows, start and end."""
    fields: dict[str, Any] = {}
    for part in ("train", "val", "test"):
        info = split.info[part]
        fields[f"{part}_rows"] = info.rows
        fields[f"{part}_start"] = info.start.to_pydatetime()
        fields[f"{part}_end"] = info.end.to_pydatetime()
    return fields


def _check_ratios(ratios: Any) -> tuple[float, float, float]:
    try:
        values = tuple(ratios)
    except TypeError:
        values = (ratios,)
    problem = None
    if len(values) != 3:
        problem = f"expected 3 values (train, val, test), got {len(values)}"
    elif not all(isinstance(r, Real) and not isinstance(r, bool) for r in values):
        problem = "all values must be numbers"
    else:
        bad = [
            f"{name}={r!r}"
            for name, r in zip(_PARTS, values, strict=True)
            if not (math.isfinite(r) and r > 0)
        ]
        total = math.fsum(values)
        if bad:
            problem = f"not positive: {', '.join(bad)}"
        elif abs(total - 1.0) > 1e-9:
            problem = f"they sum to {total:.12g}, not 1"
    if problem:
        raise ValueError(f"invalid split ratios {ratios!r}: {problem}")
    return tuple(float(r) for r in values)  # type: ignore[return-value]


def _time_codes(times: Any) -> tuple[np.ndarray, pd.Index]:
    """Dense codes 0..U-1 in ascending time order, and the sorted unique times."""
    values = times if isinstance(times, pd.Series | pd.Index) else pd.Index(np.asarray(times))
    codes, uniques = pd.factorize(values, sort=True)
    if (codes < 0).any():
        raise ValueError(f"time values contain {(codes < 0).sum()} nulls (NaT/None)")
    return codes, pd.Index(uniques)


def chronological_split(
    df: pd.DataFrame,
    time_column: str = "time",
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> Split:
    """Split ``df`` into train/val/test by time so that train < val < test with no overlap.

    Unique timestamps are divided by ``ratios`` (cumulative boundaries rounded to the nearest
    timestamp); each part keeps every row of its timestamps. Raises ``ValueError`` for ratios
    that are not three positive numbers summing to 1, or too few timestamps for three parts.
    """
    checked = _check_ratios(ratios)
    if time_column not in df.columns:
        raise ValueError(f"time column {time_column!r} not in frame columns {list(df.columns)}")
    codes, uniques = _time_codes(df[time_column])
    n_times = len(uniques)
    cut1 = math.floor(n_times * checked[0] + 0.5)
    cut2 = math.floor(n_times * (checked[0] + checked[1]) + 0.5)
    sizes = (cut1, cut2 - cut1, n_times - cut2)
    if min(sizes) < 1:
        raise ValueError(
            f"{n_times} unique timestamps are too few to split by ratios {checked}: "
            f"parts would hold {sizes} timestamps"
        )
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    bounds = np.searchsorted(sorted_codes, [0, cut1, cut2, n_times])
    frames: dict[str, pd.DataFrame] = {}
    info: dict[str, PartInfo] = {}
    for i, name in enumerate(_PARTS):
        rows = order[bounds[i] : bounds[i + 1]]
        lo, hi = (0, cut1, cut2)[i], (cut1, cut2, n_times)[i]
        frames[name] = df.iloc[rows]
        info[name] = PartInfo(
            start=pd.Timestamp(uniques[lo]),
            end=pd.Timestamp(uniques[hi - 1]),
            rows=len(rows),
            timestamps=hi - lo,
        )
    return Split(**frames, ratios=checked, time_column=time_column, info=info)


def time_series_cv(
    n_or_times: int | pd.Series | pd.Index | np.ndarray,
    n_splits: int = 5,
    gap: int = 0,
    window: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds over unique timestamps, like sklearn's TimeSeriesSplit.

    ``n_or_times`` is a row count (each row its own timestamp) or the per-row times of a
    panel (any order). The timestamps are cut into ``n_splits + 1`` equal blocks (the first
    one also takes the remainder); fold k validates on block k + 1 and trains on every
    earlier timestamp except the ``gap`` ones right before validation (an embargo against
    label overlap). ``window``: train on at most the last ``window`` of those timestamps
    (a rolling window; None: expanding). Returns ``(train_idx, val_idx)`` row positions,
    each ascending.
    """
    if isinstance(n_splits, bool) or not isinstance(n_splits, Integral) or n_splits < 2:
        raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}")
    if isinstance(gap, bool) or not isinstance(gap, Integral) or gap < 0:
        raise ValueError(f"gap must be an integer >= 0, got {gap!r}")
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, Integral) or window < 1
    ):
        raise ValueError(f"window must be an integer >= 1 or None, got {window!r}")
    if isinstance(n_or_times, pd.DataFrame):
        raise TypeError("pass the time column (df[time_column]) or a row count, not a frame")
    if isinstance(n_or_times, Integral) and not isinstance(n_or_times, bool):
        codes = np.arange(int(n_or_times))
        n_times = int(n_or_times)
    else:
        codes, uniques = _time_codes(n_or_times)
        n_times = len(uniques)
    fold = n_times // (n_splits + 1)
    first_train = n_times - n_splits * fold - gap
    if fold < 1 or first_train < 1:
        raise ValueError(
            f"{n_times} unique timestamps are too few for n_splits={n_splits} and gap={gap}: "
            f"validation blocks of {fold} leave {first_train} for the first training window"
        )
    folds = []
    for k in range(n_splits):
        val_start = n_times - (n_splits - k) * fold
        train_end = val_start - gap
        train_start = 0 if window is None else max(0, train_end - window)
        train_idx = np.flatnonzero((codes >= train_start) & (codes < train_end))
        val_idx = np.flatnonzero((codes >= val_start) & (codes < val_start + fold))
        folds.append((train_idx, val_idx))
    return folds
