"""Connectivity: dialects (embedded chDB, native), the Database handle, migrations.

Importing this package imports cluster mode, which registers its run-time routing
as a ``Database`` open hook (a no-op unless ``SUHO_CLICKHOUSE_CLUSTER`` is sharded).
"""

from suho_models.db import cluster  # noqa: F401  (registers Database's cluster hook)
from suho_models.db.database import (
    Database,
    DatabaseUnavailableError,
    SchemaOutOfDateError,
)

__all__ = ["Database", "DatabaseUnavailableError", "SchemaOutOfDateError"]
