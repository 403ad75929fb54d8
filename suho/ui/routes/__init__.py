"""The UI's routes, one router per concern: the JSON API (:mod:`.api`), the pages
(:mod:`.pages`); what they show is built in :mod:`suho.ui.views`."""

from suho.ui.routes.api import router as api_router
from suho.ui.routes.pages import router as pages_router

__all__ = ["api_router", "pages_router"]
