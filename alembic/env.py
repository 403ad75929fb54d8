"""Alembic environment for ``alembic upgrade head`` from a checkout.

The revisions live in the package (``suho_models/migrations/versions``, see
``alembic.ini``), and this file runs the same environment as the package's own
``env.py`` (:func:`suho_models.db.migrations.run_environment`): the URL comes from
``-x url=...``, ``sqlalchemy.url`` or ``SUHO_DATABASE_URL``; cluster mode from
``SUHO_CLICKHOUSE_*``.
"""

from alembic import context

from suho_models.db.migrations import run_environment

run_environment(context)
