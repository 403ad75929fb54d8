"""Run reports: one self-contained HTML file (images embedded) plus the PNGs.

Supervised runs: learning curves, feature importance, the tuning history, and
the confusion matrix (classification) or residuals (regression) on the test
split. RL runs: reward per episode, policy and value loss, and the equity curve
of the trade period against buy-and-hold. Both carry the run's stored metadata.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from repositories.kinds import RL, SUPERVISED, RunKind
from repositories.tracking import RunTrackingService, tracking_for_run
from suho.kinds import presentation
from suho_models.db import Database


@dataclass
class Figure:
    name: str
    title: str
    png: bytes


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _render(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    _plt().close(fig)
    return buffer.getvalue()


# --------------------------------------------------------------------------- supervised
def supervised_figures(db: Database, run_id: Any) -> list[Figure]:
    """The trainer's runs get every figure; a client run (``suho.init`` on one's own
    code) those its data allow: the curves it logged and the importance autolog stored."""
    from suho_models.enums import TaskType
    from trainers.supervised.inference import (
        is_trainer_run,
        load_run_model,
        run_feature_importance,
        test_split_predictions,
    )

    plt = _plt()
    figures = []
    tracking = RunTrackingService(db, SUPERVISED)
    run = tracking.get(run_id)
    curve = tracking.series(run_id, "metrics")
    panels = [
        (name, unit, [c for c in (f"train_{name}", f"val_{name}") if _has(curve, c)])
        for name, unit in (("loss", "loss (log loss / RMSE)"), ("accuracy", "accuracy (fraction)"))
    ]
    panels = [p for p in panels if p[2]]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
        for ax, (name, unit, columns) in zip(axes[0], panels, strict=True):
            for column in columns:
                points = [(p.x, p.values[column]) for p in curve if p.values[column] is not None]
                label = "train" if column.startswith("train_") else "validation"
                ax.plot([x for x, _ in points], [v for _, v in points], label=label)
            ax.set(title=f"{name.capitalize()} per iteration", xlabel="iteration", ylabel=unit)
            ax.legend()
        figures.append(Figure("learning_curves", "Learning curves", _render(fig)))

    importance = run_feature_importance(db, run.run_id)
    if importance:
        top = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:20][::-1]
        fig, ax = plt.subplots(figsize=(8, 6))
        ax.barh([k for k, _ in top], [v for _, v in top])
        ax.set(title="Feature importance (top 20)", xlabel="importance (gain)", ylabel="feature")
        figures.append(Figure("feature_importance", "Feature importance", _render(fig)))

    trials = tracking.trials(run_id)
    if trials:
        fig, ax = plt.subplots(figsize=(8, 4))
        scored = [(t.trial_number, t.objective_value) for t in trials]
        done = [(n, v) for n, v in scored if v is not None]
        ax.scatter([n for n, _ in done], [v for _, v in done], label="trial")
        best, running = [], math.inf
        for _, value in done:
            running = min(running, value)
            best.append(running)
        ax.step([n for n, _ in done], best, where="post", label="best so far")
        ax.set(
            title="Tuning history",
            xlabel="trial number",
            ylabel="objective (mean CV loss, lower is better)",
        )
        ax.legend()
        figures.append(Figure("trials", "Tuning trials", _render(fig)))

    if not is_trainer_run(run) or tracking.final_checkpoint(run.run_id) is None:
        return figures  # no test split to rebuild: the run's data are not ours
    loaded = load_run_model(db, run.run_id)
    y, pred = test_split_predictions(db, loaded)
    fig, ax = plt.subplots(figsize=(5, 4) if loaded.task is TaskType.CLASSIFICATION else (8, 4))
    if loaded.task is TaskType.CLASSIFICATION:
        from sklearn.metrics import confusion_matrix

        matrix = confusion_matrix(y.astype(int), (pred >= 0.5).astype(int), labels=[0, 1])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, str(value), ha="center", va="center")
        ax.set(
            title="Confusion matrix (test split)",
            xlabel="predicted class",
            ylabel="true class",
            xticks=[0, 1],
            yticks=[0, 1],
        )
        figures.append(Figure("confusion_matrix", "Confusion matrix", _render(fig)))
    else:
        ax.scatter(pred, y - pred, s=4)
        ax.axhline(0, color="grey")
        ax.set(
            title="Residuals (test split)",
            xlabel="predicted return",
            ylabel="residual (true - predicted return)",
        )
        figures.append(Figure("residuals", "Residuals", _render(fig)))
    return figures


# --------------------------------------------------------------------------- RL
def rl_figures(db: Database, run_id: Any) -> list[Figure]:
    plt = _plt()
    tracking = RunTrackingService(db, RL)
    figures = []
    episodes = tracking.series(run_id, "episodes")
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(
        [e.x for e in episodes], [e.values["episode_final_reward"] for e in episodes], marker="o"
    )
    ax.set(title="Reward per episode", xlabel="episode", ylabel="episode reward (sum)")
    figures.append(Figure("episode_rewards", "Reward per episode", _render(fig)))

    steps = tracking.series(run_id, "steps", columns=["policy_loss", "value_loss"])
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([s.x for s in steps], [s.values["policy_loss"] for s in steps], label="policy")
    ax.plot([s.x for s in steps], [s.values["value_loss"] for s in steps], label="value")
    ax.set(title="Policy and value loss", xlabel="timestep", ylabel="loss")
    ax.legend()
    figures.append(Figure("losses", "Policy and value loss", _render(fig)))

    from trainers.rl.report import is_trainer_run, trade_evaluation

    run = tracking.get(run_id)
    if not is_trainer_run(run) or tracking.final_checkpoint(run.run_id) is None:
        return figures  # no trade period to replay: the run's market is not ours
    evaluation = trade_evaluation(db, run_id)
    agent = evaluation.equity["account_value"].to_numpy()
    buy_and_hold = evaluation.equity["buy_and_hold"].to_numpy()
    activity = evaluation.activity  # a stuck agent shows here: no moves, +-1, constant
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(agent, label="agent")
    ax.plot(buy_and_hold, label="buy and hold")
    if "trend_rule" in evaluation.equity:
        ax.plot(evaluation.equity["trend_rule"].to_numpy(), label="trend rule (50-bar mean)")
    ax.set(
        title=(
            f"Equity on the trade period: shares moved on {activity.share_moved:.0%} of "
            f"steps, {activity.share_saturated:.0%} of actions at +-1"
            + (", constant actions" if activity.constant_actions else "")
        ),
        xlabel="trading step",
        ylabel="portfolio value (currency)",
    )
    ax.legend()
    figures.append(Figure("equity_curve", "Equity curve", _render(fig)))
    return figures


def _has(curve: list[Any], column: str) -> bool:
    return any(p.values.get(column) is not None for p in curve)


MAX_METRIC_PANELS = 12
"""Metrics of any name in a report, at most (the UI charts every key)."""


def metric_figures(db: Database, run_id: Any) -> list[Figure]:
    """The run's metrics of any name (``run_metrics``: ``run.log``, autolog, walk-forward
    folds), one panel per key; feature importance has its own figure."""
    tracking, run = tracking_for_run(db, run_id)
    keys = [
        k.key
        for k in tracking.metric_keys(run.run_id)
        if not k.key.startswith("feature_importance/")
    ][:MAX_METRIC_PANELS]
    if not keys:
        return []
    plt = _plt()
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        series = tracking.metric_series(run.run_id, key)
        ax.plot(
            [s for s, _ in series], [v for _, v in series], marker="." if len(series) < 50 else None
        )
        ax.set(title=key, xlabel="step")
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    return [Figure("metrics", "Metrics of any name", _render(fig))]


FIGURES: dict[RunKind, Callable[[Database, Any], list[Figure]]] = {
    SUPERVISED.kind: supervised_figures,
    RL.kind: rl_figures,
}
"""The figures of a report, per kind of run."""


# --------------------------------------------------------------------------- HTML
def _metadata_rows(record: Any) -> list[tuple[str, str]]:
    rows = []
    for key, value in record.model_dump(mode="json").items():
        if key.endswith("_json"):
            continue
        rows.append((key, "" if value is None else str(value)))
    return rows


def _baseline_line(tracking: Any, record: Any) -> str:
    """Did the model beat its naive baselines? (``trainers.baselines``; the final
    checkpoint holds the figures.)"""
    from trainers.baselines import never_traded, rl_verdict, supervised_verdict

    final = tracking.final_checkpoint(record.run_id)
    if final is None:
        return "no final checkpoint: no comparison with the baselines"
    metrics = final.metrics
    if tracking.kind == SUPERVISED.kind:
        task = getattr(record.task_type, "value", record.task_type) or "classification"
        return supervised_verdict(str(task), metrics)
    warning = never_traded(metrics)
    return rl_verdict(metrics) + (f". Warning: {warning}" if warning else "")


def write_report(db: Database, run_id: Any, output: Path | None = None) -> Path:
    """Write ``<output>.html`` and one PNG per figure beside it; returns the HTML path."""
    tracking, record = tracking_for_run(db, run_id)
    figures = [*FIGURES[tracking.kind](db, record.run_id), *metric_figures(db, record.run_id)]
    kind = presentation(tracking.kind).report_label
    output = Path(output or f"report-{record.run_id}.html")
    output.parent.mkdir(parents=True, exist_ok=True)
    images = []
    for figure in figures:
        (output.parent / f"{output.stem}-{figure.name}.png").write_bytes(figure.png)
        encoded = base64.b64encode(figure.png).decode()
        images.append(
            f'<figure id="{figure.name}"><img alt="{html.escape(figure.title)}" '
            f'src="data:image/png;base64,{encoded}"><figcaption>{html.escape(figure.title)}'
            "</figcaption></figure>"
        )
    rows = "".join(
        f'<tr><th>{html.escape(k)}</th><td data-field="{html.escape(k)}">{html.escape(v)}</td></tr>'
        for k, v in _metadata_rows(record)
    )
    output.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(record.run_name)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}"
        "img{max-width:100%}</style></head><body>"
        f"<h1>{kind} run {html.escape(record.run_name)}</h1>"
        f"<p id='baselines'>{html.escape(_baseline_line(tracking, record))}</p>"
        f"<table id='metadata'>{rows}</table>{''.join(images)}</body></html>"
    )
    return output
