"""Counting events into a cube: scan lines of one or more streams scattered into output
rows by the numba kernel, the rows split between threads.

A *job* is one scan line: where it starts and ends in a buffer of stream values, the
output row it lands in and the column shift of its frame (aligned frames: a frame drifted
by ``(dy, dx)`` has its row ``s`` counted into output row ``s - dy`` and its pixel ``x``
into column ``x - dx``, so alignment is a few more integers per line, not another pass).
Jobs go in output-row order, so a row stays in cache while all its lines land in it;
with several detectors whose lines are the same (frames x rows), one pass takes every
detector's events of a pixel while that pixel's spectrum is in cache.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from .... import cancel
from ....numba_kernels import STREAM_KERNELS
from ....threads import pool
from ..siread import SIRead
from .frames import StreamIndex
from .spec import bad_channel

Jobs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # (starts, ends, rows, dx)

# Blocks of output rows per thread: more blocks than threads even out rows that cost
# more than others (more events, or pages not yet faulted in: the fault-ahead leaves the
# first rows cheaper); a thread done early takes the next block, so the threads finish
# at most one block apart. 16 keeps that gap to a few ms for a 512 x 512 frame.
BLOCKS_PER_THREAD = 16


def source_rows(r0: int, r1: int, dy: int, ny: int) -> tuple[int, int]:
    """The scan rows of a frame shifted by ``dy`` that land in output rows ``r0:r1``
    (an empty range when none do)."""
    s0, s1 = max(0, r0 + dy), min(ny, r1 + dy)
    return s0, max(s0, s1)


def line_jobs(
    lines: np.ndarray, spec: SIRead, frames: Sequence[int], shifts: Sequence[tuple[int, int]],
    r0: int, r1: int, base: int, per_frame: bool,
) -> Jobs:
    """Jobs of output rows ``r0:r1`` of ``frames``, positions relative to ``base``; with
    ``per_frame`` each frame's rows go to their own block of output rows.

    ``shifts`` (empty: none) holds one whole-pixel ``(dy, dx)`` per frame: scan row
    ``s`` of a frame lands in output row ``s - dy`` and its pixel ``x`` in column
    ``x - dx`` (the kernel drops columns outside the grid; rows outside get no job).
    """
    ny, nr = spec.ny, r1 - r0
    starts, ends, outs, cols = [], [], [], []
    for j, f in enumerate(frames):
        dy, dx = shifts[j] if shifts else (0, 0)
        s0, s1 = source_rows(r0, r1, dy, ny)
        starts.append(lines[f * ny + s0 : f * ny + s1] - base)
        ends.append(lines[f * ny + s0 + 1 : f * ny + s1 + 1] - base)
        o = np.arange(s0 - dy - r0, s1 - dy - r0, dtype=np.int64)
        outs.append(o + j * nr if per_frame else o)
        cols.append(np.full(s1 - s0, dx, np.int64))
    if not starts:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, empty
    return (np.concatenate(starts), np.concatenate(ends), np.concatenate(outs),
            np.concatenate(cols))


def scatter(
    spec: SIRead,
    buf: np.ndarray,
    jobs: Jobs,
    out3: np.ndarray,
    rebin: int,
    segments: list[tuple[int, str, int]],
    threads: int = 1,
) -> bool:
    """Count the events of ``jobs`` of ``buf`` into ``out3`` (rows, nx, E); True when a
    count overflowed ``out3``'s dtype.

    ``jobs`` starts and ends are 1-D (one stream) or ``(detectors, lines)`` (one line of
    every detector per output row); rows and column shifts are 1-D. ``segments`` name
    where ``buf``'s values come from, for error messages: (start in ``buf``, stream,
    stream position of that start).
    """
    st, en, ou, dx = jobs
    if st.ndim == 1:
        st, en = st[None], en[None]
    order = np.argsort(ou, kind="stable")
    ou, dx = ou[order], dx[order]
    st, en = st[:, order], en[:, order]
    nrows = out3.shape[0]
    parts = threads * BLOCKS_PER_THREAD if threads > 1 and ou.size >= 2 * threads else 1
    cuts = np.searchsorted(ou, np.linspace(0, nrows, parts + 1).astype(np.int64))
    # C order: the kernels were loaded for C-ordered job arrays, and another layout
    # (a column slice of a 2-D array) makes numba load one more specialization
    blocks = [
        (np.ascontiguousarray(st[:, i:j]), np.ascontiguousarray(en[:, i:j]), ou[i:j],
         dx[i:j])
        for i, j in itertools.pairwise(cuts)
        if j > i
    ]
    kern = STREAM_KERNELS.module().scatter_lines
    stop = cancel.current()  # the caller's: pool threads do not share its context

    def run(block: tuple[np.ndarray, ...]) -> int:
        cancel.check(stop)  # a cancelled read stops within a block
        return kern(buf, *block, spec.nx, rebin, spec.bincount, out3)

    if threads > 1 and len(blocks) > 1:
        codes = list(pool().map(run, blocks))
    else:
        codes = [run(b) for b in blocks]
    bad = [c for c in codes if c < 0]
    if bad:
        code = max(bad)  # the first bad value in the buffer
        start, stream, offset = max(
            (seg for seg in segments if seg[0] <= -code - 1), key=lambda seg: seg[0]
        )
        raise bad_channel(spec, stream, buf, code, offset - start)
    return any(c == 1 for c in codes)


def decode_rows(
    spec: SIRead,
    indexes: list[StreamIndex],
    picks: Sequence[int],
    r0: int,
    r1: int,
    acc_dt: np.dtype,
) -> tuple[np.ndarray, bool]:
    """Output rows ``r0:r1`` of the decoded frames ``spec.frames.frames[j]`` for ``j`` in
    ``picks``, each moved by its shift (summed, or one block of rows per frame when
    ``spec.sum_frames`` is False), read line by line: what one lazy chunk computes.
    Returns the block and whether a count overflowed."""
    plan = spec.frames
    nch = spec.nch
    nr, nf = r1 - r0, len(picks)
    per_frame = not spec.sum_frames
    out = np.zeros(((nf if per_frame else 1) * nr, spec.nx, nch), acc_dt)
    over = False
    for idx in indexes:
        for k, j in enumerate(picks):
            f, shift = plan.frames[j], plan.shift(j)
            s0, s1 = source_rows(r0, r1, shift[0], spec.ny)
            if s1 <= s0:
                continue
            buf, a = idx.read_lines(f, s0, s1)
            if not buf.size:
                continue
            jobs = line_jobs(idx.lines, spec, (f,), (shift,), r0, r1, a, False)
            view = out[k * nr : (k + 1) * nr] if per_frame else out
            over |= scatter(spec, buf, jobs, view, spec.rebin, [(0, idx.stream, a)])
    if per_frame:
        return out.reshape(nf, nr, spec.nx, nch), over
    return out, over

