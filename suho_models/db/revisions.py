"""Where the revisions are and which one is head: a leaf (Alembic only), so that
``Database.verify_schema`` and cluster mode can ask without importing migrations.

The migration environment ships inside the package (``suho_models/migrations``:
``env.py`` and ``versions/``) and is found through the package, so a wheel install
migrates from any directory.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

MIGRATIONS_PACKAGE = "suho_models.migrations"


def script_location() -> Path:
    """The package's migration environment on disk (Alembic needs real files)."""
    root = Path(str(resources.files(MIGRATIONS_PACKAGE)))
    if not (root / "env.py").is_file() or not (root / "versions").is_dir():
        raise RuntimeError(
            f"{MIGRATIONS_PACKAGE} has no env.py/versions at {root}: the package is not "
            "installed as files (zip imports cannot run Alembic)"
        )
    return root


def alembic_config(url: str | None = None) -> Config:
    """A config without an ini file: the package carries everything a run needs."""
    config = Config()
    location = script_location()
    config.set_main_option("script_location", str(location))
    config.set_main_option("version_locations", str(location / "versions"))
    config.set_main_option("path_separator", "os")
    if url:
        # Percent signs in passwords would be read as interpolation by configparser.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"{MIGRATIONS_PACKAGE}/versions has no revision"
    return head
