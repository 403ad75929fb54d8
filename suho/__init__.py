"""suho: tracking of ML and RL training in ClickHouse.

The client (``import suho``)::

    with suho.init(name="xgb-demo", config={"max_depth": 6}) as run:
        for i in range(100):
            run.log({"loss": 0.5 / (i + 1), "val_auc": 0.7}, step=i)

is loaded on first use, so the CLI and ``import suho`` stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from suho.client import Run, active_run, finish, init, load_model, log
    from suho.client.autolog import SuhoCallback, autolog

_CLIENT = {"Run", "active_run", "finish", "init", "load_model", "log"}
_AUTOLOG = {"autolog", "SuhoCallback"}


def __getattr__(name: str) -> Any:
    if name in _CLIENT:
        import suho.client

        return getattr(suho.client, name)
    if name in _AUTOLOG:
        import suho.client.autolog

        return getattr(suho.client.autolog, name)
    raise AttributeError(f"module 'suho' has no attribute {name!r}")


__all__ = ["Run", "SuhoCallback", "active_run", "autolog", "finish", "init", "load_model", "log"]
