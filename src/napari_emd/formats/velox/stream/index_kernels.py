"""Numba kernels of the disk-cached energy-plane index (imported on first use:
``numba_kernels.INDEX_KERNELS``).

A *segment* holds the output pixels of one (channel, stream, frame group)'s events in
stream order: each event's *position* is its output pixel plus ``k * npix`` for the
``k``-th frame of its group (``base``), so positions increase through the group and are
stored as LEB128 varint deltas (the first from 0), a byte per delta below 128, two below
16384. A plane counts position modulo ``npix``. These kernels count the bytes a frame's
segments take (pass 1 of the build), encode them (pass 2), and decode segments into a
plane while checking their bounds (reading; the segments' CRC-32 is zlib's, computed
by the caller: ten times faster than a table-driven loop here). All release the GIL.

Their numpy counterpart in the tests: the reference decoder (planes equal).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..siread import SEPARATOR


@njit(nogil=True, cache=True, inline="always")
def _landing(y, x, dy, dx, ny, nx):  # pragma: no cover - compiled
    """The output pixel of scan pixel ``(y, x)`` moved by ``(dy, dx)``, or -1 when it
    lands outside the grid (or lies past the frame)."""
    if y >= ny:
        return -1
    oy = y - dy
    ox = x - dx
    if oy < 0 or oy >= ny or ox < 0 or ox >= nx:
        return -1
    return oy * nx + ox


@njit(nogil=True, cache=True)
def count_frame(buf, a, b, dy, dx, ny, nx, bincount, last, nbytes, nevents, plo, phi,
                plane, base):  # pragma: no cover - compiled
    """Pass 1 over one frame ``buf[a:b]`` of one stream (moved by ``(dy, dx)``; events
    landing outside are left out): add the varint bytes of each channel's segment to
    ``nbytes[c]`` and its events to ``nevents[c]`` (``last``: the previous position per
    channel, zeros at the group's start; ``base``: what the frame adds to its pixels),
    and count the events of channels ``plo:phi`` into ``plane`` (per output pixel; an
    empty range counts nothing). Returns ``-(position + 1)`` of the first channel
    ``>= bincount``, else 0."""
    y = 0
    x = 0
    opix = _landing(y, x, dy, dx, ny, nx)
    for p in range(a, b):
        v = buf[p]
        if v == SEPARATOR:
            x += 1
            if x == nx:
                x = 0
                y += 1
            opix = _landing(y, x, dy, dx, ny, nx)
            continue
        if v >= bincount:
            return -(p + 1)
        if opix < 0:
            continue
        d = opix + base - last[v]
        last[v] = opix + base
        n = 1
        while d >= 128:
            d >>= 7
            n += 1
        nbytes[v] += n
        nevents[v] += 1
        if v >= plo and v < phi:
            plane[opix] += 1
    return 0


@njit(nogil=True, cache=True)
def count_plane(buf, a, b, dy, dx, ny, nx, plo, phi, plane):  # pragma: no cover
    """Count the events of channels ``plo:phi`` of one frame ``buf[a:b]`` (moved by
    ``(dy, dx)``) into ``plane``, and nothing else: the light pass that shows a first
    plane before the index is built. Returns the separators seen (the caller checks
    them against the frame's pixels)."""
    y = 0
    x = 0
    seps = 0
    opix = _landing(y, x, dy, dx, ny, nx)
    lo = np.uint16(plo)
    width = np.uint16(phi - plo)  # plo <= v < phi as one unsigned compare
    for p in range(a, b):
        v = buf[p]
        if v == SEPARATOR:
            seps += 1
            x += 1
            if x == nx:
                x = 0
                y += 1
            opix = _landing(y, x, dy, dx, ny, nx)
            continue
        if np.uint16(v - lo) < width and opix >= 0:
            plane[opix] += 1
    return seps


@njit(nogil=True, cache=True)
def encode_frame(buf, a, b, dy, dx, ny, nx, last, cursor, out, base):  # pragma: no cover
    """Pass 2 over the frame of :func:`count_frame`: write each event's pixel delta as a
    varint at its channel's ``cursor`` in ``out`` (advancing it), so ``out`` holds the
    frame's segments one after the other, channel by channel. Channels were checked by
    pass 1."""
    y = 0
    x = 0
    opix = _landing(y, x, dy, dx, ny, nx)
    for p in range(a, b):
        v = buf[p]
        if v == SEPARATOR:
            x += 1
            if x == nx:
                x = 0
                y += 1
            opix = _landing(y, x, dy, dx, ny, nx)
            continue
        if opix < 0:
            continue
        d = opix + base - last[v]
        last[v] = opix + base
        q = cursor[v]
        while d >= 128:
            out[q] = np.uint8((d & 127) | 128)
            d >>= 7
            q += 1
        out[q] = np.uint8(d)
        cursor[v] = q + 1


@njit(nogil=True, cache=True)
def decode_segments(data, starts, ends, npix, limit, out):  # pragma: no cover
    """Add the events of segments ``data[starts[k]:ends[k]]`` (their CRC-32 checked by
    the caller, with zlib) to ``out`` (counts per pixel: position modulo ``npix``); a
    varint running past its segment or a position ``>= limit`` (``npix`` times the
    frames of a group) is corrupt. Returns ``-(k + 1)`` of the first corrupt segment
    (its events may be partly counted), else the events counted."""
    total = 0
    for k in range(starts.shape[0]):
        a = starts[k]
        b = ends[k]
        pix = 0
        p = a
        while p < b:
            d = 0
            s = 0
            while True:
                if p >= b or s > 56:
                    return -(k + 1)
                byte = data[p]
                p += 1
                d |= np.int64(byte & 127) << s
                s += 7
                if byte < 128:
                    break
            pix += d
            if pix >= limit:
                return -(k + 1)
            if limit > npix:
                out[pix % npix] += 1
            else:
                out[pix] += 1
            total += 1
    return total


def warm_up() -> None:
    """Load (or compile, the first time ever) the kernels for the usual argument types."""
    buf = np.array([1, SEPARATOR, 2], dtype=np.uint16)
    z = np.zeros(4, np.int64)
    count_frame(buf, 0, 3, 0, 0, 1, 2, 4, z.copy(), z.copy(), z.copy(), 0, 0,
                np.zeros(2, np.int64), 0)
    count_plane(buf, 0, 3, 0, 0, 1, 2, 0, 4, np.zeros(2, np.int64))
    out = np.zeros(8, np.uint8)
    encode_frame(buf, 0, 3, 0, 0, 1, 2, z.copy(), z.copy(), out, 0)
    st, en = np.zeros(1, np.int64), np.ones(1, np.int64)
    decode_segments(out, st, en, 2, 2, np.zeros(2, np.int64))
