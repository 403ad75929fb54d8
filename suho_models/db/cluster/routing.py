"""Run time in sharded mode: synchronous Distributed inserts, per-node DELETEs.

:func:`attach` is registered as a :class:`Database` open hook when this package is
imported (``suho_models.db`` imports it), so ``database.py`` needs no import of
cluster mode and every server ``Database`` still gets it.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from suho_models.db.cluster.ddl import TABLE_STATEMENT, Renderer
from suho_models.db.cluster.settings import ClusterSettings, cluster_settings
from suho_models.db.cluster.topology import nodes
from suho_models.db.database import Database


def attach(db: Database, settings: ClusterSettings | None = None) -> None:
    """Give a server ``Database`` in sharded mode what the Distributed tables need.

    * ``distributed_foreground_insert`` on every connection (synchronous writes),
      and ``parallel_distributed_insert_select = 0`` (see ``_settings``);
    * lightweight ``DELETE FROM <t>`` (a Distributed table rejects it) rewritten to
      ``<t>_local`` on this node and run on every other node too. Every row of a
      run is on one shard, so the other nodes find nothing to delete.
    """
    settings = settings or cluster_settings()
    if not settings.sharded or db.is_embedded:
        return
    renderer = Renderer(settings, "", None)
    others: dict[str, sa.Engine] = {}
    db.arrow_over_http = False  # inserts take the native connections set up below

    @sa.event.listens_for(db.engine, "connect")
    def _settings(dbapi_connection: Any, _record: Any) -> None:
        transport = getattr(dbapi_connection, "transport", None)
        if transport is not None and settings.foreground_insert:
            transport.settings["distributed_foreground_insert"] = 1
        if transport is not None:
            # The engine's default (2) runs INSERT … SELECT between Distributed tables
            # on each shard with the tables renamed to <t>_local but their column
            # qualifiers not (UNKNOWN_IDENTIFIER): a deploy's new row version failed.
            transport.settings["parallel_distributed_insert_select"] = 0

    @sa.event.listens_for(db.engine, "before_cursor_execute", retval=True)
    def _route(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if not re.match(r"^\s*DELETE\s+FROM\s", statement, re.I):
            return statement, parameters
        match = TABLE_STATEMENT.match(statement)
        if match is None or not renderer.is_sharded(match.group("name")):
            return statement, parameters
        (local_sql,) = Renderer(
            settings.model_copy(update={"ddl": "per_node"}), "", None, renderer.sharded_tables
        ).statement(statement)
        if not others:
            for node in nodes(db.url, settings):
                if node.url != db.url.render_as_string(False):
                    others[node.url] = sa.create_engine(node.url)
        for engine in others.values():
            with engine.connect() as other:
                other.exec_driver_sql(local_sql, parameters)
        return local_sql, parameters


Database.open_hooks.append(attach)
