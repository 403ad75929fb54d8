"""Alembic environment for the ClickHouse training tables.

``suho_models.db`` registers our dialects and ``suho_models.db.compat`` the
ClickHouse Alembic implementation (valid version table on ClickHouse 26, works
on Alembic >= 1.15).
"""

from __future__ import annotations

from alembic import context

import suho_models
from suho_models.db import compat  # noqa: F401  (registers the Alembic impl)
from suho_models.db.database import Database
from suho_models.settings import get_settings

config = context.config
target_metadata = suho_models.metadata


def _url() -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or get_settings().resolved_database_url()
    )


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # a caller (tests, autogenerate check) passed one in
        _run(connection)
        return
    db = Database(_url())
    try:
        with db.engine.connect() as connection:
            _run(connection)
    finally:
        db.close()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
