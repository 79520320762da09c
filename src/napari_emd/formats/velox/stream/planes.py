"""The energy-first view for napari: one dask chunk per energy plane, from an event index.

Small spectrum images get a flat numpy index in memory (no numba start-up, no sort; a
plane scans every event in a few ms). Bigger ones get the compact disk-cached index of
:mod:`.diskindex` (every stream and frame of the plan, 1-2 bytes per event on disk, a
plane reads and decodes a few MB), built with memory bounded by a frame per thread and
reused by later processes; when no disk can hold it, each plane is a streaming pass.
Nothing in memory grows with the number of events beyond the flat index of a small SI.

Aligned reads (an :class:`..siread.SIRead` whose frames have shifts) store each event's
pixel already moved onto the reference frame's grid, and excluded frames are never
indexed, so the view shows the same cube as the lazy data, at the same cost per plane.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ....cache import ProcessCache
from ....h5 import H5_LOCK, cached_handle, check_unchanged
from ..siread import SEPARATOR, Frames, SIRead
from . import diskindex
from .frames import stream_index
from .spec import bad_channel, cast

# Below this many stream values (about 8 M events) a plane scan of the flat index takes
# under 10 ms; above, the disk index keeps planes at a few ms.
FLAT_INDEX_VALUES = 12_000_000
# Bytes of event indexes (flat, and the disk indexes' tables) kept per process.
EVENT_BUDGET = 2 * 2**30


@dataclass
class FlatIndex:
    """Channel and pixel of every event, per stream, in stream order, with where each
    frame's events start: a plane is one vectorised scan. Built with numpy alone."""

    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (ch uint16, pix uint32, bounds)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes + p.nbytes + b.nbytes for c, p, b in self.parts)

    def plane(self, lo: int, hi: int, frame: int | None, npix: int) -> np.ndarray:
        out = np.zeros(npix, np.int64)
        step = 1 << 20  # scan in slices: small temporaries
        for ch, pix, bounds in self.parts:
            a, b = (0, ch.size) if frame is None else (int(bounds[frame]),
                                                       int(bounds[frame + 1]))
            for s0 in range(a, b, step):
                s1 = min(b, s0 + step)
                c = ch[s0:s1]
                hit = (c - np.uint16(lo)) < np.uint16(hi - lo)  # lo <= c < hi, uint16 wrap
                idx = pix[s0:s1][hit]
                if idx.size:
                    out += np.bincount(idx, minlength=npix)
        return out


def _stream_values(spec: SIRead, streams: tuple[int, ...]) -> int:
    with H5_LOCK:
        f = cached_handle(spec.path)
        return sum(int(f[spec.streams[i]].shape[0]) for i in streams)


def _flat_stream(
    spec: SIRead, i: int, plan: Frames
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(channels, output pixels, frame offsets) of the events of stream ``i`` in the
    frames of ``plan``, in arrays of exactly the event count. Frame by frame, so
    temporaries stay one frame big; the pixel of an event is the number of separators
    before it in its frame, moved by the frame's shift (events landing outside the grid,
    or past the frame, are left out)."""
    first, last = plan.frames[0], plan.frames[-1] + 1
    buf, a, lines = stream_index(spec, i).span(first, last)
    npix, nf = spec.npix, len(plan.frames)
    total = buf.size - int(np.count_nonzero(buf == SEPARATOR))
    ch_out = np.empty(total, np.uint16)
    pix_out = np.empty(total, np.uint32)
    frames = np.asarray(plan.frames, np.int64)
    fstarts, fends = lines[frames * spec.ny] - a, lines[(frames + 1) * spec.ny] - a
    bounds = np.zeros(nf + 1, np.int64)
    o = 0
    for j in range(nf):
        seg = buf[fstarts[j] : fends[j]]
        is_sep = seg == SEPARATOR
        ev = ~is_sep
        n = int(np.count_nonzero(ev))
        seps = np.cumsum(is_sep, dtype=np.uint32)
        pix = np.compress(ev, seps, out=pix_out[o : o + n])
        ch = np.compress(ev, seg, out=ch_out[o : o + n])
        if n and int(ch.max()) >= spec.bincount:
            bad = int(np.flatnonzero((seg >= spec.bincount) & ev)[0])
            raise bad_channel(spec, spec.streams[i], seg, -(bad + 1), a + int(fstarts[j]))
        dy, dx = plan.shift(j)
        if n and (dy or dx):
            y, x = np.divmod(pix.astype(np.int64), spec.nx)
            y -= dy
            x -= dx
            keep = (pix < npix) & (y >= 0) & (y < spec.ny) & (x >= 0) & (x < spec.nx)
            moved_ch, moved_pix = ch[keep], (y * spec.nx + x)[keep].astype(np.uint32)
            n = moved_ch.size
            ch_out[o : o + n] = moved_ch
            pix_out[o : o + n] = moved_pix
        elif n and pix[-1] >= npix:  # pixels past the grid are ignored (and warned about)
            n = int(np.searchsorted(pix, np.uint32(npix)))
        o += n
        bounds[j + 1] = o
    return ch_out[:o], pix_out[:o], bounds


def _build(spec: SIRead, streams: tuple[int, ...], plan: Frames) -> FlatIndex:
    """The flat numpy index of small streams (big ones take the disk index)."""
    return FlatIndex([_flat_stream(spec, i, plan) for i in streams])


_EVENTS: ProcessCache[Any] = ProcessCache(budget=EVENT_BUDGET)


def uses_disk_index(spec: SIRead, streams: tuple[int, ...], plan: Frames) -> bool:
    """Whether the planes of ``streams`` come from the disk index (big streams) rather
    than an in-memory one."""
    return _stream_values(spec, streams) >= FLAT_INDEX_VALUES


def _disk_key(spec: SIRead, plan: Frames) -> tuple:
    return (*spec.cache_key(), spec.source, spec.grid, plan, "disk")


def disk_index(
    spec: SIRead, plan: Frames, progress: diskindex.Progress | None = None,
    first: diskindex.PlaneAsk | None = None,
    early: Any = None,
) -> diskindex.DiskIndex | diskindex.StreamingPlanes:
    """The disk index of every stream of ``spec`` in the frames of ``plan``, opened from
    the disk cache or built (once per process; progress, cancel, ``first`` and ``early``
    as in :func:`.diskindex.build`), or streaming planes when no disk can hold it."""
    check_unchanged(spec.path, spec.identity)
    return _EVENTS.get(_disk_key(spec, plan),
                       lambda: diskindex.build(spec, plan, progress, first, early))


def index_ready(spec: SIRead, streams: tuple[int, ...], plan: Frames) -> bool:
    """Whether planes of ``streams`` are cheap now: small streams, or the disk index open
    in this process or waiting in the disk cache."""
    if not uses_disk_index(spec, streams, plan):
        return True
    return _EVENTS.peek(_disk_key(spec, plan)) is not None or diskindex.cached(spec, plan)


def plane_of(spec: SIRead, streams: tuple[int, ...], plan: Frames, lo: int, hi: int,
             frame: int | None) -> np.ndarray:
    """Counts per output pixel (int64, flat) of channels ``lo:hi`` of ``streams``, of
    decoded frame ``frame`` of ``plan`` or of their sum: from the disk index (a corrupt
    entry is discarded and built again, once) or the in-memory one."""
    check_unchanged(spec.path, spec.identity)  # before looking at the streams
    npix = spec.npix
    if not uses_disk_index(spec, streams, plan):
        ev = event_index(spec, streams, plan)
        return ev.plane(lo, hi, frame, npix)
    for attempt in (0, 1):
        index = disk_index(spec, plan)
        try:
            return index.plane(lo, hi, frame, streams, npix)
        except diskindex.CorruptIndex:
            _EVENTS.pop(_disk_key(spec, plan))
            if isinstance(index, diskindex.DiskIndex):
                index.entry.discard()
            if attempt:
                raise
    raise AssertionError("unreachable")


def event_index(spec: SIRead, streams: tuple[int, ...], plan: Frames) -> FlatIndex:
    """The in-memory event index of this process (built on first use, one build per key:
    the grid, the streams, the frames and their shifts; not the binning or dtype, which a
    plane applies)."""
    check_unchanged(spec.path, spec.identity)
    key = (*spec.cache_key(), spec.source, spec.grid, streams, plan)
    return _EVENTS.get(key, lambda: _build(spec, streams, plan))


def clear_event_indexes() -> None:
    """Forget this process's event indexes (disk entries stay)."""
    _EVENTS.clear()


#: The spectrum images behind the display arrays made here, by dask name (for
#: :func:`pending_build`), the most recent kept.
_DISPLAYS: ProcessCache[tuple[SIRead, tuple[int, ...]]] = ProcessCache(max_items=256)


def pending_build(display: Any) -> Any:
    """For an energy-first display array made by :func:`lazy_planes`: a callable
    ``build(progress=None, plane=None, early=None)`` that builds (or opens) its index, to
    run in a worker before planes are asked for; None when planes are cheap already
    (small streams, or an index built or cached).

    ``plane``: the index of one display chunk (``(e,)``, or ``(frame, e)`` for a
    per-frame display), the plane the viewer opens on. The build's first pass counts it
    and calls ``early(chunk)`` with it (the ``(y, x)`` plane in the display's dtype) as
    soon as that pass ends, before the index is written; asked for later, it comes from
    memory."""
    found = _DISPLAYS.peek(getattr(display, "name", None))
    if found is None:
        return None
    spec, streams = found
    if index_ready(spec, streams, spec.frames):
        return None

    def build(progress: diskindex.Progress | None = None,
              plane: tuple[int, ...] | None = None, early: Any = None) -> None:
        ask, hand = None, None
        if plane is not None:
            e = int(plane[-1])
            frame = None if spec.sum_frames else int(plane[0])
            ask = diskindex.PlaneAsk(e * spec.rebin, (e + 1) * spec.rebin, frame,
                                     streams)
            if early is not None:
                def hand(counts: np.ndarray) -> None:
                    early(cast(counts.reshape(spec.ny, spec.nx), spec.dtype))
        disk_index(spec, spec.frames, progress, ask, hand)

    return build


def _plane_chunk(
    spec: SIRead,
    streams: tuple[int, ...],
    block_id: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Energy plane ``block_id[-3]`` of one frame or of the sum."""
    assert block_id is not None
    per_frame = not spec.sum_frames
    e, rebin = block_id[-3], spec.rebin
    frame = block_id[0] if per_frame else None
    plane = plane_of(spec, streams, spec.frames, e * rebin, (e + 1) * rebin, frame)
    out = cast(plane.reshape(1, spec.ny, spec.nx), spec.dtype)
    return out[None] if per_frame else out


def lazy_planes(spec: SIRead, streams: tuple[int, ...]) -> Any:
    """The energy-first dask view ``(E, y, x)`` (or ``(frame, E, y, x)``), one chunk per
    energy plane, of the frames of ``spec`` moved by their shifts (the same cube as
    :func:`.lazy.lazy_cube`, energy first) for ``streams`` (one detector group)."""
    import dask.array as da

    dt = spec.dtype
    nch = spec.nch
    e_chunks = (1,) * nch
    if not spec.sum_frames:
        chunks: tuple = ((1,) * len(spec.frames.frames), e_chunks, (spec.ny,), (spec.nx,))
    else:
        chunks = (e_chunks, (spec.ny,), (spec.nx,))
    token = da.core.tokenize(spec.cache_key()[1:], spec, streams)
    name = f"emd-si-display-{os.path.basename(spec.path)}-{token}"
    display = da.map_blocks(
        _plane_chunk, spec, streams,
        chunks=chunks, dtype=dt, name=name,
        meta=np.empty((0,) * len(chunks), dt),
    )
    # registered under the name dask gave it (dask < 2024 appends a token to ``name``)
    _DISPLAYS.get(display.name, lambda: (spec, streams))
    return display
