"""HMAC signatures of checkpoints, with a key that never enters the database.

Whoever can write a checkpoint table can write bytes, format and SHA-256 that
agree with each other, so the hash alone proves nothing about who stored them.
A checkpoint in a format whose loading can run code (pickle, joblib, SB3's zip)
is therefore loaded only when its row carries an HMAC-SHA256, made with this
key, over what identifies it: table, checkpoint id, run id, format, size,
SHA-256 and its companion blob's URI. A signature copied from another row,
another table or another format does not verify.

The key: ``SUHO_CHECKPOINT_KEY`` when set, else ``<data_dir>/checkpoint.key``,
made (mode 0600) on first use. A key file others can read is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repositories.errors import RepositoryError
from suho_models.settings import Settings, get_settings

KEY_FILENAME = "checkpoint.key"
SIGNATURE_VERSION = "v1"


class CheckpointKeyError(RepositoryError):
    """The signing key cannot be read or made, or is not private."""


def key_path(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).data_dir / KEY_FILENAME


def checkpoint_key(settings: Settings | None = None) -> bytes:
    """The signing key: the environment's, or the key file's (made on first use)."""
    settings = settings or get_settings()
    if settings.checkpoint_key is not None:
        key = settings.checkpoint_key.get_secret_value().encode()
        if len(key) < 16:
            raise CheckpointKeyError("SUHO_CHECKPOINT_KEY: expected at least 16 characters")
        return key
    path = key_path(settings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    except OSError as exc:
        raise CheckpointKeyError(f"cannot create the checkpoint key {path}: {exc}") from exc
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    return _read_key_file(path)


def _read_key_file(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CheckpointKeyError(
                f"checkpoint key {path} is accessible to other users "
                f"(mode {stat.filemode(mode)}): chmod 600 it"
            )
        key = path.read_text().strip().encode()
    except OSError as exc:
        raise CheckpointKeyError(f"cannot read the checkpoint key {path}: {exc}") from exc
    if len(key) < 16:
        raise CheckpointKeyError(f"checkpoint key {path}: expected at least 16 characters")
    return key


def key_id(key: bytes) -> str:
    """A short public name of a key, so an error can say "signed with another key"."""
    return hashlib.sha256(b"suho-checkpoint-key-id:" + key).hexdigest()[:8]


def _message(fields: Mapping[str, Any]) -> bytes:
    return json.dumps(
        {k: str(v) for k, v in fields.items()}, sort_keys=True, separators=(",", ":")
    ).encode()


def sign(fields: Mapping[str, Any], key: bytes) -> str:
    """``v1:<key id>:<hex HMAC-SHA256>`` over the canonical JSON of ``fields``."""
    digest = hmac.new(key, _message(fields), hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}:{key_id(key)}:{digest}"


def check(fields: Mapping[str, Any], signature: str, key: bytes) -> str | None:
    """None when ``signature`` is this key's over ``fields``; otherwise why not."""
    if not signature:
        return "it is not signed"
    parts = signature.split(":")
    if len(parts) != 3 or parts[0] != SIGNATURE_VERSION:
        return "its signature is malformed"
    if parts[1] != key_id(key):
        return f"it is signed with another key (key id {parts[1]}, ours is {key_id(key)})"
    if not hmac.compare_digest(signature, sign(fields, key)):
        return "its signature does not match its bytes, format or identity"
    return None


__all__ = [
    "KEY_FILENAME",
    "CheckpointKeyError",
    "check",
    "checkpoint_key",
    "key_id",
    "key_path",
    "sign",
]
