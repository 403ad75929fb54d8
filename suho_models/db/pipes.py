"""A FIFO path the engine reads bytes from, fed by a thread: how big payloads reach
the embedded engine without a staged copy on disk or in /dev/shm."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

_PIPE_WRITE_BYTES = 1 << 20
"""How much of a payload one write to the engine's pipe hands over."""


@contextmanager
def piped(blob: bytes | memoryview) -> Iterator[str]:
    """A path whose reader gets ``blob``: a FIFO fed by a thread while the engine reads.

    A pipe rather than a staged file: no second copy of the checkpoint in memory,
    and no room needed in /dev/shm, which is 64 MB under Docker's default, below
    the 100 MB inline limit. The FIFO sits in a private folder, so no other user
    can open it.
    """
    import fcntl
    import os
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="suho-blob-")
    path = os.path.join(folder, "blob")
    try:
        os.mkfifo(path, 0o600)

        def feed() -> None:
            try:
                with open(path, "wb", buffering=0) as pipe:  # returns once the engine opens it
                    with suppress(AttributeError, OSError):  # Linux: fewer, larger hand-overs
                        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_WRITE_BYTES)
                    view = memoryview(blob)
                    while view:  # a signal can cut a write short: go on from where it stopped
                        view = view[pipe.write(view[:_PIPE_WRITE_BYTES]) :]
            except OSError:
                pass  # the reader went away: its query fails, and says why

        feeder = threading.Thread(target=feed, name="suho-blob-feed", daemon=True)
        feeder.start()
        try:
            yield path
        finally:
            if feeder.is_alive():  # the query ended without reading to the end
                os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # frees the feeder
            feeder.join()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["piped"]
