"""``suho serve``: one deployed model or agent over HTTP (FastAPI).

* **Hot swap without a failed request.** A :class:`ModelHolder` polls the stage
  every ``poll_seconds`` (one keyed metadata read) and, when another checkpoint
  holds it, loads that one in its own thread and swaps one reference. A request
  takes the reference once, so it finishes on the model it started with; nothing
  is ever unloaded under it. A stage that empties keeps the last model serving.
* **Security as ``suho ui``:** :func:`suho.ui.app.serving_options` decides it
  (loopback by default, with loopback Host headers only; any other address needs a
  token, checked on every request by the UI's own middleware).
* **Bad input is a 422 naming the field:** a malformed JSON body or a value of the
  wrong type (FastAPI's validation, ``loc`` names it), a missing feature column,
  NaN an agent cannot take, an empty body.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, Strict, model_validator

from repositories.errors import InvalidInputError, NotFoundError
from repositories.tracking import RunKind, RunTrackingService
from suho.inference.models import AgentModel, LoadedModel, SupervisedModel, from_checkpoint, resolve
from suho_models.db import Database

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
"""How often the stage is polled: a new deploy serves within this plus a load."""

Number = Annotated[float, Strict()] | None
"""A JSON number (or null: missing to a booster); strings and booleans are refused."""


class Rows(BaseModel):
    """Feature rows as ``records`` (a list of objects) or ``columns`` (name -> list)."""

    records: list[dict[str, Number]] | None = Field(default=None, min_length=1)
    columns: dict[str, list[Number]] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> Rows:
        if (self.records is None) == (self.columns is None):
            raise ValueError("give exactly one of records or columns")
        return self

    def table(self) -> Any:
        return self.records if self.records is not None else self.columns


class ActRows(BaseModel):
    """FinRL raw ``states`` (one list per state), or ``ml_features`` rows as
    ``records`` / ``columns`` with their time and symbol."""

    states: list[list[Annotated[float, Strict()]]] | None = Field(default=None, min_length=1)
    records: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    columns: dict[str, list[Any]] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> ActRows:
        given = [x for x in (self.states, self.records, self.columns) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of states, records or columns")
        return self


class ModelHolder:
    """The model being served, and the thread that swaps in a new deploy."""

    def __init__(
        self,
        db: Database,
        ref: str,
        stage: str = "production",
        *,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.db = db
        self.ref = ref
        self.stage = stage
        self.poll_seconds = poll_seconds
        kind, found = resolve(db, ref, stage)
        self.kind: RunKind = kind
        self.model: LoadedModel = from_checkpoint(kind, found)
        self.loaded_at = time.time()
        self.swaps = 0
        self.last_error: str | None = None
        self._by_name = _as_uuid(ref) is None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._by_name and self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="suho-serve-poll", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def check(self) -> bool:
        """Swap in the checkpoint now in the stage, if another; whether it swapped.

        A poll is one keyed metadata read: is the serving checkpoint still in the
        stage? A deploy moves the old holder out of it (to ``archived``), so until then
        nothing changed. Reading the stage's bytes and run every poll (the door's
        ``deployed``, 4 reads and a hash) cost 4 times the CPU, taken from requests
        under one GIL; it now runs only when the checkpoint has left the stage, and a
        swap deserializes what it read."""
        service = RunTrackingService(self.db, self.kind)
        try:
            if service.checkpoint(self.model.checkpoint_id).deployment_status == self.stage:
                return False
        except NotFoundError:
            pass  # deleted (forced) under us: look the stage up
        try:
            found = service.deployed(self.ref, self.stage)
        except NotFoundError:
            return False  # the stage emptied: keep serving what we have
        if uuid.UUID(str(found.info.checkpoint_id)) == self.model.checkpoint_id:
            return False
        fresh = from_checkpoint(self.kind, found)
        self.model, self.loaded_at = fresh, time.time()  # one reference: atomic
        self.swaps += 1
        log.info("serving checkpoint %s (was another)", fresh.checkpoint_id)
        return True

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - keep serving the model we have
                self.last_error = str(exc)
                log.warning("model poll failed, still serving the current one: %s", exc)


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _nulls_as_nan(table: Any) -> Any:
    """JSON null -> NaN, so the columns stay numeric (a booster's "missing")."""
    if isinstance(table, dict):
        return {k: [float("nan") if v is None else v for v in vs] for k, vs in table.items()}
    return [{k: float("nan") if v is None else v for k, v in r.items()} for r in table]


def create_serving_app(
    holder: ModelHolder, *, token: str | None = None, allowed_hosts: list[str] | None = None
) -> FastAPI:
    """The API over ``holder``'s model; ``token`` and ``allowed_hosts`` as
    :func:`suho.ui.security.serving_options` decides them (``suho ui``'s rules)."""
    from suho.ui.security import HostCheckMiddleware, TokenMiddleware

    app = FastAPI(
        title="suho serve",
        description="Predictions and actions of a deployed suho model or agent.",
    )
    app.state.holder = holder
    if token is not None:
        app.add_middleware(TokenMiddleware, token=token)
    if allowed_hosts is not None:
        app.add_middleware(HostCheckMiddleware, allowed=allowed_hosts)

    @app.exception_handler(InvalidInputError)
    async def _invalid(request: Request, exc: InvalidInputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    @app.exception_handler(NotFoundError)
    async def _missing(request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 404)

    @app.get("/health")
    def health() -> dict[str, Any]:
        model = holder.model
        return {
            "status": "ok",
            "checkpoint_id": str(model.checkpoint_id),
            "poll_error": holder.last_error,
        }

    @app.get("/model")
    def model_info() -> dict[str, Any]:
        """Which checkpoint serves, its run, and its input columns."""
        return {
            **holder.model.describe(),
            "ref": holder.ref,
            "stage": holder.stage,
            "loaded_at": holder.loaded_at,
            "swaps": holder.swaps,
        }

    @app.post("/predict")
    def predict(body: Rows) -> dict[str, Any]:
        """Predictions of a supervised model: ``prediction`` (class or value) and, for
        a classifier, ``probability`` of class 1, one per row."""
        model = holder.model  # taken once: a swap mid-request does not touch it
        if not isinstance(model, SupervisedModel):
            raise InvalidInputError("/predict serves supervised models; this is an agent: /act")
        scores = model.scores(_nulls_as_nan(body.table()))
        out: dict[str, Any] = {"checkpoint_id": str(model.checkpoint_id)}
        if model.task.value == "classification":
            out["prediction"] = (scores >= 0.5).astype(int).tolist()
            out["probability"] = scores.tolist()
        else:
            out["prediction"] = scores.tolist()
        return out

    @app.post("/act")
    def act(body: ActRows) -> dict[str, Any]:
        """An agent's greedy actions: for raw ``states``, one action vector per state;
        for ``ml_features`` rows, one action per (time, symbol) over the rows."""
        model = holder.model
        if not isinstance(model, AgentModel):
            raise InvalidInputError("/act serves agents; this is a supervised model: /predict")
        out: dict[str, Any] = {"checkpoint_id": str(model.checkpoint_id)}
        if body.states is not None:
            out["actions"] = model.act(body.states).tolist()
            return out
        acted = model.act_on_features(body.records if body.records is not None else body.columns)
        out["actions"] = [
            {"timestamp": t.isoformat(), "symbol": s, "action": float(a)}
            for t, s, a in zip(acted["timestamp"], acted["symbol"], acted["action"], strict=True)
        ]
        return out

    return app


__all__ = ["ModelHolder", "create_serving_app"]
