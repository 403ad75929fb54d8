"""Every checkpoint byte format in one place, and which of them may run code on load.

* **Data-only formats** (XGBoost UBJSON/JSON, LightGBM text, CatBoost cbm, ONNX,
  ``sb3_state``, replay-buffer ``.npz``) are parsed, never executed: they load
  without a signature. ``sb3_state`` and tensors go through
  ``torch.load(weights_only=True)``, arrays through ``np.load(allow_pickle=False)``.
* **Code formats** (pickle, joblib, SB3's zip, pickled replay buffers) execute
  whatever the bytes name. They are deserialized only from
  :class:`CheckpointBytes` that the checkpoint store marked ``trusted``: read from
  a row whose HMAC signature (:mod:`repositories.signing`) verified. Plain bytes,
  or bytes of another format than the caller names, are refused before any of
  them is deserialized.
"""

from __future__ import annotations

import io
import pickle
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

from repositories.errors import InvalidInputError, RepositoryError, enum_value
from suho_models.enums import ModelFormat

CODE_FORMATS = frozenset({ModelFormat.PICKLE, ModelFormat.JOBLIB, ModelFormat.SB3_ZIP})
"""Loading these runs code named by the bytes: only from signed checkpoints."""

OBJECT_FORMATS = frozenset({ModelFormat.PICKLE, ModelFormat.JOBLIB})
"""Formats :func:`dumps_object` writes from any Python object."""

FILE_EXTENSIONS: dict[ModelFormat, str] = {
    ModelFormat.PICKLE: "pkl",
    ModelFormat.JOBLIB: "joblib",
    ModelFormat.ONNX: "onnx",
    ModelFormat.XGBOOST_UBJSON: "ubj",
    ModelFormat.XGBOOST_JSON: "json",
    ModelFormat.LIGHTGBM_TEXT: "txt",
    ModelFormat.CATBOOST_CBM: "cbm",
    ModelFormat.SB3_ZIP: "zip",
    ModelFormat.SB3_STATE: "pt",
    ModelFormat.TORCH_STATE_DICT: "pt",
    ModelFormat.RAW: "bin",
}


class CorruptCheckpointError(RepositoryError):
    """The stored bytes of a checkpoint cannot be trusted; nothing was deserialized."""


class UntrustedCheckpointError(CorruptCheckpointError):
    """A format that runs code on load, without a valid signature: refused unread."""


class CheckpointBytes(bytes):
    """Bytes read back by the checkpoint store, SHA-256 verified, with the format of
    the same row version (so a caller's stale idea of the format cannot be used) and
    whether the row's signature verified (``trusted``)."""

    format: ModelFormat
    checkpoint_id: uuid.UUID | None
    trusted: bool

    def __new__(
        cls,
        data: bytes | bytearray | memoryview,
        format: ModelFormat,
        checkpoint_id: uuid.UUID | None = None,
        *,
        trusted: bool = False,
    ) -> CheckpointBytes:
        self = super().__new__(cls, data)
        self.format = ModelFormat(format)
        self.checkpoint_id = checkpoint_id
        self.trusted = trusted
        return self


def require_trusted(data: bytes, fmt: ModelFormat | str, what: str = "checkpoint") -> bytes:
    """``data`` itself if it may be deserialized as ``fmt``; raises otherwise.

    Data-only formats pass (after checking that ``data`` is of that format when the
    store says which it is); code formats need signed :class:`CheckpointBytes`.
    """
    fmt = enum_value(ModelFormat, fmt, "format")
    if isinstance(data, CheckpointBytes) and data.format is not fmt:
        raise UntrustedCheckpointError(
            f"{what} {data.checkpoint_id} is {data.format.value} now, not {fmt.value}: "
            "its row changed since it was listed; refusing to load it"
        )
    if fmt not in CODE_FORMATS:
        return data
    if not isinstance(data, CheckpointBytes):
        raise UntrustedCheckpointError(
            f"{what}: {fmt.value} runs code when loaded; only bytes from the checkpoint "
            "store with a verified signature are loaded (pass what load_checkpoint returns)"
        )
    if not data.trusted:
        raise UntrustedCheckpointError(
            f"{what} {data.checkpoint_id}: {fmt.value} runs code when loaded and its "
            "signature was not verified; refusing to load it"
        )
    return data


# --------------------------------------------------------------------------- objects
def dumps_object(obj: Any, fmt: ModelFormat | str) -> bytes:
    """pickle with ``pickle``, joblib with ``joblib.dump``: what :func:`loads_object`
    reads back with the same library."""
    fmt = enum_value(ModelFormat, fmt, "format")
    if fmt is ModelFormat.PICKLE:
        try:
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"cannot pickle {type(obj).__name__}: {exc}") from None
    if fmt is ModelFormat.JOBLIB:
        buffer = io.BytesIO()
        try:
            _joblib().dump(obj, buffer)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"cannot joblib-dump {type(obj).__name__}: {exc}") from None
        return buffer.getvalue()
    raise InvalidInputError(
        f"format {fmt.value!r} is library-native: pass the bytes the library writes "
        f"(got a {type(obj).__name__}); only pickle and joblib objects are serialized here"
    )


def loads_object(data: bytes, fmt: ModelFormat | str) -> Any:
    """An object from signed pickle/joblib :class:`CheckpointBytes` (refused otherwise)."""
    fmt = enum_value(ModelFormat, fmt, "format")
    if fmt not in OBJECT_FORMATS:
        raise InvalidInputError(
            f"format {fmt.value!r} is library-native: hand its bytes to the library's loader"
        )
    trusted = require_trusted(data, fmt)
    if fmt is ModelFormat.PICKLE:
        return pickle.loads(trusted)  # noqa: S301 - signed: written by a key holder
    return _joblib().load(io.BytesIO(trusted))


def _joblib() -> Any:
    try:
        import joblib
    except ImportError:
        raise InvalidInputError("format 'joblib' needs joblib: pip install joblib") from None
    return joblib


# --------------------------------------------------------------------------- arrays
def dumps_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Named arrays as ``.npz`` (numeric dtypes only: object arrays would pickle)."""
    for name, array in arrays.items():
        if np.asarray(array).dtype.hasobject:
            raise InvalidInputError(f"array {name!r}: object dtype cannot be stored as data")
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def loads_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Arrays from :func:`dumps_arrays`; never unpickles (``allow_pickle=False``)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptCheckpointError(f"not an array archive (.npz): {exc}") from None


# --------------------------------------------------------------------------- tensors
def dumps_tensors(obj: Any) -> bytes:
    """Nested dicts/lists of tensors, numbers and strings, with ``torch.save``."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def loads_tensors(data: bytes, device: str = "cpu") -> Any:
    """What :func:`dumps_tensors` wrote, with ``weights_only=True``: torch's restricted
    unpickler, which builds tensors and containers and refuses any other global."""
    import pickle as _pickle

    import torch

    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except (_pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise CorruptCheckpointError(f"not a weights-only torch payload: {exc}") from None


__all__ = [
    "CODE_FORMATS",
    "FILE_EXTENSIONS",
    "OBJECT_FORMATS",
    "CheckpointBytes",
    "CorruptCheckpointError",
    "UntrustedCheckpointError",
    "dumps_arrays",
    "dumps_object",
    "dumps_tensors",
    "loads_arrays",
    "loads_object",
    "loads_tensors",
    "require_trusted",
]
