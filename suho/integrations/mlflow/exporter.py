"""The exporter: one run of ours (its params, tags, config, series, trials and
checkpoints) into MLflow, idempotently (see :mod:`suho.integrations.mlflow`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repositories.checkpoints import FILE_EXTENSIONS
from repositories.errors import InvalidInputError
from repositories.kinds import PROFILES, CheckpointInfo, RunKind, RunRecord, TrialRecord
from repositories.tracking import AnyTracking, RunTrackingService, tracking_for_run
from suho.integrations import mlflow_models
from suho.integrations.mlflow.names import (
    ALIASES,
    CHECKPOINT_DIR,
    CHECKPOINT_TAG,
    CONFIG_ARTIFACT,
    CONFIG_HASH_TAG,
    METRICS_PER_BATCH,
    PARAMS_TAGS_PER_BATCH,
    PARENT_TAG,
    RUN_ID_TAG,
    STATUS_TO_MLFLOW,
    TRIAL_STATUS_TO_MLFLOW,
    TRIAL_TAG,
    as_float,
    chunks,
    flatten,
    import_mlflow,
    mlflow_key,
    ms,
)
from suho.kinds import presentation
from suho_models.db import Database
from suho_models.enums import (
    TERMINAL_STATUSES,
    CheckpointKind,
    DeploymentStatus,
    RunStatus,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- results
@dataclass
class ExportResult:
    """What one export of one run sent."""

    run_id: uuid.UUID
    kind: RunKind
    mlflow_run_id: str
    status: RunStatus
    created: bool = False
    params: int = 0
    tags: int = 0
    metric_points: int = 0
    trials_created: int = 0
    artifacts: int = 0
    model_versions: int = 0
    skipped_params: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": str(self.run_id),
            "kind": self.kind.value,
            "mlflow_run_id": self.mlflow_run_id,
            "status": self.status.value,
            "created": self.created,
            "params": self.params,
            "tags": self.tags,
            "metric_points": self.metric_points,
            "trials_created": self.trials_created,
            "artifacts": self.artifacts,
            "model_versions": self.model_versions,
        }


@dataclass
class _Row:
    """One step of a series: its number, time (ms) and values by MLflow key."""

    step: int
    timestamp: int
    values: dict[str, float | None]


# --------------------------------------------------------------------------- exporter
class MlflowExporter:
    """Exports runs of both kinds into one MLflow tracking server.

    ``include_intermediate``: also upload intermediate checkpoints (the live mirror
    does not: most are pruned minutes later, and MLflow cannot delete artifacts).
    ``artifact_location``: root of the artifacts of experiments this creates
    (default: the server's).
    """

    def __init__(
        self,
        db: Database,
        tracking_uri: str,
        *,
        experiment_prefix: str = "suho",
        all_steps: bool = False,
        include_intermediate: bool = True,
        artifact_location: str | None = None,
        client: Any = None,
        tracking: Mapping[RunKind, AnyTracking] | None = None,
    ) -> None:
        mlflow = import_mlflow()
        if not experiment_prefix or not isinstance(experiment_prefix, str):
            raise InvalidInputError(
                f"experiment_prefix: expected a non-empty name (got {experiment_prefix!r})"
            )
        self.db = db
        self.tracking_uri = tracking_uri
        self.prefix = experiment_prefix
        self.all_steps = all_steps
        self.include_intermediate = include_intermediate
        self.artifact_location = artifact_location
        self.client = client or mlflow.MlflowClient(
            tracking_uri=tracking_uri, registry_uri=tracking_uri
        )
        self._tracking = dict(tracking or {})
        self._experiments: dict[RunKind, str] = {}
        self._registry: bool | None = None

    # ------------------------------------------------------------------ selection
    def tracking_for(self, kind: RunKind) -> AnyTracking:
        if kind not in self._tracking:
            self._tracking[kind] = RunTrackingService(self.db, kind)
        return self._tracking[kind]

    def select(self, *, since: dt.datetime | None = None) -> list[tuple[RunKind, RunRecord]]:
        """Every run of every kind (created at or after ``since``), oldest first."""
        chosen: list[tuple[RunKind, RunRecord]] = []
        for kind in PROFILES:
            runs = self.tracking_for(kind).list_runs(
                created_from=since, descending=False, limit=None
            )
            chosen.extend((kind, run) for run in runs)
        return chosen

    def experiment_name(self, kind: RunKind) -> str:
        return f"{self.prefix}-{kind.value}"

    def experiment_id(self, kind: RunKind) -> str:
        if kind not in self._experiments:
            from mlflow.exceptions import MlflowException

            name = self.experiment_name(kind)
            found = self.client.get_experiment_by_name(name)
            if found is None:
                try:
                    exp_id = self.client.create_experiment(
                        name, artifact_location=self.artifact_location
                    )
                except MlflowException:  # created meanwhile by another exporter
                    found = self.client.get_experiment_by_name(name)
                    if found is None:
                        raise
                    exp_id = found.experiment_id
            else:
                if found.lifecycle_stage == "deleted":
                    self.client.restore_experiment(found.experiment_id)
                exp_id = found.experiment_id
            self._experiments[kind] = exp_id
        return self._experiments[kind]

    # ------------------------------------------------------------------ one run
    def export(self, run_id: uuid.UUID | str, kind: RunKind | None = None) -> ExportResult:
        """Create or update the MLflow copy of one run; returns what was sent."""
        if kind is None:
            found, run = tracking_for_run(self.db, run_id)
            kind = found.kind
        else:
            run = self.tracking_for(kind).get(run_id)
        tracking = self.tracking_for(kind)
        exp_id = self.experiment_id(kind)
        mlrun, created = self._find_or_create(exp_id, kind, run)
        result = ExportResult(run.run_id, kind, mlrun.info.run_id, run.status, created=created)
        ended = run.status in TERMINAL_STATUSES

        self._log_params(mlrun, self._params(kind, run, tracking, ended), result)
        self._log_tags(mlrun, self._tags(kind, run), result)
        self._upload_config(mlrun, run, result)
        self._log_metrics(mlrun, self._series(kind, run, tracking, mlrun), result)
        self._log_metrics(mlrun, self._any_metrics(kind, run, tracking, mlrun), result)
        if ended:
            self._log_metrics(mlrun, self._finals(kind, run, mlrun), result)
        self._export_trials(exp_id, kind, run, tracking, mlrun, result)
        self._export_checkpoints(kind, run, tracking, mlrun, result)
        self._set_status(mlrun, run)
        return result

    def export_all(self, runs: Iterable[tuple[RunKind, Any]]) -> list[ExportResult]:
        return [self.export(run.run_id, kind) for kind, run in runs]

    def find(self, kind: RunKind, run_id: uuid.UUID | str) -> Any:
        """The MLflow run of one of ours, or None."""
        return self._search_one(self.experiment_id(kind), RUN_ID_TAG, str(run_id))

    def _search_one(self, exp_id: str, tag: str, value: str) -> Any:
        from mlflow.entities import ViewType

        found = self.client.search_runs(
            [exp_id],
            filter_string=f"tags.`{tag}` = '{value}'",
            run_view_type=ViewType.ALL,
            max_results=2,
        )
        if len(found) > 1:
            log.warning(
                "MLflow has %d runs tagged %s=%s; updating the first", len(found), tag, value
            )
        return found[0] if found else None

    def _find_or_create(self, exp_id: str, kind: RunKind, run: Any) -> tuple[Any, bool]:
        existing = self._search_one(exp_id, RUN_ID_TAG, str(run.run_id))
        if existing is not None:
            if existing.info.lifecycle_stage == "deleted":
                self.client.restore_run(existing.info.run_id)
            return self.client.get_run(existing.info.run_id), False
        created = self.client.create_run(
            exp_id,
            start_time=ms(run.started_at or run.created_at),
            tags={RUN_ID_TAG: str(run.run_id), "suho.kind": kind.value},
            run_name=run.run_name,
        )
        return created, True

    # ------------------------------------------------------------------ params and tags
    def _params(
        self, kind: RunKind, run: Any, tracking: AnyTracking, ended: bool
    ) -> dict[str, str]:
        params = flatten(json.loads(run.config_json or "{}"))
        if not ended:  # a setting still unset may be decided by the data (bar size, bars
            # a year): MLflow params cannot change, so unset ones wait for the run's end
            params = {k: v for k, v in params.items() if v != "null"}
        if ended:
            best = tracking.best_trials(run.run_id, n=1)
            if best:
                params.update(flatten(json.loads(best[0].hyperparameters), "tuned."))
        return params

    def _log_params(self, mlrun: Any, params: Mapping[str, str], result: ExportResult) -> None:
        from mlflow.entities import Param

        have = mlrun.data.params
        new = []
        for key, value in params.items():
            if key not in have:
                new.append(Param(key, value))
            elif have[key] != value:
                result.skipped_params.append(key)
                log.warning(
                    "MLflow run %s: param %s is %r there and %r here; MLflow params cannot "
                    "change (the current config is in %s)",
                    mlrun.info.run_id,
                    key,
                    have[key],
                    value,
                    CONFIG_ARTIFACT,
                )
        for chunk in chunks(new, PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(mlrun.info.run_id, params=chunk)
        result.params += len(new)

    def _tags(self, kind: RunKind, run: Any) -> dict[str, str]:
        tags = {
            RUN_ID_TAG: str(run.run_id),
            "suho.kind": kind.value,
            "suho.status": run.status.value,
            "mlflow.runName": run.run_name,
            "mlflow.source.git.commit": run.git_commit_hash,
        }
        if run.error_message:
            tags["suho.error_message"] = run.error_message[:5000]
        for tag, column in presentation(kind).mlflow_tags.items():
            tags[tag] = _tag_value(getattr(run, column))
        return tags

    def _log_tags(self, mlrun: Any, tags: Mapping[str, str], result: ExportResult) -> None:
        from mlflow.entities import RunTag

        have = mlrun.data.tags
        changed = [RunTag(k, v) for k, v in tags.items() if have.get(k) != v]
        for chunk in chunks(changed, PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(mlrun.info.run_id, tags=chunk)
        result.tags += len(changed)

    def _upload_config(self, mlrun: Any, run: Any, result: ExportResult) -> None:
        text = json.dumps(json.loads(run.config_json or "{}"), indent=2, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if mlrun.data.tags.get(CONFIG_HASH_TAG) == digest:
            return
        self.client.log_text(mlrun.info.run_id, text, CONFIG_ARTIFACT)
        self.client.set_tag(mlrun.info.run_id, CONFIG_HASH_TAG, digest)
        result.artifacts += 1

    # ------------------------------------------------------------------ metrics
    def _series(self, kind: RunKind, run: Any, tracking: AnyTracking, mlrun: Any) -> list[Any]:
        high = _high_water_marks(mlrun)
        running = run.status not in TERMINAL_STATUSES
        points = []
        for curve, series in presentation(kind).mlflow_series.items():
            if series.optional and not self.all_steps:
                continue
            after = None
            if series.optional:  # a long series: read only what MLflow lacks
                seen = [high.get(k) for k in series.keys]
                after = None if None in seen else min(v for v in seen if v is not None)
            keys = list(series.keys.items())
            rows = [
                _Row(
                    p.x,
                    ms(p.recorded_at) or 0,
                    {key: p.values[column] for key, column in keys},
                )
                for p in tracking.series(
                    run.run_id, curve, columns=[c for _, c in keys], after=after
                )
            ]
            points.extend(_points(rows, high, running))
        return points

    def _any_metrics(self, kind: RunKind, run: Any, tracking: AnyTracking, mlrun: Any) -> list[Any]:
        """Metrics of any name (``run.log``, autolog, walk-forward folds), under their own
        names; a key that is also a series column went out with the series. Steps may
        be sparse (a user's step numbers), so no gap check: each key's new steps go."""
        exported = {k for series in presentation(kind).mlflow_series.values() for k in series.keys}
        high = _high_water_marks(mlrun)
        when = ms(run.updated_at) or 0
        points: list[Any] = []
        for summary in tracking.metric_keys(run.run_id):
            key = mlflow_key(summary.key)
            if summary.key in exported or key in exported or summary.last_step <= high.get(key, -1):
                continue
            rows = [
                _Row(step, when, {key: value})
                for step, value in tracking.metric_series(run.run_id, summary.key)
            ]
            points.extend(_points(rows, high, running=False))
        return points

    def _finals(self, kind: RunKind, run: Any, mlrun: Any) -> list[Any]:
        """Step 0, once: a key MLflow already has is not sent again."""
        from mlflow.entities import Metric

        have = _high_water_marks(mlrun)
        names = [n for n in type(run).model_fields if n.startswith("final_")]
        names.extend(PROFILES[kind].total_columns)
        when = ms(run.completed_at or run.updated_at) or 0
        return [
            Metric(name, float(getattr(run, name)), when, 0)
            for name in names
            if getattr(run, name) is not None and name not in have
        ]

    def _log_metrics(self, mlrun: Any, points: Sequence[Any], result: ExportResult) -> None:
        for chunk in chunks(points, METRICS_PER_BATCH):
            self.client.log_batch(mlrun.info.run_id, metrics=chunk)
        result.metric_points += len(points)

    # ------------------------------------------------------------------ status
    def _set_status(self, mlrun: Any, run: Any) -> None:
        status = STATUS_TO_MLFLOW[run.status]
        end = ms(run.completed_at) if run.status in TERMINAL_STATUSES else None
        info = mlrun.info  # as read when this export began; nothing here changed it
        if info.status == status and (end is None or info.end_time == end):
            return
        if end is not None:
            self.client.set_terminated(mlrun.info.run_id, status, end_time=end)
        else:
            self.client.update_run(mlrun.info.run_id, status=status)

    # ------------------------------------------------------------------ trials
    def _export_trials(
        self,
        exp_id: str,
        kind: RunKind,
        run: Any,
        tracking: AnyTracking,
        parent: Any,
        result: ExportResult,
    ) -> None:
        from mlflow.entities import Metric, ViewType

        shown = presentation(kind)
        trials = tracking.trials(run.run_id)
        if not trials:
            return
        children = {
            c.data.tags.get(TRIAL_TAG): c
            for c in self.client.search_runs(
                [exp_id],
                filter_string=f"tags.`{PARENT_TAG}` = '{run.run_id}'",
                run_view_type=ViewType.ALL,
                max_results=50_000,
            )
        }
        for trial in trials:
            number = str(trial.trial_number)
            when = ms(trial.recorded_at) or 0
            child = children.get(number)
            if child is None:
                start = when - int(trial.duration_seconds * 1000)
                child = self.client.create_run(
                    exp_id,
                    start_time=start,
                    tags={
                        PARENT_TAG: str(run.run_id),
                        TRIAL_TAG: number,
                        "mlflow.parentRunId": parent.info.run_id,
                        "suho.kind": "trial",
                    },
                    run_name=f"{run.run_name}-trial-{number}",
                )
                result.trials_created += 1
            tags = {
                "suho.trial_id": str(trial.trial_id),
                "suho.trial_state": trial.state.value,
                "suho.study_name": trial.study_name,
            }
            for name in shown.trial_tags:
                tags[f"suho.{name}"] = _tag_value(getattr(trial, name))
            self._log_tags(child, tags, result)
            self._log_params(child, flatten(json.loads(trial.hyperparameters)), result)
            values = _trial_values(trial, tracking, shown.trial_metrics, shown.trial_fold_scores)
            high = _high_water_marks(child)
            points = [
                Metric(key, float(value), when, step)
                for key, value, step in values
                if value is not None and step > high.get(key, -1)
            ]
            self._log_metrics(child, points, result)
            status = TRIAL_STATUS_TO_MLFLOW[trial.state]
            if child.info.status != status or child.info.end_time != when:
                self.client.set_terminated(child.info.run_id, status, end_time=when)

    # ------------------------------------------------------------------ checkpoints
    def _export_checkpoints(
        self,
        kind: RunKind,
        run: Any,
        tracking: AnyTracking,
        mlrun: Any,
        result: ExportResult,
    ) -> None:
        infos = [
            i
            for i in tracking.checkpoints(run.run_id)
            if self.include_intermediate
            or i.kind is not CheckpointKind.INTERMEDIATE
            or i.deployment_status is not DeploymentStatus.NOT_DEPLOYED
        ]
        if not infos:
            return
        run_id = mlrun.info.run_id
        present = {
            Path(f.path).name: f.file_size
            for f in self.client.list_artifacts(run_id, CHECKPOINT_DIR)
        }
        for info in infos:
            name = checkpoint_artifact_name(info)
            if present.get(name) != info.size_bytes:
                data = tracking.load_checkpoint(info.checkpoint_id)  # sha256 checked
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / name
                    path.write_bytes(data)
                    self.client.log_artifact(run_id, str(path), CHECKPOINT_DIR)
                result.artifacts += 1
            if info.deployment_status is not DeploymentStatus.NOT_DEPLOYED and self.has_registry():
                source = f"{mlrun.info.artifact_uri}/{CHECKPOINT_DIR}/{name}"
                if mlflow_models.can_log_model(kind, info):  # an MLflow model, not a file
                    source = mlflow_models.log_model(self.client, mlrun, tracking, info)
                self._register(kind, info, mlrun, source, result)

    def registered_model_name(self, kind: RunKind, info: Any) -> str:
        name = f"{info.name}{presentation(kind).mlflow_model_suffix}"
        return f"{self.prefix}-{name}".replace("/", "_")

    def has_registry(self) -> bool:
        """Whether the server answers model-registry calls (checked once)."""
        if self._registry is None:
            from mlflow.exceptions import MlflowException

            try:
                self.client.search_registered_models(max_results=1)
                self._registry = True
            except MlflowException as exc:
                log.warning("MLflow at %s has no model registry: %s", self.tracking_uri, exc)
                self._registry = False
        return self._registry

    def _register(
        self, kind: RunKind, info: Any, mlrun: Any, source: str, result: ExportResult
    ) -> None:
        from mlflow.exceptions import MlflowException

        name = self.registered_model_name(kind, info)
        try:
            self.client.create_registered_model(
                name, tags={"suho.kind": kind.value}, description="Mirrored from suho"
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = next(
            (
                v
                for v in self.client.search_model_versions(f"name = '{name}'")
                if v.tags.get(CHECKPOINT_TAG) == str(info.checkpoint_id)
            ),
            None,
        )
        if version is None:
            version = self.client.create_model_version(
                name,
                source=source,
                run_id=mlrun.info.run_id,
                tags={CHECKPOINT_TAG: str(info.checkpoint_id), "suho.sha256": info.sha256},
            )
            result.model_versions += 1
        status = info.deployment_status.value
        if version.tags.get("suho.deployment_status") != status:
            self.client.set_model_version_tag(
                name, version.version, "suho.deployment_status", status
            )
        alias = ALIASES.get(info.deployment_status)
        if alias is not None:
            self.client.set_registered_model_alias(name, alias, version.version)
        for other in ALIASES.values():  # a stage it left: drop the alias if still ours
            if other == alias:
                continue
            try:
                holder = self.client.get_model_version_by_alias(name, other)
            except MlflowException:
                continue
            if holder.version == version.version:
                self.client.delete_registered_model_alias(name, other)


def _tag_value(value: Any) -> str:
    """A run or trial column as tag text: enums by value, lists comma-joined."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(getattr(value, "value", value))


def _trial_values(
    trial: TrialRecord, tracking: AnyTracking, metrics: Sequence[str], fold_scores: bool
) -> list[tuple[str, float | None, int]]:
    """A trial's metrics as ``(key, value, step)``: its duration and objective, the
    kind's other trial metrics, and cross-validation scores by fold."""
    values: list[tuple[str, float | None, int]] = [
        ("duration_seconds", trial.duration_seconds, 0),
        ("objective", tracking.objective(trial), 0),
    ]
    for name in metrics:
        value = getattr(trial, name)
        values.append((name, None if value is None else float(value), 0))
    if fold_scores:
        scores = getattr(trial, "scores", [])
        values.extend(("fold_score", s, k) for k, s in enumerate(scores, start=1))
    return values


def checkpoint_artifact_name(info: CheckpointInfo) -> str:
    return f"{info.kind.value}-{info.step}-{info.checkpoint_id}.{FILE_EXTENSIONS[info.format]}"


def _high_water_marks(mlrun: Any) -> dict[str, int]:
    """The highest step MLflow holds per metric key (its "latest" point)."""
    return {m.key: int(m.step) for m in getattr(mlrun.data, "_metric_objs", [])}


def _points(rows: list[_Row], high: Mapping[str, int], running: bool) -> list[Any]:
    """Metric points past each key's high-water mark, in step order; while the run is
    running, only up to the first gap in the step numbers."""
    from mlflow.entities import Metric

    rows = sorted(rows, key=lambda r: r.step)
    if running:
        for i in range(1, len(rows)):
            if rows[i].step != rows[i - 1].step + 1:
                rows = rows[:i]
                break
    points = []
    for row in rows:
        for key, value in row.values.items():
            number = as_float(value)
            if number is not None and row.step > high.get(key, -1):
                points.append(Metric(key, number, row.timestamp, row.step))
    return points
