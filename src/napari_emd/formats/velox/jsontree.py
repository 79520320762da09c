"""Reading Velox's JSON: the NUL-padded texts Velox stores in uint8 ``Metadata`` columns
and one-element string datasets, parsed with a warning (never an exception) when damaged,
and small helpers for walking the parsed trees."""

from __future__ import annotations

import copy
import json
import math
import warnings
from typing import Any

import h5py
import numpy as np

from ...errors import EMDWarning

_ATOMS = (str, int, float, bool, type(None))


def copy_tree(x: Any) -> Any:
    """A deep copy of a JSON-like metadata tree (dicts, lists, strings, numbers); other
    values go through ``copy.deepcopy``. Three times faster than ``deepcopy`` on the
    trees of a Velox file, where a read copies thousands of nodes."""
    if isinstance(x, dict):
        return {k: copy_tree(v) for k, v in x.items()}
    if isinstance(x, list):
        return [copy_tree(v) for v in x]
    if isinstance(x, _ATOMS):
        return x
    return copy.deepcopy(x)


def warn(msg: str) -> None:
    warnings.warn(msg, EMDWarning, stacklevel=3)


def loads(raw: Any, where: str) -> Any:
    """Parse Velox JSON text (bytes/str, NUL padded); ``None`` plus a warning if damaged."""
    if isinstance(raw, np.ndarray):
        raw = raw.tobytes() if raw.dtype == np.uint8 else (raw.ravel()[0] if raw.size else b"")
    if isinstance(raw, (bytes, np.bytes_)):
        raw = bytes(raw).split(b"\x00", 1)[0].decode("utf-8", "replace")
    if not isinstance(raw, str):
        raw = str(raw)
    raw = raw.strip()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as err:
        warn(f"{where}: metadata JSON is damaged ({err}); it is ignored")
        return None


def json_dataset(obj: Any, where: str) -> Any:
    """The JSON held by a Velox string dataset (shape (1,) object)."""
    if not isinstance(obj, h5py.Dataset):
        return None
    try:
        value = obj[()]
    except (OSError, ValueError, TypeError) as err:
        warn(f"{where}: cannot be read ({err}); it is ignored")
        return None
    if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
        value = value.ravel()[0] if value.size else b""
    return loads(value, where)


def metadata_column(ds: Any, index: int, where: str) -> dict[str, Any]:
    """Frame ``index``'s JSON of a uint8 ``(N, frames)`` Metadata dataset (``{}`` if none)."""
    if not isinstance(ds, h5py.Dataset) or ds.dtype != np.uint8 or ds.size == 0:
        return {}
    try:
        raw = ds[:, index] if ds.ndim == 2 else ds[()]
    except (OSError, ValueError, IndexError) as err:
        warn(f"{where}: metadata cannot be read ({err}); it is ignored")
        return {}
    out = loads(np.asarray(raw, dtype=np.uint8), where)
    return out if isinstance(out, dict) else {}


def frame_metadata_columns(
    ds: Any, where: str, first: int = 0, last: int | None = None
) -> list[dict[str, Any]]:
    """The metadata of frames ``first:last`` (default: all) of a ``(N, frames)``
    Metadata dataset (identical texts are parsed once)."""
    if not isinstance(ds, h5py.Dataset) or ds.dtype != np.uint8 or ds.ndim != 2:
        return []
    try:
        block = np.asarray(ds[:, first:last])
    except (OSError, ValueError) as err:
        warn(f"{where}: metadata cannot be read ({err}); it is ignored")
        return []
    out: list[dict[str, Any]] = []
    cache: dict[bytes, dict[str, Any]] = {}
    for i in range(block.shape[1]):
        raw = block[:, i].tobytes().split(b"\x00", 1)[0]
        if raw not in cache:
            parsed = loads(raw, f"{where} (frame {first + i})")
            cache[raw] = parsed if isinstance(parsed, dict) else {}
            out.append(cache[raw])
        else:  # every frame owns its dict
            out.append(copy_tree(cache[raw]))
    return out


def get(d: Any, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def to_float(v: Any, default: float | None = None) -> float | None:
    try:
        out = float(v)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def last_part(path: Any) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1] if path else ""


def parse_tree(group: h5py.Group, where: str, depth: int = 4) -> dict[str, Any]:
    """A Velox metadata group (datasets of JSON text, subgroups) as nested dicts."""
    out: dict[str, Any] = {}
    for key in group:
        try:
            item = group[key]
        except (KeyError, OSError) as err:
            warn(f"{where}/{key}: cannot be opened ({err}); it is ignored")
            continue
        if isinstance(item, h5py.Group):
            if depth > 0:
                out[key] = parse_tree(item, f"{where}/{key}", depth - 1)
        elif item.dtype.kind in "OS":
            v = json_dataset(item, f"{where}/{key}")
            if v is not None:
                out[key] = v
    return out


def version_json(f: h5py.File) -> tuple[dict[str, Any] | None, str]:
    """(parsed Version JSON or None, raw text)."""
    ds = f.get("Version")
    if not isinstance(ds, h5py.Dataset):
        return None, ""
    try:
        value = ds[()]
    except (OSError, ValueError, TypeError):
        return None, ""
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else b""
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("utf-8", "replace")
    text = str(value).strip("\x00").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return None, text
    return (parsed if isinstance(parsed, dict) else None), text
