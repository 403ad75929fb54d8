"""The registry of run kinds, application layer: how the UI, the reports and the
MLflow mirror show each kind. The facts of its tables are in
:mod:`repositories.kinds`, of its trainer in :mod:`trainers.kinds`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from repositories.kinds import RL, SUPERVISED, AnyProfile, RunKind, profile_of


@dataclass(frozen=True)
class MlflowSeries:
    """A curve as MLflow metrics: key -> our column; ``optional`` curves are sent
    only when asked for (``all_steps``)."""

    keys: Mapping[str, str]
    optional: bool = False


@dataclass(frozen=True)
class Chart:
    """A chart of a run's page: series of one curve."""

    id: str
    curve: str
    series: str
    """Comma-separated series names."""
    title: str


@dataclass(frozen=True)
class Presentation:
    data: AnyProfile
    title: str
    """The listing's title ("Runs", "Agents")."""
    path: str
    """The listing's path and section; ``/api<path>`` is its JSON."""
    report_label: str
    """How a report's heading names it."""
    noun: str
    """How a run's page names one ("supervised", "RL agent")."""
    seed_title: str
    """The seed query's name, shown when a listing is in its order."""
    charts: tuple[Chart, ...]
    """The charts of a run's page, in order."""
    mlflow_series: Mapping[str, MlflowSeries]
    """Per curve name of the kind, its MLflow metric keys."""
    mlflow_tags: Mapping[str, str]
    """MLflow tag -> run column."""
    mlflow_model_suffix: str = ""
    """Appended to the model name of a registered model (``ppo`` + ``-agent``)."""
    trial_tags: tuple[str, ...] = ()
    """Trial columns mirrored as ``suho.<name>`` tags of a trial."""
    trial_metrics: tuple[str, ...] = ()
    """Trial columns mirrored as metrics besides the objective."""
    trial_fold_scores: bool = False
    """A trial's cross-validation scores are mirrored as ``fold_score`` by fold."""
    feature_importance: bool = False
    """Its models rank features (the UI's feature-importance view)."""
    equity: bool = False
    """Its agents trade (the UI's equity view against buy-and-hold)."""


SUPERVISED_SERIES = (
    "train_loss",
    "val_loss",
    "train_accuracy",
    "val_accuracy",
    "learning_rate",
    "gradient_norm",
    "iteration_duration_ms",
)
"""MLflow keys of a supervised run's ``metrics`` curve (the columns' own names)."""
EPISODE_SERIES = {
    "episode_reward": "episode_final_reward",
    "episode_sharpe_ratio": "sharpe_ratio",
    "episode_account_value": "account_value",
    "episode_policy_loss": "policy_loss",
    "episode_value_loss": "value_loss",
    "episode_end_timestep": "timestep_number",
}
"""MLflow key -> column of an agent's ``episodes`` curve (episode-end rows)."""
STEP_SERIES = {
    "step_reward": "step_reward",
    "step_cumulative_reward": "episode_cumulative_reward",
    "step_account_value": "account_value",
    "step_policy_loss": "policy_loss",
    "step_value_loss": "value_loss",
}
"""MLflow key -> column of an agent's ``steps`` curve (sent with ``all_steps``)."""

PRESENTATIONS: dict[RunKind, Presentation] = {
    SUPERVISED.kind: Presentation(
        data=SUPERVISED,
        title="Runs",
        path="/runs",
        report_label="supervised",
        noun="supervised",
        seed_title="Compare Model Performance",
        charts=(
            Chart("chart-loss", "metrics", "train_loss,val_loss", "Loss (train / validation)"),
            Chart(
                "chart-accuracy",
                "metrics",
                "train_accuracy,val_accuracy",
                "Accuracy (train / validation)",
            ),
            Chart("chart-lr", "metrics", "learning_rate", "Learning rate"),
        ),
        mlflow_series={
            "metrics": MlflowSeries({name: name for name in SUPERVISED_SERIES}),
        },
        mlflow_tags={
            "suho.model_type": "model_type",
            "suho.task_type": "task_type",
            "suho.target_variable": "target_variable",
        },
        trial_tags=("tuning_method",),
        trial_fold_scores=True,
        feature_importance=True,
    ),
    RL.kind: Presentation(
        data=RL,
        title="Agents",
        path="/agents",
        report_label="RL",
        noun="RL agent",
        seed_title="Best RL Agents",
        charts=(
            Chart("chart-rewards", "episodes", "episode_final_reward", "Reward per episode"),
            Chart(
                "chart-losses",
                "steps",
                "policy_loss,value_loss",
                "Policy and value loss (per timestep)",
            ),
            Chart("chart-account", "steps", "account_value", "Account value during training"),
        ),
        mlflow_series={
            "episodes": MlflowSeries(EPISODE_SERIES),
            "steps": MlflowSeries(STEP_SERIES, optional=True),
        },
        mlflow_tags={
            "suho.agent_type": "agent_type",
            "suho.reward_function": "reward_function_type",
            "suho.tickers": "tickers",
        },
        mlflow_model_suffix="-agent",
        trial_metrics=("sharpe_ratio", "total_timesteps"),
        equity=True,
    ),
}


def presentation(kind: RunKind | str) -> Presentation:
    return PRESENTATIONS[profile_of(kind).kind]


__all__ = [
    "EPISODE_SERIES",
    "PRESENTATIONS",
    "Chart",
    "STEP_SERIES",
    "SUPERVISED_SERIES",
    "MlflowSeries",
    "Presentation",
    "presentation",
]
