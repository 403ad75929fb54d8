"""Topology: the cluster's nodes, each node's revision, per-node migrations, status."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from suho_models.db.cluster.ddl import quote
from suho_models.db.cluster.settings import (
    LOCAL_SUFFIX,
    ClusterError,
    ClusterSettings,
    NodesDisagreeError,
    cluster_settings,
)
from suho_models.db.database import Database
from suho_models.db.dialect import HTTP_PORT_PARAM
from suho_models.db.revisions import alembic_config

# ---------------------------------------------------------------------------
# Nodes: discovery, revisions, per-node migrations
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    url: str
    shard: int
    replica: int

    @property
    def name(self) -> str:
        u = make_url(self.url)
        return f"{u.host}:{u.port or 9000}"


def nodes(url: str | URL, settings: ClusterSettings | None = None) -> list[Node]:
    """Every node of the cluster, as URLs with ``url``'s user, password and database."""
    settings = settings or cluster_settings()
    if not settings.enabled:
        raise ClusterError("cluster mode is off: set SUHO_CLICKHOUSE_CLUSTER")
    explicit = settings.node_url_list()
    if explicit:
        return [Node(u, i + 1, 1) for i, u in enumerate(explicit)]
    base = make_url(url)
    engine = sa.create_engine(base.set(database="system"))
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT host_address, port, shard_num, replica_num FROM system.clusters "
                "WHERE cluster = %(c)s ORDER BY shard_num, replica_num",
                {"c": settings.cluster},
            ).all()
    finally:
        engine.dispose()
    if not rows:
        raise ClusterError(
            f"cluster {settings.cluster!r} is not in system.clusters of {base.host}:{base.port}"
        )
    entry = base.difference_update_query([HTTP_PORT_PARAM])
    found = []
    for host, port, shard, replica in rows:
        node = entry.set(host=host, port=int(port))
        # The entry node keeps its HTTP port (Arrow reads); others are reached natively.
        same = (host, int(port)) == (base.host, base.port or 9000)
        found.append(
            Node((base if same else node).render_as_string(False), int(shard), int(replica))
        )
    return found


def create_database(url: str, settings: ClusterSettings | None = None) -> None:
    """``CREATE DATABASE IF NOT EXISTS`` on every node: ON CLUSTER, or node by node."""
    settings = settings or cluster_settings()
    name = make_url(url).database or "default"
    targets = [Node(url, 0, 0)] if settings.on_cluster else nodes(url, settings)
    on_cluster = f" ON CLUSTER {quote(settings.cluster or '')}" * settings.on_cluster
    for target in targets:
        engine = sa.create_engine(make_url(target.url).set(database="default"))
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS {quote(name)}{on_cluster}")
        except Exception as exc:
            raise _unreachable(target, exc) from exc
        finally:
            engine.dispose()


def _unreachable(node: Node, exc: BaseException) -> ClusterError:
    return ClusterError(
        f"node {node.name} (shard {node.shard}) cannot be reached, so no node is migrated: "
        f"{str(exc).splitlines()[0][:200]}"
    )


def revision_of(url: str) -> str | None:
    db = Database(url)
    try:
        return db.current_revision()
    finally:
        db.close()


def check_node_revisions(revisions: dict[str, str | None], target: str | None, script: Any) -> None:
    """Refuse a per-node migration whose nodes cannot reach ``target`` together.

    Nodes at one revision may move anywhere. Nodes at different revisions are what
    an interrupted per-node upgrade leaves (some nodes done): every statement is
    idempotent, so moving each node from its own revision up to ``target`` finishes
    it. Anything else (a node past the target, a revision this code does not know)
    is refused, naming every node's revision.
    """
    distinct = set(revisions.values())
    if len(distinct) <= 1:
        return
    described = ", ".join(f"{n}: {r or 'empty'}" for n, r in revisions.items())
    if target is not None:
        try:
            ancestors = {r.revision for r in script.iterate_revisions(target, "base")}
        except Exception:  # an unknown target: Alembic reports it itself afterwards
            ancestors = set()
        if all(r is None or r in ancestors for r in distinct):
            return
    raise NodesDisagreeError(
        f"the cluster's nodes are at different revisions ({described}); bring them "
        f"to one revision first: `suho db upgrade <rev>` moves each node from its own "
        "revision up to <rev> when <rev> is at or ahead of every node's"
    )


def run_per_node(
    context: Any, url: str, settings: ClusterSettings, run: Callable[[Any], None]
) -> None:
    """Alembic's env: run the command's migrations on every node in turn."""
    from alembic.script import ScriptDirectory

    found = nodes(url, settings)
    create_database(url, settings)  # a fresh node has none yet; that changes no schema
    revisions = {}
    for node in found:
        try:
            revisions[node.name] = revision_of(node.url)
        except Exception as exc:
            raise _unreachable(node, exc) from exc
    target = context.get_revision_argument()
    target = target[-1] if isinstance(target, tuple | list) and target else target
    script = ScriptDirectory.from_config(context.config)
    if target in ("head", "heads"):
        target = script.get_current_head()
    check_node_revisions(revisions, target if isinstance(target, str) else None, script)
    for node in found:
        db = Database(node.url)
        try:
            with db.engine.connect() as connection:
                run(connection)
        finally:
            db.close()


def compile_migrations(
    settings: ClusterSettings, database: str = "suho_analytics", *, downgrade: bool = True
) -> list[str]:
    """Every statement of every revision (upgrade base->head, then back to base) as
    the cluster mode renders it, without a database (Alembic's offline mode)."""
    from alembic import command

    rendered: list[str] = []
    config = alembic_config(f"clickhouse+native://localhost/{database}")
    config.attributes["suho_cluster_settings"] = settings
    config.attributes["suho_rendered"] = rendered
    config.output_buffer = io.StringIO()  # the SQL text goes to `rendered` too
    command.upgrade(config, "head", sql=True)
    if downgrade:
        command.downgrade(config, "head:base", sql=True)
    return rendered


# ---------------------------------------------------------------------------
# Status: each node's revision, each table's rows by shard
# ---------------------------------------------------------------------------


@dataclass
class NodeStatus:
    name: str
    shard: int
    replica: int
    revision: str | None
    error: str | None = None
    rows: dict[str, int] = field(default_factory=dict)


def status(url: str, settings: ClusterSettings | None = None) -> list[NodeStatus]:
    """What ``suho db cluster status`` shows: per node, its revision and its rows of
    each table (the local table in sharded mode: that node's shard)."""
    import suho_models

    settings = settings or cluster_settings()
    result = []
    for node in nodes(url, settings):
        entry = NodeStatus(node.name, node.shard, node.replica, None)
        db = Database(node.url)
        try:
            entry.revision = db.current_revision()
            for table in suho_models.TABLE_NAMES:
                name = table + LOCAL_SUFFIX if settings.sharded else table
                exists = db.scalar(f"EXISTS TABLE `{name}`")
                count = db.scalar(f"SELECT count() FROM `{name}`") if exists else -1
                entry.rows[table] = int(count)
        except Exception as exc:  # a node that is down is part of the answer
            entry.error = str(exc).splitlines()[0][:200]
        finally:
            db.close()
        result.append(entry)
    return result


def healthy(statuses: Sequence[NodeStatus]) -> bool:
    """Every node answered, and all are at one revision."""
    return all(s.error is None for s in statuses) and len({s.revision for s in statuses}) <= 1


def format_check(db: Any, statements: Iterable[str]) -> list[str]:
    """Each statement through the engine's own parser (``formatQuerySingleLine``)."""
    return [
        db.scalar("SELECT formatQuerySingleLine(%(q)s)", {"q": statement})
        for statement in statements
    ]
