"""The supervised training service, following the seed's workflow:

create training_run -> log training_metrics per iteration -> tune
(hyperparameters_log) -> save the final model (model_checkpoints, kind
``final``) -> update the run with final metrics. Runs are tracked through
``RunTrackingService``: ``running`` (with heartbeats) while it trains; any
exception marks it ``failed`` (and re-raises), Ctrl-C and SIGTERM ``cancelled``.

The cross-validation scores are stored with every intermediate checkpoint
(``cv_fold_<k>_loss``), so a resumed run reuses them instead of running the
folds again.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from repositories.checkpoints import ModelCheckpointInfo
from repositories.kinds import SUPERVISED
from repositories.records import TrainingRun, Trial
from repositories.series import MetricLogger
from repositories.tracking import RunTrackingService, SeriesNotStoredError
from suho_models.db import Database
from suho_models.enums import CheckpointKind, TaskType
from trainers.baselines import supervised_baselines, supervised_verdict
from trainers.data.source import known_bars, load_features
from trainers.data.spec import ResolvedColumns
from trainers.data.split import Split, chronological_split, split_fields
from trainers.progress import Progress
from trainers.supervised.boosters import Booster, booster_for
from trainers.supervised.config import SupervisedConfig
from trainers.supervised.metrics import evaluate
from trainers.supervised.selection import select_features
from trainers.supervised.tuning import cross_validate, tune
from trainers.supervised.walk_forward import walk_forward_folds
from trainers.walk_forward import describe_walk_forward, fold_means, log_folds, summarise

log = logging.getLogger(__name__)

SupervisedTracking = RunTrackingService[TrainingRun, ModelCheckpointInfo, Trial, MetricLogger]


def run_fields(config: SupervisedConfig) -> dict[str, Any]:
    """The run row a configuration makes (before training fills in the rest)."""
    return {
        "run_name": config.run_name or f"{config.resolved_model_name}-{int(time.time())}",
        "model_type": config.model_type,
        "task_type": config.task or TaskType.CLASSIFICATION,
        "target_variable": config.target,
        "train_ratio": config.split_ratios[0],
        "val_ratio": config.split_ratios[1],
        "test_ratio": config.split_ratios[2],
        "config_json": config.model_dump_json(),
    }


@dataclass
class Inputs:
    """A run's data as training sees it: the split, the roles, the features, the task."""

    split: Split
    roles: ResolvedColumns
    features: list[str]
    task: TaskType


def infer_task(y: pd.Series) -> TaskType:
    values = pd.unique(y.dropna())
    binary_dtype = pd.api.types.is_integer_dtype(y) or pd.api.types.is_bool_dtype(y)
    if binary_dtype and set(values.tolist()) <= {0, 1}:
        return TaskType.CLASSIFICATION
    return TaskType.REGRESSION


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
    walk_forward: dict[str, float] = field(default_factory=dict)
    """``walk_forward_<metric>_mean`` / ``_std`` (empty without ``--walk-forward``)."""


class SupervisedTrainer:
    """``SupervisedTrainer(config, db).run()`` trains, tracks and returns the run."""

    def __init__(
        self,
        config: SupervisedConfig,
        db: Database | None = None,
        *,
        tracking: SupervisedTracking | None = None,
    ) -> None:
        self.config = config
        self.db = db or Database()
        self.tracking: SupervisedTracking = tracking or RunTrackingService(self.db, SUPERVISED)
        self.booster = booster_for(config.model_type)
        self.progress = Progress(config.progress)

    # ------------------------------------------------------------------ public
    def run(self) -> TrainingResult:
        run = self.tracking.create(run_fields(self.config))
        self.tracking.start(run.run_id)
        with self.tracking.guard(run.run_id):
            return self._train(run.run_id)

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
        tracking = RunTrackingService(db, SUPERVISED)
        run, latest = tracking.resume(run_id, require_state=True)
        with tracking.guard(run.run_id):
            config = SupervisedConfig.model_validate_json(run.config_json)
            if progress is not None:
                config = config.model_copy(update={"progress": progress})
            return cls(config, db, tracking=tracking)._train(run.run_id, latest)

    # ------------------------------------------------------------------ steps
    def inputs(self, run_id: uuid.UUID | str, *, select: bool, store: bool = True) -> Inputs:
        """Load and split the run's data; ``select`` chooses the features, else the
        run's stored ones are used (a resumed model, or a tuning worker, reads what was
        chosen once). ``store``: record the task, split and chosen features on the run
        (a tuning worker, one of many, writes nothing)."""
        config = self.config
        frame, roles = load_features(
            config.source, config.features, self.db, config.start, config.end, config.symbols
        )
        task = config.task or infer_task(frame[config.target])
        bars = known_bars(config.source, config.features, self.db, frame, roles)
        split = chronological_split(frame, roles.time, config.split_ratios)
        if store:
            self.tracking.update(run_id, task_type=task, **split_fields(split))
            if bars is not None and bars.bar is not None and config.bar_size is None:
                self._record(run_id, bar_size=bars.bar.label, calendar=bars.calendar)
        if select:
            y_train = split.train[config.target].to_numpy()
            features = select_features(
                split.train[roles.features], y_train, config.selection, task, config.seed
            )
            if store:
                self.tracking.update(run_id, features_used=features)
        else:  # the model was trained on these, in this order
            features = list(self.tracking.get(run_id).features_used)
        return Inputs(split, roles, features, task)

    def _record(self, run_id: uuid.UUID | str, **fields: Any) -> None:
        """Settings the data decided, recorded in the run's configuration."""
        self.config = self.config.model_copy(update=fields)
        self.tracking.update(run_id, config_json=self.config.model_dump_json())

    def _train(
        self, run_id: uuid.UUID, resume_from: ModelCheckpointInfo | None = None
    ) -> TrainingResult:
        config = self.config
        inputs = self.inputs(run_id, select=resume_from is None)
        split, roles, features, task = inputs.split, inputs.roles, inputs.features, inputs.task
        y_train = split.train[config.target].to_numpy()
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
                    self.tracking,
                    on_trial=lambda _n: advance(),
                )
        cv_scores = _stored_cv_scores(resume_from, config.cv_folds)
        if cv_scores is None:
            cv_scores = cross_validate(
                self.booster, X_train, y_train, train_times, config, task, params
            )

        init_model, done = None, 0
        if resume_from is not None:
            init_model = self.booster.from_bytes(
                self.tracking.load_checkpoint(resume_from.checkpoint_id),
                resume_from.format,
                task,
            )
            done = resume_from.step

        with (
            self.tracking.open_series(run_id, resume_from) as logger,
            self.progress.task("training", config.rounds) as advance,
        ):
            advance(done)

            def on_snapshot(iteration: int, data: bytes) -> None:
                # Metrics up to the checkpoint must be durable before it exists:
                # a resume starts from it and keeps the rows before it.
                try:
                    self.tracking.save_checkpoint(
                        run_id,
                        data,
                        self.booster.native_format,
                        _cv_metrics(cv_scores),
                        iteration=iteration,
                        kind=CheckpointKind.INTERMEDIATE,
                        model_name=config.resolved_model_name,
                        flush=logger,
                    )
                except SeriesNotStoredError as exc:
                    log.warning("%s (iteration %d)", exc, iteration)
                    return
                self.tracking.prune(run_id, keep_last=config.keep_checkpoints)

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
        kind = TaskType(task).value
        baselines = supervised_baselines(kind, y_train, split.test, config.target, roles.symbol)
        comparison = {**{f"test_{k}": v for k, v in test_m.items()}, **baselines}
        log.info("run %s: %s", run_id, supervised_verdict(kind, comparison))
        walk_forward = {}
        if config.walk_forward is not None:
            walk_forward = self._walk_forward(run_id, inputs, params, model)
            comparison.update(walk_forward)
        checkpoint_id = self._save(run_id, model, val_m, train_m, cv_scores, comparison)
        final = _final_metrics(task, train_m, val_m, test_m)
        run = self.tracking.complete(run_id, final)
        return TrainingResult(
            run,
            model,
            self.booster,
            features,
            params,
            test_m,
            checkpoint_id,
            cv_scores,
            split,
            walk_forward,
        )

    def _walk_forward(
        self, run_id: uuid.UUID, inputs: Inputs, params: dict[str, Any], model: Any
    ) -> dict[str, float]:
        """K folds over the whole data; each fold's figures go to the run's metrics
        (``walk_forward/*``), their mean and spread to the final checkpoint."""
        wf = self.config.walk_forward
        assert wf is not None
        split = inputs.split
        with self.progress.task("walk-forward", wf.folds) as advance:
            folds = walk_forward_folds(
                self.booster,
                pd.concat([split.train, split.val, split.test]),
                time=inputs.roles.time,
                symbol=inputs.roles.symbol,
                features=inputs.features,
                target=self.config.target,
                task=inputs.task,
                params=params,
                rounds=max(1, self.booster.n_iterations(model)),
                config=wf,
                on_fold=lambda: advance(),
            )
        with self.tracking.metric_logger(run_id) as logger:
            log_folds(logger, folds)
        summary = summarise(folds)
        verdict = supervised_verdict(TaskType(inputs.task).value, fold_means(summary))
        log.info("run %s: %s; mean over folds: %s", run_id, describe_walk_forward(summary), verdict)
        return summary

    def _save(
        self,
        run_id: Any,
        model: Any,
        val_m: dict[str, float],
        train_m: dict[str, float],
        cv_scores: list[float],
        comparison: dict[str, float] | None = None,
    ) -> Any:
        fmt = self.config.model_format or self.booster.native_format
        data = self.booster.to_bytes(model, fmt)
        metrics: dict[str, float | None] = {f"val_{k}": v for k, v in val_m.items()}
        metrics.update({f"train_{k}": v for k, v in train_m.items()})
        metrics["cv_mean_loss"] = float(np.mean(cv_scores)) if cv_scores else None
        metrics.update(comparison or {})  # test figures and the baselines on the same rows
        checkpoint = self.tracking.save_checkpoint(
            run_id,
            data,
            fmt,
            metrics,
            iteration=self.booster.n_iterations(model),
            kind=CheckpointKind.FINAL,
            model_name=self.config.resolved_model_name,
        )
        return checkpoint.checkpoint_id


def _cv_metrics(scores: list[float]) -> dict[str, float]:
    return {f"cv_fold_{k}_loss": float(v) for k, v in enumerate(scores, start=1)}


def _stored_cv_scores(checkpoint: Any, folds: int) -> list[float] | None:
    """The fold scores a resumed run's checkpoint carries (None: not all of them)."""
    if checkpoint is None:
        return None
    scores = [checkpoint.metrics.get(f"cv_fold_{k}_loss") for k in range(1, folds + 1)]
    return None if any(v is None for v in scores) else [float(v) for v in scores]


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
