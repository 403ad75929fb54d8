"""Progress bars both trainers show unless told to be quiet (``--quiet``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


class Progress:
    """Transient rich progress bars that ``enabled=False`` turns into nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[..., Any]]:
        """Yields ``advance(n=1)``."""
        if not self.enabled:
            yield lambda n=1: None
            return
        from rich.progress import Progress as RichProgress

        with RichProgress(transient=True) as progress:
            task_id = progress.add_task(description, total=total)
            yield lambda n=1: progress.advance(task_id, n)


__all__ = ["Progress"]
