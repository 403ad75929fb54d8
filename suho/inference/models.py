"""``suho.load_model``: a deployed model or agent, ready to predict or act.

Found through :class:`~repositories.tracking.RunTrackingService` (a model name or
agent type in a stage, or a run id for its final checkpoint), its bytes verified by
the checkpoint store. Only data-only formats are loaded here (XGBoost UBJSON/JSON,
LightGBM text, CatBoost cbm, ``sb3_state``): a serving process is exposed to
whoever can reach it, and a format that runs code on load (pickle, joblib, SB3's
zip) has no business in it, signed or not.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from repositories.errors import InvalidInputError, NotFoundError
from repositories.serialization import CODE_FORMATS, CheckpointBytes
from repositories.tracking import (
    AnyTracking,
    DeployedCheckpoint,
    RunKind,
    RunTrackingService,
    find_run,
)
from suho.inference.signature import FeatureSignature, Tabular, as_frame
from suho_models.db import Database
from suho_models.enums import DeploymentStatus, ModelFormat, TaskType

STAGES = (DeploymentStatus.STAGING.value, DeploymentStatus.PRODUCTION.value)


@dataclass
class SupervisedModel:
    """A gradient-boosted model with the feature signature of its run."""

    kind: ClassVar[str] = "supervised"  # RunKind value
    checkpoint: Any
    run: Any
    booster: Any
    model: Any
    signature: FeatureSignature

    @property
    def checkpoint_id(self) -> uuid.UUID:
        return uuid.UUID(str(self.checkpoint.checkpoint_id))

    @property
    def run_id(self) -> uuid.UUID:
        return uuid.UUID(str(self.run.run_id))

    @property
    def task(self) -> TaskType:
        return TaskType(self.run.task_type)

    @property
    def features(self) -> list[str]:
        return list(self.signature.features)

    @property
    def time_column(self) -> str:
        return str(self._spec().get("time_column") or "time")

    @property
    def symbol_column(self) -> str:
        return str(self._spec().get("symbol_column") or "symbol")

    def _spec(self) -> dict[str, Any]:
        config = json.loads(self.run.config_json or "{}")
        spec = config.get("features") if isinstance(config, dict) else None
        return spec if isinstance(spec, dict) else {}

    def scores(self, data: Tabular) -> np.ndarray:
        """The booster's own output: P(class 1) for classification, else the value
        (what the trainer evaluated its test split with)."""
        X = self.signature.matrix(data)
        return np.asarray(self.booster.predict(self.model, X, self.task), dtype=np.float64)

    def predict(self, data: Tabular) -> np.ndarray:
        """Class labels (0/1, threshold 0.5 as the trainer's metrics) or values."""
        scores = self.scores(data)
        if self.task is TaskType.CLASSIFICATION:
            return (scores >= 0.5).astype(np.int64)
        return scores

    def predict_proba(self, data: Tabular) -> np.ndarray:
        """P(class 1) per row (classification models only)."""
        if self.task is not TaskType.CLASSIFICATION:
            raise InvalidInputError(
                f"model {self.checkpoint.model_name}: a {self.task.value} model has no "
                "probabilities; use predict()"
            )
        return self.scores(data)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.checkpoint.model_name,
            "model_type": str(self.run.model_type),
            "task": self.task.value,
            "checkpoint_id": str(self.checkpoint_id),
            "run_id": str(self.run_id),
            "deployment_status": str(self.checkpoint.deployment_status),
            "format": self.checkpoint.format.value,
            "features": self.features,
        }


@dataclass
class AgentModel:
    """A deployed RL agent: :class:`~trainers.rl.deploy.DeployedAgent` plus the input
    contract of ``ml_features`` rows."""

    kind: ClassVar[str] = "rl"  # RunKind value
    agent: Any
    run: Any

    @property
    def checkpoint(self) -> Any:
        return self.agent.info

    @property
    def checkpoint_id(self) -> uuid.UUID:
        return uuid.UUID(str(self.agent.info.checkpoint_id))

    @property
    def run_id(self) -> uuid.UUID:
        return uuid.UUID(str(self.run.run_id))

    @property
    def tickers(self) -> list[str]:
        return [str(t) for t in self.run.tickers]

    @property
    def indicators(self) -> list[str]:
        env = self.agent.env_config_json
        data = json.loads(env) if isinstance(env, str) else (env or {})
        return [str(i) for i in data.get("tech_indicator_list", [])]

    @property
    def time_column(self) -> str:
        return str(self.agent.config.features.time_column)

    @property
    def symbol_column(self) -> str:
        return str(self.agent.config.features.symbol_column or "symbol")

    @property
    def signature(self) -> FeatureSignature:
        from trainers.data.synth import OHLCV_COLUMNS

        values = tuple(dict.fromkeys([*OHLCV_COLUMNS, *self.indicators]))
        return FeatureSignature(values, allow_nan=False)

    def act(self, states: Any) -> np.ndarray:
        """Greedy actions for FinRL raw states (one state, or one per row): exactly
        :meth:`DeployedAgent.predict`, the stored observation scaling applied."""
        x = np.asarray(states, dtype=np.float64)
        if x.size == 0:
            raise InvalidInputError("states: no rows to act on")
        if not np.isfinite(x).all():
            raise InvalidInputError("states: NaN or infinite values; the agent cannot take them")
        try:
            return np.asarray(self.agent.predict(x))
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None

    def act_on_features(self, rows: Tabular) -> pd.DataFrame:
        """Trade greedily over ``ml_features`` rows (every run ticker on every time) from
        a fresh account, as the run's evaluation did: one row per (time, symbol) with
        the action taken on observing that time (the last time only closes)."""
        frame = as_frame(rows)
        time, symbol = self.time_column, self.symbol_column
        for column in (time, symbol):
            if len(frame) and column not in frame.columns:
                raise InvalidInputError(f"input: missing column {column!r} (time and symbol)")
        values = self.signature.check(frame)  # names and types, before anything else
        self.signature.matrix(values)  # NaN / inf
        frame = frame[frame[symbol].astype(str).isin(self.tickers)].copy()
        frame[time] = pd.to_datetime(frame[time], utc=True)
        have = frame.groupby(time)[symbol].nunique()
        if frame.empty or len(have) < 2:
            raise InvalidInputError(
                f"input: the agent trades {', '.join(self.tickers)} and needs rows for "
                "all of them on at least 2 times"
            )
        if (have < len(self.tickers)).any():
            at = have[have < len(self.tickers)].index[0]
            seen = set(frame.loc[frame[time] == at, symbol].astype(str))
            lacking = sorted(set(self.tickers) - seen)
            raise InvalidInputError(f"input: no row for {', '.join(lacking)} at {at}")
        from trainers.rl.evaluation import run_episode
        from trainers.rl.finrl_env import MarketData, to_finrl_frame

        data = to_finrl_frame(frame, self.indicators, time, symbol)
        market = MarketData(
            train=data, trade=data, tickers=self.tickers, indicators=self.indicators
        )
        env = self.agent.make_env(data, market)
        _, _, actions, _ = run_episode(self.agent.model, env)
        days = pd.Index(data["date"].unique())[: len(actions)]
        return pd.DataFrame(
            {
                "timestamp": np.repeat(pd.DatetimeIndex(days, tz="UTC"), len(self.tickers)),
                "symbol": np.tile(self.tickers, len(days)),
                "action": np.asarray(actions, dtype=np.float64).reshape(-1),
            }
        )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": str(self.agent.info.agent_type),
            "agent_type": str(self.agent.info.agent_type),
            "checkpoint_id": str(self.checkpoint_id),
            "run_id": str(self.run_id),
            "deployment_status": str(self.agent.info.deployment_status),
            "format": self.agent.info.format.value,
            "tickers": self.tickers,
            "features": list(self.signature.features),
        }


LoadedModel = SupervisedModel | AgentModel


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def resolve(
    db: Database, name_or_run_id: str, stage: str = "production", *, store: Any = None
) -> tuple[RunKind, DeployedCheckpoint[Any, Any]]:
    """Which checkpoint ``name_or_run_id`` means: a run's final checkpoint, or the one a
    model name / agent type has in ``stage``; its bytes verified."""
    if str(stage) not in STAGES:
        raise InvalidInputError(f"stage: expected one of {', '.join(STAGES)} (got {stage!r})")
    ref = str(name_or_run_id).strip()
    if not ref:
        raise InvalidInputError("model: a model name, agent type or run id is required")
    run_id = _as_uuid(ref)
    if run_id is not None:
        kind, run = find_run(db, run_id)
        service = RunTrackingService(db, kind, store=store)
        info = service.final_checkpoint(run.run_id)
        if info is None:
            raise NotFoundError(f"run {run_id} has no checkpoint")
        _refuse_code(info.format, info.checkpoint_id)
        return kind, DeployedCheckpoint(info, service.load_checkpoint(info.checkpoint_id), run)
    elsewhere: list[str] = []
    for kind in RunKind:
        service = RunTrackingService(db, kind, store=store)
        try:
            found = service.deployed(ref, stage)
        except NotFoundError:
            other = next(s for s in STAGES if s != stage)
            if _has_deployed(service, ref, other):
                elsewhere.append(other)
            continue
        _refuse_code(found.info.format, found.info.checkpoint_id)
        return kind, found
    hint = f" (it has one in {elsewhere[0]})" if elsewhere else ""
    raise NotFoundError(
        f"model: no model or agent named {ref!r} has a checkpoint in {stage}{hint}; "
        "deploy one with `suho checkpoints deploy` or pass a run id"
    )


def _has_deployed(service: AnyTracking, name: str, stage: str) -> bool:
    try:
        service.deployed(name, stage)
    except NotFoundError:
        return False
    return True


def _refuse_code(fmt: ModelFormat, checkpoint_id: Any) -> None:
    if ModelFormat(fmt) in CODE_FORMATS:
        raise InvalidInputError(
            f"checkpoint {checkpoint_id}: {ModelFormat(fmt).value} runs code when loaded; "
            "inference loads only data-only formats (xgboost_ubjson, xgboost_json, "
            "lightgbm_text, catboost_cbm, sb3_state): retrain or re-save it in one"
        )


def from_checkpoint(
    kind: RunKind, found: DeployedCheckpoint[Any, Any], device: str = "cpu"
) -> LoadedModel:
    """A live model from a resolved checkpoint."""
    data: CheckpointBytes = found.data
    if kind is RunKind.SUPERVISED:
        from trainers.supervised.boosters import booster_for

        run = found.run
        booster = booster_for(run.model_type)
        model = booster.from_bytes(data, found.info.format, TaskType(run.task_type))
        features = tuple(str(f) for f in run.features_used)
        if not features:
            raise InvalidInputError(f"run {run.run_id}: no features_used recorded")
        return SupervisedModel(found.info, run, booster, model, FeatureSignature(features))
    from trainers.rl.deploy import DeployedAgent

    agent = DeployedAgent.from_checkpoint(found.info, data, found.run, device=device)
    return AgentModel(agent, found.run)


def load_model(
    name_or_run_id: str | uuid.UUID,
    stage: str = "production",
    *,
    db: Database | None = None,
    store: Any = None,
    device: str = "cpu",
) -> LoadedModel:
    """The model or agent named ``name_or_run_id`` in ``stage`` (a model name, an agent
    type such as ``ppo``, or a run id for that run's final checkpoint).

    ``db`` defaults to the configured database (``SUHO_DATABASE_URL`` / settings).
    """
    own = db is None
    database = db if db is not None else _default_database()
    try:
        kind, found = resolve(database, str(name_or_run_id), stage, store=store)
        return from_checkpoint(kind, found, device)
    finally:
        if own:
            database.close()


def _default_database() -> Database:
    from suho_models.settings import get_settings

    db = Database(get_settings().resolved_database_url())
    db.verify_schema()
    return db


__all__ = [
    "AgentModel",
    "LoadedModel",
    "SupervisedModel",
    "from_checkpoint",
    "load_model",
    "resolve",
]
