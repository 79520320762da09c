"""Writing NCEM EMD 0.2 files: the RosettaSciIO-style ``file_writer`` and a multi-signal
``write_signals`` used by the napari writer.

Layout written (EMD 0.2 as specified at emdatasets.com, as RosettaSciIO and ncempy read it)::

    /                       attrs version_major=0, version_minor=2, **kwds
    /data/<title>/          attrs emd_group_type=1, title, signal_type,
                                  metadata (JSON), original_metadata (JSON),
                                  [napari_layer (JSON), when written from napari]
    /data/<title>/data      the array, stored with its axes reversed (see below)
    /data/<title>/dim1..N   axis coordinates, attrs name and units ("[n_m]" style)
    /microscope /sample /user /comments   spec groups (attrs from original_metadata)

Axis order: ``dimK`` describes axis K-1 of the stored HDF5 array. RosettaSciIO stores
``data.T`` and reverses the dims on reading, so we store the array reversed too: a signal
of numpy shape ``(z, y, x)`` is stored as ``(x, y, z)`` with ``dim1`` = x. RosettaSciIO
and napari-emd read it back as ``(z, y, x)``; ncempy returns the stored ``(x, y, z)``
order with dims that match.

Safety: every write goes to a hidden temporary file in the target folder, which replaces
the target only when complete. An exception, a full disk or a killed process never
leaves a partial file under the target name nor damages an existing file.

Dask arrays are written block by block (``dask.array.store`` with the threaded
scheduler), so a lazy dataset bigger than memory can be saved.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import json
import math
import os
import secrets
import shutil
import stat
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from ._h5 import H5_LOCK, close_cached
from ._units import clean_unit
from .errors import EMDError, EMDWarning

#: Progress callback: called as ``progress(done, total)`` with counts of written blocks.
ProgressCallback = Callable[[int, int], Any]

EMD_VERSION = (0, 2)
#: Name of the top-level group holding the EMD data groups (as the EMD 0.2 spec shows).
DATA_GROUP = "data"
#: The root groups the EMD 0.2 specification lists next to the data.
SPEC_GROUPS = ("microscope", "sample", "user", "comments")
#: Group attribute with the napari layer state (JSON), see :mod:`napari_emd._writer`.
NAPARI_LAYER_ATTR = "napari_layer"

# HDF5 chunk size aimed at by the default chunking (bytes).
CHUNK_TARGET = 1 << 20
# Size of the blocks numpy data is written in (bytes): bounds the temporary copies.
WRITE_BLOCK_TARGET = 32 << 20
# Arrays inside metadata with more elements than this are left out of the JSON.
JSON_ARRAY_LIMIT = 1 << 16
# Numeric arrays up to this size are stored as plain attributes (bigger: as JSON or skipped).
ATTR_ARRAY_LIMIT = 4096

_RESERVED_ROOT_ATTRS = ("version_major", "version_minor")


# --- public entry points -------------------------------------------------------------


def file_writer(
    filename: str | os.PathLike,
    signal: Mapping[str, Any],
    chunks: Sequence[int] | bool | None = None,
    *,
    progress: ProgressCallback | None = None,
    **kwds: Any,
) -> None:
    """Write one signal to an NCEM EMD 0.2 file (RosettaSciIO's ``file_writer`` contract).

    Parameters
    ----------
    filename
        Target path. An existing file is replaced, atomically, only once the new file is
        complete.
    signal
        A dict with ``data`` (numpy or dask array), ``axes`` (list of dicts with ``name``,
        ``units``, ``index_in_array``, ``navigate`` and ``size``/``offset``/``scale`` or an
        ``axis`` coordinate vector) and ``metadata`` (HyperSpy-style tree; the group is
        named after ``metadata["General"]["title"]``). ``original_metadata`` is optional.
    chunks
        HDF5 chunk shape in numpy order of ``data``; ``None`` picks about 1 MiB chunks that
        keep whole signals (the non-navigation axes) together, ``True`` lets h5py guess,
        ``False`` stores the array contiguously.
    progress
        Optional ``progress(done, total)`` callable, called after each written block.
    **kwds
        Stored as attributes of the file's root group (dicts and lists as JSON text).

    Raises
    ------
    EMDError
        The file cannot be written (folder missing, disk full, unsupported dtype...).
    ValueError
        The signal dict or the options are malformed.
    """
    write_signals(filename, [signal], chunks=chunks, progress=progress, **kwds)


def write_signals(
    filename: str | os.PathLike,
    signals: Sequence[Mapping[str, Any]],
    chunks: Sequence[int] | bool | None = None,
    *,
    progress: ProgressCallback | None = None,
    group_attrs: Sequence[Mapping[str, Any] | None] | None = None,
    **kwds: Any,
) -> str:
    """Write several signals into one NCEM EMD 0.2 file, one data group each.

    Arguments are those of :func:`file_writer`; ``group_attrs`` optionally gives, per
    signal, extra attributes of its EMD data group (dicts and lists stored as JSON text;
    the napari writer stores the layer state this way). ``chunks``, when a shape, applies
    to every signal of matching dimensionality. Returns the absolute path written.
    """
    path = os.path.abspath(os.fspath(filename))
    if not signals:
        raise ValueError("nothing to write: no signals given")
    if group_attrs is not None and len(group_attrs) != len(signals):
        raise ValueError("group_attrs must have one entry per signal")
    for key in kwds:
        if key in _RESERVED_ROOT_ATTRS:
            raise ValueError(f"{key!r} is set by the writer and cannot be given")
    prepared = [_prepare(path, s, _chunks_for(s, chunks, len(signals))) for s in signals]
    names = _group_names([p.title for p in prepared])
    _check_target(path, sum(p.nbytes for p in prepared))

    total = sum(p.n_blocks for p in prepared)
    counter = _Progress(progress, total)
    with _atomic_replace(path) as tmp:
        try:
            # Reserve the disk space first: a full disk then fails here, cleanly, and not
            # in the middle of HDF5's writes (libhdf5 handles a failing flush badly).
            h5py.File(tmp, "w").close()
            _reserve_space(path, tmp, _estimate_size(prepared, group_attrs))
            f = h5py.File(tmp, "r+", rdcc_nbytes=16 << 20)
            try:
                _write_root(f, prepared, kwds)
                container = f.create_group(DATA_GROUP, track_order=True)
                for i, (prep, name) in enumerate(zip(prepared, names, strict=True)):
                    extra = group_attrs[i] if group_attrs is not None else None
                    _write_group(path, container.create_group(name), prep, extra, counter)
                f.close()  # flushes: can fail too (disk full); HDF5 trims the reserve
            except BaseException:
                _abandon(f, tmp)
                raise
        except (OSError, RuntimeError) as err:
            if isinstance(err, RuntimeError) and "write failed" not in str(err):
                raise
            raise EMDError(path, f"writing failed: {err}") from err
    counter.finish()
    return path


def _estimate_size(
    prepared: list[_Prepared], group_attrs: Sequence[Mapping[str, Any] | None] | None
) -> int:
    """A generous estimate of the file size: data, dim vectors, metadata, overhead."""
    total = 1 << 20
    for prep in prepared:
        total += prep.nbytes + sum(8 * max(2, a["size"]) for a in prep.axes) + 4096
        total += len(to_json(prep.metadata)) + len(to_json(prep.original_metadata))
        if prep.numpy_dtype.kind in "UO":
            total += prep.nbytes * 2
    for extra in group_attrs or []:
        total += len(to_json(extra or {}))
    return int(total * 1.02)


def _reserve_space(path: str, tmp: str, size: int) -> None:
    """Allocate ``size`` bytes for ``tmp`` (Linux ``fallocate``; elsewhere, or on file
    systems without it, nothing is reserved). HDF5 cuts the file to its real size when it
    is closed. A full disk raises :class:`EMDError` before any data is written."""
    fallocate = _fallocate()
    if fallocate is None:
        return
    import ctypes

    fd = os.open(tmp, os.O_RDWR)
    try:
        if fallocate(fd, 0, 0, size) != 0:
            errno = ctypes.get_errno()
            if errno == 28:  # ENOSPC
                free = shutil.disk_usage(os.path.dirname(tmp)).free
                raise EMDError(path, f"not enough free disk space: the file needs about "
                                     f"{_size(size)}, {_size(free)} are free")
            # EOPNOTSUPP and friends: this file system cannot reserve; write without
    finally:
        os.close(fd)


_FALLOCATE: list[Any] = []


def _fallocate() -> Any:
    """libc's ``fallocate`` (no slow emulation, unlike ``os.posix_fallocate``), or None."""
    if not _FALLOCATE:
        fn = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                fn = libc.fallocate
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
                fn.restype = ctypes.c_int
            except (OSError, AttributeError):
                fn = None
        _FALLOCATE.append(fn)
    return _FALLOCATE[0]


def _abandon(f: h5py.File, tmp: str) -> None:
    """Close a file whose writing failed without letting HDF5 retry its flush on a full
    disk: the temporary file is emptied first (freeing its space), so the final flush
    succeeds and no half-flushed handle is left for interpreter exit to trip on."""
    with contextlib.suppress(OSError):
        os.truncate(tmp, 0)
    with contextlib.suppress(Exception):
        f.close()


# --- preparation: validate the signal dict, pick chunks ----------------------------------


class _Prepared:
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
        self.is_dask = _is_dask(data)
        self.source = self._source()

    def _source(self) -> Any:
        """The data as a dask array with blocks suited to writing (None for 0-d/empty)."""
        data = self.data
        if data.ndim == 0 or 0 in data.shape:
            return None
        if self.is_dask:
            return data
        import dask.array as da

        block = _write_block_shape(data.shape, data.dtype.itemsize, self.chunks)
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


def _is_dask(data: Any) -> bool:
    return type(data).__module__.startswith("dask") and hasattr(data, "dask")


def _prepare(path: str, signal: Mapping[str, Any], chunks: Any) -> _Prepared:
    if not isinstance(signal, Mapping) or "data" not in signal:
        raise ValueError("a signal is a dict with at least a 'data' entry")
    data = signal["data"]
    if not _is_dask(data):
        if isinstance(data, np.ndarray):
            pass
        elif isinstance(data, np.generic) or not getattr(data, "shape", ()) or 0 in data.shape:
            data = np.asarray(data[()] if hasattr(data, "dtype") else data)
        elif hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "__getitem__"):
            # an array-like such as an open h5py.Dataset: read it block by block
            import dask.array as da

            block = _write_block_shape(tuple(data.shape), np.dtype(data.dtype).itemsize, None)
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
    return _Prepared(title, data, axes, metadata, original, h5dtype, numpy_dtype, hchunks)


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


def _chunks_for(signal: Mapping[str, Any], chunks: Any, n_signals: int) -> Any:
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
        sample = np.asarray(data if not _is_dask(data) else data.compute()).ravel()
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
        name = "" if name is None or _is_undefined(name) else str(name)
        vector = a.get("axis")
        ax: dict[str, Any] = {
            "name": name,
            "units": unit_symbol(a.get("units")),
            "size": size,
            "navigate": bool(a.get("navigate", False)) if any_nav_given
            else i not in default_signal,
        }
        if "size" in a and a["size"] is not None and int(a["size"]) != size:
            raise ValueError(f"{title!r}: axis {i} has size {a['size']} but the data has {size}")
        if vector is not None:
            vec = np.asarray(vector, dtype=float).ravel()
            if vec.size != size:
                raise ValueError(f"{title!r}: axis {i} vector has {vec.size} values for "
                                 f"{size} points")
            ax["vector"] = vec
            ax["offset"] = float(vec[0]) if size else 0.0
            ax["scale"] = float((vec[-1] - vec[0]) / (size - 1)) if size > 1 else 1.0
        else:
            ax["offset"] = _finite(a.get("offset"), 0.0)
            ax["scale"] = _finite(a.get("scale"), 1.0)
        out.append(ax)
    if not any(not ax["navigate"] for ax in out):
        for i in default_signal:
            out[i]["navigate"] = False
    return out


def _is_undefined(value: Any) -> bool:
    # traits' Undefined (HyperSpy) prints as "<undefined>"
    return type(value).__name__ in ("_Undefined", "Undefined")


def _finite(value: Any, default: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def unit_symbol(unit: Any) -> str:
    """A unit (string, pint Unit or Quantity, None) as a short symbol: ``nm``, ``µm``,
    ``Å``, ``1/nm``, ``keV``, ``eV``, ``s``; ``""`` for none, pixels or unknown units."""
    if unit is None or _is_undefined(unit):
        return ""
    if hasattr(unit, "units") and hasattr(unit, "magnitude"):  # pint Quantity
        unit = unit.units
    if hasattr(unit, "dimensionality") and not isinstance(unit, str):  # pint Unit
        text = format(unit, "~P")
        if not text or text in ("pixel", "px", "dimensionless"):
            return ""
        unit = text
    text = str(unit).strip()
    if not text:
        return ""
    text = text.replace(" / ", "/").replace("·", "*")
    if text.lower() in ("pixel", "pixels", "px", "dimensionless"):
        return ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EMDWarning)
        cleaned = clean_unit(text)
    return cleaned or text


def _ncem_units(symbol: str) -> str:
    """The NCEM spelling of a unit: every character separated by ``_`` inside brackets
    (``nm`` -> ``[n_m]``, ``1/nm`` -> ``[1_/_n_m]``), as ncempy and RosettaSciIO write."""
    return "[" + "_".join(symbol) + "]" if symbol else ""


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


def _write_block_shape(
    shape: tuple[int, ...], itemsize: int, chunks: Any
) -> tuple[int, ...]:
    """Blocks for writing in-memory data: whole HDF5 chunks, about WRITE_BLOCK_TARGET."""
    base = list(chunks) if isinstance(chunks, tuple) else [1] * len(shape)
    if not isinstance(chunks, tuple):
        base[-1] = shape[-1]
    block = [min(b, s) for b, s in zip(base, shape, strict=True)]
    # grow trailing axes to full size first, then leading ones, in whole chunks
    for i in reversed(range(len(shape))):
        cur = int(np.prod(block, dtype=np.int64)) * max(1, itemsize)
        if cur >= WRITE_BLOCK_TARGET:
            break
        factor = max(1, WRITE_BLOCK_TARGET // cur)
        grown = min(shape[i], block[i] * factor)
        if grown < shape[i]:
            grown = max(block[i], (grown // block[i]) * block[i])
        block[i] = grown
    return tuple(block)


def _group_names(titles: list[str]) -> list[str]:
    """HDF5-safe, unique group names for the titles (``/`` is a path separator)."""
    names: list[str] = []
    seen: set[str] = set()
    for t in titles:
        base = t.replace("/", "_").strip() or "dataset"
        if base in (".", ".."):
            base = f"dataset {base}"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base} ({n})"
        seen.add(name)
        names.append(name)
    return names


# --- file safety ---------------------------------------------------------------------


def _check_target(path: str, nbytes: int) -> None:
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise EMDError(path, f"the folder {folder} does not exist")
    if os.path.isdir(path):
        raise EMDError(path, "is a folder; give a file name ending in .emd")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise EMDError(path, "the existing file is read-only; it is left unchanged")
    if not os.access(folder, os.W_OK):
        raise EMDError(path, f"no permission to write in {folder}")
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise EMDError(path, f"not enough free disk space: the data needs {_size(nbytes)}, "
                             f"{_size(free)} are free")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


@contextlib.contextmanager
def _atomic_replace(path: str) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``
    (keeping an existing file's permissions), on any failure it is deleted."""
    folder, base = os.path.split(path)
    tmp = os.path.join(folder, f".{base}.{secrets.token_hex(4)}.part")
    # os.open with 0o666 honours the umask, as a normally created file would
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if os.path.exists(path):
            with contextlib.suppress(OSError):
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        # a cached lazy-read handle of the old file must not outlive it (and on Windows
        # would block the replace)
        close_cached(path)
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _fsync_dir(folder: str) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- writing -------------------------------------------------------------------------


class _Progress:
    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback = callback
        self.total = total
        self.done = 0
        self.lock = threading.Lock()

    def step(self, n: int = 1) -> None:
        if n <= 0:
            return
        with self.lock:
            self.done += n
            done = self.done
        if self.callback is not None:
            self.callback(done, self.total)

    def finish(self) -> None:
        if self.done < self.total:
            self.step(self.total - self.done)


def _write_root(f: h5py.File, prepared: list[_Prepared], kwds: Mapping[str, Any]) -> None:
    f.attrs["version_major"] = np.int64(EMD_VERSION[0])
    f.attrs["version_minor"] = np.int64(EMD_VERSION[1])
    for key, value in kwds.items():
        _set_attr(f, str(key), value, where="root attribute")
    groups = {name: f.create_group(name) for name in SPEC_GROUPS}
    for prep in prepared:
        for name in SPEC_GROUPS:
            src = prep.original_metadata.get(name)
            if not isinstance(src, Mapping):
                continue
            for key, value in src.items():
                if str(key) not in groups[name].attrs:
                    _set_attr(groups[name], str(key), value, where=f"{name} attribute")
    from . import __version__

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    groups["comments"].attrs[stamp] = f"written by napari-emd-io {__version__}"


def _write_group(
    path: str,
    group: h5py.Group,
    prep: _Prepared,
    extra: Mapping[str, Any] | None,
    counter: _Progress,
) -> None:
    group.attrs["emd_group_type"] = np.int64(1)
    group.attrs["title"] = prep.title
    signal_md = prep.metadata.get("Signal")
    signal_type = signal_md.get("signal_type", "") if isinstance(signal_md, Mapping) else ""
    group.attrs["signal_type"] = str(signal_type or "")
    group.attrs["metadata"] = to_json(prep.metadata)
    group.attrs["original_metadata"] = to_json(prep.original_metadata)
    for key, value in (extra or {}).items():
        _set_attr(group, str(key), value, where="group attribute")

    data = prep.data
    ndim = data.ndim
    stored_shape = tuple(reversed(data.shape))
    chunks = prep.chunks
    h5chunks = tuple(reversed(chunks)) if isinstance(chunks, tuple) else chunks
    if prep.source is None:
        arr = np.asarray(data.compute() if prep.is_dask else data)
        if ndim:
            arr = arr.T
        dset = group.create_dataset("data", data=_to_storage(arr, prep), dtype=prep.h5dtype)
        counter.step()
    else:
        dset = group.create_dataset(
            "data", shape=stored_shape, dtype=prep.h5dtype, chunks=h5chunks
        )
        _store(path, prep, dset, counter)
    if prep.numpy_dtype.kind in "UO":
        dset.attrs["numpy_dtype"] = prep.numpy_dtype.str
    _data_quantity(dset, prep.metadata)

    for i, ax in enumerate(prep.axes):
        if "vector" in ax:
            vec = ax["vector"]
        elif ax["size"] >= 2:
            vec = ax["offset"] + ax["scale"] * np.arange(ax["size"], dtype=np.float64)
        else:
            # one point (or none): the spec's two-value form keeps the step
            vec = np.array([ax["offset"], ax["offset"] + ax["scale"]], dtype=np.float64)
        dim = group.create_dataset(f"dim{ndim - i}", data=np.asarray(vec, dtype=np.float64))
        dim.attrs["name"] = ax["name"]
        dim.attrs["units"] = _ncem_units(ax["units"])


def _to_storage(arr: np.ndarray, prep: _Prepared) -> np.ndarray:
    if prep.numpy_dtype.kind == "U":
        return arr.astype(object)
    return arr


class _ReversedTarget:
    """A ``dask.array.store`` target writing numpy-order blocks into the reversed
    HDF5 dataset, counting the written blocks."""

    def __init__(self, dset: h5py.Dataset, prep: _Prepared) -> None:
        self.dset = dset
        self.prep = prep
        self._written = 0
        self._lock = threading.Lock()
        self.shape = tuple(reversed(dset.shape))
        self.dtype = prep.numpy_dtype
        self.ndim = len(self.shape)

    def __setitem__(self, region: tuple[slice, ...], block: np.ndarray) -> None:
        arr = _to_storage(np.asarray(block), self.prep)
        self.dset[tuple(reversed(region))] = arr.T
        with self._lock:
            self._written += 1

    def take_written(self) -> int:
        """Blocks written since the last call."""
        with self._lock:
            n, self._written = self._written, 0
        return n


def _store(path: str, prep: _Prepared, dset: h5py.Dataset, counter: _Progress) -> None:
    """Write ``prep.source`` block by block.

    dask's threaded scheduler computes the blocks in its worker threads and the target
    writes each one (the target is an open h5py handle that cannot travel to other
    processes; ``H5_LOCK`` serialises our writes with lazy reads of EMD files in this
    process). The scheduler's own loop runs in this thread, and a dask callback reports
    progress from it, so a progress callback (a napari progress bar) is always called
    from the thread that asked for the write.
    """
    import dask.array as da

    target = _ReversedTarget(dset, prep)
    try:
        with _report_progress(target, counter):
            da.store(prep.source, target, lock=H5_LOCK, scheduler="threads")
        counter.step(target.take_written())
    finally:
        target.dset = None  # no dataset handle may outlive the file (see _abandon)


@contextlib.contextmanager
def _report_progress(target: _ReversedTarget, counter: _Progress) -> Iterator[None]:
    """A dask callback, active for the block, reporting written blocks to ``counter``
    from the scheduler's loop (the calling thread)."""
    from dask.callbacks import Callback

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker: Any) -> None:
        counter.step(target.take_written())

    with Callback(posttask=posttask):
        yield


def _data_quantity(dset: h5py.Dataset, metadata: Mapping[str, Any]) -> None:
    """The spec's optional ``name``/``units`` of the data values, from HyperSpy's
    ``Signal.quantity`` (``"Intensity (counts)"``)."""
    signal = metadata.get("Signal")
    quantity = signal.get("quantity") if isinstance(signal, Mapping) else None
    if not isinstance(quantity, str) or not quantity.strip():
        return
    q = quantity.strip()
    name, units = q, ""
    if q.endswith(")") and "(" in q:
        name, units = q[: q.rindex("(")].strip(), q[q.rindex("(") + 1 : -1].strip()
    dset.attrs["name"] = name
    dset.attrs["units"] = units


# --- attributes and JSON -------------------------------------------------------------

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


def _set_attr(obj: h5py.HLObject, key: str, value: Any, *, where: str) -> None:
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
