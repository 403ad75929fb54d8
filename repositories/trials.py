"""Tuning trials of supervised and RL runs.

Trials are keyed by (run_id, trial_number): logging the same trial again, as a
resumed study does, replaces it instead of adding a second row.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

from pydantic import BaseModel

from repositories.base import Repository, utcnow
from repositories.errors import InvalidInputError, as_uuid, validate
from repositories.records import RLTrial, RLTrialCreate, Trial, TrialCreate
from repositories.runs import AgentRunRepository, TrainingRunRepository
from suho_models import HyperparameterTrial, RLHyperparameterTrial
from suho_models.db import Database
from suho_models.enums import TrialState

TrialT = TypeVar("TrialT", Trial, RLTrial)


class TrialRepository(Repository[TrialT], Generic[TrialT]):
    create_record: ClassVar[type[BaseModel]]
    run_repository: ClassVar[type[TrainingRunRepository | AgentRunRepository]]
    objective_column: ClassVar[str]

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.runs = self.run_repository(db)

    def log(self, run_id: uuid.UUID | str, trial: BaseModel | Mapping[str, Any]) -> TrialT:
        spec = validate(self.create_record, trial)
        key = self.runs.require(run_id)
        row = {**spec.model_dump(), **self._extra_columns(spec)}
        row.update(trial_id=uuid.uuid4(), run_id=key, recorded_at=utcnow())
        record = validate(self.record, row)
        self._insert_rows([self._to_row(record)])
        return record

    def _extra_columns(self, spec: BaseModel) -> dict[str, Any]:
        return {}

    def list(self, run_id: uuid.UUID | str) -> list[TrialT]:
        c = self.table.c
        return self._list(c.run_id == as_uuid(run_id, "run_id"), order_by=[c.trial_number])

    def best(
        self,
        run_id: uuid.UUID | str,
        n: int = 5,
        direction: Literal["maximize", "minimize"] = "maximize",
    ) -> builtins.list[TrialT]:
        """The ``n`` best complete trials of a run's study."""
        if direction not in ("maximize", "minimize"):
            raise InvalidInputError(f"direction: must be maximize or minimize (got {direction!r})")
        c = self.table.c
        objective = c[self.objective_column]
        return self._list(
            c.run_id == as_uuid(run_id, "run_id"),
            c.state == TrialState.COMPLETE.value,
            objective.isnot(None),
            order_by=[
                objective.desc() if direction == "maximize" else objective.asc(),
                c.trial_number,
            ],
            limit=n,
        )

    def finished_numbers(self, run_id: uuid.UUID | str) -> set[int]:
        """Trial numbers already logged: a resumed study skips them."""
        c = self.table.c
        rows = self._select(c.run_id == as_uuid(run_id, "run_id"), columns=[c.trial_number])
        return {int(r["trial_number"]) for r in rows}


class HyperparameterTrialRepository(TrialRepository[Trial]):
    model = HyperparameterTrial
    record = Trial
    create_record = TrialCreate
    run_repository = TrainingRunRepository
    objective_column = "objective_value"


class RLTrialRepository(TrialRepository[RLTrial]):
    model = RLHyperparameterTrial
    record = RLTrial
    create_record = RLTrialCreate
    run_repository = AgentRunRepository
    objective_column = "mean_reward"

    def _extra_columns(self, spec: BaseModel) -> dict[str, Any]:
        # ``spec`` was validated as ``create_record``.
        return cast(RLTrialCreate, spec).column_params()


def parse_hyperparameters(trial: Trial | RLTrial) -> dict[str, Any]:
    # ``JsonObject`` guarantees a JSON object.
    return cast(dict[str, Any], json.loads(trial.hyperparameters))
