"""The ``suho`` command line: one module per sub-app (``suho db`` in ``db.py``, ...),
output helpers in ``output.py``, what commands share in ``common.py``."""

from suho.cli.root import app, main

__all__ = ["app", "main"]
