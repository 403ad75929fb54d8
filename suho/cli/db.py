"""``suho db``: schema migrations, the local server, the cluster's state."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from suho.cli.common import url
from suho.cli.output import console

db_app = typer.Typer(
    help="Schema migrations and the local ClickHouse server.", no_args_is_help=True
)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Migrate the database up to REVISION (default: head)."""
    from suho_models.db import migrations

    migrations.upgrade(url(), revision)
    console.print(f"database at revision [bold]{migrations.current(url())}[/bold]")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, or base.")],
) -> None:
    """Migrate the database down to REVISION ('base' removes every table)."""
    from suho_models.db import migrations

    migrations.downgrade(url(), revision)
    console.print(f"database at revision [bold]{migrations.current(url()) or 'base'}[/bold]")


@db_app.command("current")
def db_current() -> None:
    """Show the database's revision and whether it is at head."""
    from suho_models.db import migrations

    current = migrations.current(url())
    head = migrations.head_revision()
    state = "head" if current == head else f"behind head {head}: run `suho db upgrade`"
    console.print(f"{current or 'none'} ({state})")


@db_app.command("history")
def db_history() -> None:
    """List the migrations from base to head."""
    from suho_models.db import migrations

    for revision, down, message in migrations.history():
        console.print(f"{down or 'base'} -> [bold]{revision}[/bold]: {message.splitlines()[0]}")


@db_app.command("status")
def db_status() -> None:
    """Show where the store is, its revision, and the row count of each table."""
    from repositories.queries import table_row_counts
    from suho_models.db import Database

    db = Database(url())
    try:
        db.verify_schema()
        table = Table(title=f"{db.database_name} @ {db.safe_url}")
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name, rows in table_row_counts(db).items():
            table.add_row(name, str(rows))
        console.print(table)
        console.print(f"schema revision [bold]{db.current_revision()}[/bold] (head)")
    finally:
        db.close()


@db_app.command("serve")
def db_serve(
    path: Annotated[
        Path | None,
        typer.Option(
            help="Data directory (default: the default store's; `suho db stop` its "
            "background server first)."
        ),
    ] = None,
    tcp_port: Annotated[int, typer.Option(help="Native protocol port.")] = 9000,
    http_port: Annotated[int, typer.Option(help="HTTP port.")] = 8123,
    host: Annotated[str, typer.Option(help="Listen address; non-loopback needs a password.")] = (
        "127.0.0.1"
    ),
    password: Annotated[
        str | None,
        typer.Option(
            help="Password of user default (prefer SUHO_SERVER_PASSWORD: arguments show in "
            "`ps`). Unset on loopback: generated once into <path>/server/password (0600)."
        ),
    ] = None,
) -> None:
    """Serve the store as a real ClickHouse server (until Ctrl-C or SIGTERM)."""
    import logging

    from suho_models.db.server import native_url, resolve_password, serve
    from suho_models.settings import DATABASE_NAME, get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    settings = get_settings()
    data = path or settings.embedded_path
    if password is None and settings.server_password is not None:
        password = settings.server_password.get_secret_value()
    password = resolve_password(data, host, password)
    url = native_url(host, tcp_port, DATABASE_NAME, password=password, http_port=http_port)
    console.print(
        f"serving {data} on {host}: native {tcp_port}, http {http_port}\nSUHO_DATABASE_URL={url}",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    serve(data, tcp_port=tcp_port, http_port=http_port, host=host, password=password)


db_cluster_app = typer.Typer(help="A ClickHouse cluster (SUHO_CLICKHOUSE_CLUSTER).")
db_app.add_typer(db_cluster_app, name="cluster")


@db_cluster_app.command("status")
def db_cluster_status() -> None:
    """Show each node's revision and each table's rows on each node (its shard)."""
    from suho_models import TABLE_NAMES
    from suho_models.db import cluster

    nodes = cluster.status(url())
    table = Table(title=f"cluster {cluster.cluster_settings().cluster}")
    table.add_column("table")
    for node in nodes:
        table.add_column(f"shard {node.shard} replica {node.replica}\n{node.name}", justify="right")
    table.add_row("revision", *[n.error or n.revision or "none" for n in nodes])
    for name in TABLE_NAMES:
        table.add_row(name, *["" if n.error else str(n.rows.get(name, "")) for n in nodes])
    console.print(table)
    if not cluster.healthy(nodes):  # a node down, or nodes at different revisions
        raise typer.Exit(1)
