"""``suho demo``: the whole pipeline on the default store, nothing faked.

migrate -> synthesize ml_features if absent -> train XGBoost, LightGBM and
CatBoost (a short Optuna study on LightGBM) -> train an on-policy (PPO) and an
off-policy (SAC) agent with checkpoints -> evaluate them on the held-out trade
period -> deploy the best model and the best agent -> print the seed's two
queries -> write reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass
class DemoSize:
    symbols: tuple[str, ...]
    periods: int
    rounds: int
    trials: int
    rl_timesteps: int
    rl_symbols: tuple[str, ...]
    checkpoint_every_episodes: int


FULL = DemoSize(
    ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD"), 2000, 200, 6, 6000, ("EURUSD", "XAUUSD"), 2
)
QUICK = DemoSize(("EURUSD", "GBPUSD", "XAUUSD"), 600, 30, 2, 600, ("EURUSD", "XAUUSD"), 1)


@dataclass
class DemoResult:
    supervised_runs: list[Any] = field(default_factory=list)
    agent_runs: list[Any] = field(default_factory=list)
    deployed_model: Any = None
    deployed_agent: Any = None
    compare_rows: list[dict[str, Any]] = field(default_factory=list)
    agent_rows: list[dict[str, Any]] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(_num(row[c]) if isinstance(row[c], float | None) else str(row[c]) for c in columns)
        )
    return table


def run_demo(
    url: str,
    data_dir: Path,
    *,
    quick: bool = False,
    console: Console | None = None,
    progress: bool = True,
) -> DemoResult:
    from repositories.features import FeatureTable
    from repositories.kinds import RL, SUPERVISED
    from repositories.queries import seed_query
    from repositories.tracking import RunTrackingService
    from suho.report import write_report
    from suho_models.db import Database, migrations
    from suho_models.enums import AgentType, ModelType
    from trainers.data.synth import generate_ml_features
    from trainers.rl.config import RLConfig
    from trainers.rl.trainer import RLTrainer
    from trainers.supervised.config import SelectionConfig, SupervisedConfig, TuningConfig
    from trainers.supervised.trainer import SupervisedTrainer

    console = console or Console()
    size = QUICK if quick else FULL
    result = DemoResult()
    started = time.perf_counter()

    def step(message: str) -> None:
        console.print(
            f"[bold cyan]▶[/bold cyan] {message} [dim]({time.perf_counter() - started:.0f}s)[/dim]"
        )

    step("1. migrating the database")
    migrations.upgrade(url)
    with Database(url) as db:
        step("2. ml_features")
        features = FeatureTable(db)
        if features.exists():
            console.print(f"   ml_features already has {features.count():,} rows: reused")
        else:
            frame = generate_ml_features(size.symbols, periods=size.periods, seed=42)
            console.print(
                f"   synthesized {features.write(frame):,} rows x {frame.shape[1]} columns"
            )

        step("3. supervised models (XGBoost, LightGBM with an Optuna study, CatBoost)")
        for model_type in ("xgboost", "lightgbm", "catboost"):
            trials = size.trials if model_type == "lightgbm" else 0
            config = SupervisedConfig(
                model_type=ModelType(model_type),
                rounds=size.rounds,
                early_stopping=30,
                cv_folds=3,
                selection=SelectionConfig(top_k=40),
                tuning=TuningConfig(trials=trials),
                progress=progress,
                checkpoint_every=max(size.rounds // 2, 1),
                run_name=f"demo-{model_type}",
            )
            trained = SupervisedTrainer(config, db).run()
            result.supervised_runs.append(trained.run)
            console.print(
                f"   {model_type}: test accuracy {_num(trained.run.final_test_accuracy)}, "
                f"F1 {_num(trained.run.final_f1_score)}"
            )

        step("4-5. RL agents (PPO on-policy, SAC off-policy), evaluated on the trade period")
        for agent in ("ppo", "sac"):
            rl_config = RLConfig(
                agent=AgentType(agent),
                timesteps=size.rl_timesteps,
                symbols=list(size.rl_symbols),
                checkpoint_every_episodes=size.checkpoint_every_episodes,
                run_name=f"demo-{agent}",
            )
            trained_agent = RLTrainer(rl_config, db).run()
            result.agent_runs.append(trained_agent.run)
            run = trained_agent.run
            console.print(
                f"   {agent}: Sharpe {_num(run.final_sharpe_ratio)}, total return "
                f"{_num(run.final_total_return)}, {run.total_episodes} episodes"
            )

        step("6. deploying the best model and the best agent")
        supervised = RunTrackingService(db, SUPERVISED)
        result.deployed_model = supervised.deploy_best(by="final_test_accuracy")
        best_model = supervised.get(result.deployed_model.run_id)
        result.deployed_agent = RunTrackingService(db, RL).deploy_best()
        console.print(
            f"   model {best_model.run_name} -> production; agent "
            f"{result.deployed_agent.agent_type.value} -> production"
        )

        step("7. the seed's queries")
        result.compare_rows = seed_query(db, "compare_model_performance")
        result.agent_rows = seed_query(db, "best_rl_agents")
        console.print(
            _table(
                "Compare Model Performance",
                result.compare_rows,
                ["run_name", "model_type", "final_test_accuracy", "final_f1_score"],
            )
        )
        console.print(
            _table(
                "Best RL Agents",
                result.agent_rows,
                ["run_name", "agent_type", "final_sharpe_ratio", "final_total_return"],
            )
        )

        step("8. reports")
        reports = data_dir / "reports"
        for reported in (best_model, result.deployed_agent):
            path = write_report(db, reported.run_id, reports / f"{reported.run_id}.html")
            result.reports.append(path)
            console.print(f"   {path}")
    step("done")
    return result
