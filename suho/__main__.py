"""``python -m suho``: the same as the ``suho`` command."""

from suho.cli import main

main()
