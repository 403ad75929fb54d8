"""The registry of run kinds, trainer layer: per kind, its configuration class, the
run row a configuration makes, its data preparation, its study and its final
training, and how its model is loaded back. The tuning workers (and the CLI) look
these up instead of branching on the kind; the facts of the kind's tables are in
:mod:`repositories.kinds`.

The heavy trainer modules (SB3 and torch for RL) are imported by the functions that
need them, so a supervised worker never loads torch.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from repositories.kinds import RL, SUPERVISED, AnyProfile, RunKind, profile_of
from repositories.tracking import AnyTracking
from suho_models.db import Database
from trainers.study import StudySpec

if TYPE_CHECKING:
    from trainers.baselines import Comparison
    from trainers.rl.trainer import AgentTracking
    from trainers.supervised.trainer import SupervisedTracking

OnTrial = Callable[[int], None] | None


@dataclass(frozen=True)
class TrainerKind:
    """What the trainer layer knows about one kind of run."""

    data: AnyProfile
    """The kind's facts in the data layer (tables, objective, series)."""
    config_class: Callable[[], type[BaseModel]]
    run_fields: Callable[[Any], dict[str, Any]]
    """The run row a configuration makes."""
    prepare: Callable[[Any, Database, AnyTracking, uuid.UUID], None]
    """Load the run's data once and store what every tuning worker reads back
    (bad data fails here, not in W workers)."""
    study_spec: Callable[[Any, Database, AnyTracking, uuid.UUID, OnTrial], StudySpec]
    """The run's study (objective, trial logging, options) for one worker."""
    finish: Callable[[Any, Database, AnyTracking, uuid.UUID], None]
    """Train the best trial and complete the run: the trainer's own path."""
    threads: Callable[[Any], contextlib.AbstractContextManager[None]]
    """The compute threads a worker trains with."""
    load_run: Callable[[Database, uuid.UUID], object]
    """The run's final model, live (checksum-verified)."""
    comparisons: Callable[[Any, Mapping[str, float | None]], list[Comparison]]
    """(run, metrics) -> the model's figures beside its naive baselines', headline
    first (:mod:`trainers.baselines`)."""

    def config(self, config_json: str) -> Any:
        """A stored run's configuration."""
        return self.config_class().model_validate_json(config_json)


# --------------------------------------------------------------------------- supervised
def _supervised_config() -> type[BaseModel]:
    from trainers.supervised.config import SupervisedConfig

    return SupervisedConfig


def _supervised_fields(config: Any) -> dict[str, Any]:
    from trainers.supervised.trainer import run_fields

    return run_fields(config)


def _supervised_trainer(config: Any, db: Database, tracking: AnyTracking | None = None) -> Any:
    from trainers.supervised.trainer import SupervisedTrainer

    quiet = config.model_copy(update={"progress": False})
    return SupervisedTrainer(quiet, db, tracking=cast("SupervisedTracking | None", tracking))


def _supervised_prepare(
    config: Any, db: Database, tracking: AnyTracking, run_id: uuid.UUID
) -> None:
    _supervised_trainer(config, db, tracking).inputs(run_id, select=True)


def _supervised_spec(
    config: Any, db: Database, tracking: AnyTracking, run_id: uuid.UUID, on_trial: OnTrial
) -> StudySpec:
    from trainers.supervised.tuning import study_spec

    trainer = _supervised_trainer(config, db, tracking)
    inputs = trainer.inputs(run_id, select=False, store=False)
    train = inputs.split.train
    return study_spec(
        trainer.booster,
        train[inputs.features].to_numpy(dtype=float),
        train[config.target].to_numpy(),
        train[inputs.roles.time].to_numpy(),
        trainer.config,
        inputs.task,
        run_id,
        tracking,
        on_trial,
    )


def _supervised_finish(config: Any, db: Database, tracking: AnyTracking, run_id: uuid.UUID) -> None:
    _supervised_trainer(config, db, tracking)._train(run_id)


@contextlib.contextmanager
def _no_threads(config: Any) -> Iterator[None]:
    yield


def _supervised_load(db: Database, run_id: uuid.UUID) -> object:
    from trainers.supervised.inference import load_run_model

    return load_run_model(db, run_id)


def _supervised_comparisons(run: Any, metrics: Mapping[str, float | None]) -> list[Comparison]:
    from trainers.baselines import supervised_comparisons

    task = getattr(run.task_type, "value", run.task_type) or "classification"
    return supervised_comparisons(str(task), metrics)


# --------------------------------------------------------------------------- RL
def _rl_config() -> type[BaseModel]:
    from trainers.rl.config import RLConfig

    return RLConfig


def _rl_fields(config: Any) -> dict[str, Any]:
    from trainers.rl.trainer import run_fields

    return run_fields(config)


def _rl_trainer(config: Any, db: Database, tracking: AnyTracking | None = None) -> Any:
    from trainers.rl.trainer import RLTrainer

    return RLTrainer(config, db, tracking=cast("AgentTracking | None", tracking))


def _rl_prepare(config: Any, db: Database, tracking: AnyTracking, run_id: uuid.UUID) -> None:
    trainer = _rl_trainer(config, db, tracking)
    trainer.market(tracking.get(run_id), config)


def _rl_spec(
    config: Any, db: Database, tracking: AnyTracking, run_id: uuid.UUID, on_trial: OnTrial
) -> StudySpec:
    from trainers.rl.tuning import study_spec

    market = _rl_trainer(config, db, tracking).market(tracking.get(run_id), config, store=False)
    return study_spec(config, market, run_id, tracking, on_trial)


def _rl_finish(config: Any, db: Database, tracking: AnyTracking, run_id: uuid.UUID) -> None:
    trainer = _rl_trainer(config, db, tracking)
    with _rl_threads(config):
        trainer._train(tracking.get(run_id), config, None)


@contextlib.contextmanager
def _rl_threads(config: Any) -> Iterator[None]:
    from trainers.rl.trainer import torch_threads

    with torch_threads(config.torch_threads):
        yield


def _rl_load(db: Database, run_id: uuid.UUID) -> object:
    from trainers.rl.deploy import load_run_agent

    return load_run_agent(db, run_id)


def _rl_comparisons(run: Any, metrics: Mapping[str, float | None]) -> list[Comparison]:
    from trainers.baselines import rl_comparisons

    return rl_comparisons(metrics)


# --------------------------------------------------------------------------- registry
TRAINERS: dict[RunKind, TrainerKind] = {
    SUPERVISED.kind: TrainerKind(
        data=SUPERVISED,
        config_class=_supervised_config,
        run_fields=_supervised_fields,
        prepare=_supervised_prepare,
        study_spec=_supervised_spec,
        finish=_supervised_finish,
        threads=_no_threads,
        load_run=_supervised_load,
        comparisons=_supervised_comparisons,
    ),
    RL.kind: TrainerKind(
        data=RL,
        config_class=_rl_config,
        run_fields=_rl_fields,
        prepare=_rl_prepare,
        study_spec=_rl_spec,
        finish=_rl_finish,
        threads=_rl_threads,
        load_run=_rl_load,
        comparisons=_rl_comparisons,
    ),
}


def trainer_kind(kind: RunKind | str) -> TrainerKind:
    """The trainer facts of ``kind``; a clear error for an unknown one."""
    return TRAINERS[profile_of(kind).kind]


__all__ = ["TRAINERS", "TrainerKind", "trainer_kind"]
