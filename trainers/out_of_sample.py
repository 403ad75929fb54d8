"""A run's out-of-sample evidence in one structure: its test figures beside the naive
baselines' (``trainers.baselines``), and its walk-forward folds with their mean and
spread (``trainers.walk_forward``). The UI's panel and its JSON are this; the CLI's
walk-forward line is :func:`walk_forward_line`, so each wording has one home.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from trainers.baselines import Comparison, baseline_notes, never_traded
from trainers.walk_forward import SUMMARY_PREFIX, describe_walk_forward, fold_means, summarise

Metrics = Mapping[str, float | None]
Comparisons = Callable[[Metrics], list[Comparison]]
"""A kind's comparisons of a metrics mapping (``supervised_comparisons`` with the
run's task, or ``rl_comparisons``)."""

SIZE_UNITS = ("rows", "bars")
"""A fold's sizes are stored as ``train_<unit>`` / ``test_<unit>``."""


def walk_forward_line(comparisons: Comparisons, summary: Metrics) -> str | None:
    """The folds' mean ± spread and whether their mean beat the baselines' (None:
    no walk-forward)."""
    means = fold_means(summary)
    if not means:
        return None
    verdict = comparisons(means)[0].verdict()
    return f"{describe_walk_forward(summary)}. Mean over folds: {verdict}"


def out_of_sample(
    comparisons: Comparisons,
    final: Metrics | None,
    folds: Mapping[int, Mapping[str, float]],
    config_json: str | None = None,
) -> dict[str, Any] | None:
    """``{"test": ..., "walk_forward": ...}`` from the final checkpoint's metrics and
    the per-fold metrics (``{fold: {metric: value}}``); None when the run has neither
    baseline figures nor folds. ``config_json``: the run's config (the folds' mode)."""
    test = _test(comparisons, final or {})
    walk = _walk_forward(comparisons, final or {}, folds, config_json)
    if test is None and walk is None:
        return None
    return {"test": test, "walk_forward": walk}


def _figure(c: Comparison, outcome: bool = True) -> dict[str, Any]:
    out = {"figure": c.what, "higher_is_better": c.higher, "model": c.model,
           "baselines": dict(c.baselines)}  # fmt: skip
    if outcome:
        out["outcome"] = c.outcome()
        beaten, shown = c.beaten(), c.shown()
        out["beat"] = (
            None if not shown
            else "none" if not beaten
            else "all" if len(beaten) == len(shown)
            else "some"
        )  # fmt: skip
    return out


def _columns(figures: list[Comparison]) -> list[dict[str, Any]]:
    return [{"figure": c.what, "baselines": [n for n, _ in c.baselines]} for c in figures]


def _baseline_names(figures: list[Comparison]) -> list[str]:
    return list(dict.fromkeys(n for c in figures for n, _ in c.baselines))


def _test(comparisons: Comparisons, final: Metrics) -> dict[str, Any] | None:
    figures = comparisons(final)
    if not any(c.shown() for c in figures):
        return None  # trained before baselines were stored, or no final checkpoint
    return {
        "columns": _columns(figures),
        "baseline_names": _baseline_names(figures),
        "figures": [_figure(c) for c in figures],
        "verdict": figures[0].verdict(),
        "notes": baseline_notes(final),
        "warning": never_traded(final),
    }


def _walk_forward(
    comparisons: Comparisons,
    final: Metrics,
    folds: Mapping[int, Mapping[str, float]],
    config_json: str | None,
) -> dict[str, Any] | None:
    summary: Metrics = final
    if f"{SUMMARY_PREFIX}folds" not in final:
        summary = summarise([folds[k] for k in sorted(folds)]) if folds else {}
    means = fold_means(summary)
    if not folds and not means:
        return None
    spreads = {
        key[len(SUMMARY_PREFIX) : -len("_std")]: value
        for key, value in summary.items()
        if key.startswith(SUMMARY_PREFIX) and key.endswith("_std")
    }
    columns = comparisons(means)
    unit = next(
        (u for u in SIZE_UNITS if any(f"test_{u}" in fold for fold in folds.values())), None
    )
    parsed = json.loads(config_json or "{}")
    config = (parsed.get("walk_forward") if isinstance(parsed, dict) else None) or {}
    return {
        "folds_count": int(summary.get(f"{SUMMARY_PREFIX}folds") or len(folds)),
        "mode": config.get("mode"),
        "size_unit": unit,
        "columns": _columns(columns),
        "folds": [
            {
                "fold": number,
                "train_size": folds[number].get(f"train_{unit}"),
                "test_size": folds[number].get(f"test_{unit}"),
                "figures": [_figure(c) for c in comparisons(folds[number])],
            }
            for number in sorted(folds)
        ],
        "mean": [_figure(c) for c in columns],
        "std": [_figure(c, outcome=False) for c in comparisons(spreads)],
        "summary": describe_walk_forward(summary),
        "line": walk_forward_line(comparisons, summary),
        "verdict": columns[0].verdict() if means else None,
    }
