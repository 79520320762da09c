"""Numba kernels for SpectrumImage blobs (imported on first use, see :mod:`.cube`).

Their numpy counterparts in :mod:`.layout` are the oracle the tests hold them to:
:func:`walk_records` against ``record_positions``, :func:`add_records` against
``decode_records``. They release the GIL (the eager decoder runs row blocks on several
threads, dask several chunks) and numba caches their machine code next to this file.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .layout import E_IN_COUNT, E_IN_RUN, E_LENGTH, E_RUN_PAST, E_SHORT, E_TOO_MANY, E_TRUNCATED

NEED_MORE = 1  # walk_records: the next record is not (wholly) in the buffer


@njit(nogil=True, cache=True)
def walk_records(buf, base, p, r, n_records, longest, positions):  # pragma: no cover
    """Record where records ``r, r + 1, ...`` start, from ``buf[p]`` on (``buf[0]`` is
    blob byte ``base``): ``positions[r] = base + p``, then jump over the record.

    Only the length fields are read. Returns ``(status, r, p)``: status 0 when all
    ``n_records`` are walked, ``NEED_MORE`` when record ``r`` at ``p`` does not fit in
    ``buf`` (read more, or the blob is truncated), ``E_LENGTH`` for a length that is not
    0 nor 2 .. ``longest``.
    """
    n = buf.shape[0]
    while r < n_records:
        if p + 2 > n:
            return NEED_MORE, r, p
        length = np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)
        if length != 0 and (length < 2 or length > longest):
            return E_LENGTH, r, p
        if p + 2 + length > n:
            return NEED_MORE, r, p
        positions[r] = base + p
        p += 2 + length
        r += 1
    return 0, r, p


@njit(nogil=True, cache=True)
def add_records(buf, base, starts, rows, cols, nx, out):  # pragma: no cover
    """Decode record ``k`` (length field at blob byte ``starts[k]``, ``buf[0]`` being
    byte ``base``) and add its ``nx`` counts to ``out[rows[k], :, cols[k]]``.

    Several records may add into one column (a rebinned channel, an energy plane).
    Counts are stored like ``numpy.astype`` would store the exact sums. Returns
    ``(status, k)``: status 1 when a sum did not fit ``out``'s dtype, 0 when all fit, or
    a negative error code (:mod:`.layout`) with the damaged record ``k``.
    """
    n = buf.shape[0]
    longest = 3 * nx
    over = 0
    for k in range(starts.shape[0]):
        p = starts[k] - base
        if p < 0 or p + 2 > n:
            return E_TRUNCATED, k
        length = np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)
        if length == 0:
            continue
        if length < 2 or length > longest:
            return E_LENGTH, k
        p += 2
        e = p + length
        if e > n:
            return E_TRUNCATED, k
        row = rows[k]
        col = cols[k]
        x = 0
        while p < e:
            if p + 2 > e:
                return E_IN_COUNT, k
            v = np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)
            if v != 0:
                if x >= nx:
                    return E_TOO_MANY, k
                s = out[row, x, col] + v
                out[row, x, col] = s
                if out[row, x, col] != s:
                    over = 1
                x += 1
                p += 2
            else:
                if p + 3 > e:
                    return E_IN_RUN, k
                x += np.int64(buf[p + 2]) + 1
                if x > nx:
                    return E_RUN_PAST, k
                p += 3
        if x != nx:
            return E_SHORT, k
    return over, -1


def warm_up() -> None:
    """Load (or compile, the first time ever) the kernels for the usual types: numba's
    start-up is paid here, once per process."""
    # one record of a 2-pixel row: count 3, then one zero pixel
    buf = np.array([5, 0, 3, 0, 0, 0, 0], np.uint8)
    positions = np.zeros(2, np.int64)
    walk_records(buf, 0, 0, 0, 1, 6, positions)
    one = np.zeros(1, np.int64)
    for dt in (np.uint16, np.int64):
        add_records(buf, 0, one, one, one, 2, np.zeros((1, 2, 1), dt))
