"""``suho db stop``: the default store's background server (see README "The default store")."""

from __future__ import annotations

from suho.cli.output import console


def db_stop() -> None:
    """Stop the default store's background server now (the next suho command starts it)."""
    from suho_models.db.server.shared import stop_server
    from suho_models.settings import get_settings

    path = get_settings().embedded_path
    pid = stop_server(path)
    if pid is None:
        console.print(f"no server runs for {path}")
    else:
        console.print(f"stopped the server of {path} (pid {pid})")
