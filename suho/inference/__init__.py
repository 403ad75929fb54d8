"""Inference with deployed models and agents: Python (:func:`load_model`), batch
(``suho predict``) and online (``suho serve``).

Importing this package (and so ``suho``) stays cheap: the model libraries, pandas
and the repositories load on the first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from suho.inference.models import LoadedModel


def load_model(name_or_run_id: Any, stage: str = "production", **options: Any) -> LoadedModel:
    """The model or agent in ``stage`` for a model name or agent type, or a run's final
    checkpoint for a run id; see :func:`suho.inference.models.load_model`."""
    from suho.inference.models import load_model as load

    return load(name_or_run_id, stage, **options)


__all__ = ["load_model"]
