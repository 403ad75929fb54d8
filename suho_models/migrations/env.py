"""Alembic environment of the installed package; the logic is shared with the
checkout's ``alembic/env.py`` in :func:`suho_models.db.migrations.run_environment`."""

from alembic import context

from suho_models.db.migrations import run_environment

run_environment(context)
