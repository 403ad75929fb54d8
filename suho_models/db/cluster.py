"""Cluster mode: one switch (``SUHO_CLICKHOUSE_CLUSTER``) turns the single-node schema
into a replicated, sharded, or sharded-and-replicated one.

Left unset, nothing here runs and the schema is exactly the single-node one.

Design (what Langfuse, W&B Weave and PostHog do on ClickHouse, and why):

* **One set of revisions, rendered per mode.** Revisions keep writing single-node
  DDL (``op.create_table`` with our engines, ``op.execute("ALTER TABLE ...")``).
  The Alembic implementation below rewrites each statement as it runs, reading the
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
  (:func:`attach`), so repositories need no code of their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.schema import CreateTable, DDLElement
from sqlalchemy.sql import dml
from sqlalchemy.sql.elements import TextClause

LOCAL_SUFFIX = "_local"
"""Name suffix of the per-node tables under a Distributed table in sharded mode."""

Topology = Literal["replicated", "sharded", "both"]
DdlMode = Literal["on_cluster", "per_node"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class ClusterError(RuntimeError):
    """A statement or a cluster state that cluster mode cannot handle safely."""


class NodesDisagreeError(ClusterError):
    """Per-node DDL: the nodes are at revisions that cannot move to the target together."""


class ClusterSettings(BaseSettings):
    """``SUHO_CLICKHOUSE_*``: the cluster switch and how the schema is laid out on it."""

    model_config = SettingsConfigDict(env_prefix="SUHO_CLICKHOUSE_", extra="ignore")

    cluster: str | None = Field(
        default=None,
        description="Cluster name from the servers' <remote_servers>. Unset: single node.",
    )
    topology: Topology = Field(
        default="sharded",
        description="replicated (Replicated* engines), sharded (<table>_local + Distributed) "
        "or both (Replicated* local tables under Distributed).",
    )
    ddl: DdlMode = Field(
        default="on_cluster",
        description="on_cluster: ON CLUSTER on every statement; per_node: each revision "
        "runs on every node in turn (no DDL queue needed).",
    )
    nodes: str | None = Field(
        default=None,
        description="per_node: comma-separated URLs of every node; unset: read from "
        "system.clusters on the node SUHO_DATABASE_URL names.",
    )
    sharding_key: str = Field(
        default="cityHash64(run_id)",
        description="Distributed sharding key; must keep every row of a run on one shard.",
    )
    replica_path: str = Field(
        default="/clickhouse/tables/{shard}/{database}/{table}",
        description="Keeper path of Replicated tables ({shard}, {database}, {table} macros).",
    )
    replica_name: str = Field(default="{replica}", description="Replica name of Replicated tables.")
    dedup_window: int = Field(
        default=1000,
        ge=1,
        description="non_replicated_deduplication_window of sharded, non-replicated tables.",
    )
    foreground_insert: bool = Field(
        default=True,
        description="distributed_foreground_insert: a batch is acknowledged once on its shard.",
    )

    @field_validator("cluster")
    @classmethod
    def _cluster_name(cls, value: str | None) -> str | None:
        if value is not None and not _IDENTIFIER.match(value):
            raise ValueError(
                f"SUHO_CLICKHOUSE_CLUSTER: expected a cluster name (letters, digits, _ -), "
                f"got {value!r}"
            )
        return value or None

    @property
    def enabled(self) -> bool:
        return self.cluster is not None

    @property
    def sharded(self) -> bool:
        return self.enabled and self.topology in ("sharded", "both")

    @property
    def replicated(self) -> bool:
        return self.enabled and self.topology in ("replicated", "both")

    @property
    def on_cluster(self) -> bool:
        return self.enabled and self.ddl == "on_cluster"

    def node_url_list(self) -> list[str] | None:
        if not self.nodes:
            return None
        return [u.strip() for u in self.nodes.split(",") if u.strip()]


def cluster_settings() -> ClusterSettings:
    """Read the environment now (not cached: tests and tools switch modes)."""
    return ClusterSettings()


# ---------------------------------------------------------------------------
# SQL text helpers
# ---------------------------------------------------------------------------


def _unquoted(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, parenthesis depth after it) of each character of ``text``
    from ``start`` that stands outside quotes and backticks."""
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        else:
            depth += (ch == "(") - (ch == ")")
            yield i, ch, depth
        i += 1


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside quotes, backticks and parentheses."""
    parts, start = [], 0
    for i, ch, depth in _unquoted(text):
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _matching_paren(text: str, open_at: int) -> int:
    for i, ch, depth in _unquoted(text, open_at):
        if ch == ")" and depth == 0:
            return i
    raise ClusterError(f"unbalanced parentheses in {text[:80]!r}")


def _bare(name: str) -> str:
    """``db.`t```/``t`` -> ``t`` (the table part, unquoted)."""
    return name.rsplit(".", 1)[-1].strip('`"')


def _quote(name: str) -> str:
    return f"`{name}`"


# Statements about one table, with the table name where ON CLUSTER goes after it.
_TABLE_STATEMENT = re.compile(
    r"^\s*(?P<verb>ALTER\s+TABLE(?:\s+IF\s+EXISTS)?|OPTIMIZE\s+TABLE|"
    r"TRUNCATE\s+TABLE(?:\s+IF\s+EXISTS)?|TRUNCATE|DROP\s+TABLE(?:\s+IF\s+EXISTS)?|"
    r"CREATE\s+TABLE(?:\s+IF\s+NOT\s+EXISTS)?|DELETE\s+FROM)\s+"
    r"(?P<name>`[^`]+`|[A-Za-z_][\w.]*)(?P<rest>.*)$",
    re.S | re.I,
)
_DEDUP_WINDOW = "non_replicated_deduplication_window"
_ON_CLUSTER = re.compile(r"^\s*ON\s+CLUSTER\s", re.I)
_COLUMN_COMMAND = re.compile(
    r"^(ADD|DROP|MODIFY|RENAME|COMMENT)\s+COLUMN\b|^MODIFY\s+COMMENT\b", re.I
)


@dataclass
class Renderer:
    """Turns the single-node DDL of a revision into the statements of a cluster mode.

    ``sharded_tables``: tables laid out as ``<t>_local`` + Distributed ``<t>`` (the
    model tables; the version table is never sharded).
    """

    settings: ClusterSettings
    database: str
    dialect: Any
    sharded_tables: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.sharded_tables:
            import suho_models

            self.sharded_tables = set(suho_models.TABLE_NAMES)

    # -- pieces ---------------------------------------------------------------
    @property
    def on_cluster(self) -> str:
        if not self.settings.on_cluster:
            return ""
        return f" ON CLUSTER {_quote(self.settings.cluster or '')}"

    def is_sharded(self, name: str) -> bool:
        return self.settings.sharded and _bare(name) in self.sharded_tables

    def local(self, name: str) -> str:
        return _bare(name) + LOCAL_SUFFIX

    def _with_cluster(self, verb: str, name: str, rest: str) -> str:
        if self.settings.on_cluster and not _ON_CLUSTER.match(rest):
            return f"{verb} {name}{self.on_cluster}{rest}"
        return f"{verb} {name}{rest}"

    # -- CREATE TABLE (op.create_table) ---------------------------------------
    def create_table(self, table: sa.Table) -> list[str]:
        sql = str(CreateTable(table, if_not_exists=True).compile(dialect=self.dialect)).strip()
        match = re.match(r"CREATE TABLE IF NOT EXISTS (\S+) \((.*)\) ENGINE = (.*)$", sql, re.S)
        if match is None:
            raise ClusterError(f"unexpected CREATE TABLE text for {table.name}: {sql[:120]!r}")
        columns, engine_sql = match.group(2), match.group(3).strip()
        comment = ""
        if table.comment is not None:
            at = engine_sql.rfind(" COMMENT '")
            engine_sql, comment = engine_sql[:at].rstrip(), engine_sql[at:].strip()
        engine = self._engine(table, engine_sql)
        name = table.name
        if not self.is_sharded(name):
            return [self._create(name, columns, engine, comment)]
        if "run_id" not in table.c and "run_id" in self.settings.sharding_key:
            raise ClusterError(
                f"{name}: no run_id column for sharding key {self.settings.sharding_key!r}"
            )
        local = self.local(name)
        if not self.settings.replicated:
            engine = _add_engine_setting(
                engine, "non_replicated_deduplication_window", self.settings.dedup_window
            )
        distributed = (
            f"CREATE TABLE IF NOT EXISTS {_quote(name)}{self.on_cluster} AS {_quote(local)} "
            f"ENGINE = Distributed({_literal(self.settings.cluster)}, {_literal(self.database)}, "
            f"{_literal(local)}, {self.settings.sharding_key})" + (f" {comment}" if comment else "")
        )
        return [self._create(local, columns, engine, comment), distributed]

    def _create(self, name: str, columns: str, engine: str, comment: str) -> str:
        tail = f"\n {comment}" if comment else ""
        return (
            f"CREATE TABLE IF NOT EXISTS {_quote(name)}{self.on_cluster} ({columns}) "
            f"ENGINE = {engine}{tail}"
        )

    def _engine(self, table: sa.Table, engine_sql: str) -> str:
        """``ReplacingMergeTree(v) ORDER BY ...`` -> its Replicated form when replicated."""
        if not self.settings.replicated:
            return engine_sql
        open_at = engine_sql.index("(")
        close_at = _matching_paren(engine_sql, open_at)
        kind, args, clauses = (
            engine_sql[:open_at],
            engine_sql[open_at + 1 : close_at].strip(),
            engine_sql[close_at + 1 :],
        )
        if not kind.endswith("MergeTree"):
            raise ClusterError(f"{table.name}: engine {kind} has no Replicated form")
        if not kind.startswith("Replicated"):
            kind = "Replicated" + kind
            replica = ", ".join(
                _literal(v) for v in (self.settings.replica_path, self.settings.replica_name)
            )
            args = f"{replica}, {args}" if args else replica
        return f"{kind}({args}){clauses}"

    # -- DROP TABLE (op.drop_table) --------------------------------------------
    def drop_table(self, name: str) -> list[str]:
        names = [name, self.local(name)] if self.is_sharded(name) else [name]
        return [f"DROP TABLE IF EXISTS {_quote(_bare(n))}{self.on_cluster} SYNC" for n in names]

    # -- any other statement (op.execute, op.add_column, the version table) ----
    def statement(self, sql: str) -> list[str]:
        sql = sql.strip().rstrip(";").strip()
        match = _TABLE_STATEMENT.match(sql)
        if match is None:
            if self.settings.ddl == "per_node":
                raise ClusterError(
                    "per-node DDL runs every statement on every node, so a data statement "
                    f"in a migration would run once per node: {sql[:120]!r}. Write it as an "
                    "ALTER TABLE ... UPDATE (a mutation of each node's own rows) instead."
                )
            return [sql]  # e.g. INSERT ... SELECT: runs once, through the Distributed table
        verb = re.sub(r"\s+", " ", match.group("verb")).upper()
        name, rest = match.group("name"), match.group("rest")
        if not self.is_sharded(name):
            return [self._with_cluster(verb, name, rest)]
        local = _quote(self.local(name))
        if verb.startswith("CREATE"):
            raise ClusterError(
                f"{_bare(name)} is sharded: create it with op.create_table, which renders "
                "its local and Distributed tables"
            )
        if verb.startswith("DROP"):
            return self.drop_table(_bare(name))
        if verb.startswith("ALTER"):
            commands = _split_top_level(_strip_settings(rest)[0])
            is_column = [bool(_COLUMN_COMMAND.match(c)) for c in commands]
            if all(is_column):
                # Both tables: the Distributed table must show the same columns.
                return [
                    self._with_cluster(verb, local, rest),
                    self._with_cluster(verb, _quote(_bare(name)), rest),
                ]
            if any(is_column):
                raise ClusterError(
                    f"ALTER TABLE {_bare(name)} mixes column changes (for the local and the "
                    "Distributed table) with others (local table only): split it"
                )
        # Mutations, TTL, OPTIMIZE, TRUNCATE, DELETE: the rows live in the local tables.
        return [self._with_cluster(verb, local, self._own_dedup_window(rest))]

    def _own_dedup_window(self, rest: str) -> str:
        """A revision's single-node dedup window (or its RESET) on a sharded local table
        becomes this cluster's own window: cluster mode creates its local tables with
        ``dedup_window``, and a revision must neither override nor remove it."""
        window = f"MODIFY SETTING {_DEDUP_WINDOW} = {self.settings.dedup_window}"
        rest = re.sub(rf"MODIFY\s+SETTING\s+{_DEDUP_WINDOW}\s*=\s*\d+", window, rest, flags=re.I)
        return re.sub(rf"RESET\s+SETTING\s+{_DEDUP_WINDOW}\b", window, rest, flags=re.I)


def _strip_settings(rest: str) -> tuple[str, str]:
    """(commands, ' SETTINGS ...') of an ALTER's tail."""
    at = re.search(r"\sSETTINGS\s+\w+\s*=", rest, re.I)
    return (rest[: at.start()], rest[at.start() :]) if at else (rest, "")


def _literal(value: str | None) -> str:
    return "'" + (value or "").replace("\\", "\\\\").replace("'", "\\'") + "'"


def _add_engine_setting(engine: str, name: str, value: int) -> str:
    if re.search(rf"\b{name}\b", engine):
        return engine
    if "\n SETTINGS " in engine:
        return f"{engine}, {name} = {value}"
    return f"{engine}\n SETTINGS {name} = {value}"


# ---------------------------------------------------------------------------
# Alembic: the implementation that renders every statement for the cluster
# ---------------------------------------------------------------------------


def _cluster_impl_class() -> type:
    from suho_models.db.compat import ClickHouseAlembicImpl

    assert ClickHouseAlembicImpl is not None

    class ClusterAlembicImpl(ClickHouseAlembicImpl):  # type: ignore[misc, valid-type]
        """ClickHouse's implementation, with each statement rendered for the cluster.

        No ``__dialect__``: it is not registered; :func:`install` puts it on a
        migration context only when cluster mode is on.
        """

        renderer: Renderer
        rendered: list[str] | None = None

        def create_table(self, table: sa.Table, **kw: Any) -> None:
            for sql in self.renderer.create_table(table):
                self._run_sql(sql)

        def drop_table(self, table: sa.Table, **kw: Any) -> None:
            for sql in self.renderer.drop_table(table.name):
                self._run_sql(sql)

        def version_table_impl(self, **kw: Any) -> sa.Table:
            table: sa.Table = super().version_table_impl(**kw)
            settings = self.renderer.settings
            if not settings.on_cluster:
                return table  # per node: each node keeps its own revision
            # ON CLUSTER: one version row for the whole cluster, replicated to every
            # node (a plain table would hold the row on the node that ran it only).
            from clickhouse_sqlalchemy import engines

            replicated: sa.Table = sa.Table(
                table.name,
                sa.MetaData(),
                *(sa.Column(c.name, c.type, nullable=c.nullable) for c in table.columns),
                engines.ReplicatedMergeTree(
                    "/clickhouse/tables/all/{database}/" + table.name,
                    "{shard}-{replica}",
                    order_by=sa.func.tuple(),
                ),
                schema=table.schema,
                clickhouse_cluster=settings.cluster,
            )
            return replicated

        def _exec(self, construct: Any, *args: Any, **kw: Any) -> Any:
            if isinstance(construct, dml.Update | dml.Delete):
                compiled = construct.compile(
                    dialect=self.dialect, compile_kwargs={"literal_binds": True}
                )
                sql = f"{compiled} SETTINGS mutations_sync = 2"
            elif isinstance(construct, str | TextClause | DDLElement):
                sql = str(
                    construct.compile(dialect=self.dialect)
                    if not isinstance(construct, str)
                    else construct
                )
            else:
                return super()._exec(construct, *args, **kw)
            result = None
            for statement in self.renderer.statement(sql):
                result = self._run_sql(statement)
            return result

        def _run_sql(self, sql: str) -> Any:
            if self.rendered is not None:
                self.rendered.append(sql)
            if self.as_sql:
                self.static_output(sql + self.command_terminator)
                return None
            return self.connection.exec_driver_sql(sql)

    return ClusterAlembicImpl


def install(
    migration_context: Any,
    settings: ClusterSettings,
    rendered: list[str] | None = None,
    database: str | None = None,
) -> None:
    """Swap the cluster implementation onto a configured Alembic migration context.

    Alembic picks its implementation by dialect name and offers no option for
    another; a migration context is configured per run, so replacing its ``impl``
    (and the version table the impl defines) before ``run_migrations`` is the narrow
    way in, and leaves single-node runs untouched.
    """
    mc = migration_context
    if database is None:
        database = mc.connection.exec_driver_sql("SELECT currentDatabase()").scalar()
    impl = _cluster_impl_class()(
        mc.dialect, mc.connection, mc.as_sql, False, mc.output_buffer, mc.opts
    )
    impl.renderer = Renderer(settings, database, mc.dialect)
    impl.rendered = rendered
    mc.impl = impl
    mc._version = impl.version_table_impl(
        version_table=mc.version_table,
        version_table_schema=mc.version_table_schema,
        version_table_pk=True,
    )


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
    from suho_models.db.dialect import HTTP_PORT_PARAM

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
    on_cluster = f" ON CLUSTER {_quote(settings.cluster or '')}" * settings.on_cluster
    for target in targets:
        engine = sa.create_engine(make_url(target.url).set(database="default"))
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS {_quote(name)}{on_cluster}")
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
    from suho_models.db.database import Database

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

    from suho_models.db.database import Database

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

    from suho_models.db.migrations import alembic_config

    rendered: list[str] = []
    config = alembic_config(f"clickhouse+native://localhost/{database}")
    config.attributes["suho_cluster_settings"] = settings
    config.attributes["suho_rendered"] = rendered
    import io

    config.output_buffer = io.StringIO()  # the SQL text goes to `rendered` too
    command.upgrade(config, "head", sql=True)
    if downgrade:
        command.downgrade(config, "head:base", sql=True)
    return rendered


# ---------------------------------------------------------------------------
# Run time: synchronous Distributed inserts, per-node mutations
# ---------------------------------------------------------------------------


def attach(db: Any, settings: ClusterSettings | None = None) -> None:
    """Give a server ``Database`` in sharded mode what the Distributed tables need.

    * ``distributed_foreground_insert`` on every connection (synchronous writes);
    * lightweight ``DELETE FROM <t>`` (a Distributed table rejects it) rewritten to
      ``<t>_local`` on this node and run on every other node too. Every row of a
      run is on one shard, so the other nodes find nothing to delete.
    """
    settings = settings or cluster_settings()
    if not settings.sharded or db.is_embedded:
        return
    renderer = Renderer(settings, "", None)
    others: dict[str, sa.Engine] = {}

    @sa.event.listens_for(db.engine, "connect")
    def _settings(dbapi_connection: Any, _record: Any) -> None:
        transport = getattr(dbapi_connection, "transport", None)
        if transport is not None and settings.foreground_insert:
            transport.settings["distributed_foreground_insert"] = 1

    @sa.event.listens_for(db.engine, "before_cursor_execute", retval=True)
    def _route(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if not re.match(r"^\s*DELETE\s+FROM\s", statement, re.I):
            return statement, parameters
        match = _TABLE_STATEMENT.match(statement)
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
    from suho_models.db.database import Database

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
