"""Cluster mode: one switch (``SUHO_CLICKHOUSE_CLUSTER``) turns the single-node schema
into a replicated, sharded, or sharded-and-replicated one.

Left unset, nothing here runs and the schema is exactly the single-node one.

Design (what Langfuse, W&B Weave and PostHog do on ClickHouse, and why):

* **One set of revisions, rendered per mode.** Revisions keep writing single-node
  DDL (``op.create_table`` with our engines, ``op.execute("ALTER TABLE ...")``).
  The Alembic implementation (:mod:`.ddl`) rewrites each statement as it runs, reading the
  cluster settings. The rewriting belongs in the Alembic *implementation*, not in
  the revisions (they are frozen once shipped, and must not each know three
  layouts) and not in the models (the ORM reads and writes ``<table>`` whatever the
  layout). It is the one place every statement of every revision passes through,
  the version table's included.
* **Replicated:** ``Replicated<Engine>('<path>', '{replica}', <args>)``; the version
  column, ORDER BY, PARTITION BY and TTL are those of the single-node engine. The
  path carries ``{shard}``, ``{database}`` and ``{table}``, which the server expands.
* **Sharded:** ``<table>_local`` on every node holds the rows, and ``<table>`` is a
  ``Distributed`` table over them, so the ORM, the repositories and the seed's two
  queries use the seed's names verbatim. The sharding key is ``cityHash64(run_id)``:
  every row of one run, and so every version of one row, lands on one shard. That is
  what makes ReplacingMergeTree correct here: versions only replace each other
  inside one table on one node, so FINAL through the Distributed table (each shard
  merges its own rows) gives the same answer as on one node. A key spreading one
  run over shards would return several "current" rows.
* **Writes** go through the Distributed table, synchronously by default
  (``distributed_foreground_insert=1``: an acknowledged batch is on its shard, not
  in a local queue of the node that took it). A synchronous insert that fails part
  way has written to some shards only, so a retried batch must carry the same
  ``insert_deduplication_token``: each shard then drops the part it already has.
  Non-replicated MergeTree deduplicates only with
  ``non_replicated_deduplication_window`` > 0 (default 0), which sharded mode sets on
  every local table; Replicated tables deduplicate by default.
* **DDL: ON CLUSTER or per node.** ``ON CLUSTER`` (the default) goes on every
  statement, the version table's included, which then is a Replicated table shared
  by every node. ``SUHO_CLICKHOUSE_DDL=per_node`` instead runs each revision on every
  node in turn (PostHog's way: no DDL queue, no Keeper needed for non-replicated
  tables). Then each node keeps its own version table, every statement is idempotent
  (``IF [NOT] EXISTS``) so a revision half applied on a node can simply be re-run,
  and a migration refuses to start when the nodes' revisions cannot be brought to
  the target together (see :func:`check_node_revisions`).
* **Mutations at run time:** a Distributed table rejects ``DELETE``/``ALTER``; the
  repositories' lightweight deletes are sent to ``<table>_local`` on every node
  (:func:`attach`, in :mod:`.routing`), so repositories need no code of their own.

Modules, along the seams: :mod:`.settings` (the switch), :mod:`.ddl` (the SQL
scanner, the DDL renderer and the Alembic implementation), :mod:`.topology` (node
discovery, per-node migration, status) and :mod:`.routing` (run-time DELETEs;
attached to every ``Database`` through its open hook when this package is
imported, which ``suho_models.db`` does).
"""

from __future__ import annotations

from suho_models.db.cluster.ddl import Renderer, install
from suho_models.db.cluster.routing import attach
from suho_models.db.cluster.settings import (
    LOCAL_SUFFIX,
    ClusterError,
    ClusterSettings,
    DdlMode,
    NodesDisagreeError,
    Topology,
    cluster_settings,
)
from suho_models.db.cluster.topology import (
    Node,
    NodeStatus,
    check_node_revisions,
    compile_migrations,
    create_database,
    format_check,
    healthy,
    nodes,
    revision_of,
    run_per_node,
    status,
)

__all__ = [
    "LOCAL_SUFFIX",
    "ClusterError",
    "ClusterSettings",
    "DdlMode",
    "Node",
    "NodeStatus",
    "NodesDisagreeError",
    "Renderer",
    "Topology",
    "attach",
    "check_node_revisions",
    "cluster_settings",
    "compile_migrations",
    "create_database",
    "format_check",
    "healthy",
    "install",
    "nodes",
    "revision_of",
    "run_per_node",
    "status",
]
