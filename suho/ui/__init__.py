"""``suho ui``: the web interface (FastAPI, Jinja2 pages, uPlot charts shipped here)."""
