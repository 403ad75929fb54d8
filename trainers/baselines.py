"""Naive baselines beside every result, on the same rows or the same period.

A model is only worth something if it beats what needs no model: on real bars the
trainers often do not (PPO on GOOG: Sharpe 0.47 against buy-and-hold's 1.04; LightGBM:
accuracy 0.511 against always-up's 0.538). So every run stores these next to its own
figures, and says in one plain line whether it beat them.

* Supervised: the training split's majority class, and the last move (the sign of the
  last bar's return: the previous row's target, per symbol) on the same test rows.
* RL: buy-and-hold (``finrl_env.buy_and_hold``) and a trend rule, long while the close
  is above its ``window``-bar mean, on the same trade period.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

TREND_WINDOW = 50
"""Bars in the trend rule's mean."""


# --------------------------------------------------------------------------- supervised


def supervised_baselines(
    task: str,
    y_train: np.ndarray,
    test: pd.DataFrame,
    target: str,
    symbol: str | None,
) -> dict[str, float]:
    """Baseline metrics on ``test`` (rows in time order): classification accuracy of the
    majority class and of the last move; regression RMSE of a zero forecast and the
    direction accuracy of the last move."""
    y = test[target].to_numpy(dtype=np.float64)
    previous = (
        test.groupby(symbol, sort=False)[target].shift() if symbol else test[target].shift()
    ).to_numpy(dtype=np.float64)
    if task == "classification":
        values, counts = np.unique(np.asarray(y_train).astype(int), return_counts=True)
        majority = float(values[np.argmax(counts)])
        last = np.where(np.isnan(previous), majority, previous)
        return {
            "baseline_majority_accuracy": float(np.mean(y == majority)),
            "baseline_majority_class": majority,
            "baseline_last_move_accuracy": float(np.mean(y == last)),
        }
    last = np.nan_to_num(previous)
    return {
        "baseline_zero_rmse": float(np.sqrt(np.mean(y**2))),
        "baseline_last_move_direction_accuracy": float(np.mean(np.sign(last) == np.sign(y))),
    }


def supervised_comparisons(task: str, metrics: Mapping[str, float | None]) -> list[Comparison]:
    """The model's test figures beside the baselines' on the same rows, headline first."""
    if task == "classification":
        return [
            Comparison(
                "accuracy",
                metrics.get("test_accuracy"),
                (
                    ("majority class", metrics.get("baseline_majority_accuracy")),
                    ("last move", metrics.get("baseline_last_move_accuracy")),
                ),
            )
        ]
    return [
        Comparison(
            "direction accuracy",
            metrics.get("test_direction_accuracy"),
            (("last move", metrics.get("baseline_last_move_direction_accuracy")),),
        ),
        Comparison(
            "RMSE",
            metrics.get("test_rmse"),
            (("zero forecast", metrics.get("baseline_zero_rmse")),),
            higher=False,
        ),
    ]


def supervised_verdict(task: str, metrics: Mapping[str, float | None]) -> str:
    """One plain line: did the model beat the baselines on the test rows?"""
    return supervised_comparisons(task, metrics)[0].verdict()


# --------------------------------------------------------------------------- RL


def trend_rule(
    closes: pd.DataFrame,
    trade_start: object,
    initial_amount: float,
    cost_pct: float,
    window: int = TREND_WINDOW,
) -> pd.Series:
    """Account value of the trend rule over the dates from ``trade_start`` on.

    ``closes``: date x ticker closes, the history before ``trade_start`` included so
    the mean is warm on the first trade date (only past bars are used). Capital is
    split equally between tickers; each is held over the next bar while its close is
    above its ``window``-bar mean (decided at the close), else in cash; ``cost_pct``
    is paid on every change of position.
    """
    closes = closes.sort_index()
    mean = closes.rolling(window, min_periods=1).mean()
    long = (closes > mean).astype(np.float64)
    in_trade = closes.index >= trade_start
    prices, held = closes[in_trade], long[in_trade]
    returns = prices.pct_change().fillna(0.0).to_numpy()
    position = held.shift().fillna(0.0).to_numpy()  # decided at the previous close
    changes = np.abs(np.diff(np.vstack([np.zeros(position.shape[1]), position]), axis=0))
    growth = 1.0 + position * returns - cost_pct * changes
    values = (initial_amount / prices.shape[1]) * np.cumprod(growth, axis=0)
    return pd.Series(values.sum(axis=1), index=prices.index, name="trend_rule")


def rl_comparisons(metrics: Mapping[str, float | None]) -> list[Comparison]:
    """The agent's Sharpe and return beside buy-and-hold's and the trend rule's over
    the same period, headline first."""
    return [
        Comparison(
            what,
            metrics.get(key),
            (
                ("buy-and-hold", metrics.get(f"benchmark_{key}")),
                ("trend rule", metrics.get(f"trend_{key}")),
            ),
        )
        for what, key in (("Sharpe", "sharpe_ratio"), ("total return", "total_return"))
    ]


def rl_verdict(metrics: Mapping[str, float | None]) -> str:
    """One plain line: did the agent's Sharpe beat buy-and-hold's and the trend rule's?"""
    return rl_comparisons(metrics)[0].verdict()


def baseline_notes(metrics: Mapping[str, float | None]) -> list[str]:
    """What a baseline's name leaves out: the majority class, the trend rule's window."""
    notes = []
    majority = metrics.get("baseline_majority_class")
    if majority is not None and np.isfinite(majority):
        notes.append(f"majority class: {majority:g} (the training split's)")
    window = metrics.get("trend_window")
    if window is not None and np.isfinite(window):
        notes.append(f"trend rule: long while the close is above its {window:g}-bar mean")
    return notes


def never_traded(metrics: Mapping[str, float | None]) -> str | None:
    """A warning when the agent moved no shares in its evaluation, with the why."""
    moving = metrics.get("eval_moving_steps")
    if moving is None or moving > 0:
        return None
    reasons = []
    saturated = metrics.get("eval_share_saturated")
    if saturated is not None and saturated >= 0.5:
        reasons.append(f"{saturated:.0%} of its actions at +-1 (saturated)")
    if metrics.get("eval_constant_actions"):
        reasons.append("the same action at every step (it ignores its observation)")
    why = "; ".join(reasons) or "its actions were too small to move a whole share"
    steps = int(metrics.get("eval_steps") or 0)
    return f"the agent never traded in its evaluation ({steps} steps): {why}"


# --------------------------------------------------------------------------- common


@dataclass(frozen=True)
class Comparison:
    """One figure of the model beside the same figure of each naive baseline."""

    what: str
    model: float | None
    baselines: tuple[tuple[str, float | None], ...]
    higher: bool = True
    """Whether a higher figure is the better one."""

    def shown(self) -> list[tuple[str, float]]:
        """The baselines with a number."""
        return [(n, v) for n, v in self.baselines if v is not None and np.isfinite(v)]

    def beaten(self) -> list[str] | None:
        """The baselines the model beat (None: the model has no number)."""
        if self.model is None or not np.isfinite(self.model):
            return None
        model = self.model
        return [n for n, v in self.shown() if (model > v if self.higher else model < v)]

    def outcome(self) -> str:
        """In a few words: "beat every baseline", "beat trend rule only", "did NOT beat
        the baselines" (or that there is nothing to compare)."""
        beaten, shown = self.beaten(), self.shown()
        if beaten is None:
            return "did NOT beat the baselines"
        if not shown:
            return "no baseline to compare with"
        if len(beaten) == len(shown):
            return "beat every baseline"
        return f"beat {', '.join(beaten)} only" if beaten else "did NOT beat the baselines"

    def verdict(self) -> str:
        """The plain line the CLI, the reports and the UI print."""
        figures = ", ".join(f"{n} {v:.3f}" for n, v in self.shown())
        if self.beaten() is None:
            return (
                f"model did NOT beat the baselines: no {self.what} (undefined, e.g. a flat "
                f"equity curve) against {figures or 'no baseline figures'}"
            )
        assert self.model is not None
        if not self.shown():
            return f"{self.what} {self.model:.3f}; no baseline to compare with"
        return f"model {self.outcome()}: {self.what} {self.model:.3f} against {figures}"
