"""Preparing a signal for writing: the signal dict validated, its dtype mapped to one HDF5
holds, its axes normalised to numpy order, and its chunks chosen."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from ..errors import EMDError
from ..h5 import H5_LOCK, grow_chunks
from ..model import NAPARI_LAYER_ATTR
from ..units import finite_float, is_undefined, unit_symbol
from .tables import dataset_names

# HDF5 chunk size aimed at by the default chunking (bytes).
CHUNK_TARGET = 1 << 20


# Size of the blocks numpy data is written in (bytes): bounds the temporary copies.
WRITE_BLOCK_TARGET = 32 << 20


class Prepared:
    """A validated signal: data, axes in numpy order and the chosen storage."""

    def __init__(
        self,
        title: str,
        data: Any,
        axes: list[dict[str, Any]],
        metadata: dict[str, Any],
        original_metadata: dict[str, Any],
        h5dtype: Any,
        numpy_dtype: np.dtype,
        chunks: tuple[int, ...] | bool | None,
    ) -> None:
        self.title = title
        self.data = data
        self.axes = axes
        self.metadata = metadata
        self.original_metadata = original_metadata
        self.h5dtype = h5dtype
        self.numpy_dtype = numpy_dtype
        self.chunks = chunks
        self.is_dask = is_dask(data)
        self.source = self._source()
        # arrays stored next to ``data`` (writer.tables), set by write_signals
        self.items: dict[str, Any] | None = None

    def _source(self) -> Any:
        """The data as a dask array with blocks suited to writing (None for 0-d/empty)."""
        data = self.data
        if data.ndim == 0 or 0 in data.shape:
            return None
        if self.is_dask:
            return data
        import dask.array as da

        block = write_block_shape(data.shape, data.dtype.itemsize, self.chunks)
        return da.from_array(data, chunks=block, asarray=False, lock=False, name=False)

    @property
    def n_blocks(self) -> int:
        if self.source is None:
            return 1
        return int(np.prod(self.source.numblocks, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        size = int(np.prod(self.data.shape, dtype=np.int64))
        return size * max(1, self.numpy_dtype.itemsize)


def is_dask(data: Any) -> bool:
    return type(data).__module__.startswith("dask") and hasattr(data, "dask")


def prepare(path: str, signal: Mapping[str, Any], chunks: Any) -> Prepared:
    if not isinstance(signal, Mapping) or "data" not in signal:
        raise ValueError("a signal is a dict with at least a 'data' entry")
    data = signal["data"]
    if not is_dask(data):
        if isinstance(data, np.ndarray):
            pass
        elif isinstance(data, np.generic) or not getattr(data, "shape", ()) or 0 in data.shape:
            data = np.asarray(data[()] if hasattr(data, "dtype") else data)
        elif hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "__getitem__"):
            # an array-like such as an open h5py.Dataset: read it block by block
            import dask.array as da

            block = write_block_shape(tuple(data.shape), np.dtype(data.dtype).itemsize, None)
            data = da.from_array(data, chunks=block, lock=H5_LOCK)
        else:
            data = np.asarray(data)
    metadata, original = _drop_own_attributes(
        _plain_dict(signal.get("metadata")), _plain_dict(signal.get("original_metadata"))
    )
    general = metadata.get("General") if isinstance(metadata.get("General"), Mapping) else {}
    title = str(general.get("title") or "") or "dataset"
    h5dtype, numpy_dtype = _storage_dtype(path, title, data)
    axes = _normalise_axes(data.shape, signal.get("axes"), title)
    hchunks = _chunk_shape(data.shape, numpy_dtype.itemsize or 8, axes, chunks, title)
    return Prepared(title, data, axes, metadata, original, h5dtype, numpy_dtype, hchunks)


# Group attributes this writer derives on every write: a signal read back from one of our
# files carries them (as text) in its metadata, and copying them again would nest the
# previous file's JSON inside the new one, growing with every save.
_OWN_GROUP_ATTRS = ("metadata", "original_metadata", NAPARI_LAYER_ATTR)


def _drop_own_attributes(
    metadata: dict[str, Any], original: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    signal = metadata.get("Signal")
    if isinstance(signal, Mapping) and any(k in signal for k in _OWN_GROUP_ATTRS):
        metadata = {**metadata,
                    "Signal": {k: v for k, v in signal.items() if k not in _OWN_GROUP_ATTRS}}
    dataset = original.get("dataset")
    attrs = dataset.get("attributes") if isinstance(dataset, Mapping) else None
    if isinstance(attrs, Mapping) and any(k in attrs for k in _OWN_GROUP_ATTRS):
        attrs = {k: v for k, v in attrs.items() if k not in _OWN_GROUP_ATTRS}
        original = {**original, "dataset": {**dataset, "attributes": attrs}}
    return metadata, original


def chunks_for(signal: Mapping[str, Any], chunks: Any, n_signals: int) -> Any:
    """With several signals, a chunk shape applies to those of its dimensionality only."""
    if n_signals == 1 or chunks is None or isinstance(chunks, bool):
        return chunks
    data = signal.get("data") if isinstance(signal, Mapping) else None
    ndim = len(getattr(data, "shape", ()))
    return chunks if len(tuple(chunks)) == ndim else None


def _plain_dict(value: Any) -> dict[str, Any]:
    """A metadata tree as a plain dict (HyperSpy DictionaryTreeBrowser accepted)."""
    if value is None:
        return {}
    if hasattr(value, "as_dictionary"):
        value = value.as_dictionary()
    if not isinstance(value, Mapping):
        raise ValueError(f"metadata must be a dict, not {type(value).__name__}")
    return dict(value)


def _storage_dtype(path: str, title: str, data: Any) -> tuple[Any, np.dtype]:
    """The h5py dtype to store ``data`` with, or an EMDError for dtypes EMD cannot hold.

    Numbers, booleans and complex numbers are stored as they are. numpy unicode and object
    arrays of text become UTF-8 variable-length strings (readers get them back as text;
    the original numpy dtype is kept in the ``numpy_dtype`` attribute).
    """
    dt = np.dtype(data.dtype)
    kind = dt.kind
    if kind in "biufc" and dt.names is None:
        return dt, dt
    if kind == "S":
        return dt, dt
    if kind == "U":
        return h5py.string_dtype("utf-8"), dt
    if kind == "O":
        sample = np.asarray(data if not is_dask(data) else data.compute()).ravel()
        if all(isinstance(v, str) for v in sample):
            return h5py.string_dtype("utf-8"), dt
        if all(isinstance(v, bytes) for v in sample):
            return h5py.string_dtype("ascii"), dt
        bad = next(type(v).__name__ for v in sample if not isinstance(v, (str, bytes)))
        raise EMDError(path, f"{title!r}: object arrays can only be saved when every "
                             f"element is text; found a {bad}")
    if dt.names is not None:
        try:
            h5py.h5t.py_create(dt, logical=True)
        except Exception as err:
            raise EMDError(path, f"{title!r}: structured dtype {dt} cannot be stored "
                                 f"in HDF5: {err}") from err
        return dt, dt
    raise EMDError(path, f"{title!r}: data of dtype {dt} ({dt.kind!r}) cannot be stored in "
                         "an EMD file; convert it to numbers (e.g. datetime64 -> float "
                         "seconds) first")


def _normalise_axes(shape: tuple[int, ...], axes: Any, title: str) -> list[dict[str, Any]]:
    """The axis dicts in numpy order, each with name, units, size, offset, scale,
    navigate and (for non-uniform axes) the coordinate vector."""
    ndim = len(shape)
    given: list[Mapping[str, Any]] = list(axes or [])
    if given and len(given) != ndim:
        raise ValueError(f"{title!r}: {len(given)} axes given for data of shape {shape}")
    if given:
        order = [a.get("index_in_array", i) for i, a in enumerate(given)]
        if sorted(int(o) for o in order) != list(range(ndim)):
            raise ValueError(f"{title!r}: index_in_array values {order} are not 0..{ndim - 1}")
        given = [a for _, a in sorted(zip((int(o) for o in order), given), key=lambda t: t[0])]
    default_signal = set(range(max(0, ndim - 2), ndim))
    any_nav_given = any("navigate" in a for a in given)
    out: list[dict[str, Any]] = []
    for i in range(ndim):
        a = given[i] if given else {}
        size = int(shape[i])
        name = a.get("name")
        name = "" if name is None or is_undefined(name) else str(name)
        vector = a.get("axis")
        labels = a.get("labels")
        ax: dict[str, Any] = {
            "name": name,
            "units": unit_symbol(a.get("units")),
            "size": size,
            "navigate": bool(a.get("navigate", False)) if any_nav_given
            else i not in default_signal,
        }
        if isinstance(a.get("dim_attrs"), Mapping):  # extra attributes of the dim vector
            ax["attrs"] = dict(a["dim_attrs"])
        if "size" in a and a["size"] is not None and int(a["size"]) != size:
            raise ValueError(f"{title!r}: axis {i} has size {a['size']} but the data has {size}")
        if labels is not None:
            # napari-emd's extension: a text dim naming each position (table columns)
            ax["labels"] = [str(x) for x in labels]
            if len(ax["labels"]) != size:
                raise ValueError(f"{title!r}: axis {i} has {len(ax['labels'])} labels for "
                                 f"{size} points")
            ax["offset"], ax["scale"] = 0.0, 1.0
        elif vector is not None:
            vec = np.asarray(vector, dtype=float).ravel()
            if vec.size != size:
                raise ValueError(f"{title!r}: axis {i} vector has {vec.size} values for "
                                 f"{size} points")
            ax["vector"] = vec
            ax["offset"] = float(vec[0]) if size else 0.0
            ax["scale"] = float((vec[-1] - vec[0]) / (size - 1)) if size > 1 else 1.0
        else:
            ax["offset"] = finite_float(a.get("offset"), 0.0)
            ax["scale"] = finite_float(a.get("scale"), 1.0)
        out.append(ax)
    if not any(not ax["navigate"] for ax in out):
        for i in default_signal:
            out[i]["navigate"] = False
    return out


def _chunk_shape(
    shape: tuple[int, ...],
    itemsize: int,
    axes: list[dict[str, Any]],
    chunks: Any,
    title: str,
) -> tuple[int, ...] | bool | None:
    """HDF5 chunks in numpy order (True: h5py guesses; None: contiguous)."""
    ndim = len(shape)
    if ndim == 0 or 0 in shape:
        return None
    if chunks is True:
        return True
    if chunks is False:
        return None
    if chunks is not None:
        c = tuple(int(x) for x in chunks)
        if len(c) != ndim or any(x < 1 for x in c):
            raise ValueError(f"{title!r}: chunks {tuple(chunks)} do not fit data of shape "
                             f"{shape} (one positive size per axis)")
        return tuple(min(x, s) for x, s in zip(c, shape, strict=True))
    return default_chunks(shape, itemsize, [i for i, a in enumerate(axes) if not a["navigate"]])


def default_chunks(
    shape: Sequence[int], itemsize: int, signal_axes: Sequence[int], target: int = CHUNK_TARGET
) -> tuple[int, ...]:
    """Chunks of about ``target`` bytes that hold whole signals.

    A chunk spans the full signal axes (spectra, diffraction patterns, images), so reading
    one signal touches one chunk; signals bigger than ``target`` are tiled by halving
    their longest axis. The rest of the budget groups neighbouring navigation positions,
    the last (fastest) navigation axes first.
    """
    shape = [int(s) for s in shape]
    chunks = [1] * len(shape)
    sig = [i for i in signal_axes if 0 <= i < len(shape)] or list(range(len(shape)))[-2:]
    for i in sig:
        chunks[i] = shape[i]
    while int(np.prod(chunks, dtype=np.int64)) * itemsize > target:
        longest = max(sig, key=lambda i: chunks[i])
        if chunks[longest] <= 1:
            break
        chunks[longest] = (chunks[longest] + 1) // 2
    for i in reversed(range(len(shape))):
        if i in sig:
            continue
        cur = int(np.prod(chunks, dtype=np.int64)) * itemsize
        room = max(1, target // cur)
        chunks[i] = max(1, min(shape[i], room))
        if chunks[i] < shape[i]:
            break
    return tuple(chunks)


def write_block_shape(
    shape: tuple[int, ...], itemsize: int, chunks: Any
) -> tuple[int, ...]:
    """Blocks for writing in-memory data: whole HDF5 chunks, about WRITE_BLOCK_TARGET."""
    base = list(chunks) if isinstance(chunks, tuple) else [1] * len(shape)
    if not isinstance(chunks, tuple):
        base[-1] = shape[-1]
    return grow_chunks(shape, base, itemsize, WRITE_BLOCK_TARGET)


def group_names(titles: list[str]) -> list[str]:
    """HDF5-safe, unique group names for the titles (``/`` is a path separator), none
    the beginning of another.

    RosettaSciIO stacks every data group whose path *contains* another's
    (``data/C`` is in ``data/Ca/data``) and fails when their shapes differ, so a name
    that would be found in another group's path gets a number: ``C``, ``Ca`` ->
    ``C (1)``, ``Ca``. The title attribute keeps the real name.
    """
    names = dataset_names(titles, fallback="dataset")
    while True:
        clash = next((i for i, a in enumerate(names)
                      if any(b != a and _found_in(a, b) for b in names)), None)
        if clash is None:
            return names
        base, n = names[clash], 1
        while any(_found_in(f"{base} ({n})", b) or b == f"{base} ({n})" for b in names):
            n += 1
        names[clash] = f"{base} ({n})"


def _found_in(a: str, b: str) -> bool:
    """RosettaSciIO's test of whether group ``a`` belongs to ``b``'s stack (``a`` and
    ``b`` paths under ``/data``)."""
    return f"data/{a}" in f"data/{b}/data"


def group_paths(titles: list[str]) -> list[str]:
    """Where each title's data group goes under ``/data``: a group named by the title
    itself (``/`` replaced by ``_``), so that readers that take the title from the
    group's name (RosettaSciIO, ncempy) give the real name back.

    A title that :func:`group_names` has to number (``C`` next to ``Ca``; the same title
    twice) goes one level down, into a group named with that number: ``C (1)/C``. Such
    a path is never found in another group's path, and the numbered group keeps the
    tidy listing of ``/data`` with no clash. (Nothing can be done for ``/`` in a title.)
    """
    names = group_names(titles)
    bases = [_plain(t) for t in titles]
    paths = [n if n == b else f"{n}/{b}" for n, b in zip(names, bases)]
    while True:  # a title ending in "data" next to "d", "da"...: number the short one
        clash = next((i for i, a in enumerate(paths)
                      if any(j != i and (a == b or _found_in(a, b))
                             for j, b in enumerate(paths))), None)
        if clash is None:
            return paths
        base, n = bases[clash], 1
        while any(j != clash and (_found_in(f"{base} ({n})/{base}", b)
                                  or _found_in(b, f"{base} ({n})/{base}"))
                  for j, b in enumerate(paths)):
            n += 1
        paths[clash] = f"{base} ({n})/{base}"


def _plain(title: Any) -> str:
    """A title as a group name (``/`` is a path separator; ``.`` and ``..`` are taken)."""
    (name,) = dataset_names([title], fallback="dataset")
    return name

