"""Reading a plainly stored 1-D HDF5 dataset straight from the file, by byte offset.

Velox writes each spectrum stream as a chunked, uncompressed dataset (8192 values per
chunk, the chunks of the streams interleaved in the file). libhdf5 is not thread safe,
so h5py serialises every read behind one lock: with the streams of a multi-GB spectrum
image read by a thread per core, that lock, not the disk or the decoding, sets the pace.
A dataset whose chunks are stored as they are (no filters) can be read without it: the
file offset of every chunk is listed once (:func:`chunk_map`, through h5py's
``chunk_iter``), and a read is a few positional reads (:mod:`.posio`) of the chunk runs
it covers, adjacent chunks merged, from any number of threads at once.

Anything else (filters, several columns, an h5py without ``chunk_iter``) gives no map,
and the caller reads through h5py as before. The map holds the path, not an open
handle: each read opens the file for itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import posio
from .errors import EMDError


@dataclass(frozen=True)
class ChunkMap:
    """Where the values of a 1-D (or ``(N, 1)``) dataset lie in its file."""

    path: str
    n: int  # values in the dataset
    chunk: int  # values per chunk (``n`` for a contiguous dataset)
    dtype: np.dtype  # the stored values' type
    offsets: np.ndarray  # file offset of each chunk; -1: never written (fill value)
    fill: Any  # the dataset's fill value

    @property
    def chunk_bytes(self) -> int:
        return self.chunk * self.dtype.itemsize


def chunk_map(ds: Any) -> ChunkMap | None:
    """The chunk map of h5py dataset ``ds`` (call under the HDF5 lock), or None when it
    cannot be read by offset (see the module docstring)."""
    shape = tuple(ds.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or \
            ds.dtype.kind not in "ui":
        return None
    n = int(shape[0])
    try:
        if ds.id.get_create_plist().get_nfilters():
            return None
        fill = ds.fillvalue
        path = os.path.realpath(ds.file.filename)
        if ds.chunks is None:  # contiguous
            offset = ds.id.get_offset()
            if offset is None:
                return None
            return ChunkMap(path, n, max(n, 1), ds.dtype, np.array([offset], np.int64),
                            fill)
        chunk = int(ds.chunks[0])
        if not hasattr(ds.id, "chunk_iter") or chunk <= 0:
            return None
        offsets = np.full(-(-n // chunk), -1, np.int64)
        good = [True]
        want = chunk * ds.dtype.itemsize

        def one(info: Any) -> None:
            i = int(info.chunk_offset[0]) // chunk
            if info.filter_mask or info.size != want or not 0 <= i < offsets.size:
                good[0] = False
            else:
                offsets[i] = int(info.byte_offset)

        ds.id.chunk_iter(one)
    except Exception:  # an HDF5 library or h5py that cannot tell: read through h5py
        return None
    return ChunkMap(path, n, chunk, ds.dtype, offsets, fill) if good[0] else None


def read(m: ChunkMap, a: int, b: int) -> np.ndarray:
    """Values ``a:b`` of the mapped dataset, in its stored type. :class:`EMDError` when
    the file ends before a chunk does (truncated)."""
    a, b = max(int(a), 0), min(int(b), m.n)
    out = np.empty(max(b - a, 0), m.dtype)
    if b <= a:
        return out
    raw = out.view(np.uint8)
    size = m.dtype.itemsize
    first, last = a // m.chunk, (b - 1) // m.chunk
    idx = np.arange(first, last + 1)
    lo = np.maximum(idx * m.chunk, a)
    hi = np.minimum((idx + 1) * m.chunk, b)
    starts = m.offsets[idx] + (lo - idx * m.chunk) * size
    unwritten = m.offsets[idx] < 0
    lengths = (hi - lo) * size
    # runs of chunks that follow each other in the file are read at once
    joined = (starts[1:] == starts[:-1] + lengths[:-1]) & ~unwritten[1:] & ~unwritten[:-1]
    run_starts = np.flatnonzero(np.concatenate([[True], ~joined]))
    run_ends = np.append(run_starts[1:], idx.size)
    fd = os.open(m.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        for k, e in zip(run_starts.tolist(), run_ends.tolist()):
            o0, o1 = int(lo[k] - a), int(hi[e - 1] - a)
            if unwritten[k]:
                out[o0:o1] = m.fill
                continue
            view = memoryview(raw[o0 * size : o1 * size])
            if posio.read_exactly(fd, view, int(starts[k])) != len(view):
                raise EMDError(m.path, "the file ends inside a data chunk (truncated?)")
    finally:
        os.close(fd)
    return out
