"""Where checkpoint bytes too large for a table row go: a local directory or S3.

A store only moves bytes: ``put(key, data) -> uri``, ``get(uri)``, ``delete(uri)``.
It does not check integrity; the checkpoint repository records the SHA-256 of
every checkpoint in its table and verifies it on every load, so a store (or a
person with write access to the bucket) cannot hand back altered bytes unnoticed.

URIs are what the tables keep in ``storage_uri``: ``file:///abs/path`` for the
local store, ``s3://bucket/key`` for S3 and S3-compatible servers (MinIO,
SeaweedFS). The endpoint and credentials of an S3 server are not part of the
URI: they are configuration of the process (boto3's usual environment and
config files, or ``endpoint_url``).
"""

from __future__ import annotations

import io
import os
import re
import uuid
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from repositories.errors import InvalidInputError, NotFoundError, RepositoryError
from suho_models.enums import StorageKind
from suho_models.settings import Settings, get_settings

OBJECTS_DIRNAME = "objects"
"""Directory under ``<data_dir>`` of the default local store."""

_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]*$")


class ObjectStoreError(RepositoryError):
    """The object store failed or was asked for something it does not serve."""


class ObjectNotFoundError(ObjectStoreError, NotFoundError):
    """No object at that URI (deleted, or never written)."""


@runtime_checkable
class ObjectStore(Protocol):
    """The three operations the checkpoint repositories need from a store."""

    kind: StorageKind

    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` (replacing it), return its URI."""
        ...

    def get(self, uri: str) -> bytes:
        """The bytes at ``uri``; :class:`ObjectNotFoundError` when there are none."""
        ...

    def delete(self, uri: str) -> None:
        """Remove the object at ``uri``; a missing object is not an error."""
        ...

    def owns(self, uri: str) -> bool:
        """Whether ``uri`` points into this store (reads elsewhere are refused)."""
        ...


def check_key(key: str) -> str:
    """Keys are relative ``a/b/c.ext`` paths of plain segments.

    Refusing ``..``, absolute paths and odd characters keeps a key from
    escaping the local root and keeps S3 keys and file names the same.
    """
    segments = key.split("/")
    if not key or not all(_KEY_SEGMENT.match(s) and s not in {".", ".."} for s in segments):
        raise InvalidInputError(
            f"object key: expected relative segments of [A-Za-z0-9._=-] (got {key!r})"
        )
    return key


# --------------------------------------------------------------------------- local
class LocalObjectStore:
    """Objects as files under ``root``: the default, needs no server."""

    kind = StorageKind.LOCAL

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def put(self, key: str, data: bytes) -> str:
        """Write to a temporary name and rename: a reader sees all the bytes or none."""
        path = self.root / check_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ObjectStoreError(f"cannot write {path}: {exc}") from exc
        return path.as_uri()

    def get(self, uri: str) -> bytes:
        path = self._path(uri)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no object at {uri}") from None
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {uri}: {exc}") from exc

    def delete(self, uri: str) -> None:
        path = self._path(uri)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise ObjectStoreError(f"cannot delete {uri}: {exc}") from exc

    def owns(self, uri: str) -> bool:
        try:
            self._path(uri)
        except ObjectStoreError:
            return False
        return True

    def path_of(self, uri: str) -> Path:
        """The file behind ``uri`` (for tooling and tests)."""
        return self._path(uri)

    def _path(self, uri: str) -> Path:
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in {"", "localhost"}:
            raise ObjectStoreError(f"{self!r} serves file:// URIs only (got {uri!r})")
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ObjectStoreError(f"{uri!r} is outside the store root {self.root}")
        return path


# --------------------------------------------------------------------------- S3
class S3ObjectStore:
    """Objects in an S3 bucket (AWS, MinIO, SeaweedFS, ...) through boto3.

    Uploads go through boto3's transfer manager, which switches to multipart
    uploads for large checkpoints. Pass ``client`` to reuse a configured
    ``boto3`` S3 client; otherwise one is made from boto3's usual credential
    chain and ``endpoint_url``.
    """

    kind = StorageKind.S3

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        prefix: str = "",
        client: Any | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise InvalidInputError(f"S3 bucket: expected a bucket name (got {bucket!r})")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.prefix = check_key(prefix.strip("/")) + "/" if prefix.strip("/") else ""
        self._client = client

    def __repr__(self) -> str:
        where = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3ObjectStore({self.bucket!r}, prefix={self.prefix!r}{where})"

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ObjectStoreError(
                    "the S3 object store needs boto3: pip install boto3"
                ) from exc
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url)
        return self._client

    def put(self, key: str, data: bytes) -> str:
        full = self.prefix + check_key(key)
        try:
            self.client.upload_fileobj(io.BytesIO(data), self.bucket, full)
        except Exception as exc:
            raise ObjectStoreError(f"cannot upload s3://{self.bucket}/{full}: {exc}") from exc
        return f"s3://{self.bucket}/{full}"

    def get(self, uri: str) -> bytes:
        key = self._key(uri)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            data: bytes = response["Body"].read()
            return data
        except Exception as exc:
            if _s3_error_code(exc) in {"NoSuchKey", "404", "NotFound"}:
                raise ObjectNotFoundError(f"no object at {uri}") from None
            raise ObjectStoreError(f"cannot read {uri}: {exc}") from exc

    def delete(self, uri: str) -> None:
        key = self._key(uri)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _s3_error_code(exc) in {"NoSuchKey", "404", "NotFound"}:
                return
            raise ObjectStoreError(f"cannot delete {uri}: {exc}") from exc

    def owns(self, uri: str) -> bool:
        try:
            self._key(uri)
        except ObjectStoreError:
            return False
        return True

    def _key(self, uri: str) -> str:
        parts = urlsplit(uri)
        key = parts.path.lstrip("/")
        if parts.scheme != "s3" or parts.netloc != self.bucket or not key:
            raise ObjectStoreError(f"{self!r} serves s3://{self.bucket}/... only (got {uri!r})")
        if not key.startswith(self.prefix):
            raise ObjectStoreError(f"{uri!r} is outside the prefix {self.prefix!r}")
        return key


def _s3_error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


# --------------------------------------------------------------------------- factories
def default_object_store(settings: Settings | None = None) -> LocalObjectStore:
    """``<data_dir>/objects``: works out of the box, next to the embedded database."""
    settings = settings or get_settings()
    return LocalObjectStore(settings.data_dir / OBJECTS_DIRNAME)


def object_store_from_uri(
    uri: str | None = None,
    *,
    endpoint_url: str | None = None,
    client: Any | None = None,
    settings: Settings | None = None,
) -> ObjectStore:
    """A store from a location URI: ``s3://bucket[/prefix]``, ``file:///dir`` or a
    plain directory path; ``None`` or empty gives the default local store.

    This is the shape a setting takes (``SUHO_OBJECT_STORE_URL``-style), so one
    string picks the store.
    """
    if not uri:
        return default_object_store(settings)
    parts = urlsplit(uri)
    if parts.scheme == "s3":
        return S3ObjectStore(
            parts.netloc, endpoint_url=endpoint_url, prefix=parts.path, client=client
        )
    if parts.scheme == "file":
        return LocalObjectStore(unquote(parts.path))
    if parts.scheme == "":
        return LocalObjectStore(uri)
    raise InvalidInputError(
        f"object store URI: expected s3://bucket[/prefix] or file:///dir (got {uri!r})"
    )
