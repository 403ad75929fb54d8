"""``suho runs``: supervised runs, and ending runs of either kind."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from suho.cli.common import JsonOption, ReasonOption, database
from suho.cli.output import console, dump, emit, show

runs_app = typer.Typer(help="Supervised training runs.", no_args_is_help=True)


def run_rows(db: Any, kind: Any, *, as_json: bool, **filters: Any) -> list[dict[str, Any]]:
    """Listed runs with ``stale`` (JSON) or a status of ``running (stale)`` (table)."""
    from repositories.tracking import RunTrackingService

    tracking = RunTrackingService(db, kind)
    rows = []
    params = filters.pop("params", None)
    found = tracking.runs_with_params(params, **filters) if params else None
    for run in found if found is not None else tracking.list_runs(**filters):
        row, stale = dump(run), tracking.is_stale(run)
        row["stale"] = stale
        if stale and not as_json:
            row["status"] = f"{row['status']} (stale)"
        rows.append(row)
    return rows


@runs_app.command("list")
def runs_list(
    status: Annotated[str | None, typer.Option(help="pending, running, completed, ...")] = None,
    model: Annotated[str | None, typer.Option(help="Model type.")] = None,
    name: Annotated[str | None, typer.Option(help="Name pattern (SQL LIKE, e.g. 'xgb%').")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="NAME=VALUE of the run's config, repeatable (e.g. max_depth=6)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: JsonOption = False,
) -> None:
    """List supervised runs, newest first (a running run without heartbeats: stale)."""
    from repositories.kinds import SUPERVISED
    from repositories.params import parse_param

    with database() as db:
        rows = run_rows(
            db,
            SUPERVISED,
            status=status,
            type=model,
            name_like=name,
            params=dict(parse_param(p) for p in param or []),
            limit=limit,
            as_json=as_json,
        )
    emit(
        rows,
        as_json,
        "training runs",
        [
            "run_id",
            "run_name",
            "model_type",
            "status",
            "final_test_accuracy",
            "final_f1_score",
            "created_at",
        ],
    )


@runs_app.command("show")
def runs_show(run_id: str, as_json: JsonOption = False) -> None:
    """One run with its checkpoints and trial count."""
    from repositories.kinds import SUPERVISED
    from repositories.tracking import RunTrackingService
    from suho.cli.metrics import metric_keys

    with database() as db:
        tracking = RunTrackingService(db, SUPERVISED)
        run = tracking.get(run_id)
        data = dump(run) | {"stale": tracking.is_stale(run)}
        data["metric_rows"] = tracking.series_count(run.run_id)
        data["trials"] = len(tracking.trials(run.run_id))
        checkpoints = tracking.checkpoints(run.run_id)
        data["checkpoints"] = [dump(c) for c in checkpoints]
        data.update(_verdicts(run, checkpoints))
        data["metric_keys"] = metric_keys(tracking, run.run_id)
    show(data, as_json, f"run {run.run_id}", ("checkpoints", "config_json", "metric_keys"))
    if as_json:
        return
    for key, info in data["metric_keys"].items():
        console.print(f"metric {key}: {info['count']} step(s), last {info['last_value']}")
    for c in data["checkpoints"]:
        console.print(
            f"checkpoint {c['checkpoint_id']} {c['checkpoint_kind']} "
            f"iteration {c['iteration']} {c['deployment_status']}"
        )


def _verdicts(run: Any, checkpoints: list[Any]) -> dict[str, str]:
    """The plain lines of the final checkpoint: did the model beat its baselines on the
    test rows (``baselines``), and over the walk-forward folds (``walk_forward``)?"""
    from suho_models.enums import CheckpointKind
    from trainers.baselines import supervised_comparisons, supervised_verdict
    from trainers.out_of_sample import walk_forward_line

    finals = [c for c in checkpoints if c.kind is CheckpointKind.FINAL]
    if not finals:
        return {}
    metrics = finals[-1].metrics
    task = str(getattr(run.task_type, "value", run.task_type) or "classification")
    out = {}
    if any(k.startswith("baseline_") for k in metrics):
        out["baselines"] = supervised_verdict(task, metrics)
    line = walk_forward_line(lambda m: supervised_comparisons(task, m), metrics)
    if line is not None:
        out["walk_forward"] = line
    return out


def end_run(run_id: str, status: str, reason: str) -> None:
    from repositories.tracking import tracking_for_run

    with database() as db:
        tracking, run = tracking_for_run(db, run_id)
        ended = tracking.end(run.run_id, status, reason)
    console.print(f"{tracking.kind.value} run [bold]{ended.run_id}[/bold] {ended.status.value}")


@runs_app.command("fail")
def runs_fail(run_id: str, reason: ReasonOption = "") -> None:
    """Mark a run of either kind failed (e.g. one whose process died: stale)."""
    end_run(run_id, "failed", reason)


@runs_app.command("cancel")
def runs_cancel(run_id: str, reason: ReasonOption = "") -> None:
    """Mark a run of either kind cancelled."""
    end_run(run_id, "cancelled", reason)


@runs_app.command("sweep-stale")
def runs_sweep_stale(as_json: JsonOption = False) -> None:
    """Mark every stale run (running, no heartbeat for a while) failed, of both kinds."""
    from repositories.tracking import RunKind, RunTrackingService

    ended = []
    with database() as db:
        for kind in RunKind:
            for run in RunTrackingService(db, kind).sweep_stale():
                ended.append({"kind": kind.value, **dump(run)})
    emit(
        ended, as_json, "stale runs marked failed", ["kind", "run_id", "run_name", "error_message"]
    )


@runs_app.command("compare")
def runs_compare(
    limit: Annotated[int, typer.Option(min=1)] = 10, as_json: JsonOption = False
) -> None:
    """The seed's "Compare Model Performance": best completed runs by test accuracy."""
    from repositories.kinds import SUPERVISED
    from repositories.tracking import RunTrackingService

    with database() as db:
        rows = RunTrackingService(db, SUPERVISED).seed_ranking(limit)
    emit(
        rows,
        as_json,
        "Compare Model Performance",
        ["run_name", "model_type", "final_test_accuracy", "final_f1_score"],
    )
