"""Alembic, driven from Python: what ``suho db`` and the schema check call.

The same ``alembic.ini`` and ``alembic/`` serve the ``alembic`` command line;
these helpers only pass the database URL in.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from suho_models.db.database import ALEMBIC_INI, REPO_ROOT, Database


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(REPO_ROOT / "alembic"))
    if url:
        # Percent signs in passwords would be read as interpolation by configparser.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "alembic/versions has no revision"
    return head


def upgrade(url: str, revision: str = "head") -> None:
    db = Database(url)
    try:
        db.create_database_if_missing()
    finally:
        db.close()
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    db = Database(url)
    try:
        return db.current_revision()
    finally:
        db.close()


def history() -> list[tuple[str, str | Sequence[str] | None, str]]:
    """(revision, down_revision, message) from base to head; a merge revision's
    down_revision is a sequence."""
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(script.walk_revisions())
    return [(r.revision, r.down_revision, r.doc or "") for r in reversed(revisions)]
