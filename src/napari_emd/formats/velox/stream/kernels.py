"""Numba kernels for Velox spectrum streams (imported on first use: ``numba_kernels``).

Each has a plain numpy counterpart that the tests compare it with: ``index_lines`` with
:func:`.frames.index_lines`, the scatter with the reference decoder
(:mod:`.reference`). Kept in their own module so that importing the package does not
import numba, and so
numba can cache the compiled machine code next to this file (``cache=True``): a fresh
process (a dask worker, a benchmark run) loads the kernels instead of compiling them.

All kernels release the GIL (``nogil=True``) so that Python threads can run them on
several cores at once: the eager decoder splits the scan rows between threads, and dask's
threaded scheduler runs several chunk tasks in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..siread import SEPARATOR


@njit(nogil=True, cache=True)
def index_lines(buf, nx, lines):  # pragma: no cover - compiled
    """Fill ``lines[L]`` with the position in ``buf`` where scan line ``L`` starts.

    ``buf`` starts at a pixel boundary; a line is ``nx`` pixels, each closed by a
    separator. ``lines`` has room for ``n_lines + 1`` entries; lines the buffer does not
    reach start at ``len(buf)``. Returns (separators seen, values after the last
    separator).
    """
    n = buf.shape[0]
    n_lines = lines.shape[0] - 1
    lines[0] = 0
    line = 1
    left = nx
    seps = 0
    last_sep = -1
    for p in range(n):
        if buf[p] == SEPARATOR:
            seps += 1
            last_sep = p
            left -= 1
            if left == 0:
                left = nx
                if line <= n_lines:
                    lines[line] = p + 1
                    line += 1
    for k in range(line, n_lines + 1):
        lines[k] = n
    trailing = n - 1 - last_sep
    return seps, trailing


@njit(nogil=True, cache=True)
def scatter_lines(buf, lstart, lend, lout, lshift, nx, rebin, bincount, out):  # pragma: no cover
    """Count the events of scan lines of one or more detectors into ``out``
    (``(rows, nx, channels)``), pixel by pixel.

    ``lstart``/``lend`` are ``(detectors, lines)``: line ``k`` of detector ``d`` spans
    ``buf[lstart[d, k]:lend[d, k]]`` and all detectors' line ``k`` go to output row
    ``lout[k]``, their pixel ``x`` to column ``x - lshift[k]`` (an aligned frame's
    column shift; pixels that land outside ``0..nx-1`` are dropped, their channels still
    checked). Each pixel's spectrum gets the events of every detector in turn while it
    is in the L1 cache, instead of the row streaming through the cache once per detector.
    Pixels beyond ``nx`` are dropped. Counts wrap in ``out``'s dtype exactly like
    ``numpy.astype`` would wrap the true counts. Returns ``-(position + 1)`` of the first
    channel ``>= bincount``, else 1 when some count overflowed (wrapped or lost
    precision), else 0.
    """
    ndet = lstart.shape[0]
    pos = np.empty(ndet, np.int64)
    over = 0
    # an integer division per event took a third of the time: a power-of-two rebin
    # (1 included) is a shift
    shift = -1
    if rebin & (rebin - 1) == 0:
        shift = 0
        while (1 << shift) < rebin:
            shift += 1
    for k in range(lstart.shape[1]):
        row = lout[k]
        dx = lshift[k]
        for d in range(ndet):
            pos[d] = lstart[d, k]
        for x in range(nx):
            ox = x - dx
            inside = ox >= 0 and ox < nx
            for d in range(ndet):
                p = pos[d]
                e = lend[d, k]
                if inside:
                    while p < e:
                        v = buf[p]
                        p += 1
                        if v == SEPARATOR:
                            break
                        if v >= bincount:
                            return -p  # -(position + 1) of the bad value
                        c = np.int64(v)
                        c = c >> shift if shift >= 0 else c // rebin
                        prev = out[row, ox, c]
                        out[row, ox, c] += 1
                        if out[row, ox, c] <= prev:
                            over = 1
                else:  # moved off the grid by the alignment: checked, not counted
                    while p < e:
                        v = buf[p]
                        p += 1
                        if v == SEPARATOR:
                            break
                        if v >= bincount:
                            return -p
                pos[d] = p
        for d in range(ndet):  # pixels beyond nx are dropped, but still checked
            for p in range(pos[d], lend[d, k]):
                v = buf[p]
                if v != SEPARATOR and v >= bincount:
                    return -(p + 1)
    return over


@njit(nogil=True, cache=True)
def touch_pages(mem, stride, stop):  # pragma: no cover - compiled
    """Write a zero every ``stride`` bytes of ``mem`` (uint8), from the start, until the
    end or until ``stop[0]`` is set (checked every 64 writes); returns the bytes reached.
    Faults a fresh array's pages in (see :mod:`.pages`)."""
    n = mem.shape[0]
    i = 0
    while i < n and stop[0] == 0:
        end = min(n, i + 64 * stride)
        while i < end:
            mem[i] = 0
            i += stride
    return min(i, n)


def warm_up() -> None:
    """Load (or compile, the first time ever) the kernels for the common argument types,
    so later calls start at once. Numba's start-up is paid here, once per process."""
    buf = np.array([1, SEPARATOR, 2], dtype=np.uint16)
    lines = np.zeros(2, np.int64)
    index_lines(buf, 1, lines)
    touch_pages(np.zeros(2, np.uint8), 1, np.zeros(1, np.uint8))
    st, en, ou = np.array([0]), np.array([3]), np.array([0])
    for dt in (np.uint16, np.uint32, np.float32):
        scatter_lines(buf, st[None], en[None], ou, ou, 2, 1, 4, np.zeros((1, 2, 4), dt))
