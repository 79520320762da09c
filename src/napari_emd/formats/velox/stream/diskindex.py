"""The compact energy-plane index of a big spectrum image, built with bounded memory and
kept in the per-user disk cache (:mod:`napari_emd.diskcache`), so a reopened file shows
its planes at once.

**Content.** One index per file version, grid, streams and frames plan (the frames read
and their shifts): every stream, every frame of the plan. A *segment* holds the output
pixels (after the frame's shift; events landing outside are left out) of the events of
one (channel ``c``, stream ``s``, frame ``j``), in stream order, as LEB128 varint deltas
(:mod:`.index_kernels`). Segments are stored ``c``-major, then ``s``, then ``j``: one
channel of all streams and frames is one contiguous byte range, so an energy plane or
window of a detector group is a few ranges. A plan with more (channel, stream, frame)
triples than :data:`MAX_SEGMENTS` (thousands of frames) groups its frames: a segment
then holds a run of ``group`` frames (:func:`group_size`), each frame's pixels offset by
``npix`` times its place in the run, so the tables stay bounded; the frame sum reads the
same way, and one frame's plane is then a streaming pass over that frame alone. The
payload::

    offsets   int64[nseg + 1]   where each segment starts in the data (and its end)
    events    int64[C * S]      events per (channel, stream): the streams' spectra
    crcs      uint32[nseg]      CRC-32 of each segment, checked when it is decoded
    tables    uint32 + 4 pad    CRC-32 of the three tables above, checked on open
    data      (aligned)         the segments

**Build** (:func:`build`): streams x frames are independent tasks on the shared pool,
each holding one frame of one stream: pass 1 reads the frame and counts each segment's
bytes (the tables follow), pass 2 reads it again, encodes it into a frame-local buffer
(channel runs one after the other) and writes each run at its segment's offset. The
caller gets progress and can cancel (``napari_emd.cancel``) between tasks. Pass 1 also
counts one plane the caller asks for (:class:`PlaneAsk`, the plane a viewer opens on),
which the open index then serves from memory; before pass 1, a light pass
(:func:`_light_plane`: each frame where the frame table puts it, only that plane
counted) hands it over (``early``), so a viewer can show it while the index is built.
Tasks go frame by frame across the streams, so each stream's frames are read in order
(a frame whose predecessor is indexed is read alone) while the streams keep every
thread busy.

**Reading** (:meth:`DiskIndex.plane`): the byte ranges of the asked segments, read in
blocks of at most ``BLOCK_BYTES`` and decoded by one kernel each (blocks in parallel for
wide windows). A corrupt segment (CRC, bounds) raises :class:`CorruptIndex`: the caller
discards the entry and builds it again, never showing a wrong picture.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from .... import cancel, diskcache
from ....numba_kernels import INDEX_KERNELS, STREAM_KERNELS
from ....threads import pool
from ..siread import SEPARATOR, Frames, SIRead
from .frames import stream_index
from .spec import bad_channel

KIND = "velox-si-planes"
#: Bumped when the payload layout changes (entries of another layout are not used).
LAYOUT = 2
#: Bytes of segments read and decoded at once.
BLOCK_BYTES = 64 * 2**20
#: Above this many (channel, stream, frame) triples the offset tables alone would take
#: hundreds of MB: such plans group their frames (:func:`group_size`).
MAX_SEGMENTS = 16 * 2**20

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PlaneAsk:
    """One plane, asked of the build's first pass: channels ``lo:hi`` of ``streams``
    (``None``: every stream) of frame ``frame`` of the plan (``None``: frames summed)."""

    lo: int
    hi: int
    frame: int | None = None
    streams: tuple[int, ...] | None = None

    def wants(self, s: int, j: int) -> bool:
        """Whether the events of stream ``s``, frame ``j`` count in the plane."""
        return (self.frame is None or self.frame == j) and \
            (self.streams is None or s in self.streams)

    def same(self, lo: int, hi: int, frame: int | None, streams: tuple[int, ...],
             n_streams: int) -> bool:
        """Whether it is the plane ``plane(lo, hi, frame, streams)`` asks for."""
        mine = self.streams if self.streams is not None else tuple(range(n_streams))
        return (self.lo, self.hi, self.frame) == (lo, hi, frame) and \
            tuple(sorted(mine)) == tuple(sorted(streams))


class _Early:
    """The plane pass 1 counted (see :class:`PlaneAsk`), served from memory."""

    first: tuple[PlaneAsk, np.ndarray] | None = None
    n_streams = 0

    def early(self, lo: int, hi: int, frame: int | None,
              streams: tuple[int, ...]) -> np.ndarray | None:
        if self.first is not None and self.first[0].same(lo, hi, frame, streams,
                                                          self.n_streams):
            return self.first[1].copy()
        return None


class CorruptIndex(Exception):
    """A segment or table of a cached index failed its check."""


def group_size(spec: SIRead, plan: Frames) -> int:
    """Frames per segment: 1, unless the plan has more (channel, stream, frame) triples
    than :data:`MAX_SEGMENTS`."""
    triples = spec.bincount * len(spec.streams) * len(plan.frames)
    return max(1, -(-triples // MAX_SEGMENTS))


def _groups(spec: SIRead, plan: Frames) -> list[range]:
    """The frames (indexes into ``plan.frames``) of each segment's group."""
    g, n = group_size(spec, plan), len(plan.frames)
    return [range(i, min(i + g, n)) for i in range(0, n, g)]


def index_key(spec: SIRead, plan: Frames) -> str:
    """What the disk entry is keyed by, besides the file's identity."""
    g = spec.grid
    return json.dumps({"layout": LAYOUT, "grid": [g.ny, g.nx, g.n_frames, g.bincount],
                       "group": group_size(spec, plan),
                       "streams": list(spec.streams), "frames": list(plan.frames),
                       "shifts": [list(plan.shift(j)) for j in range(len(plan.frames))]},
                      sort_keys=True)


def _frame(spec: SIRead, s: int, f: int) -> tuple[np.ndarray, int, int]:
    """(values of frame ``f`` of stream ``s``, the stream position of the first, how many
    belong to the frame)."""
    buf, a, lines = stream_index(spec, s).span(f, f + 1)
    end = int(lines[(f + 1) * spec.ny]) - a
    return buf, a, min(max(end, 0), buf.size)


class _Tables:
    """The tables of an index (see the module docstring) and where each part lies."""

    def __init__(self, C: int, S: int, F: int) -> None:
        self.C, self.S, self.F = C, S, F
        self.nseg = C * S * F
        self.offsets = np.zeros(self.nseg + 1, np.int64)
        self.events = np.zeros(C * S, np.int64)
        self.crcs = np.zeros(self.nseg, np.uint32)

    @property
    def table_bytes(self) -> int:
        n = 8 * (self.nseg + 1) + 8 * self.C * self.S + 4 * self.nseg
        return n + (-n % 8) + 8

    @property
    def data_offset(self) -> int:
        return -(-self.table_bytes // 4096) * 4096

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + self.events.nbytes + self.crcs.nbytes

    def pack(self) -> np.ndarray:
        body = np.concatenate([self.offsets.view(np.uint8), self.events.view(np.uint8),
                               self.crcs.view(np.uint8)])
        pad = np.zeros(self.table_bytes - body.size, np.uint8)
        pad[-8:-4] = np.frombuffer(np.uint32(diskcache.crc32(body)).tobytes(), np.uint8)
        return np.concatenate([body, pad])

    def unpack(self, raw: np.ndarray) -> None:
        n1, n2 = 8 * (self.nseg + 1), 8 * self.C * self.S
        body = raw[: n1 + n2 + 4 * self.nseg]
        want = int(raw[self.table_bytes - 8 : self.table_bytes - 4].view(np.uint32)[0])
        if diskcache.crc32(body) != want:
            raise CorruptIndex("tables")
        self.offsets = body[:n1].view(np.int64).copy()
        self.events = body[n1 : n1 + n2].view(np.int64).copy()
        self.crcs = body[n1 + n2 :].view(np.uint32).copy()
        if self.offsets[0] != 0 or np.any(np.diff(self.offsets) < 0):
            raise CorruptIndex("offsets")


class DiskIndex(_Early):
    """An open index: its tables in memory, its segments read from the cache entry (or
    a private scratch file) as planes need them."""

    def __init__(self, entry: diskcache.Entry, tables: _Tables, spec: SIRead,
                 plan: Frames) -> None:
        self.entry, self.t, self.npix = entry, tables, spec.npix
        self.n_streams = tables.S
        self.group = group_size(spec, plan)
        # one frame of a grouped index: a pass over that frame
        self.one_frame = StreamingPlanes(spec, plan) if self.group > 1 else None

    @property
    def nbytes(self) -> int:
        return self.t.nbytes

    def spectrum(self, streams: tuple[int, ...]) -> np.ndarray:
        """Events per channel of ``streams`` (in the frames of the plan)."""
        return self.t.events.reshape(self.t.C, self.t.S)[:, list(streams)].sum(1)

    def _ranges(self, lo: int, hi: int, frame: int | None,
                streams: tuple[int, ...]) -> list[tuple[int, int]]:
        """Segment ranges (``g0:g1``) of channels ``lo:hi`` of ``streams``, one frame or
        all, adjacent ones merged."""
        S, F = self.t.S, self.t.F
        out: list[tuple[int, int]] = []
        for c in range(lo, hi):
            for s in streams:
                g = (c * S + s) * F
                g0, g1 = (g, g + F) if frame is None else (g + frame, g + frame + 1)
                if out and out[-1][1] == g0:
                    out[-1] = (out[-1][0], g1)
                else:
                    out.append((g0, g1))
        return out

    def _blocks(self, ranges: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        """``ranges`` cut into blocks of at most ``BLOCK_BYTES`` (a longer segment is a
        block of its own), at segment boundaries."""
        off = self.t.offsets
        blocks: list[list[tuple[int, int]]] = []
        cur: list[tuple[int, int]] = []
        size = 0
        for g0, g1 in ranges:
            while g0 < g1:
                room = BLOCK_BYTES - size
                stop = min(g1, int(np.searchsorted(off, off[g0] + room, "right")) - 1)
                if stop <= g0:
                    if cur:
                        blocks.append(cur)
                        cur, size = [], 0
                        continue
                    stop = g0 + 1
                cur.append((g0, stop))
                size += int(off[stop] - off[g0])
                g0 = stop
        if cur:
            blocks.append(cur)
        return blocks

    def _decode(self, block: list[tuple[int, int]], out: np.ndarray) -> None:
        off = self.t.offsets
        total = sum(int(off[g1] - off[g0]) for g0, g1 in block)
        buf = np.empty(total, np.uint8)
        starts, ends, crcs = [], [], []
        pos = 0
        for g0, g1 in block:
            size = int(off[g1] - off[g0])
            if size:
                self.entry.read(self.t.data_offset + int(off[g0]), size,
                                out=buf[pos : pos + size])
            starts.append(off[g0:g1] - off[g0] + pos)
            ends.append(off[g0 + 1 : g1 + 1] - off[g0] + pos)
            crcs.append(self.t.crcs[g0:g1])
            pos += size
        st, en = np.concatenate(starts), np.concatenate(ends)
        view = memoryview(buf)
        for a, b, want in zip(st.tolist(), en.tolist(), np.concatenate(crcs).tolist()):
            if zlib.crc32(view[a:b]) != want:
                raise CorruptIndex("segment")
        code = INDEX_KERNELS.module().decode_segments(buf, st, en, self.npix,
                                                      self.npix * self.group, out)
        if code < 0:
            raise CorruptIndex("segment")

    def plane(self, lo: int, hi: int, frame: int | None, streams: tuple[int, ...],
              npix: int) -> np.ndarray:
        """Counts per pixel of channels ``lo:hi`` of ``streams`` (of ``frame``, or of the
        frame sum). :class:`CorruptIndex` when a segment fails its check."""
        found = self.early(lo, hi, frame, streams)
        if found is not None:
            return found
        if frame is not None and self.one_frame is not None:
            return self.one_frame.plane(lo, hi, frame, streams, npix)
        blocks = self._blocks(self._ranges(lo, hi, frame, streams))
        if len(blocks) <= 1:
            out = np.zeros(npix, np.int64)
            for b in blocks:
                self._decode(b, out)
            return out

        def run(b: list[tuple[int, int]]) -> np.ndarray:
            part = np.zeros(npix, np.int64)
            self._decode(b, part)
            return part

        return np.sum(list(pool().map(run, blocks)), axis=0)


def _run(tasks: list[Callable[[], None]], stop: Any, progress: Progress | None,
         done0: int, total: int) -> None:
    """Run ``tasks`` on the shared pool, waited for from this thread, reporting progress;
    a cancel stops the tasks not started yet (and raises here)."""
    futures: list[Future] = [pool().submit(t) for t in tasks]
    pending = set(futures)
    done = done0
    try:
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when="FIRST_COMPLETED")
            for fut in finished:
                fut.result()
                done += 1
            if progress is not None and finished:
                progress(done, total)
            cancel.check(stop)
    except BaseException:
        for fut in futures:
            fut.cancel()
        wait(futures)
        raise


def _light_plane(spec: SIRead, plan: Frames, first: PlaneAsk, stop: Any,
                 progress: Progress | None, total: int) -> np.ndarray | None:
    """The plane ``first`` asks for by a light pass over the frames it covers: each
    frame read where the frame table puts it and only that plane counted, several times
    faster than pass 1. None (pass 1 then gives it) when a stream has no trusted table
    or a frame does not hold the scan's pixels (no wrong picture from a wrong table)."""
    k = INDEX_KERNELS.module()
    npix, ny, nx = spec.npix, spec.ny, spec.nx
    jobs = light_jobs(spec, plan, first)
    acc = np.zeros(npix, np.int64)
    ok = [True]
    lock = threading.Lock()

    def one(s: int, j: int) -> None:
        cancel.check(stop)
        f = plan.frames[j]
        got = stream_index(spec, s).table_frame(f) if ok[0] else None
        if got is None:
            ok[0] = False
            return
        buf = got[0]
        part = np.zeros(npix, np.int64)
        dy, dx = plan.shift(j)
        seps = k.count_plane(buf, 0, buf.size, dy, dx, ny, nx, first.lo, first.hi, part)
        whole = f < spec.n_frames - 1  # the last frame may end early
        if seps > npix or (whole and (seps != npix or buf[-1] != SEPARATOR)):
            ok[0] = False
            return
        with lock:
            acc[:] += part

    _run([lambda s=s, j=j: one(s, j) for s, j in jobs], stop, progress, 0, total)
    return acc if ok[0] else None


def light_jobs(spec: SIRead, plan: Frames, first: PlaneAsk | None) -> list[tuple[int, int]]:
    """The (stream, frame) tasks of the light pass for ``first`` (none without one)."""
    if first is None:
        return []
    return [(s, j) for j in range(len(plan.frames)) for s in range(len(spec.streams))
            if first.wants(s, j)]


def build(spec: SIRead, plan: Frames, progress: Progress | None = None,
          first: PlaneAsk | None = None,
          early: Callable[[np.ndarray], None] | None = None,
          ) -> DiskIndex | StreamingPlanes:
    """Look the index of ``spec``'s streams and ``plan`` up in the disk cache, or build
    it (with progress ``progress(done, total)`` and the caller's cancel event); streaming
    planes when neither the cache nor a scratch file can be written. ``first``: a plane
    pass 1 counts on the way (flat, per output pixel) and the index keeps; a light pass
    before pass 1 (:func:`_light_plane`) gives it to ``early`` (from the building
    thread) first, or pass 1 when that pass cannot; on a cache hit ``early`` is not
    called (every plane is cheap)."""
    INDEX_KERNELS.warm()
    ident = diskcache.identify(spec.path)
    key = index_key(spec, plan)
    groups = _groups(spec, plan)
    C, S, F = spec.bincount, len(spec.streams), len(groups)
    entry = diskcache.lookup(KIND, key, ident)
    if entry is not None:
        t = _Tables(C, S, F)
        try:
            t.unpack(entry.read(0, t.table_bytes))
            return DiskIndex(entry, t, spec, plan)
        except (CorruptIndex, ValueError, OSError):
            entry.discard()
    k = INDEX_KERNELS.module()
    # the line indexing of frames is faster with the stream kernels: loaded meanwhile
    # (frames indexed before they are use numpy)
    pool().submit(STREAM_KERNELS.warm)
    stop = cancel.current()  # the caller's: pool threads do not share its context
    t = _Tables(C, S, F)
    seg_bytes = np.zeros((C, S, F), np.int64)
    seg_events = np.zeros((C, S, F), np.int64)
    plane = np.zeros(spec.npix, np.int64) if first is not None else None
    lock = threading.Lock()
    light = len(light_jobs(spec, plan, first)) if early is not None else 0
    total = light + 2 * S * F
    # frame by frame across the streams: each stream's frames come in order
    order = [(s, j) for j in range(F) for s in range(S)]
    if first is not None and early is not None:
        shown = _light_plane(spec, plan, first, stop, progress, total)
        if shown is not None:
            early(shown)
            early = None

    def count(s: int, g: int) -> None:
        nb, ne, last = (np.zeros(C, np.int64) for _ in range(3))
        for place, j in enumerate(groups[g]):
            cancel.check(stop)
            buf, pos, b = _frame(spec, s, plan.frames[j])
            dy, dx = plan.shift(j)
            want = first is not None and first.wants(s, j)
            lo, hi = (first.lo, first.hi) if first is not None and want else (0, 0)
            part = np.zeros(spec.npix if want else 1, np.int64)
            code = k.count_frame(buf, 0, b, dy, dx, spec.ny, spec.nx, C, last, nb, ne, lo,
                                 hi, part, place * spec.npix)
            if code < 0:
                raise bad_channel(spec, spec.streams[s], buf, code, pos)
            if plane is not None and want:
                with lock:
                    plane[:] += part
        seg_bytes[:, s, g] = nb
        seg_events[:, s, g] = ne

    _run([lambda s=s, j=j: count(s, j) for s, j in order], stop, progress, light, total)
    if plane is not None and early is not None:
        early(plane.copy())
    np.cumsum(seg_bytes.reshape(-1), out=t.offsets[1:])
    t.events[:] = seg_events.sum(2).reshape(-1)
    data_size = int(t.offsets[-1])

    def encode(w: diskcache.Writer, s: int, g: int) -> None:
        sizes = seg_bytes[:, s, g]
        local = np.zeros(C + 1, np.int64)
        np.cumsum(sizes, out=local[1:])
        out = np.empty(int(local[-1]), np.uint8)
        cursor, last = local[:-1].copy(), np.zeros(C, np.int64)
        for place, j in enumerate(groups[g]):
            cancel.check(stop)
            buf, _, b = _frame(spec, s, plan.frames[j])
            dy, dx = plan.shift(j)
            k.encode_frame(buf, 0, b, dy, dx, spec.ny, spec.nx, last, cursor, out,
                           place * spec.npix)
        view = memoryview(out)
        crcs = np.array([zlib.crc32(view[a:b]) for a, b in
                         zip(local[:-1].tolist(), local[1:].tolist())], np.uint32)
        segs = (np.arange(C) * S + s) * F + g
        t.crcs[segs] = crcs
        for c in np.flatnonzero(sizes):
            w.pwrite(t.data_offset + int(t.offsets[segs[c]]),
                     out[local[c] : local[c + 1]])

    def fill(w: diskcache.Writer) -> None:
        _run([lambda s=s, j=j: encode(w, s, j) for s, j in order],
             stop, progress, light + S * F, total)
        w.pwrite(0, t.pack())

    meta = {"channels": C, "streams": S, "frames": F, "events": int(t.events.sum())}
    entry = diskcache.publish(KIND, key, ident, meta, t.data_offset + data_size, fill)
    index = DiskIndex(entry, t, spec, plan) if entry is not None \
        else StreamingPlanes(spec, plan)
    if plane is not None and first is not None:
        index.first = (first, plane)
    return index


def cached(spec: SIRead, plan: Frames) -> bool:
    """Whether the disk cache holds a valid index for ``spec`` and ``plan``."""
    entry = diskcache.lookup(KIND, index_key(spec, plan), diskcache.identify(spec.path))
    if entry is None:
        return False
    entry.close()
    return True


class StreamingPlanes(_Early):
    """Planes without an index (no disk to keep one on): each plane reads every frame
    of its streams once, one frame at a time. Slow but bounded in memory."""

    nbytes = 0

    def __init__(self, spec: SIRead, plan: Frames) -> None:
        self.spec, self.plan = spec, plan
        self.n_streams = len(spec.streams)

    def plane(self, lo: int, hi: int, frame: int | None, streams: tuple[int, ...],
              npix: int) -> np.ndarray:
        found = self.early(lo, hi, frame, streams)
        if found is not None:
            return found
        spec, plan = self.spec, self.plan
        k = INDEX_KERNELS.warm()
        C = spec.bincount
        picks = range(len(plan.frames)) if frame is None else (frame,)
        stop = cancel.current()

        def one(s: int, j: int) -> np.ndarray:
            cancel.check(stop)
            buf, pos, b = _frame(spec, s, plan.frames[j])
            dy, dx = plan.shift(j)
            part = np.zeros(npix, np.int64)
            z = np.zeros(C, np.int64)
            code = k.count_frame(buf, 0, b, dy, dx, spec.ny, spec.nx, C, z, z.copy(),
                                 z.copy(), lo, hi, part, 0)
            if code < 0:
                raise bad_channel(spec, spec.streams[s], buf, code, pos)
            return part

        jobs = [(s, j) for s in streams for j in picks]
        return np.sum(list(pool().map(lambda sj: one(*sj), jobs)), axis=0)
