"""The supervised training service, following the seed's workflow:

create training_run -> log training_metrics per iteration -> tune
(hyperparameters_log) -> save the best model (model_checkpoints) -> update the
run with final metrics. The run is ``running`` while it trains; any exception
marks it ``failed`` (and re-raises), Ctrl-C marks it ``cancelled``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from repositories.checkpoints import ModelCheckpointRepository
from repositories.errors import InvalidTransitionError, NotFoundError
from repositories.records import TrainingRun
from repositories.runs import TrainingRunRepository
from repositories.series import TrainingMetricRepository
from repositories.trials import HyperparameterTrialRepository
from suho_models.db import Database
from suho_models.enums import RunStatus, TaskType
from trainers.data.source import load_features
from trainers.data.split import Split, chronological_split
from trainers.supervised.boosters import Booster, booster_for
from trainers.supervised.config import SupervisedConfig
from trainers.supervised.metrics import classification_metrics, regression_metrics
from trainers.supervised.selection import select_features
from trainers.supervised.tuning import cross_validate, tune


def infer_task(y: pd.Series) -> TaskType:
    values = pd.unique(y.dropna())
    binary_dtype = pd.api.types.is_integer_dtype(y) or pd.api.types.is_bool_dtype(y)
    if binary_dtype and set(values.tolist()) <= {0, 1}:
        return TaskType.CLASSIFICATION
    return TaskType.REGRESSION


def evaluate(task: TaskType, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    if task is TaskType.CLASSIFICATION:
        return classification_metrics(y, pred)
    return regression_metrics(y, pred)


@dataclass
class TrainingResult:
    """What a run produced, beyond its stored record."""

    run: TrainingRun
    model: Any
    booster: Booster
    features: list[str]
    params: dict[str, Any]
    test_metrics: dict[str, float]
    checkpoint_id: Any = None
    cv_scores: list[float] = field(default_factory=list)
    split: Split | None = None


class _Progress:
    """A rich progress bar that ``progress=False`` turns into nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Any]:
        if not self.enabled:
            yield lambda n=1: None
            return
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task_id = progress.add_task(description, total=total)
            yield lambda n=1: progress.advance(task_id, n)


class SupervisedTrainer:
    """``SupervisedTrainer(config, db).run()`` trains, tracks and returns the run."""

    def __init__(self, config: SupervisedConfig, db: Database | None = None) -> None:
        self.config = config
        self.db = db or Database()
        self.runs = TrainingRunRepository(self.db)  # verifies the schema: fail fast
        self.metrics = TrainingMetricRepository(self.db)
        self.trials = HyperparameterTrialRepository(self.db)
        self.booster = booster_for(config.model_type)
        self.checkpoints = ModelCheckpointRepository(self.db)
        self.progress = _Progress(config.progress)

    # ------------------------------------------------------------------ public
    def run(self) -> TrainingResult:
        config = self.config
        run = self.runs.create(
            {
                "run_name": config.run_name or f"{config.resolved_model_name}-{int(time.time())}",
                "model_type": config.model_type,
                "task_type": config.task or TaskType.CLASSIFICATION,
                "target_variable": config.target,
                "train_ratio": config.split_ratios[0],
                "val_ratio": config.split_ratios[1],
                "test_ratio": config.split_ratios[2],
                "config_json": config.model_dump_json(),
            }
        )
        self.runs.start(run.run_id)
        return self._guarded(run.run_id, None)

    @classmethod
    def resume(
        cls, run_id: Any, db: Database | None = None, *, progress: bool | None = None
    ) -> TrainingResult:
        """Continue a crashed or interrupted run from its latest checkpoint, or from
        its Optuna study when it was killed while tuning.

        The run's stored configuration is used. Iteration numbering continues;
        metric rows past the checkpoint are replaced by the re-trained ones. A
        completed run, or one without a checkpoint, is refused before anything is
        changed.
        """
        db = db or Database()
        runs = TrainingRunRepository(db)
        run = runs.get(run_id)
        if run.status in (RunStatus.COMPLETED, RunStatus.PENDING):
            raise InvalidTransitionError(
                f"run {run_id} is {run.status.value}: only a crashed, failed or cancelled "
                "run can be resumed"
            )
        latest = ModelCheckpointRepository(db).latest(run.run_id)
        if latest is None and not HyperparameterTrialRepository(db).list(run.run_id):
            # (Killed while tuning: no checkpoint yet, but the study resumes.)
            raise NotFoundError(f"run {run_id} has no checkpoint (or tuning trials) to resume from")
        config = SupervisedConfig.model_validate_json(run.config_json)
        if progress is not None:
            config = config.model_copy(update={"progress": progress})
        trainer = cls(config, db)
        runs.resume(run.run_id)
        return trainer._guarded(run.run_id, latest)

    def _guarded(self, run_id: Any, resume_from: Any) -> TrainingResult:
        """Train; any exception marks the run failed, Ctrl-C cancelled (re-raised)."""
        try:
            return self._train(run_id, resume_from)
        except KeyboardInterrupt:
            self.runs.cancel(run_id, "interrupted (KeyboardInterrupt)")
            raise
        except BaseException as exc:
            self.runs.fail(run_id, exc)
            raise

    # ------------------------------------------------------------------ steps
    def _train(self, run_id: Any, resume_from: Any = None) -> TrainingResult:
        config = self.config
        frame, roles = load_features(
            config.source, config.features, self.db, config.start, config.end, config.symbols
        )
        task = config.task or infer_task(frame[config.target])
        split = chronological_split(frame, roles.time, config.split_ratios)
        self.runs.update(run_id, task_type=task, **_split_fields(split))

        y_train = split.train[config.target].to_numpy()
        if resume_from is not None:  # the model was trained on these, in this order
            features = list(self.runs.get(run_id).features_used)
        else:
            features = select_features(
                split.train[roles.features], y_train, config.selection, task, config.seed
            )
            self.runs.update(run_id, features_used=features)

        X_train = split.train[features].to_numpy(dtype=float)
        X_val = split.val[features].to_numpy(dtype=float)
        X_test = split.test[features].to_numpy(dtype=float)
        y_val = split.val[config.target].to_numpy()
        y_test = split.test[config.target].to_numpy()
        train_times = split.train[roles.time].to_numpy()

        params = {**self.booster.default_params(task, config.seed), **config.params}
        if config.tuning.trials:
            with self.progress.task("tuning", config.tuning.trials) as advance:
                params = tune(
                    self.booster,
                    X_train,
                    y_train,
                    train_times,
                    config,
                    task,
                    run_id,
                    self.trials,
                    on_trial=lambda _n: advance(),
                )
        cv_scores = cross_validate(
            self.booster, X_train, y_train, train_times, config, task, params
        )

        init_model, done = None, 0
        if resume_from is not None:
            init_model = self.booster.from_bytes(
                self.checkpoints.load_checkpoint(resume_from.checkpoint_id),
                resume_from.format,
                task,
            )
            done = resume_from.step
            self.metrics.delete_after(run_id, done)

        with (
            self.metrics.logger(run_id) as logger,
            self.progress.task("training", config.rounds) as advance,
        ):
            advance(done)

            def on_snapshot(iteration: int, data: bytes) -> None:
                # Metrics up to the checkpoint must be durable before it exists:
                # a resume starts from it and keeps the rows before it.
                logger.flush()
                self.checkpoints.save_checkpoint(
                    run_id,
                    data,
                    self.booster.native_format,
                    {},
                    iteration=iteration,
                    kind="intermediate",
                    model_name=config.resolved_model_name,
                )
                self.checkpoints.prune(run_id, keep_last=config.keep_checkpoints)

            def on_iteration(iteration: int, values: dict[str, Any]) -> None:
                logger.log(iteration, **values)
                advance()

            model = self.booster.fit(
                X_train,
                y_train,
                X_val,
                y_val,
                task=task,
                params=params,
                rounds=config.rounds - done,
                early_stopping=config.early_stopping,
                on_iteration=on_iteration,
                init_model=init_model,
                snapshot_every=config.checkpoint_every,
                on_snapshot=on_snapshot,
            )

        predict = self.booster.predict
        train_m = evaluate(task, y_train, predict(model, X_train, task))
        val_m = evaluate(task, y_val, predict(model, X_val, task))
        test_m = evaluate(task, y_test, predict(model, X_test, task))
        checkpoint_id = self._save(run_id, model, val_m, train_m, cv_scores)
        final = _final_metrics(task, train_m, val_m, test_m)
        run = self.runs.complete(run_id, final)
        return TrainingResult(
            run, model, self.booster, features, params, test_m, checkpoint_id, cv_scores, split
        )

    def _save(
        self,
        run_id: Any,
        model: Any,
        val_m: dict[str, float],
        train_m: dict[str, float],
        cv_scores: list[float],
    ) -> Any:
        fmt = self.config.model_format or self.booster.native_format
        data = self.booster.to_bytes(model, fmt)
        metrics: dict[str, float | None] = {f"val_{k}": v for k, v in val_m.items()}
        metrics.update({f"train_{k}": v for k, v in train_m.items()})
        metrics["cv_mean_loss"] = float(np.mean(cv_scores)) if cv_scores else None
        checkpoint = self.checkpoints.save_checkpoint(
            run_id,
            data,
            fmt,
            metrics,
            iteration=self.booster.n_iterations(model),
            kind="best",
            model_name=self.config.resolved_model_name,
        )
        return checkpoint.checkpoint_id


def _split_fields(split: Split) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for part in ("train", "val", "test"):
        info = split.info[part]
        fields[f"{part}_rows"] = info.rows
        fields[f"{part}_start"] = info.start.to_pydatetime()
        fields[f"{part}_end"] = info.end.to_pydatetime()
    return fields


def _final_metrics(
    task: TaskType, train: dict[str, float], val: dict[str, float], test: dict[str, float]
) -> dict[str, float | None]:
    final: dict[str, float | None] = {
        "final_train_loss": train["loss"],
        "final_val_loss": val["loss"],
        "final_test_loss": test["loss"],
    }
    if task is TaskType.CLASSIFICATION:
        final.update(
            final_train_accuracy=train["accuracy"],
            final_val_accuracy=val["accuracy"],
            final_test_accuracy=test["accuracy"],
            final_f1_score=test["f1"],
            final_auc_score=test["auc"],
            final_precision=test["precision"],
            final_recall=test["recall"],
        )
    else:
        final.update(
            final_rmse=test["rmse"],
            final_mae=test["mae"],
            final_r2=test["r2"],
            final_direction_accuracy=test["direction_accuracy"],
        )
    return final
