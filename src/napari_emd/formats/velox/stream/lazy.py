"""Lazy decoding: a dask array of the cube chunked by (frames x rows).

A chunk reads only its scan lines from the file, through the process's shared line index
(:func:`.frames.stream_index`), so the graph holds the path and the file's identity,
never an open handle: it computes with the threaded scheduler, in napari's async slicing
and on a ``dask.distributed`` cluster alike.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ....h5 import DATA_CHUNK_BYTES
from ..siread import SIRead
from .frames import stream_index
from .scatter import decode_rows
from .spec import accumulator, cast, dtype_limit, warn_overflow


def rows_per_chunk(spec: SIRead, nch: int, itemsize: int) -> int:
    """Scan rows per chunk of a cube with ``nch`` channels of ``itemsize`` bytes."""
    row = spec.nx * nch * itemsize
    return int(max(1, min(spec.ny, DATA_CHUNK_BYTES // max(row, 1))))


def _data_chunk(
    spec: SIRead,
    streams: tuple[int, ...],
    rpc: int,
    block_id: tuple[int, ...] | None = None,
) -> np.ndarray:
    """One chunk: output rows block ``block_id[-3]`` of one decoded frame (per-frame SI)
    or of the sum; an aligned frame's events come from the scan rows its shift moves
    there."""
    assert block_id is not None
    dt = spec.dtype
    acc_dt = accumulator(dt)
    r0 = block_id[-3] * rpc
    r1 = min(spec.ny, r0 + rpc)
    picks = range(len(spec.frames.frames)) if spec.sum_frames else (block_id[0],)
    indexes = [stream_index(spec, i) for i in streams]
    blk, over = decode_rows(spec, indexes, picks, r0, r1, acc_dt)
    if blk.size and (over or acc_dt != dt):
        largest = int(blk.max(initial=0))
        if over:  # the accumulator wrapped: count again, wide
            wide, _ = decode_rows(spec, indexes, picks, r0, r1, np.dtype("i8"))
            largest = int(wide.max(initial=0))
        if largest > dtype_limit(dt):
            warn_overflow(spec.path, dt, largest)
    return cast(blk, dt)


def lazy_cube(spec: SIRead, streams: tuple[int, ...]) -> Any:
    """The dask cube ``(y, x, E)`` (or ``(frame, y, x, E)``, one entry per decoded frame)
    of ``streams`` (one detector group of ``spec``)."""
    import dask.array as da

    dt = spec.dtype
    nch = spec.nch
    rpc = rows_per_chunk(spec, nch, dt.itemsize)
    rows = da.core.normalize_chunks((rpc,), (spec.ny,))[0]
    if spec.sum_frames:
        chunks: tuple = (rows, (spec.nx,), (nch,))
    else:
        chunks = ((1,) * len(spec.frames.frames), rows, (spec.nx,), (nch,))
    token = da.core.tokenize(spec.cache_key()[1:], spec, streams)
    return da.map_blocks(
        _data_chunk, spec, streams, rpc,
        chunks=chunks, dtype=dt, name=f"emd-si-{os.path.basename(spec.path)}-{token}",
        meta=np.empty((0,) * len(chunks), dt),
    )
