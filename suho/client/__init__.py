"""The tracking client: ``suho.init`` / ``log`` / ``finish`` / ``autolog`` for any
training code (see :mod:`suho.client.run`)."""

from suho.client.run import Run, active_run, finish, init, load_model, log

__all__ = ["Run", "active_run", "finish", "init", "load_model", "log"]
