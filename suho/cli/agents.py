"""``suho agents``: RL agent runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import typer

from suho.cli.common import AgentOption, JsonOption, database
from suho.cli.output import console, dump, emit, show
from suho.cli.runs import run_rows

agents_app = typer.Typer(help="RL agent runs.", no_args_is_help=True)


@agents_app.command("list")
def agents_list(
    status: Annotated[str | None, typer.Option()] = None,
    agent: AgentOption = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: JsonOption = False,
) -> None:
    """List RL agent runs, newest first (a running run without heartbeats: stale)."""
    from repositories.kinds import RL

    with database() as db:
        rows = run_rows(db, RL, status=status, type=agent, limit=limit, as_json=as_json)
    emit(
        rows,
        as_json,
        "agent runs",
        [
            "run_id",
            "run_name",
            "agent_type",
            "status",
            "final_sharpe_ratio",
            "final_total_return",
            "created_at",
        ],
    )


@agents_app.command("show")
def agents_show(run_id: str, as_json: JsonOption = False) -> None:
    """One agent run with its checkpoints and episode count."""
    import json

    from repositories.kinds import RL
    from repositories.tracking import RunTrackingService

    with database() as db:
        tracking = RunTrackingService(db, RL)
        run = tracking.get(run_id)
        data = dump(run) | {"stale": tracking.is_stale(run)}
        data["episodes_logged"] = len(tracking.series(run.run_id, "episodes", columns=()))
        checkpoints = tracking.checkpoints(run.run_id)
        final = tracking.final_checkpoint(run.run_id)
        data["checkpoints"] = [dump(c) for c in checkpoints]
        env = json.loads(run.env_config_json or "{}")
        for key in ("env", "n_envs", "sizing", "observation", "reward", "reward_params"):
            if key in env:
                data[f"env_{key}" if key in ("env", "reward") else key] = env[key]
        if final is not None:  # a stuck agent: few steps moving shares, saturated or constant
            activity = {k: v for k, v in final.metrics.items() if k.startswith("eval_")}
            data.update(activity)
            data.update(_baselines(final.metrics))
    show(
        data, as_json, f"agent run {run.run_id}", ("checkpoints", "config_json", "env_config_json")
    )


def _baselines(metrics: Mapping[str, float | None]) -> dict[str, object]:
    """Buy-and-hold and the trend rule beside the agent, a verdict line, and a warning
    when the agent never traded."""
    from trainers.baselines import never_traded, rl_comparisons, rl_verdict
    from trainers.out_of_sample import walk_forward_line

    out: dict[str, object] = {
        k: v for k, v in metrics.items() if k.startswith(("benchmark_", "trend_"))
    }
    out["baselines"] = rl_verdict(metrics)
    line = walk_forward_line(rl_comparisons, metrics)
    if line is not None:
        out["walk_forward"] = line
    warning = never_traded(metrics)
    if warning is not None:
        out["warning"] = warning
    return out


@agents_app.command("best")
def agents_best(
    limit: Annotated[int, typer.Option(min=1)] = 10, as_json: JsonOption = False
) -> None:
    """The seed's "Best RL Agents": completed agents by Sharpe ratio."""
    from repositories.kinds import RL
    from repositories.tracking import RunTrackingService

    with database() as db:
        rows = RunTrackingService(db, RL).seed_ranking(limit)
    emit(
        rows,
        as_json,
        "Best RL Agents",
        ["run_name", "agent_type", "final_sharpe_ratio", "final_total_return"],
    )


@agents_app.command("deploy")
def agents_deploy(
    best: Annotated[bool, typer.Option("--best", help="Deploy the best completed agent.")] = False,
    by: Annotated[str, typer.Option(help="Run column to rank by.")] = "final_sharpe_ratio",
    checkpoint: Annotated[str | None, typer.Option(help="Deploy this checkpoint.")] = None,
    stage: Annotated[str, typer.Option(help="staging or production.")] = "production",
) -> None:
    """Mark an agent checkpoint as production (the previous one is archived)."""
    from repositories.kinds import RL
    from repositories.tracking import RunTrackingService

    if not best and not checkpoint:
        raise typer.BadParameter("give --best or --checkpoint ID")
    with database() as db:
        tracking = RunTrackingService(db, RL)
        if checkpoint:
            info = tracking.deploy(checkpoint, stage)
        else:
            info = tracking.deploy_best(by=by, stage=stage)
    console.print(f"deployed {info.checkpoint_id} ({info.agent_type}) to {stage}")
