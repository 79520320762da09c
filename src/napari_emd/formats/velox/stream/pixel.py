"""One pixel's spectrum straight from the streams: one scan line per frame and stream.

A spectrum viewer asks for the spectrum under the pointer. The lazy cube's chunks are
whole rows of the scan (every channel of many pixels), so ``data[y, x, :]`` would decode
a block of rows of every frame; the energy-first view has one chunk per plane, so
``display[:, y, x]`` would compute every plane. Here the line index
(:class:`.frames.StreamIndex`, shared with the lazy chunks) gives where scan line ``y``
of each frame starts; the line is read (a few tens of KiB), the separators before pixel
``x`` are counted, and that pixel's channels are counted. Aligned frames read the scan
pixel their shift brings to ``(y, x)``; binning and the output dtype are applied as the
cube applies them, so the result equals ``data[..., y, x, :]``.
"""

from __future__ import annotations

import numpy as np

from ....threads import pool
from ..siread import SEPARATOR, SIRead
from .frames import stream_index
from .spec import bad_channel, cast, dtype_limit, warn_overflow


def pixel_values(line: np.ndarray, x: int) -> np.ndarray:
    """The values of pixel ``x`` of one scan line's values (empty when the line is
    shorter)."""
    seps = np.flatnonzero(line == SEPARATOR)
    if x > seps.size:
        return line[:0]
    lo = int(seps[x - 1]) + 1 if x > 0 else 0
    hi = int(seps[x]) if x < seps.size else line.size
    return line[lo:hi]


def pixel_spectrum(spec: SIRead, streams: tuple[int, ...], index: tuple[int, ...]) -> np.ndarray:
    """``data[index + (:,)]`` of the spectrum image of ``streams`` (one detector group of
    ``spec``): ``index`` is ``(y, x)``, or ``(frame entry, y, x)`` when frames are kept
    apart. Only one scan line per frame and stream is read (once the frames are
    indexed)."""
    ny, nx = spec.ny, spec.nx
    plan = spec.frames
    *lead, y, x = (int(i) for i in index)
    if len(lead) != (0 if spec.sum_frames else 1):
        raise IndexError(f"{len(index)} indices for a spectrum image of "
                         f"{2 + (0 if spec.sum_frames else 1)} navigation axes")
    y, x = y + ny if y < 0 else y, x + nx if x < 0 else x  # as numpy counts from the end
    if not (0 <= y < ny and 0 <= x < nx):
        raise IndexError(f"pixel {tuple(index)} is outside the {ny} x {nx} scan")
    if lead and not -len(plan.frames) <= lead[0] < len(plan.frames):
        raise IndexError(f"frame {lead[0]} is outside the {len(plan.frames)} frames read")
    picks = range(len(plan.frames)) if spec.sum_frames else (lead[0] % len(plan.frames),)
    counts = np.zeros(spec.bincount, np.int64)
    f0, f1 = plan.frames[picks[0]], plan.frames[picks[-1]] + 1
    indexes = [stream_index(spec, i) for i in streams]
    if len(indexes) > 1:  # streams not indexed yet are indexed side by side (no task waits
        # on another: each takes only its own index's lock and the HDF5 lock)
        list(pool().map(lambda idx: idx.ensure(f0, f1), indexes))
    for i, idx in zip(streams, indexes):
        lines = idx.ensure(f0, f1)
        for j in picks:
            f = plan.frames[j]
            dy, dx = plan.shift(j)
            sy, sx = y + dy, x + dx  # the scan pixel this frame's shift brings to (y, x)
            if not (0 <= sy < ny and 0 <= sx < nx):
                continue
            a, b = int(lines[f * ny + sy]), int(lines[f * ny + sy + 1])
            line = idx.read(a, b)
            bad = np.flatnonzero((line != SEPARATOR) & (line >= spec.bincount))
            if bad.size:  # as the cube's chunk holding this line would report it
                raise bad_channel(spec, spec.streams[i], line, -(int(bad[0]) + 1), a)
            vals = pixel_values(line, sx)
            counts += np.bincount(vals, minlength=spec.bincount)
    out = counts.reshape(spec.nch, spec.rebin).sum(axis=1)
    dt = spec.dtype
    if out.size and out.max() > dtype_limit(dt):
        warn_overflow(spec.path, dt, int(out.max()))
    return cast(out, dt)
