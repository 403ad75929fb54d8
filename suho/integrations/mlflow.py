"""A faithful, idempotent copy of our runs in an MLflow tracking server.

Our tables stay the source of truth; MLflow gets a mirror that can be refreshed at
any time (``suho mlflow export``), also while a run trains (:class:`LiveMirror`,
``suho train ... --mlflow-uri``). Everything is read through
:class:`~repositories.tracking.RunTrackingService` and the repositories.

Why it works the way it does:

* **Found by tag, never duplicated.** An MLflow run carries ``suho.run_id``; an
  export searches for it first and updates that run in place. The tag is given to
  ``create_run`` itself, so no run ever exists without it. Trials are child runs
  found by ``suho.parent_run_id`` and ``suho.trial_number``; model versions by
  their ``suho.checkpoint_id`` tag.
* **Only new metric points.** For each metric key MLflow keeps its latest point,
  the one with the highest step; we send only points past it. Points go out in
  step order, in ``log_batch`` calls of at most 1,000, so a crash between two
  calls leaves every key with a prefix of its series, and the next export
  continues where it stopped. A point re-sent anyway (a retried request whose
  answer was lost) carries the same step, value and timestamp (``recorded_at``),
  which MLflow's SQL store recognizes and does not store twice.
* **No holes while running.** Series are numbered without gaps (iterations,
  episodes, timesteps). While a run is running, a series is sent only up to its
  first gap, in case a batch of our writer lands after a later one (a replayed
  spool file); a finished run sends everything.
* **Params are immutable in MLflow.** The run configuration is flattened with
  ``.`` between keys (lists and scalars as JSON text, strings as they are). Keys
  keep letters, digits and ``_ - . : space``; any other character becomes ``_``,
  a leading ``.`` or ``/`` gets a ``_`` in front, and a key over 250 characters is
  cut and ends with ``~`` and 8 hex digits of its SHA-256. Values longer than
  :data:`PARAM_VALUE_MAX` (500, the limit of older servers and of Databricks)
  are cut to 497 characters plus ``...``; the full configuration is always
  uploaded as the artifact ``suho/config.json``. The tuned hyperparameters (the
  best complete trial's, as ``tuned.<name>``) are logged once the run has ended,
  since the best trial can still change while it runs. A value that changed
  after it was logged (a resumed RL run's new ``timesteps``) cannot be changed in
  MLflow: it is skipped with a warning, and ``suho/config.json`` has the new one.
* **Checkpoints** are uploaded as ``checkpoints/<kind>-<step>-<id>.<ext>`` after
  ``load_checkpoint`` verified their SHA-256 (a mismatch raises, nothing is sent).
  A deployed (or once deployed, now archived) checkpoint becomes a version of the
  registered model ``<prefix>-<model name>`` (supervised) or
  ``<prefix>-<agent type>-agent`` (RL), with the alias ``production`` or
  ``staging`` while it holds that stage, when the server has a registry.

Metric keys: supervised runs log the ``training_metrics`` columns by iteration;
RL runs log ``episode_reward``, ``episode_sharpe_ratio``, ``episode_account_value``,
``episode_policy_loss``, ``episode_value_loss`` and ``episode_end_timestep`` by
episode (from each episode's last step), and with ``all_steps`` also
``step_reward``, ``step_cumulative_reward``, ``step_account_value``,
``step_policy_loss`` and ``step_value_loss`` by timestep. The ``final_*`` columns
(and an agent's ``total_timesteps``/``total_episodes``) are logged at step 0 when
the run has ended.

Limits: a resumed run that re-trains iterations MLflow already holds keeps
MLflow's earlier points for them (MLflow cannot delete points); two exporters
writing the same run at the same moment could each create it once.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import logging
import re
import tempfile
import threading
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repositories.checkpoints import FILE_EXTENSIONS
from repositories.errors import InvalidInputError
from repositories.kinds import PROFILES, CheckpointInfo, RunKind, RunRecord, TrialRecord
from repositories.tracking import AnyTracking, RunHook, RunTrackingService, tracking_for_run
from suho.kinds import EPISODE_SERIES, STEP_SERIES, SUPERVISED_SERIES, presentation
from suho_models.db import Database
from suho_models.enums import (
    TERMINAL_STATUSES,
    CheckpointKind,
    DeploymentStatus,
    RunStatus,
    TrialState,
)

log = logging.getLogger(__name__)

PARAM_VALUE_MAX = 500
"""Longest param value sent (MLflow 3 takes 6,000; older servers and Databricks 500)."""
KEY_MAX = 250
METRICS_PER_BATCH = 1000
PARAMS_TAGS_PER_BATCH = 100

RUN_ID_TAG = "suho.run_id"
PARENT_TAG = "suho.parent_run_id"
TRIAL_TAG = "suho.trial_number"
CHECKPOINT_TAG = "suho.checkpoint_id"
CONFIG_HASH_TAG = "suho.config_sha256"
CONFIG_ARTIFACT = "suho/config.json"
CHECKPOINT_DIR = "checkpoints"

STATUS_TO_MLFLOW = {
    RunStatus.PENDING: "SCHEDULED",
    RunStatus.RUNNING: "RUNNING",
    RunStatus.COMPLETED: "FINISHED",
    RunStatus.FAILED: "FAILED",
    RunStatus.CANCELLED: "KILLED",
}
TRIAL_STATUS_TO_MLFLOW = {
    TrialState.COMPLETE: "FINISHED",
    TrialState.PRUNED: "KILLED",
    TrialState.FAILED: "FAILED",
}
ALIASES = {DeploymentStatus.PRODUCTION: "production", DeploymentStatus.STAGING: "staging"}


class MlflowUnavailableError(InvalidInputError):
    """The optional ``mlflow`` package is not installed."""


def import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise MlflowUnavailableError(
            "mlflow: not installed; pip install 'suho-training-tables[mlflow]'"
        ) from None
    return mlflow


# --------------------------------------------------------------------------- names and values
_KEY_BAD = re.compile(r"[^\w.\- :]")


def mlflow_key(name: str) -> str:
    """``name`` as a valid MLflow param/metric/tag key (see the module docstring)."""
    key = _KEY_BAD.sub("_", str(name)) or "_"
    if key.startswith((".", "/")):
        key = "_" + key
    if len(key) > KEY_MAX:
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        key = f"{key[: KEY_MAX - 9]}~{digest}"
    return key


def param_value(value: Any) -> str:
    """A leaf as text: strings as they are, everything else as JSON; cut to 500."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > PARAM_VALUE_MAX:
        text = text[: PARAM_VALUE_MAX - 3] + "..."
    return text


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings joined with ``.``; lists and other leaves as :func:`param_value`."""
    out: dict[str, str] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{key}."))
        else:
            out[mlflow_key(key)] = param_value(value)
    return out


def _ms(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


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
            start_time=_ms(run.started_at or run.created_at),
            tags={RUN_ID_TAG: str(run.run_id), "suho.kind": kind.value},
            run_name=run.run_name,
        )
        return created, True

    # ------------------------------------------------------------------ params and tags
    def _params(
        self, kind: RunKind, run: Any, tracking: AnyTracking, ended: bool
    ) -> dict[str, str]:
        params = flatten(json.loads(run.config_json or "{}"))
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
        for chunk in _chunks(new, PARAMS_TAGS_PER_BATCH):
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
        for chunk in _chunks(changed, PARAMS_TAGS_PER_BATCH):
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
                    _ms(p.recorded_at) or 0,
                    {key: p.values[column] for key, column in keys},
                )
                for p in tracking.series(
                    run.run_id, curve, columns=[c for _, c in keys], after=after
                )
            ]
            points.extend(_points(rows, high, running))
        return points

    def _finals(self, kind: RunKind, run: Any, mlrun: Any) -> list[Any]:
        """Step 0, once: a key MLflow already has is not sent again."""
        from mlflow.entities import Metric

        have = _high_water_marks(mlrun)
        names = [n for n in type(run).model_fields if n.startswith("final_")]
        names.extend(PROFILES[kind].total_columns)
        when = _ms(run.completed_at or run.updated_at) or 0
        return [
            Metric(name, float(getattr(run, name)), when, 0)
            for name in names
            if getattr(run, name) is not None and name not in have
        ]

    def _log_metrics(self, mlrun: Any, points: Sequence[Any], result: ExportResult) -> None:
        for chunk in _chunks(points, METRICS_PER_BATCH):
            self.client.log_batch(mlrun.info.run_id, metrics=chunk)
        result.metric_points += len(points)

    # ------------------------------------------------------------------ status
    def _set_status(self, mlrun: Any, run: Any) -> None:
        status = STATUS_TO_MLFLOW[run.status]
        end = _ms(run.completed_at) if run.status in TERMINAL_STATUSES else None
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
            when = _ms(trial.recorded_at) or 0
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
                self._register(kind, info, mlrun, name, result)

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
        self, kind: RunKind, info: Any, mlrun: Any, artifact: str, result: ExportResult
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
                source=f"{mlrun.info.artifact_uri}/{CHECKPOINT_DIR}/{artifact}",
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
            number = _float(value)
            if number is not None and row.step > high.get(key, -1):
                points.append(Metric(key, number, row.timestamp, row.step))
    return points


# --------------------------------------------------------------------------- live mirror
def _reachable(uri: str, timeout: float = 2.0) -> bool:
    """An HTTP server answers /health; other URIs (sqlite, files) are always reachable."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


class LiveMirror:
    """Re-exports one training run every ``interval`` seconds from a background thread.

    It reads what the batch writer has flushed to our tables and sends only the new
    points (the exporter is idempotent), so training never waits for MLflow: a
    slow or absent server only delays the copy. A failed pass is logged and retried,
    with the wait doubling up to ``max_backoff``. On exit one last pass runs; the
    caller waits for it at most ``final_timeout`` seconds (then ``suho mlflow
    export`` finishes the copy later).

    Use ``tracking()`` as the trainer's tracking service, or ``follow(run_id)``.
    """

    def __init__(
        self,
        db: Database,
        tracking_uri: str,
        kind: RunKind | str,
        *,
        interval: float = 5.0,
        final_timeout: float = 30.0,
        max_backoff: float = 60.0,
        **exporter_options: Any,
    ) -> None:
        import_mlflow()  # fail before training, not in the thread
        self.db = db
        self.tracking_uri = tracking_uri
        self.kind = RunKind(kind)
        self.interval = interval
        self.final_timeout = final_timeout
        self.max_backoff = max_backoff
        exporter_options.setdefault("include_intermediate", False)
        self._options = exporter_options
        self._exporter: MlflowExporter | None = None
        self._run_id: uuid.UUID | None = None
        self._stop = threading.Event()
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlflow-mirror", daemon=True)
        self.passes = 0
        self.failures = 0
        self.last_error: BaseException | None = None
        self.results: collections.deque[ExportResult] = collections.deque(maxlen=1000)
        """What each successful pass sent, newest last."""

    def tracking(self, **kwargs: Any) -> Any:
        """A tracking service for the trainer: every run it starts or resumes is
        followed (through the service's ``on_run`` hook)."""
        hook: RunHook = self.follow
        return RunTrackingService(self.db, PROFILES[self.kind], on_run=hook, **kwargs)

    def follow(self, run_id: uuid.UUID | str) -> None:
        self._run_id = uuid.UUID(str(run_id))

    def __enter__(self) -> LiveMirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> bool:
        """Stop after one last pass; whether it finished within ``final_timeout``."""
        self._stop.set()
        self._thread.join(self.final_timeout)
        if self._thread.is_alive():
            self._abandoned.set()
            log.warning(
                "MLflow mirror of run %s not finished after %.0f s; run `suho mlflow export "
                "--run %s --tracking-uri %s` later",
                self._run_id,
                self.final_timeout,
                self._run_id,
                self.tracking_uri,
            )
            return False
        return self.last_error is None

    def _loop(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            wait = self.interval if self._pass() else min(wait * 2, self.max_backoff)
        if not self._abandoned.is_set():
            self._pass()

    def _pass(self) -> bool:
        if self._run_id is None:
            return True
        try:
            if not _reachable(self.tracking_uri):
                raise ConnectionError(f"MLflow at {self.tracking_uri} does not answer /health")
            if self._exporter is None:
                self._exporter = MlflowExporter(
                    self.db, self.tracking_uri, tracking={}, **self._options
                )
            if self._abandoned.is_set():
                return False
            self.results.append(self._exporter.export(self._run_id, self.kind))
            self.passes += 1
            self.last_error = None
            return True
        except Exception as exc:  # noqa: BLE001 - the mirror must never reach training
            self.failures += 1
            if self.last_error is None or type(exc) is not type(self.last_error):
                log.warning("MLflow mirror of run %s: %s (will retry)", self._run_id, exc)
            else:
                log.debug("MLflow mirror of run %s: %s", self._run_id, exc)
            self.last_error = exc
            return False


__all__ = [
    "EPISODE_SERIES",
    "STEP_SERIES",
    "SUPERVISED_SERIES",
    "ExportResult",
    "LiveMirror",
    "MlflowExporter",
    "MlflowUnavailableError",
    "PARAM_VALUE_MAX",
    "checkpoint_artifact_name",
    "flatten",
    "import_mlflow",
    "mlflow_key",
    "param_value",
]
