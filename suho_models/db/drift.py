"""Model-versus-database drift of the whole CREATE TABLE, as the engine writes it.

Alembic autogenerate compares columns only; it never sees an engine, ORDER BY,
PARTITION BY, TTL, codec or table comment. So the models' CREATE is compiled,
run in a scratch database, and the engine's own ``SHOW CREATE TABLE`` of it is
compared with the migrated table's: both texts come out of the same formatter,
so any difference is a real difference, not spelling.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy.schema import CreateTable

from suho_models.db.database import Database


def model_create_sql(table: Any, dialect: Any, database: str | None = None) -> str:
    """The CREATE TABLE the model compiles to (in ``database`` when given)."""
    ddl = str(CreateTable(table).compile(dialect=dialect)).strip()
    if database is None:
        return ddl
    prefix = f"CREATE TABLE {dialect.identifier_preparer.format_table(table)}"
    if not ddl.startswith(prefix):
        raise ValueError(f"unexpected DDL for {table.name}: {ddl[:80]!r}")
    return f"CREATE TABLE `{database}`.`{table.name}`" + ddl[len(prefix) :]


def schema_drift(db: Database, tables: Iterable[Any] | None = None) -> dict[str, str]:
    """Table name -> unified diff (database, then models) of ``SHOW CREATE TABLE``,
    for each model table whose database CREATE differs; empty when none does."""
    if tables is None:
        import suho_models

        tables = suho_models.metadata.sorted_tables
    tables = list(tables)
    here = db.database_name
    scratch = f"drift_{uuid.uuid4().hex[:12]}"
    existing = {
        r[0]
        for r in db.execute("SELECT name FROM system.tables WHERE database = currentDatabase()")
    }
    drift: dict[str, str] = {}
    db.execute(f"CREATE DATABASE `{scratch}`")
    try:
        for table in tables:
            db.execute(model_create_sql(table, db.engine.dialect, scratch))
            expected = _show_create(db, scratch, table.name)
            if table.name not in existing:
                drift[table.name] = f"missing from database {here}"
                continue
            actual = _show_create(db, here, table.name)
            if actual != expected:
                drift[table.name] = "\n".join(
                    difflib.unified_diff(
                        actual.splitlines(),
                        expected.splitlines(),
                        f"database {table.name}",
                        f"models {table.name}",
                        lineterm="",
                    )
                )
    finally:
        db.execute(f"DROP DATABASE IF EXISTS `{scratch}` SYNC")
    return drift


def _show_create(db: Database, database: str, table: str) -> str:
    """SHOW CREATE TABLE with the database name taken out, so two databases compare,
    and the SETTINGS sorted: their order carries no meaning (an ``ALTER ... MODIFY
    SETTING`` appends, a CREATE keeps the order it was given)."""
    ddl = str(db.scalar(f"SHOW CREATE TABLE `{database}`.`{table}`"))
    ddl = ddl.replace(f"CREATE TABLE {database}.", "CREATE TABLE ", 1)
    return "\n".join(
        "SETTINGS " + ", ".join(sorted(line[len("SETTINGS ") :].split(", ")))
        if line.startswith("SETTINGS ")
        else line
        for line in ddl.split("\n")
    )
