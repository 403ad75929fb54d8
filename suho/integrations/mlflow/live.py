"""The live mirror: a training run re-exported every few seconds from a thread."""

from __future__ import annotations

import collections
import logging
import threading
import urllib.request
import uuid
from typing import Any

from repositories.kinds import PROFILES, RunKind
from repositories.tracking import RunHook, RunTrackingService
from suho.integrations.mlflow.exporter import ExportResult, MlflowExporter
from suho.integrations.mlflow.names import import_mlflow
from suho_models.db import Database

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- live mirror
def _reachable(uri: str, timeout: float = 2.0) -> bool:
    """An HTTP server answers /health; other URIs (sqlite, files) are always reachable."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            return bool(resp.status == 200)
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
