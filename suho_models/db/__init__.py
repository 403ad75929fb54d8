"""Connectivity: dialects (embedded chDB, native), the Database handle, migrations."""

from suho_models.db.database import (
    Database,
    DatabaseUnavailableError,
    SchemaOutOfDateError,
)

__all__ = ["Database", "DatabaseUnavailableError", "SchemaOutOfDateError"]
