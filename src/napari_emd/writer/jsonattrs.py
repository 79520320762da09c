"""Metadata as JSON and HDF5 attributes: what can be stored is stored, what cannot is left
out (with a warning), never a failed write."""

from __future__ import annotations

import datetime
import enum
import json
import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from ..errors import EMDWarning
from ..units import unit_symbol

# Arrays inside metadata with more elements than this are left out of the JSON.
JSON_ARRAY_LIMIT = 1 << 16


# Numeric arrays up to this size are stored as plain attributes (bigger: as JSON or skipped).
ATTR_ARRAY_LIMIT = 4096


_SKIP = object()


def jsonable(value: Any, limit: int = JSON_ARRAY_LIMIT) -> Any:
    """``value`` as JSON-compatible data, with what cannot be represented left out.

    numpy scalars and arrays (up to ``limit`` elements) become numbers and lists, pint
    units their symbols, enums their values, paths text. Values with no JSON form (open
    files, dataset records, dask arrays, functions...) are skipped, so the rest of the
    metadata is kept. Non-finite floats become ``None``.
    """
    out = _jsonable(value, limit, 0)
    return None if out is _SKIP else out


def _jsonable(value: Any, limit: int, depth: int) -> Any:
    if depth > 64:
        return _SKIP
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, limit, depth + 1)
    if isinstance(value, np.generic):
        if isinstance(value, (np.complexfloating, np.void)):
            return _SKIP
        if isinstance(value, np.bytes_):
            return bytes(value).decode("utf-8", "replace")
        return _jsonable(value.item(), limit, depth + 1)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        if value.size > limit or value.dtype.kind not in "biufSU" or value.dtype.names:
            return _SKIP
        return _jsonable(value.tolist(), limit, depth + 1)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)):
                continue
            j = _jsonable(v, limit, depth + 1)
            if j is not _SKIP:
                out[str(k)] = j
        return out
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v, limit, depth + 1) for v in value]
        return [v for v in items if v is not _SKIP]
    if hasattr(value, "dimensionality") and hasattr(value, "_units"):  # pint Unit
        return unit_symbol(value)
    if hasattr(value, "as_dictionary"):  # HyperSpy DictionaryTreeBrowser
        return _jsonable(value.as_dictionary(), limit, depth + 1)
    return _SKIP


def to_json(value: Any) -> str:
    """Compact JSON text of :func:`jsonable` ``(value)``."""
    return json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":"))


def set_attr(obj: h5py.HLObject, key: str, value: Any, *, where: str) -> None:
    """Store ``value`` as an attribute: numbers, text and numeric arrays as they are,
    dicts/lists/other as JSON text. Values with no representation are skipped with an
    :class:`EMDWarning`."""
    if value is None:
        return
    if isinstance(value, (str, bool, int, float, np.generic)) and not isinstance(
        value, (np.void,)
    ):
        obj.attrs[key] = value
        return
    if isinstance(value, bytes):
        obj.attrs[key] = np.bytes_(value)
        return
    small = isinstance(value, np.ndarray) and value.size <= ATTR_ARRAY_LIMIT
    if small and value.dtype.kind in "biufc":
        obj.attrs[key] = value
        return
    j = jsonable(value)
    if j is None:
        warnings.warn(f"{where} {key!r} ({type(value).__name__}) has no form that can be "
                      "stored in HDF5; it is left out", EMDWarning, stacklevel=3)
        return
    obj.attrs[key] = json.dumps(j, ensure_ascii=False, allow_nan=False)

