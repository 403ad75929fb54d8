"""Writing a file the user named, safely: never through a symbolic link, never over
an existing file unless told (``--force``), and never half-written (a temporary file
in the same folder, renamed into place)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_new_file(path: Path, data: bytes, *, force: bool = False) -> None:
    """Write ``data`` to ``path`` atomically.

    Refused without ``force``: a symbolic link at ``path`` (writing would change its
    target) and an existing file. With ``force`` the link or file itself is replaced
    by the rename; a link's target is never written. A folder is always refused.
    """
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(f"{path} is a folder: give a file name")
    if not force:
        if path.is_symlink():
            raise FileExistsError(
                f"{path} is a symbolic link (to {os.readlink(path)}): refusing to write "
                "through it; --force replaces the link itself"
            )
        if path.exists():
            raise FileExistsError(f"{path} exists: refusing to overwrite it without --force")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, path)  # replaces a link itself, never its target
        else:
            _link_no_clobber(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _link_no_clobber(tmp: Path, path: Path) -> None:
    """Put ``tmp`` at ``path`` only if nothing is there (hard links fail on an existing
    name, atomically: a file or link made since the check is not overwritten)."""
    try:
        os.link(tmp, path, follow_symlinks=False)
    except FileExistsError:
        raise FileExistsError(f"{path} exists: refusing to overwrite it without --force") from None
    except OSError:  # no hard links here (some network and FUSE file systems)
        if path.exists() or path.is_symlink():
            raise FileExistsError(
                f"{path} exists: refusing to overwrite it without --force"
            ) from None
        os.replace(tmp, path)
