"""The migration environment shipped with the package (``env.py``, ``versions/``).

Found through the package by :func:`suho_models.db.migrations.script_location`.
"""
