"""Run a Python snippet in a private mount namespace (``unshare -rm``) with a small
tmpfs mounted: a real full (or read-only) filesystem, gone when the child exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

FILL = """
def fill(folder):
    '''Take every free byte of the filesystem holding folder: ENOSPC from now on.'''
    import os
    with open(os.path.join(folder, "filler"), "wb") as fh:
        try:
            while True:
                fh.write(b"\\0" * 65536)
                fh.flush()
        except OSError:
            pass

def free(folder):
    import os
    os.unlink(os.path.join(folder, "filler"))
"""


def in_small_tmpfs(
    code: str, mount: Path, *args: str, size: str = "1m", read_only_after: str | None = None
) -> dict[str, Any]:
    """Mount a ``size`` tmpfs at ``mount`` and run ``code`` (``sys.argv[1]`` is the
    mount point); with ``read_only_after``, run that snippet first, then remount the
    tmpfs read-only. The child prints one JSON object last: returned."""
    mount.mkdir(parents=True, exist_ok=True)
    shell = 'mount -t tmpfs -o size="$1" tmpfs "$2" && '
    if read_only_after is not None:
        shell += '"$0" -c "$4" "$2" && mount -o remount,ro "$2" && '
    shell += 'exec "$0" -c "$3" "$2" "${@:5}"'
    done = subprocess.run(
        [
            "unshare",
            "-rm",
            "bash",
            "-c",
            shell,
            sys.executable,
            size,
            str(mount),
            FILL + code,
            FILL + (read_only_after or ""),
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
