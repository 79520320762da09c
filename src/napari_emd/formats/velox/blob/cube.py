"""Reading the spectrum image of a SpectrumImage blob from a file: eager, lazy (a dask
cube chunked by rows) and the energy-first view for napari (one chunk per energy plane).

Opening reads only the header (:func:`read_layout`). Where each record starts is known
only by walking the length fields from the first record, so a lazy chunk's first need
builds a per-process :class:`BlobIndex` (one walk, keyed by the file's identity like the
stream decoder's indexes); it keeps the blob in memory when it is small enough, else
chunks read their byte spans from the file. Dask tasks hold the path and the file's
identity, never an open handle.

Small blobs (the real files' are 130-900 kB) are decoded by the numpy reference of
:mod:`.layout`; bigger ones by the numba kernels of :mod:`.kernels`, loaded on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from ....cache import ProcessCache
from ....errors import EMDError
from ....h5 import DATA_CHUNK_BYTES, H5_LOCK, cached_handle, check_unchanged, open_h5
from ....numba_kernels import BLOB_KERNELS
from ....threads import n_threads, pool
from ..siread import SIRead
from ..stream.spec import accumulator, cast, dtype_limit, warn_overflow
from .layout import (
    PREAMBLE,
    BlobLayout,
    as_bytes,
    decode_records,
    header_length,
    kernel_error,
    parse_blob,
    parse_header,
    record_error,
    record_positions,
)

# Blobs with at most this many records and bytes are decoded with numpy (no numba
# start-up); the real files' blobs (65,536-204,800 records) all are.
SMALL_RECORDS = 1 << 18
SMALL_BYTES = 8 * 2**20
SMALL_VOXELS = 1 << 24
# A lazy index keeps blobs up to this size in memory (chunks then read nothing).
KEEP_BYTES = 512 * 2**20
# Bytes of indexes (positions and kept blobs) per process.
INDEX_BUDGET = 2 * 2**30
# Bytes per block of a walk over a big blob (the lazy cube's chunks: h5.DATA_CHUNK_BYTES).
WALK_BLOCK = 64 * 2**20


# --- reading bytes -----------------------------------------------------------------------


def blob_size(dset: h5py.Dataset) -> int:
    """Bytes of a blob dataset; ``ValueError`` unless it is uint8 ``(N,)`` or ``(N, 1)``."""
    if dset.dtype not in (np.uint8, np.int8) or dset.ndim not in (1, 2) or (
            dset.ndim == 2 and dset.shape[1] != 1):
        raise ValueError(f"{dset.name} is {dset.dtype} {dset.shape}, not a uint8 (N, 1) blob")
    return int(dset.shape[0])


def read_bytes(dset: h5py.Dataset, a: int, b: int) -> np.ndarray:
    """Bytes ``a:b`` of a blob dataset as a flat uint8 array."""
    b = min(b, int(dset.shape[0]))
    if b <= a:
        return np.empty(0, np.uint8)
    out = np.empty((b - a, *dset.shape[1:]), dset.dtype)
    dset.read_direct(out, np.s_[a:b] if dset.ndim == 1 else np.s_[a:b, :])
    return out.reshape(-1).view(np.uint8)


def read_layout(dset: h5py.Dataset) -> BlobLayout:
    """The header of the blob in ``dset``, reading only the preamble and the header.
    ``ValueError`` for a damaged header, ``OSError`` when HDF5 cannot read it."""
    size = blob_size(dset)
    hl = header_length(read_bytes(dset, 0, PREAMBLE).tobytes())
    return parse_header(read_bytes(dset, 0, PREAMBLE + min(hl, size)).tobytes(), size)


# --- kernels -----------------------------------------------------------------------------


def uses_kernels(lay: BlobLayout) -> bool:
    """Whether a blob is big enough for the numba kernels to pay their start-up (the
    numpy decoder's temporaries are several times the cube)."""
    voxels = lay.height * lay.width * lay.channels
    return lay.n_records > SMALL_RECORDS or lay.size > SMALL_BYTES or voxels > SMALL_VOXELS


def walk(buf: np.ndarray, lay: BlobLayout) -> np.ndarray:
    """Where each record of the whole blob ``buf`` starts (+ the end): see
    ``layout.record_positions``, by the kernel for big blobs."""
    if not uses_kernels(lay):
        return record_positions(buf, lay)
    positions = np.empty(lay.n_records + 1, np.int64)
    _walk_block(buf, 0, lay.data_offset, 0, lay, positions, final=True)
    positions[-1] = lay.size
    return positions


def _walk_block(buf: np.ndarray, base: int, p: int, r: int, lay: BlobLayout,
                positions: np.ndarray, final: bool) -> tuple[int, int]:
    """Walk the records in ``buf`` (blob bytes from ``base``) from relative ``p``, record
    ``r``; return where the walk stopped. ``final``: ``buf`` reaches the blob's end."""
    status, r, p = BLOB_KERNELS.warm().walk_records(buf, base, p, r, lay.n_records, 3 * lay.width,
                                          positions)
    if status < 0:
        length = int(buf[p]) | (int(buf[p + 1]) << 8)
        raise record_error(lay, r, f"has length {length}, outside 2..{3 * lay.width} for "
                                   f"a {lay.width}-pixel row")
    if status > 0 and final:
        raise record_error(lay, r, "runs past the end of the blob (truncated?)")
    if status == 0 and final and base + p != lay.size:
        raise ValueError(f"{lay.size - base - p} unexpected bytes after the last of the "
                         f"{lay.n_records} records")
    return int(p), int(r)


def check_width(read: Callable[[int, int], np.ndarray], lay: BlobLayout,
                positions: np.ndarray) -> None:
    """Decode the first non-empty record (``read(a, b)`` gives blob bytes ``a:b``): it
    must cover exactly ``width`` pixels. The header's width is then proven by the data
    before anything the size of the cube is allocated (the height always is: the record
    table holds exactly ``height x channels`` records)."""
    full = np.flatnonzero(np.diff(positions) > 2)
    if full.size:
        k = int(full[0])
        decode_records(read(int(positions[k]), int(positions[k + 1])), np.zeros(1, np.int64),
                       lay, np.array([k]))


def decode_rows(buf: np.ndarray, base: int, lay: BlobLayout, positions: np.ndarray,
                r0: int, r1: int, rebin: int, acc: np.dtype, threads: int = 1
                ) -> tuple[np.ndarray, bool]:
    """Rows ``r0:r1`` as ``(rows, width, channels // rebin)`` in dtype ``acc``, and
    whether a sum did not fit it. ``buf`` holds the rows' records (blob byte ``base``
    first); ``positions`` are absolute."""
    nch, nx = lay.channels, lay.width
    starts = positions[r0 * nch : r1 * nch]
    if not uses_kernels(lay):
        recs = decode_records(buf, starts - base, lay, np.arange(r0 * nch, r1 * nch))
        cube = recs.reshape(r1 - r0, nch, nx).transpose(0, 2, 1)
        if rebin == 1 and acc == np.uint16:
            return np.ascontiguousarray(cube), False
        wide = cube.reshape(r1 - r0, nx, nch // rebin, rebin).sum(axis=3, dtype=np.int64)
        return wide.astype(acc), int(wide.max(initial=0)) > dtype_limit(acc)
    k = BLOB_KERNELS.warm()
    out = np.zeros((r1 - r0, nx, nch // rebin), acc)
    per = np.arange(nch, dtype=np.int64) // rebin

    def block(a: int, b: int) -> bool:
        rows = np.repeat(np.arange(a - r0, b - r0, dtype=np.int64), nch)
        cols = np.tile(per, b - a)
        status, at = k.add_records(buf, base, positions[a * nch : b * nch], rows, cols, nx,
                                   out)
        if status < 0:
            raise kernel_error(lay, status, a * nch + at)
        return status > 0

    n = r1 - r0
    if threads <= 1 or n < 2:
        return out, block(r0, r1)
    step = max(1, -(-n // (4 * threads)))
    cuts = [(a, min(r1, a + step)) for a in range(r0, r1, step)]
    over = list(pool().map(lambda c: block(*c), cuts))  # kernel calls: they wait on nothing
    return out, any(over)


def _finish(spec: SIRead, block: np.ndarray, over: bool, dt: np.dtype,
            largest: Callable[[], int]) -> np.ndarray:
    """``block`` in ``dt``, warning when counts did not fit."""
    if block.dtype != dt:  # accumulated wider: the largest count is at hand
        big = int(block.max(initial=0))
        over, value = big > dtype_limit(dt), big
    else:
        value = largest() if over else 0
    if over:
        warn_overflow(spec.path, dt, value)
    return cast(block, dt)


# --- eager -------------------------------------------------------------------------------


def read_eager(spec: SIRead) -> np.ndarray:
    """The whole cube ``(y, x, E // rebin)`` in ``spec.dtype``, read and decoded at once.
    ``ValueError`` for a damaged blob."""
    lay, rebin, dt = spec.blob.layout, spec.rebin, spec.dtype
    with open_h5(spec.path) as f:
        buf = read_bytes(f[spec.blob.dataset], 0, lay.size)
    if buf.size != lay.size:
        raise ValueError(f"the blob has {buf.size} bytes, its header was read from "
                         f"{lay.size}")
    positions = walk(buf, lay)
    check_width(lambda a, b: buf[a:b], lay, positions)
    acc = accumulator(dt)
    cube, over = decode_rows(buf, 0, lay, positions, 0, lay.height, rebin, acc, n_threads())

    def largest() -> int:
        wide, _ = decode_rows(buf, 0, lay, positions, 0, lay.height, rebin,
                              np.dtype("i8"), n_threads())
        return int(wide.max(initial=0))

    return _finish(spec, cube, over, dt, largest)


# --- the per-process index ---------------------------------------------------------------


@dataclass
class BlobIndex:
    """Where each record of a blob starts (``height x channels + 1`` absolute byte
    positions, the last the blob's end), and the blob itself when it is kept."""

    positions: np.ndarray
    buf: np.ndarray | None

    @property
    def nbytes(self) -> int:
        return self.positions.nbytes + (self.buf.nbytes if self.buf is not None else 0)

    def read(self, spec: SIRead, a: int, b: int) -> np.ndarray:
        """Blob bytes ``a:b``: from memory, or from the file."""
        if self.buf is not None:
            return self.buf[a:b]
        with H5_LOCK:
            return read_bytes(cached_handle(spec.path)[spec.blob.dataset], a, b)


def _build(spec: SIRead) -> BlobIndex:
    lay = spec.blob.layout

    def reader(a: int, b: int) -> np.ndarray:
        with H5_LOCK:
            return read_bytes(cached_handle(spec.path)[spec.blob.dataset], a, b)

    if lay.size <= KEEP_BYTES:
        buf = reader(0, lay.size)
        if buf.size != lay.size:
            raise ValueError(f"the blob has {buf.size} bytes, its header said {lay.size}")
        positions = walk(buf, lay)
        check_width(lambda a, b: buf[a:b], lay, positions)
        return BlobIndex(positions, buf)
    positions = np.empty(lay.n_records + 1, np.int64)
    base, r = lay.data_offset, 0
    step = max(WALK_BLOCK, 8 * (3 * lay.width + 2))
    while True:  # every pass walks at least one record: a block holds the longest
        end = min(lay.size, base + step)
        p, r = _walk_block(reader(base, end), base, 0, r, lay, positions,
                           final=end == lay.size)
        base += p
        if r == lay.n_records:
            if base != lay.size:
                raise ValueError(f"{lay.size - base} unexpected bytes after the last of "
                                 f"the {lay.n_records} records")
            break
    positions[-1] = lay.size
    check_width(reader, lay, positions)
    return BlobIndex(positions, None)


_INDEXES: ProcessCache[BlobIndex] = ProcessCache(budget=INDEX_BUDGET)


def blob_index(spec: SIRead) -> BlobIndex:
    """This process's index of the blob (built on first use, one build per blob);
    ``EMDError`` naming the file when the blob is damaged or the file was replaced."""
    check_unchanged(spec.path, spec.identity)

    def build() -> BlobIndex:
        try:
            return _build(spec)
        except ValueError as err:
            raise EMDError(spec.path, f"the spectrum image blob {spec.blob.dataset} is damaged: "
                                      f"{err}") from err
        except (OSError, KeyError) as err:
            raise EMDError(spec.path, f"cannot read the spectrum image blob "
                                      f"{spec.blob.dataset}: {err}") from err

    return _INDEXES.get((*spec.cache_key(), spec.blob.dataset), build)


def clear_blob_indexes() -> None:
    """Forget this process's blob indexes (e.g. after rewriting a file)."""
    _INDEXES.clear()


# --- lazy --------------------------------------------------------------------------------


def _damaged(spec: SIRead, err: ValueError) -> EMDError:
    return EMDError(spec.path, f"the spectrum image blob {spec.blob.dataset} is damaged: {err}")


def _rows_chunk(spec: SIRead, rpc: int,
                block_id: tuple[int, ...] | None = None) -> np.ndarray:
    """Rows block ``block_id[0]`` of the cube."""
    assert block_id is not None
    lay, dt, rebin = spec.blob.layout, spec.dtype, spec.rebin
    idx = blob_index(spec)
    r0 = block_id[0] * rpc
    r1 = min(lay.height, r0 + rpc)
    a, b = int(idx.positions[r0 * lay.channels]), int(idx.positions[r1 * lay.channels])
    buf = idx.read(spec, a, b)
    try:
        blk, over = decode_rows(buf, a, lay, idx.positions, r0, r1, rebin, accumulator(dt))

        def largest() -> int:
            wide, _ = decode_rows(buf, a, lay, idx.positions, r0, r1, rebin, np.dtype("i8"))
            return int(wide.max(initial=0))

        return _finish(spec, blk, over, dt, largest)
    except ValueError as err:
        raise _damaged(spec, err) from err


def _plane_chunk(spec: SIRead, block_id: tuple[int, ...] | None = None) -> np.ndarray:
    """Energy plane ``block_id[0]``: the counts of channels ``e * rebin`` up to
    ``(e + 1) * rebin`` of every pixel, ``(1, y, x)``."""
    assert block_id is not None
    lay, dt, rebin = spec.blob.layout, spec.dtype, spec.rebin
    ny, nx, nch = lay.shape
    idx = blob_index(spec)
    lo, hi = block_id[0] * rebin, (block_id[0] + 1) * rebin
    table = idx.positions[:-1].reshape(ny, nch)
    starts = table[:, lo:hi]
    ends = idx.positions[np.arange(ny) * nch + hi]
    if idx.buf is not None:
        buf, rel = idx.buf, starts
    else:  # the rows' spans of these channels, one after the other
        spans = [idx.read(spec, int(s), int(e)) for s, e in zip(starts[:, 0], ends)]
        at = np.concatenate([[0], np.cumsum([s.size for s in spans])[:-1]])
        buf = np.concatenate(spans) if spans else np.empty(0, np.uint8)
        rel = starts - starts[:, :1] + at[:, None]
    numbers = (np.arange(ny)[:, None] * nch + np.arange(lo, hi)).ravel()
    try:
        if uses_kernels(lay):
            out = np.zeros((ny, nx, 1), np.int64)
            rows = np.repeat(np.arange(ny, dtype=np.int64), hi - lo)
            status, k = BLOB_KERNELS.warm().add_records(buf, 0, rel.ravel(), rows,
                                              np.zeros(rows.size, np.int64), nx, out)
            if status < 0:
                raise kernel_error(lay, status, int(numbers[k]))
            plane = out[:, :, 0]
        else:
            recs = decode_records(buf, rel.ravel(), lay, numbers)
            plane = recs.reshape(ny, hi - lo, nx).sum(axis=1, dtype=np.int64)
    except ValueError as err:
        raise _damaged(spec, err) from err
    return cast(plane.reshape(1, ny, nx), dt)


def lazy_cube(spec: SIRead) -> Any:
    """The dask cube ``(y, x, E // rebin)`` chunked by rows."""
    import dask.array as da

    lay, rebin, dt = spec.blob.layout, spec.rebin, spec.dtype
    nout = lay.channels // rebin
    row = lay.width * nout * dt.itemsize
    rpc = int(max(1, min(lay.height, DATA_CHUNK_BYTES // max(row, 1))))
    rows = da.core.normalize_chunks((rpc,), (lay.height,))[0]
    token = da.core.tokenize(spec.cache_key()[1:], spec)
    return da.map_blocks(
        _rows_chunk, spec, rpc,
        chunks=(rows, (lay.width,), (nout,)), dtype=dt,
        name=f"emd-si-blob-{os.path.basename(spec.path)}-{token}",
        meta=np.empty((0, 0, 0), dt),
    )


def lazy_planes(spec: SIRead) -> Any:
    """The energy-first dask view ``(E // rebin, y, x)``, one chunk per energy plane."""
    import dask.array as da

    lay, dt = spec.blob.layout, spec.dtype
    nout = lay.channels // spec.rebin
    token = da.core.tokenize(spec.cache_key()[1:], spec)
    return da.map_blocks(
        _plane_chunk, spec,
        chunks=((1,) * nout, (lay.height,), (lay.width,)), dtype=dt,
        name=f"emd-si-blob-display-{os.path.basename(spec.path)}-{token}",
        meta=np.empty((0, 0, 0), dt),
    )


def decode_blob(raw: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """The spectrum image of a blob in memory, by the same path as a file's eager read
    (kernels for big blobs): uint16 ``(height, width, channels)``; ``ValueError`` for a
    damaged blob."""
    buf = as_bytes(raw)
    lay = parse_blob(buf)
    positions = walk(buf, lay)
    check_width(lambda a, b: buf[a:b], lay, positions)
    cube, _ = decode_rows(buf, 0, lay, positions, 0, lay.height, 1, np.dtype("u2"),
                          n_threads())
    return cube
