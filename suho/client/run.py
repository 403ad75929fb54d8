"""``suho.init`` / ``run.log`` / ``run.finish``: track any training loop.

The shape is W&B's and trackio's (``init``, ``log``, ``finish``, ``summary``), and
everything goes through :class:`~repositories.tracking.RunTrackingService`, the
door the trainers use, so a client run is a run like theirs: a ``training_runs``
or ``agent_training_runs`` row, the same statuses, heartbeats and staleness,
checkpoints in the same tables.

* **Lifecycle.** ``init`` creates the run, marks it running and enters the
  service's guard: heartbeats while open; SIGTERM (in the main thread) raises
  there, and an exception that ends the program (``sys.excepthook``), or one
  leaving a ``with`` block, marks the run cancelled or failed. A run still open at
  a normal exit is completed. A kill -9 runs nothing: the run stays ``running``
  and its heartbeat ages until it shows as stale.
* **Metrics** go to the run's :class:`~repositories.run_metrics.RunMetricLogger`
  (``run.log`` *is* its ``log``: no wrapper on the hot path).
* **Finish.** Final values (the last value of every logged key, and whatever
  was put in ``run.summary``) fill the run's ``final_*`` columns where the names
  match (``test_accuracy`` -> ``final_test_accuracy``); summary values without a
  column are logged at the last step, so nothing given is dropped.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from repositories.errors import InvalidInputError
from repositories.run_metrics import check_key, check_value
from repositories.tracking import HEARTBEAT_SECONDS, AnyTracking, RunKind, RunTrackingService
from suho.client.config import TAGS_KEY, plain_config
from suho.client.models import from_bytes, to_bytes
from suho_models.db import Database, migrations
from suho_models.enums import RunStatus

_INTEGER_FINALS = frozenset({"total_timesteps", "total_episodes"})

_lock = threading.Lock()
_active: Run | None = None


class Run:
    """One tracked run; made by :func:`init`."""

    log: Callable[..., int]
    """``log(values, step=None)``: queue a dict of metric name -> number at ``step``
    (default: the step after the previous call's); returns the step. Bad input
    raises, naming the key and the value, and nothing of the call is kept."""

    def __init__(
        self,
        service: AnyTracking,
        record: Any,
        config: dict[str, Any],
        tags: dict[str, Any],
    ) -> None:
        self.service = service
        self.kind = service.kind
        self.run_id: uuid.UUID = record.run_id
        self.name: str = record.run_name
        self.config = config
        self.tags = tags
        self.summary: dict[str, float] = {}
        """Final values to store at finish, over the last logged ones (any name)."""
        self.status = RunStatus.RUNNING
        self._logger = service.metric_logger(self.run_id)
        self.log = self._logger.log
        self._guard = service.guard(self.run_id)
        self._finish_lock = threading.Lock()
        self._finished = False
        self._guard.__enter__()

    def __repr__(self) -> str:
        return f"Run({self.name!r}, run_id={self.run_id}, kind={self.kind.value}, {self.status})"

    @property
    def step(self) -> int:
        """The step of the last ``log`` call (0 before any)."""
        return max(self._logger.next_step - 1, 0)

    def update_config(self, values: Mapping[str, Any]) -> None:
        """Add to the run's config (stored whole, filterable) while it is open."""
        self.config.update(plain_config(values))
        self.service.update(self.run_id, config_json=self.config)

    # ------------------------------------------------------------------ models
    def log_model(
        self,
        model: Any,
        name: str | None = None,
        *,
        step: int | None = None,
        metrics: Mapping[str, float] | None = None,
        final: bool = True,
    ) -> Any:
        """Store ``model`` as a data-only checkpoint (see :mod:`suho.client.models`);
        returns the checkpoint's info. The feature names it was trained on become the
        run's ``features_used`` (supervised runs)."""
        if self._finished:
            raise InvalidInputError(f"run {self.run_id}: log_model after finish")
        saved = to_bytes(model)
        at = self.step if step is None else step
        profile = self.service.profile
        placement: dict[str, Any] = {profile.step_placement: at}
        info = self.service.save_checkpoint(
            self.run_id,
            saved.data,
            saved.format,
            metrics,
            kind="final" if final else "intermediate",
            model_name=name,
            **placement,
            flush=self._logger,  # the metrics up to the checkpoint are stored first
        )
        if saved.feature_names and profile.features_column is not None:
            self.service.update(self.run_id, **{profile.features_column: saved.feature_names})
        return info

    # ------------------------------------------------------------------ end
    def flush(self) -> bool:
        """Write everything logged so far (a seal: a kill -9 after it loses none of it)."""
        return self._logger.flush()

    def finish(self, status: RunStatus | str = RunStatus.COMPLETED, error: str = "") -> Any:
        """End the run: metrics written, final values stored, status set (completed,
        failed or cancelled). A second call does nothing."""
        target = _status(status)
        if not self._take_finish():
            return None
        try:
            if target is RunStatus.COMPLETED:
                finals = self._store_summary()
            self._logger.close()
        finally:
            self._guard.__exit__(None, None, None)
            _release(self)
        if target is RunStatus.COMPLETED:
            record = self.service.complete(self.run_id, finals)
        elif target is RunStatus.FAILED:
            record = self.service.fail(self.run_id, error or "marked failed by run.finish")
        else:
            record = self.service.cancel(self.run_id, error or "cancelled by run.finish")
        self.status = target
        return record

    def _take_finish(self) -> bool:
        with self._finish_lock:
            if self._finished:
                return False
            self._finished = True
            return True

    def _store_summary(self) -> dict[str, Any]:
        """The final_* values; summary values without a column go to run_metrics."""
        given = {check_key(k): check_value(k, v) for k, v in self.summary.items()}
        self._logger.flush()
        values = {k.key: k.last_value for k in self.service.metric_keys(self.run_id)}
        values.update(given)
        fields = frozenset(self.service.profile.final_metrics.model_fields)
        finals: dict[str, Any] = {}
        rest = {}
        for key, value in values.items():
            column = key if key in fields else f"final_{key}"
            if column in fields:
                finals[column] = int(value) if column in _INTEGER_FINALS else value
            elif key in given:
                rest[key] = value
        if rest:
            self._logger.log(rest, step=self.step)
        return finals

    def _end_by(self, exc: BaseException) -> None:
        """An exception ended the run: metrics written, then failed or cancelled."""
        if not self._take_finish():
            return
        try:
            with contextlib.suppress(Exception):
                self._logger.close()
            self._guard.__exit__(type(exc), exc, exc.__traceback__)
        finally:
            _release(self)
        self.status = (
            RunStatus.CANCELLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
        )

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.finish()
        else:
            self._end_by(exc)


def _status(status: RunStatus | str) -> RunStatus:
    try:
        target = RunStatus(status)
    except ValueError:
        target = None
    if target not in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED):
        raise InvalidInputError(
            f"finish: status must be completed, failed or cancelled (got {status!r})"
        )
    return target


# --------------------------------------------------------------------------- module API
def init(
    name: str | None = None,
    *,
    kind: RunKind | str = "supervised",
    config: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    model_type: str = "other",
    agent_type: str = "other",
    target: str = "target",
    db: Database | str | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> Run:
    """Start a run and make it the active one (``suho.log`` logs to it).

    ``kind`` is ``supervised`` or ``rl``; ``config`` is stored whole and filterable
    (``suho runs list --param max_depth=6``); ``tags`` too (``--param _tags.team=ml``).
    ``model_type`` / ``agent_type``: any library name (``pytorch``, ``xgboost``).
    ``db``: a Database or URL; default ``SUHO_DATABASE_URL`` or the embedded store,
    created and migrated on first use.
    """
    global _active
    plain = plain_config(config)
    plain_tags = plain_config(tags, "tags")
    if plain_tags:
        plain[TAGS_KEY] = plain_tags
    with _lock:
        if _active is not None:
            raise InvalidInputError(
                f"suho.init: run {_active.name!r} ({_active.run_id}) is still open in this "
                "process; finish it first (run.finish())"
            )
        database = _database(db)
        service: AnyTracking = RunTrackingService(
            database, kind, heartbeat_seconds=heartbeat_seconds
        )
        run_name = name if name is not None else _default_name()
        spec: dict[str, Any] = {"run_name": run_name, "config_json": plain}
        profile = service.profile
        spec[profile.type_column] = {"model_type": model_type, "agent_type": agent_type}[
            profile.type_column
        ]
        if profile.target_column is not None:
            spec[profile.target_column] = target
        record = service.create(spec)
        service.start(record.run_id)
        run = Run(service, record, plain, plain_tags)
        _active = run
    _install_hooks()
    # After the run's writers registered theirs: atexit runs this first, while they
    # still take rows.
    atexit.register(_finish_at_exit)
    return run


def log(values: Mapping[str, Any], step: int | None = None) -> int:
    """``run.log`` of the active run."""
    run = _active
    if run is None:
        raise InvalidInputError(
            f"suho.log: no active run; call suho.init() first (got {values!r:.100})"
        )
    return run.log(values, step)


def finish(status: RunStatus | str = RunStatus.COMPLETED, error: str = "") -> Any:
    """``run.finish`` of the active run; nothing when there is none."""
    run = _active
    return None if run is None else run.finish(status, error)


def active_run() -> Run | None:
    return _active


def load_checkpoint(checkpoint_id: uuid.UUID | str, *, db: Database | str | None = None) -> Any:
    """A model stored by ``run.log_model``, as its library's object (an XGBoost or
    LightGBM Booster, a CatBoost model, a torch state_dict, an SB3 model)."""
    from repositories.tracking import find_checkpoint

    database = _database(db)
    _, tracking, info = find_checkpoint(database, checkpoint_id)
    data = tracking.load_checkpoint(checkpoint_id)
    agent = str(getattr(info, "agent_type", "ppo"))
    return from_bytes(data, data.format, agent_type=agent)


def _database(db: Database | str | None) -> Database:
    if isinstance(db, Database):
        return db
    database = Database(db) if db is not None else Database()
    if database.current_revision() is None:  # a new, empty store: set it up
        migrations.upgrade(str(database.url.render_as_string(hide_password=False)))
    return database


def _default_name() -> str:
    return "run-" + dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")


def _release(run: Run) -> None:
    global _active
    with _lock:
        if _active is run:
            _active = None
            atexit.unregister(_finish_at_exit)


# --------------------------------------------------------------------------- process exit
_hooks_installed = False


def _install_hooks() -> None:
    """An exception that ends the program fails (or, for SIGTERM / Ctrl-C, cancels)
    the open run; a normal exit completes it."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    previous = sys.excepthook

    def excepthook(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        run = _active
        if run is not None:
            with contextlib.suppress(Exception):
                run._end_by(exc)
        previous(exc_type, exc, tb)

    sys.excepthook = excepthook


def _finish_at_exit() -> None:
    run = _active
    if run is not None:
        with contextlib.suppress(Exception):
            run.finish()
