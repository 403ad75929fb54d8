"""Bridges to other tools; each imports its library lazily, so the core runs without it."""
