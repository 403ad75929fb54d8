"""The server process :class:`LocalServer` starts: ``python -m suho_models.db.server``.

Not a command line for people (that is ``suho db serve``): it reads its settings
as one JSON object on stdin, so the password shows neither in ``ps`` nor in the
environment. Exits 0 after a clean stop, 2 for refused settings, 1 when the
engine fails.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from suho_models.db.server.config import ServerError
from suho_models.db.server.engine import serve

log = logging.getLogger("suho_models.db.server")


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if sys.stdin.isatty():
        log.error("this is the process LocalServer starts; to serve a store run `suho db serve`")
        return 2
    spec = json.loads(sys.stdin.read())
    try:
        serve(
            Path(spec["path"]),
            tcp_port=spec["tcp_port"],
            http_port=spec["http_port"],
            host=spec["host"],
            password=spec["password"],
            idle_seconds=spec.get("idle_seconds"),
        )
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    except ServerError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
