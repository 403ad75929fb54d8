"""DDL rendering: a revision's single-node statements as the cluster mode's statements.

The rewriting lives in the Alembic *implementation* (every statement of every
revision, the version table's included, passes through it), not in the frozen
revisions and not in the models. A small scanner reads the SQL text (quotes,
backticks, parentheses) so that rewriting never splits inside a literal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable, DDLElement
from sqlalchemy.sql import dml
from sqlalchemy.sql.elements import TextClause

from suho_models.db.cluster.settings import LOCAL_SUFFIX, ClusterError, ClusterSettings

# ---------------------------------------------------------------------------
# SQL text scanner
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


def bare(name: str) -> str:
    """``db.`t```/``t`` -> ``t`` (the table part, unquoted)."""
    return name.rsplit(".", 1)[-1].strip('`"')


def quote(name: str) -> str:
    return f"`{name}`"


# Statements about one table, with the table name where ON CLUSTER goes after it.
TABLE_STATEMENT = re.compile(
    r"^\s*(?P<verb>ALTER\s+TABLE(?:\s+IF\s+EXISTS)?|OPTIMIZE\s+TABLE|"
    r"TRUNCATE\s+TABLE(?:\s+IF\s+EXISTS)?|TRUNCATE|DROP\s+TABLE(?:\s+IF\s+EXISTS)?|"
    r"CREATE\s+TABLE(?:\s+IF\s+NOT\s+EXISTS)?|DELETE\s+FROM)\s+"
    r"(?P<name>`[^`]+`|[A-Za-z_][\w.]*)(?P<rest>.*)$",
    re.S | re.I,
)
_DEDUP_WINDOW = "non_replicated_deduplication_window"
SHADOW_SEPARATOR = "__"
"""``<t>__<tag>``: a table built beside ``<t>`` to replace it (see ``Renderer.physical``)."""
_NAME = r"(?:`[^`]+`|[A-Za-z_][\w.]*)"
_CREATE_AS = re.compile(
    rf"^CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(?P<new>{_NAME})\s+AS\s+(?P<old>{_NAME})\s+"
    r"ENGINE\s*=\s*(?P<engine>.*)$",
    re.S | re.I,
)
_EXCHANGE = re.compile(rf"^EXCHANGE\s+TABLES\s+(?P<a>{_NAME})\s+AND\s+(?P<b>{_NAME})$", re.I)
_COPY = re.compile(
    rf"^INSERT\s+INTO\s+(?P<new>{_NAME})\s+SELECT\s+\*\s+FROM\s+(?P<old>{_NAME})"
    r"(?P<rest>\s+SETTINGS\s+.*)?$",
    re.S | re.I,
)
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
        return f" ON CLUSTER {quote(self.settings.cluster or '')}"

    def is_sharded(self, name: str) -> bool:
        return self.settings.sharded and bare(name) in self.sharded_tables

    def local(self, name: str) -> str:
        return bare(name) + LOCAL_SUFFIX

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
        engine_sql, comment = _split_comment(engine_sql)
        engine = self._engine(table.name, engine_sql)
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
            f"CREATE TABLE IF NOT EXISTS {quote(name)}{self.on_cluster} AS {quote(local)} "
            f"ENGINE = Distributed({_literal(self.settings.cluster)}, {_literal(self.database)}, "
            f"{_literal(local)}, {self.settings.sharding_key})" + (f" {comment}" if comment else "")
        )
        return [self._create(local, columns, engine, comment), distributed]

    def _create(self, name: str, columns: str, engine: str, comment: str) -> str:
        tail = f"\n {comment}" if comment else ""
        return (
            f"CREATE TABLE IF NOT EXISTS {quote(name)}{self.on_cluster} ({columns}) "
            f"ENGINE = {engine}{tail}"
        )

    def _engine(self, name: str, engine_sql: str) -> str:
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
            raise ClusterError(f"{name}: engine {kind} has no Replicated form")
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
        return [f"DROP TABLE IF EXISTS {quote(bare(n))}{self.on_cluster} SYNC" for n in names]

    # -- rebuilding a table (a new layout beside it, a copy, an exchange) -------
    def physical(self, name: str) -> str:
        """Where a table's rows live: ``<t>_local`` for a sharded table, and
        ``<t>_local__<tag>`` for ``<t>__<tag>``, a table a revision builds beside a
        sharded ``<t>`` to take its place."""
        name = bare(name)
        base, sep, tag = name.partition(SHADOW_SEPARATOR)
        if self.is_sharded(base):
            return self.local(base) + (sep + tag if sep else "")
        return name

    def _rebuild_statement(self, sql: str) -> list[str] | None:
        """The three statements of a rebuild that no other rule renders: ``CREATE TABLE
        new AS old ENGINE = ...``, ``INSERT INTO new SELECT * FROM old`` (``new`` a
        ``<t>__<tag>`` table only: other data statements stay refused per node) and
        ``EXCHANGE TABLES old AND new``; on the local tables when sharded."""
        if match := _CREATE_AS.match(sql):
            new, old = self.physical(match["new"]), self.physical(match["old"])
            engine, comment = _split_comment(match["engine"].strip())
            engine = self._engine(new, engine)
            if not self.settings.replicated and new != bare(match["new"]):
                engine = _add_engine_setting(engine, _DEDUP_WINDOW, self.settings.dedup_window)
            return [
                f"CREATE TABLE IF NOT EXISTS {quote(new)}{self.on_cluster} AS {quote(old)} "
                f"ENGINE = {engine}" + (f" {comment}" if comment else "")
            ]
        if match := _EXCHANGE.match(sql):
            a, b = self.physical(match["a"]), self.physical(match["b"])
            return [f"EXCHANGE TABLES {quote(a)} AND {quote(b)}{self.on_cluster}"]
        if (match := _COPY.match(sql)) and SHADOW_SEPARATOR in bare(match["new"]):
            new, old = self.physical(match["new"]), self.physical(match["old"])
            rest = match["rest"] or ""
            if new == bare(match["new"]) or not self.settings.on_cluster:
                # one table, or per node: each node copies its own rows (same shard)
                return [f"INSERT INTO {quote(new)} SELECT * FROM {quote(old)}{rest}"]
            # ON CLUSTER runs one connection: read every shard, write each row back to
            # its shard by the same sharding key
            cluster, db = _literal(self.settings.cluster), _literal(self.database)
            return [
                f"INSERT INTO FUNCTION cluster({cluster}, {db}, {_literal(new)}, "
                f"{self.settings.sharding_key}) SELECT * FROM cluster({cluster}, {db}, "
                f"{_literal(old)}){rest}"
            ]
        return None

    # -- any other statement (op.execute, op.add_column, the version table) ----
    def statement(self, sql: str) -> list[str]:
        sql = sql.strip().rstrip(";").strip()
        if (rebuilt := self._rebuild_statement(sql)) is not None:
            return rebuilt
        match = TABLE_STATEMENT.match(sql)
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
        if SHADOW_SEPARATOR in bare(name):
            sync = " SYNC" if verb.startswith("DROP") and not rest.upper().endswith("SYNC") else ""
            return [self._with_cluster(verb, quote(self.physical(name)), rest) + sync]
        if not self.is_sharded(name):
            return [self._with_cluster(verb, name, rest)]
        local = quote(self.local(name))
        if verb.startswith("CREATE"):
            raise ClusterError(
                f"{bare(name)} is sharded: create it with op.create_table, which renders "
                "its local and Distributed tables"
            )
        if verb.startswith("DROP"):
            return self.drop_table(bare(name))
        if verb.startswith("ALTER"):
            commands = _split_top_level(_strip_settings(rest)[0])
            is_column = [bool(_COLUMN_COMMAND.match(c)) for c in commands]
            if all(is_column):
                # Both tables: the Distributed table must show the same columns.
                return [
                    self._with_cluster(verb, local, rest),
                    self._with_cluster(verb, quote(bare(name)), rest),
                ]
            if any(is_column):
                raise ClusterError(
                    f"ALTER TABLE {bare(name)} mixes column changes (for the local and the "
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


def _split_comment(engine_sql: str) -> tuple[str, str]:
    """(engine, ``COMMENT '...'`` or "") of the text after ``ENGINE =``: the table's
    comment comes last, and the cluster forms put it back after their own engine."""
    at = engine_sql.rfind(" COMMENT '")
    if at < 0:
        return engine_sql, ""
    return engine_sql[:at].rstrip(), engine_sql[at:].strip()


def _literal(value: str | None) -> str:
    return "'" + (value or "").replace("\\", "\\\\").replace("'", "\\'") + "'"


def _add_engine_setting(engine: str, name: str, value: int) -> str:
    if re.search(rf"\b{name}\b", engine):
        return engine
    if re.search(r"\sSETTINGS\s", engine):
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
