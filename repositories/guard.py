"""A run's life signs while its process works: the heartbeat thread, and the guard
that records how training ended (failed on an exception, cancelled on Ctrl-C or
SIGTERM). :class:`~repositories.tracking.RunTrackingService` uses these; they know
nothing of tables, only the callables it gives them.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from repositories.errors import InvalidTransitionError

log = logging.getLogger(__name__)

RunId = uuid.UUID | str


class Terminated(KeyboardInterrupt):
    """SIGTERM while a run is guarded: a KeyboardInterrupt, so Ctrl-C's flush and
    cleanup paths run for it too."""


@contextlib.contextmanager
def beating(run_id: RunId, heartbeat: Callable[[RunId], bool], every: float) -> Iterator[None]:
    """Call ``heartbeat`` every ``every`` seconds from a thread while the block runs,
    until it answers False (the run is no longer running); a failed beat is logged,
    never raised (a missed beat must not end training)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                if not heartbeat(run_id):
                    return
            except Exception as exc:  # noqa: BLE001 - a missed beat must not end training
                log.warning("run %s: heartbeat not written: %s", run_id, exc)

    thread = threading.Thread(target=beat, name=f"heartbeat-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def guarded(
    run_id: RunId,
    *,
    heartbeat: Callable[[RunId], bool],
    every: float,
    cancel: Callable[[RunId, str], object],
    fail: Callable[[RunId, BaseException], object],
) -> Iterator[None]:
    """Beat while the block runs; on an exception ``fail`` the run, on Ctrl-C or
    SIGTERM (raised as :class:`Terminated` in the main thread) ``cancel`` it, and
    re-raise either way."""
    with sigterm_raises():  # until the end is recorded: a 2nd SIGTERM cannot cut it
        heartbeat(run_id)
        try:
            with beating(run_id, heartbeat, every):
                yield
        except KeyboardInterrupt as exc:
            reason = (
                "terminated (SIGTERM)"
                if isinstance(exc, Terminated)
                else "interrupted (KeyboardInterrupt)"
            )
            _record_end(cancel, run_id, reason)
            raise
        except BaseException as exc:
            _record_end(fail, run_id, exc)
            raise


def _record_end(transition: Callable[[RunId, Any], object], run_id: RunId, why: Any) -> None:
    """Mark the run; a run already finished keeps its status (the original
    exception, not this one, is what the caller must see)."""
    try:
        transition(run_id, why)
    except InvalidTransitionError as exc:
        log.warning("run %s: status not changed after the error: %s", run_id, exc)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """In the main thread, turn the first SIGTERM into :class:`Terminated` (later ones
    are ignored while cleanup runs); the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = False

    def on_sigterm(signum: int, frame: Any) -> None:
        nonlocal received
        if received:
            return
        received = True
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["Terminated", "beating", "guarded", "sigterm_raises"]
