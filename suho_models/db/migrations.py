"""Alembic, driven from Python: what ``suho db`` and the schema check call.

The migration environment ships inside the package (``suho_models/migrations``:
``env.py`` and ``versions/``) and is found through the package
(:mod:`suho_models.db.revisions`), so a wheel install migrates from any directory.
``alembic.ini`` and ``alembic/env.py`` at the top of a checkout serve the ``alembic``
command line; their ``version_locations`` is the same ``versions/`` folder, so both
routes run the same revision files, and both environments call
:func:`run_environment`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from suho_models.db import cluster
from suho_models.db.database import Database
from suho_models.db.revisions import (
    MIGRATIONS_PACKAGE,
    alembic_config,
    head_revision,
    script_location,
)

UNMODELLED_TABLES = frozenset({"checkpoint_signing_epoch"})
"""Tables a revision creates that no model describes (written once, by the revision):
autogenerate must not propose dropping them."""


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's filter: everything but :data:`UNMODELLED_TABLES`."""
    return not (type_ == "table" and name in UNMODELLED_TABLES)


__all__ = [
    "MIGRATIONS_PACKAGE",
    "UNMODELLED_TABLES",
    "alembic_config",
    "current",
    "downgrade",
    "head_revision",
    "history",
    "include_name",
    "run_environment",
    "script_location",
    "upgrade",
]


def upgrade(url: str, revision: str = "head") -> None:
    settings = cluster.cluster_settings()
    if settings.enabled and make_url(url).get_driver_name() != "chdb":
        cluster.create_database(url, settings)  # on every node
    else:
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


# ---------------------------------------------------------------------------
# The environment both env.py files run
# ---------------------------------------------------------------------------


def run_environment(context: Any) -> None:
    """Alembic's env.py body, for the package route and the checkout's alembic.ini.

    With ``SUHO_CLICKHOUSE_CLUSTER`` set, each migration context gets the cluster
    implementation (:mod:`suho_models.db.cluster`), and per-node DDL runs the
    command on every node in turn.
    """
    import suho_models
    from suho_models.db import compat  # noqa: F401  (registers the Alembic impl)
    from suho_models.settings import get_settings

    config = context.config
    settings = config.attributes.get("suho_cluster_settings") or cluster.cluster_settings()
    rendered = config.attributes.get("suho_rendered")
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or get_settings().resolved_database_url()
    )

    if settings.enabled and make_url(url).get_driver_name() == "chdb":
        raise cluster.ClusterError(
            f"SUHO_CLICKHOUSE_CLUSTER={settings.cluster} needs a server URL "
            f"(clickhouse+native://...), not the embedded store {url}"
        )

    def configure(**kw: Any) -> None:
        context.configure(target_metadata=suho_models.metadata, include_name=include_name, **kw)
        if settings.enabled:
            database = None if "connection" in kw else make_url(url).database
            cluster.install(context.get_context(), settings, rendered, database)

    def run(connection: Any) -> None:
        configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()

    if context.is_offline_mode():
        configure(url=url, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:  # a caller (tests, autogenerate check) passed one in
        run(connection)
        return
    if settings.enabled and settings.ddl == "per_node":
        cluster.run_per_node(context, url, settings, run)
        return
    db = Database(url)
    try:
        with db.engine.connect() as connection:
            run(connection)
    finally:
        db.close()
