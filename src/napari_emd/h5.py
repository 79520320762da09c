"""HDF5 access shared by all formats: opening with clear errors, attribute decoding, and
lazy dask arrays whose graphs hold a path, never an open handle.

Lazy chunks reopen the file inside the task through a small per-process handle cache, so a
graph computes with the threaded scheduler, in napari's async slicing and on a
``dask.distributed`` cluster of processes alike (the pid is part of the cache key, so a
forked worker never reuses its parent's handle). HDF5 is not thread safe: reads go through
one lock per process.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import h5py
import numpy as np

from .errors import EMDError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# One lock for all HDF5 calls made by lazy tasks in this process (libhdf5 serialises
# anyway; the lock keeps h5py's own state consistent across threads).
H5_LOCK = threading.RLock()

#: Bytes of one lazy chunk, roughly: the dask arrays over HDF5 datasets and the decoded
#: spectrum-image cubes (stream and blob) alike, so a task's memory is the same whatever
#: the source.
DATA_CHUNK_BYTES = 64 * 2**20


def is_hdf5(path: str | os.PathLike) -> bool:
    """True when ``path`` starts with the HDF5 signature (at 0, 512, 1024, ... bytes)."""
    try:
        with open(path, "rb") as f:
            offset = 0
            while True:
                f.seek(offset)
                head = f.read(8)
                if len(head) < 8:
                    return False
                if head == HDF5_SIGNATURE:
                    return True
                offset = 512 if offset == 0 else offset * 2
                if offset > 1 << 20:
                    return False
    except OSError:
        return False


@contextlib.contextmanager
def open_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open ``path`` read-only, turning every low-level failure into an :class:`EMDError`
    that names the file. The handle is always closed."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise EMDError(path, "no such file")
    if os.path.isdir(path):
        raise EMDError(path, "is a folder, not an EMD file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        if not is_hdf5(path):
            raise EMDError(path, "not an HDF5 file, so not an EMD file") from err
        raise EMDError(path, f"HDF5 file cannot be opened (truncated or corrupt?): {err}") from err
    try:
        yield f
    finally:
        with contextlib.suppress(Exception):
            f.close()


def attr_str(value: Any) -> str:
    """An HDF5 attribute as text (bytes, numpy bytes, 1-element arrays all accepted)."""
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return ""
        value = value.ravel()[0]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace").rstrip("\x00")
    return str(value)


def attr_value(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (str, int, float, list)."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace").rstrip("\x00")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO" or value.dtype.kind == "U":
            vals = [attr_value(v) for v in value.ravel()]
            return vals[0] if len(vals) == 1 else vals
        if value.size == 1:
            return value.ravel()[0].item()
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def attrs_dict(obj: h5py.HLObject) -> dict[str, Any]:
    """All attributes of a group or dataset as plain values (unreadable ones skipped)."""
    out: dict[str, Any] = {}
    for k in obj.attrs:
        try:
            out[k] = attr_value(obj.attrs[k])
        except Exception:  # an attribute h5py cannot decode is not worth a failed open
            continue
    return out


def tree_dict(group: h5py.Group, max_depth: int = 8) -> dict[str, Any]:
    """Attributes of a group and its subgroups as a nested dict (no dataset values read,
    except small scalar/string datasets)."""
    out = attrs_dict(group)
    if max_depth <= 0:
        return out
    for name, item in group.items():
        if isinstance(item, h5py.Group):
            out[name] = tree_dict(item, max_depth - 1)
        elif isinstance(item, h5py.Dataset) and item.size <= 16 and item.dtype.kind in "iufSOb":
            with contextlib.suppress(Exception):
                out[name] = attr_value(item[()])
    return out


# --- per-process handle cache -------------------------------------------------------

_HANDLES: OrderedDict[tuple[int, str], tuple[h5py.File, tuple]] = OrderedDict()
_MAX_HANDLES = 16


def file_identity(path: str | os.PathLike) -> tuple:
    """Inode, size and modification time of ``path`` (``()`` when it cannot be read):
    what tells a file apart from another one later saved under the same name. Lazy graphs
    record it, so that a chunk computed after the file was replaced fails clearly instead
    of mixing files, and per-process caches key on it."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def cached_handle(path: str) -> h5py.File:
    """An open read-only handle to ``path`` for this process (call under ``H5_LOCK``).

    A file replaced or rewritten under the same name (a re-export from Velox, a save over
    it) is reopened, so lazy reads never return the previous file's data.
    """
    key = (os.getpid(), path)
    ident = file_identity(path)
    cached = _HANDLES.get(key)
    if cached is not None:
        f, seen = cached
        if f.id.valid and seen == ident:
            _HANDLES.move_to_end(key)
            return f
        with contextlib.suppress(Exception):
            f.close()
        del _HANDLES[key]
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise EMDError(path, f"cannot reopen file for lazy reading: {err}") from err
    _HANDLES[key] = (f, ident)
    while len(_HANDLES) > _MAX_HANDLES:
        _, (old, _) = _HANDLES.popitem(last=False)
        with contextlib.suppress(Exception):
            old.close()
    return f


def cached_paths() -> list[str]:
    """The files this process holds open for lazy reading (for tests and diagnostics)."""
    with H5_LOCK:
        return [key[1] for key in _HANDLES if key[0] == os.getpid()]


def close_cached(path: str | None = None) -> None:
    """Close cached handles (all, or those of ``path``), e.g. before overwriting a file."""
    with H5_LOCK:
        for key in list(_HANDLES):
            if path is None or key[1] == os.fspath(path):
                with contextlib.suppress(Exception):
                    _HANDLES.pop(key)[0].close()


def check_unchanged(path: str, identity: tuple | None) -> None:
    """Raise :class:`EMDError` when ``path`` is no longer the file a lazy array was built
    from (saved over, re-exported): its chunks would otherwise show the new file's data
    under the old shape and calibration."""
    if identity and file_identity(path) != tuple(identity):
        raise EMDError(
            path, "the file changed on disk after it was opened lazily; open it again"
        )


def read_region(
    path: str, dset: str, region: tuple[slice, ...], identity: tuple | None = None
) -> np.ndarray:
    """Read ``region`` of dataset ``dset`` in ``path`` (used inside dask tasks);
    ``identity`` (from :func:`file_identity` when the graph was built) guards against a
    file replaced since."""
    check_unchanged(path, identity)
    with H5_LOCK:
        f = cached_handle(path)
        try:
            return f[dset][region]
        except (OSError, KeyError) as err:
            raise EMDError(path, f"cannot read {dset}{list(region)}: {err}") from err


def _block(
    path: str, dset: str, identity: tuple, block_info: dict | None = None
) -> np.ndarray:
    loc = block_info[None]["array-location"]
    return read_region(path, dset, tuple(slice(a, b) for a, b in loc), identity)


def lazy_dataset(
    path: str,
    dset: h5py.Dataset,
    chunks: tuple[int, ...] | str | None = None,
) -> Any:
    """A dask array over ``dset`` that reopens ``path`` in each task.

    ``chunks`` defaults to the HDF5 chunking grown to about 64 MiB blocks. Object/string
    datasets cannot be chunked lazily and are read at once.
    """
    import dask.array as da

    if dset.dtype.kind in "OSUV" and dset.dtype.names is None:
        return da.from_array(np.asarray(dset[()]), chunks=-1)
    shape = dset.shape
    if shape == () or 0 in shape:
        return da.from_array(np.asarray(dset[()]), chunks=-1)
    if chunks is None:  # whole HDF5 chunks (contiguous: whole rows), last axes first
        base = dset.chunks or (1, *shape[1:])
        chunks = grow_chunks(shape, base, dset.dtype.itemsize, DATA_CHUNK_BYTES)
    normalized = da.core.normalize_chunks(chunks, shape, dtype=dset.dtype)
    name = f"emd-{os.path.basename(path)}-{dset.name}-" + da.core.tokenize(
        path, dset.name, file_identity(path), normalized
    )
    return da.map_blocks(
        _block,
        path,
        dset.name,
        file_identity(path),
        chunks=normalized,
        dtype=dset.dtype,
        name=name,
        meta=np.empty((0,) * len(shape), dtype=dset.dtype),
    )


def grow_chunks(
    shape: Sequence[int],
    base: Sequence[int],
    itemsize: int,
    target: int,
    order: Iterable[int] | None = None,
) -> tuple[int, ...]:
    """Blocks of ``shape`` made of whole ``base`` chunks, grown to about ``target`` bytes.

    Axes are grown one after the other in ``order`` (default: the last axis first): each
    to its full length, or to as many whole ``base`` chunks as fit the budget, and the
    next only when the block is still under ``target``. So a block reads whole HDF5
    chunks, never part of one, and the axes grown first are whole in it (those a view
    shows, or the ones written together). Every block size is at least 1 and at most its
    axis (a zero-length axis gets 1). The rule of the lazy readers' dask chunks and of
    the writer's blocks.
    """
    shape = [int(s) for s in shape]
    block = [max(1, min(int(b), s)) for b, s in zip(base, shape, strict=True)]
    for i in reversed(range(len(shape))) if order is None else order:
        cur = int(np.prod(block, dtype=np.int64)) * max(1, itemsize)
        if cur >= target:
            break
        grown = min(shape[i], block[i] * max(1, target // cur))
        if grown < shape[i]:
            grown = (grown // block[i]) * block[i]
        block[i] = max(1, grown)
    return tuple(block)
