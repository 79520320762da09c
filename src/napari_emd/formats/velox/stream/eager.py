"""Eager decoding: the whole requested cube in memory, read in one pass per stream.

Each stream is read in one block (only the frames asked for, through the frame table)
and its events are scattered straight into the output, the scan rows split between
threads running the nogil kernel. Memory: the output plus one stream, or for a stream
over :data:`SPAN_VALUES` values the output plus a block of whole frames of about that
many (read frame by frame, joined, scattered as the whole span would be). When the
frames asked for are a small part of the streams (a frame range), every detector's span
is read and they are joined for one multi-detector pass instead.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from .... import cancel
from ....h5 import open_h5
from ....numba_kernels import STREAM_KERNELS
from ....threads import n_threads
from ..siread import SIRead
from .frames import StreamIndex, stream_dataset
from .pages import fault_ahead, new_output
from .scatter import decode_rows, line_jobs, scatter
from .spec import accumulator, cast, dtype_limit, warn_overflow

#: Stream values (128 MiB) above which one stream's span is read and scattered in blocks
#: of whole frames instead of whole: a 2 G-event file's streams are 1.1 GB each.
SPAN_VALUES = 1 << 26


def read_eager(
    spec: SIRead, preloaded: dict[str, np.ndarray] | None = None
) -> list[np.ndarray]:
    """The cubes of the frames of ``spec`` (moved by their shifts), one per detector
    group; only the chosen detectors' streams are read.

    ``preloaded`` maps stream paths to whole streams the caller has already read (the
    Velox reader counts one to choose the scan grid): they are decoded instead of being
    read again, and dropped from the dict as they are used. Excluded frames at either end
    of the range are not read; those between are read with their neighbours (one
    contiguous read) and skipped.
    """
    STREAM_KERNELS.warm()
    preloaded = preloaded if preloaded is not None else {}
    plan = spec.frames
    dt = spec.dtype
    acc_dt = accumulator(dt)
    nch = spec.nch
    nf = len(plan.frames)
    first, last = plan.frames[0], plan.frames[-1] + 1  # the span that is read
    rows = spec.ny if spec.sum_frames else nf * spec.ny
    results = []
    with open_h5(spec.path) as f:

        def opener(name: str):
            return lambda: stream_dataset(f, name, spec.path)

        indexes = {i: StreamIndex(spec, i, opener(spec.streams[i]))
                   for i in sorted({i for g in spec.groups for i in g})}
        longest = max(ix.span_size(0, spec.n_frames) for ix in indexes.values())
        for group in spec.groups:
            out3 = new_output((rows, spec.nx, nch), acc_dt)
            sizes = [indexes[i].span_size(first, last) for i in group]
            # the X-rays to count: the spans less one separator per pixel and frame
            events = sum(sizes) - len(group) * (last - first) * spec.npix
            if len(group) > 1 and sum(sizes) <= longest:
                with fault_ahead(out3, events):
                    spans = [indexes[i].span(first, last, preloaded.pop(spec.streams[i], None))
                             for i in group]
                over = _scatter_joined(spec, [indexes[i] for i in group], spans, out3)
            else:  # one stream in memory at a time, a preloaded one first
                over = False
                for n, i in enumerate(sorted(group,
                                             key=lambda i: spec.streams[i] not in preloaded)):
                    cancel.check()  # between streams too (a stream's read is one call)
                    idx = indexes[i]
                    whole = preloaded.pop(idx.stream, None)
                    if whole is None and idx.span_size(first, last) > SPAN_VALUES:
                        with fault_ahead(out3, events) if n == 0 else nullcontext():
                            over |= _scatter_in_blocks(spec, idx, out3)
                        continue
                    with fault_ahead(out3, events) if n == 0 else nullcontext():
                        buf, a, lines = idx.span(first, last, whole)
                    jobs = line_jobs(lines, spec, plan.frames, plan.shifts, 0, spec.ny, a,
                                     not spec.sum_frames)
                    over |= scatter(spec, buf, jobs, out3, spec.rebin,
                                    [(0, idx.stream, a)], n_threads())
                    del buf, whole
            shape = (spec.ny, spec.nx, nch) if spec.sum_frames else (nf, spec.ny, spec.nx, nch)
            cube = out3.reshape(shape)
            if acc_dt == dt:
                if over and dt.kind in "iu":
                    group_indexes = [indexes[i] for i in group]
                    warn_overflow(spec.path, dt, _largest_count(spec, group_indexes))
            else:
                largest = int(cube.max(initial=0))
                if largest > dtype_limit(dt):
                    warn_overflow(spec.path, dt, largest)
            results.append(cast(cube, dt))
    return results


def _scatter_in_blocks(spec: SIRead, idx: StreamIndex, out3: np.ndarray) -> bool:
    """Scatter the frames of ``spec`` of one stream whose span is too big to hold whole:
    consecutive frames (read one at a time by :meth:`StreamIndex.frames`) are joined into
    blocks of about :data:`SPAN_VALUES` values, each scattered as the whole span would be
    (row by row across its frames). True when a count overflowed."""
    plan = spec.frames
    ny, per_frame = spec.ny, not spec.sum_frames
    slot = {f: j for j, f in enumerate(plan.frames)}
    over = False
    held: list[tuple[int, np.ndarray, int]] = []

    def flush() -> bool:
        picks = [slot[f] for f, _, _ in held if f in slot]
        if not picks:
            return False
        buf = held[0][1] if len(held) == 1 else np.concatenate([v for _, v, _ in held])
        a = held[0][2]
        j0, j1 = picks[0], picks[-1] + 1
        shifts = plan.shifts[j0:j1] if plan.shifts else ()
        jobs = line_jobs(idx.lines, spec, plan.frames[j0:j1], shifts, 0, ny, a, per_frame)
        view = out3[j0 * ny : j1 * ny] if per_frame else out3
        return scatter(spec, buf, jobs, view, spec.rebin, [(0, idx.stream, a)], n_threads())

    size = 0
    for f, values, a in idx.frames(plan.frames[0], plan.frames[-1] + 1):
        cancel.check()
        held.append((f, values, a))
        size += values.size
        if size >= SPAN_VALUES:
            over |= flush()
            held, size = [], 0
    if held:
        over |= flush()
    return over


def _scatter_joined(
    spec: SIRead,
    indexes: list[StreamIndex],
    spans: list[tuple[np.ndarray, int, np.ndarray]],
    out3: np.ndarray,
) -> bool:
    """Join the streams' ``spans`` (``StreamIndex.span`` of each of ``indexes``) and
    scatter them in one row-ordered pass (one multi-detector pass when every detector
    has the same lines)."""
    offsets = np.cumsum([0] + [buf.size for buf, _, _ in spans])
    buf = np.concatenate([b for b, _, _ in spans])
    plan = spec.frames
    per = [line_jobs(lines, spec, plan.frames, plan.shifts, 0, spec.ny,
                     a - int(offsets[j]), not spec.sum_frames)
           for j, (_, a, lines) in enumerate(spans)]
    if all(np.array_equal(p[2], per[0][2]) for p in per):
        jobs = (np.stack([p[0] for p in per]), np.stack([p[1] for p in per]), per[0][2],
                per[0][3])
    else:
        jobs = tuple(np.concatenate([p[k] for p in per]) for k in range(4))
    segments = [(int(offsets[j]), ix.stream, a) for j, (ix, (_, a, _)) in
                enumerate(zip(indexes, spans))]
    return scatter(spec, buf, jobs, out3, spec.rebin, segments, n_threads())


def _largest_count(spec: SIRead, indexes: list[StreamIndex]) -> int:
    """The largest count of the requested cube, computed exactly in row blocks (only
    after an overflow, to name it in the warning)."""
    plan = spec.frames
    nch = spec.nch
    nf = 1 if spec.sum_frames else len(plan.frames)
    row_bytes = nf * spec.nx * nch * 8
    step = max(1, min(spec.ny, (64 * 2**20) // max(row_bytes, 1)))
    best = 0
    for r0 in range(0, spec.ny, step):
        r1 = min(spec.ny, r0 + step)
        blk, _ = decode_rows(spec, indexes, range(len(plan.frames)), r0, r1, np.dtype("i8"))
        best = max(best, int(blk.max(initial=0)))
    return best
