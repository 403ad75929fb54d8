"""A run's Optuna study as optuna-dashboard shows it, from the trials we store.

The trial tables keep each trial's effective parameters (JSON), state and objective,
not Optuna's distributions: the study is rebuilt in memory
(``optuna.create_study`` + ``add_trials``) with each *tuned* parameter's
distribution inferred from the values its trials took (a parameter that never
varies was fixed, not tuned). Numbers span ``[min, max]`` of their values (log
scale when positive and spanning two decades or more), anything else is
categorical. Hyperparameter importance is then Optuna's own
(``optuna.importance.get_param_importances``, fixed seed), cached per run, trial
count and evaluator: a finished study's importance is computed once.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from repositories.errors import InvalidInputError
from repositories.kinds import RunRecord
from repositories.tracking import AnyTracking
from suho_models.enums import TrialState

SEED = 0
"""The importance evaluators' seed: the same study gives the same importances."""
FANOVA_PAGE_LIMIT = 500
"""Past this many complete trials the study page asks for PED-ANOVA first: fANOVA's
cost grows with the trees' leaves (79 s at 1,000 trials on a loaded machine,
``bench/bench_ui_study.py``); it stays one click away, then cached."""
LOG_SPAN = 100.0
"""A positive parameter whose values span this factor is shown (and rebuilt) on a log scale."""


def _fanova() -> Any:
    from optuna.importance import FanovaImportanceEvaluator

    return FanovaImportanceEvaluator(seed=SEED)


def _mdi() -> Any:
    from optuna.importance import MeanDecreaseImpurityImportanceEvaluator

    return MeanDecreaseImpurityImportanceEvaluator(seed=SEED)


def _ped_anova() -> Any:
    from optuna.importance import PedAnovaImportanceEvaluator

    return PedAnovaImportanceEvaluator()


EVALUATORS: dict[str, Callable[[], Any]] = {
    "fanova": _fanova,  # Optuna's default
    "mean-decrease-impurity": _mdi,
    "ped-anova": _ped_anova,
}


@dataclass(frozen=True)
class StoredTrial:
    """One stored trial: its number, state, objective (None unless complete and
    finite), parameters and duration."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    duration_seconds: float


@dataclass(frozen=True)
class Parameter:
    """A tuned parameter: ``int``, ``float`` or ``categorical``, its range or choices."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] = field(default_factory=list)

    def distribution(self) -> Any:
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.kind == "int":
            return IntDistribution(int(self.low or 0), int(self.high or 0), log=self.log)
        if self.kind == "float":
            return FloatDistribution(float(self.low or 0), float(self.high or 0), log=self.log)
        return CategoricalDistribution(self.choices)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "choices": self.choices,
        }


def stored_trials(tracking: AnyTracking, run: RunRecord) -> list[StoredTrial]:
    """The run's trials in number order (one read)."""
    out = []
    for t in tracking.trials(run.run_id):
        value = tracking.objective(t)
        complete = t.state.value == TrialState.COMPLETE.value
        finite = value is not None and math.isfinite(value)
        params = json.loads(t.hyperparameters)
        out.append(
            StoredTrial(
                number=t.trial_number,
                state=t.state.value,
                value=value if complete and finite else None,
                params=params,
                duration_seconds=t.duration_seconds,
            )
        )
    return out


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def tuned_parameters(trials: Sequence[StoredTrial]) -> list[Parameter]:
    """Parameters whose value differs between trials, with inferred distributions."""
    values: dict[str, list[Any]] = {}
    for t in trials:
        for name, value in t.params.items():
            values.setdefault(name, []).append(value)
    out = []
    for name in sorted(values):
        seen = values[name]
        if not all(_scalar(v) for v in seen):
            continue  # a list or object: not a parameter Optuna samples
        distinct = {json.dumps(v) for v in seen}
        if len(distinct) < 2:
            continue
        if all(_number(v) for v in seen):
            low, high = min(seen), max(seen)
            log = low > 0 and high / low >= LOG_SPAN
            if all(isinstance(v, int) for v in seen):
                out.append(Parameter(name, "int", low, high, log and low >= 1))
            else:
                out.append(Parameter(name, "float", float(low), float(high), log))
        else:
            choices = sorted({v for v in seen if v is not None}, key=str)
            if any(v is None for v in seen):
                choices.append(None)
            out.append(Parameter(name, "categorical", choices=choices))
    return out


def rebuild(trials: Sequence[StoredTrial], parameters: Sequence[Parameter], direction: str) -> Any:
    """An in-memory Optuna study holding the stored trials (complete, pruned and
    failed), each with the tuned parameters it has."""
    import optuna
    from optuna.trial import TrialState as OptunaState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=optuna.study.StudyDirection[direction.upper()])
    distributions = {p.name: p.distribution() for p in parameters}
    states = {"pruned": OptunaState.PRUNED, "failed": OptunaState.FAIL}
    frozen = []
    for t in trials:
        if t.value is None and t.state not in states:
            continue  # complete but not finite: Optuna cannot hold it as complete
        params = {k: v for k, v in t.params.items() if k in distributions}
        frozen.append(
            optuna.trial.create_trial(
                state=OptunaState.COMPLETE if t.value is not None else states[t.state],
                value=t.value,
                params=params,
                distributions={k: distributions[k] for k in params},
            )
        )
    study.add_trials(frozen)
    return study


def history(trials: Sequence[StoredTrial], direction: str) -> dict[str, list[Any]]:
    """Complete trials' objectives by trial number; the best so far at every trial
    from the first complete one on (pruned and failed trials carry it), as Optuna's
    ``plot_optimization_history`` draws it."""
    better = max if direction == "maximize" else min
    xs, values, best_xs, best = [], [], [], []
    current: float | None = None
    for t in trials:
        if t.value is not None:
            current = t.value if current is None else better(current, t.value)
            xs.append(t.number)
            values.append(t.value)
        if current is not None:
            best_xs.append(t.number)
            best.append(current)
    return {"trial": xs, "value": values, "best_trial": best_xs, "best": best}


def study_view(tracking: AnyTracking, run: RunRecord) -> dict[str, Any]:
    """What the study page draws: trials, tuned parameters, history, best trial;
    cached per run and trial count (a finished study is read once)."""
    count = len(tracking.finished_trials(run.run_id))  # one narrow read
    return VIEWS.get((str(run.run_id), count, ""), lambda: _study_view(tracking, run))


def _study_view(tracking: AnyTracking, run: RunRecord) -> dict[str, Any]:
    trials = stored_trials(tracking, run)
    direction = tracking.profile.direction
    parameters = tuned_parameters(trials)
    complete = [t for t in trials if t.value is not None]
    better = max if direction == "maximize" else min
    best = better(complete, key=lambda t: t.value or 0.0) if complete else None
    return {
        "run_id": str(run.run_id),
        "objective": tracking.objective_column,
        "direction": direction,
        "count": len(trials),
        "complete": len(complete),
        "parameters": [p.as_json() for p in parameters],
        "trials": [
            {
                "number": t.number,
                "state": t.state,
                "value": t.value,
                "params": t.params,
                "duration_seconds": t.duration_seconds,
            }
            for t in trials
        ],
        "history": history(trials, direction),
        "best": None if best is None else {"number": best.number, "value": best.value},
    }


V = TypeVar("V")


class StudyCache(Generic[V]):
    """Values by (run, trial count, evaluator): a study's view and importance change
    only when a trial is added. Small and bounded; safe across request threads."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, int, str], V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, str], compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


CACHE: StudyCache[dict[str, float]] = StudyCache()
VIEWS: StudyCache[dict[str, Any]] = StudyCache(16)


def importance(tracking: AnyTracking, run: RunRecord, evaluator: str = "fanova") -> dict[str, Any]:
    """Optuna's hyperparameter importance of the run's study (normalised, largest
    first); empty with fewer than two complete trials or nothing tuned."""
    if evaluator not in EVALUATORS:
        names = ", ".join(EVALUATORS)
        raise InvalidInputError(f"evaluator: expected one of {names} (got {evaluator!r})")
    count = len(tracking.finished_trials(run.run_id))  # the key, without the trials
    direction = tracking.profile.direction

    def compute() -> dict[str, float]:
        trials = stored_trials(tracking, run)
        parameters = tuned_parameters(trials)
        if sum(t.value is not None for t in trials) < 2 or not parameters:
            return {}
        import optuna

        study = rebuild(trials, parameters, direction)
        found = optuna.importance.get_param_importances(study, evaluator=EVALUATORS[evaluator]())
        return {k: float(v) for k, v in found.items()}

    values = CACHE.get((str(run.run_id), count, evaluator), compute)
    return {
        "run_id": str(run.run_id),
        "evaluator": evaluator,
        "seed": SEED,
        "trials": count,
        "importances": [{"name": k, "importance": v} for k, v in values.items()],
    }
