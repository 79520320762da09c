"""Velox EDS spectrum-stream decoding: eager, lazy per (frames x rows) chunk, and an
energy-first view for napari.

Format facts: ``Data/SpectrumStream/<id>/Data`` is a uint16 ``(N, 1)`` event list per EDS
detector. Each value is the energy channel of one detected X-ray; ``65535`` closes the
current pixel; pixels run x-fastest, frame after frame; the last pixel may lack its
``65535`` and a stopped acquisition leaves the last frame short (both happen in real
files). ``FrameLocationTable`` (Velox 6+) gives the stream index where each frame starts.

The Velox reader (``formats/velox.py``) finds the grid, frames, detectors and channel count
and describes them in an :class:`SISpec`; :func:`read_spectrum_images` turns that plus the
reader options into arrays.

How it is fast:

* The stream is cut into *scan lines* (``nx`` pixels): one linear pass (numpy) finds
  where each line starts. With a ``FrameLocationTable`` only the frames asked for
  are scanned, so one frame costs one frame's worth of work.
* Eager decoding reads each stream in one block and scatters its events straight into
  the output (no int64 temporaries), the scan rows split between threads running nogil
  kernels. Memory: the output plus one stream.
* ``lazy=True`` gives a dask array chunked by (frames x rows); a chunk reads only its lines
  from the file (the graph holds the path, never a handle). The line index is built when a
  chunk first needs it and cached once per process (keyed by path, dataset, mtime, size).
* ``SIResult.display`` (lazy) is an energy-first view, one chunk per energy plane. Its
  tasks use a per-process event index (the pixel of every event, grouped by channel), so
  a plane is the bincount of one slice: the first plane pays for the index, later planes
  take a few milliseconds. Small SIs get a flat numpy index instead (no numba start-up,
  no sort; a plane scans all events in a few ms).

See ``docs/spectrum-images.md`` for the format details, the damaged-stream rules and the
benchmarks.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
import warnings
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from ._h5 import H5_LOCK, cached_handle, check_unchanged, close_cached, file_identity, open_h5
from ._memory import HUGE, MIN_PROBE_BYTES, FaultAhead, HugePageProbe, empty_small_pages
from ._options import ReadOptions
from .errors import EMDError, EMDWarning

SEPARATOR = 65535

# Chunk sizes of the lazy arrays (bytes per chunk, roughly).
DATA_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class SISpec:
    """Everything needed to decode the spectrum streams of one spectrum image.

    ``streams`` are HDF5 paths of the ``Data`` datasets (one per detector) and
    ``frame_tables`` the paths of their ``FrameLocationTable`` (``None`` when absent).
    """

    path: str
    streams: tuple[str, ...]
    detectors: tuple[str, ...]
    ny: int
    nx: int
    n_frames: int
    bincount: int
    frame_tables: tuple[str | None, ...]
    dtype: str = "uint16"
    # the file's identity when a lazy graph was built (see _h5.file_identity); lazy
    # chunks refuse to decode a file replaced since
    identity: tuple = ()


@dataclass
class SIResult:
    """One spectrum image: ``detector`` is ``None`` for the sum over detectors.

    ``data`` is ``(y, x, E)`` or ``(frame, y, x, E)`` when frames are not summed (numpy, or
    dask when lazy). ``display`` optionally holds an energy-first view
    (``(E, y, x)`` / ``(frame, E, y, x)``) for napari.
    """

    detector: str | None
    data: Any
    display: Any = None


def check_options(spec: SISpec, opts: ReadOptions) -> tuple[int, int]:
    """Validate frame range, rebinning and ``spec`` itself; return (first, last).

    Raises ValueError for options that do not fit this spectrum image (before anything
    is decoded) and EMDError when the spec describes an impossible image.
    """
    if spec.ny < 1 or spec.nx < 1 or spec.n_frames < 1 or spec.bincount < 1:
        raise EMDError(
            spec.path,
            f"spectrum image grid {spec.ny}x{spec.nx}, {spec.n_frames} frame(s), "
            f"{spec.bincount} channels is empty",
        )
    if spec.bincount > SEPARATOR:
        raise EMDError(spec.path, f"bincount {spec.bincount} exceeds the uint16 event range")
    if not spec.streams or len(spec.streams) != len(spec.detectors):
        raise EMDError(
            spec.path, "spectrum image without streams, or detectors not one per stream"
        )
    if len(spec.frame_tables) != len(spec.streams):
        raise EMDError(spec.path, "frame_tables must hold one entry (or None) per stream")
    first = opts.first_frame
    last = spec.n_frames if opts.last_frame is None else opts.last_frame
    if not isinstance(first, (int, np.integer)) or isinstance(first, bool):
        raise ValueError(f"first_frame={first!r} must be an integer")
    if not isinstance(last, (int, np.integer)) or isinstance(last, bool):
        raise ValueError(f"last_frame={last!r} must be an integer or None")
    if not 0 <= first < spec.n_frames:
        raise ValueError(
            f"{spec.path}: first_frame={first} is outside the {spec.n_frames} frame(s) "
            "of the spectrum image"
        )
    if not first < last <= spec.n_frames:
        raise ValueError(
            f"{spec.path}: last_frame={opts.last_frame} must be in "
            f"{first + 1}..{spec.n_frames} (it is exclusive)"
        )
    rb = opts.rebin_energy
    if not isinstance(rb, (int, np.integer)) or isinstance(rb, bool) or rb < 1:
        raise ValueError(f"rebin_energy={rb!r} must be a positive integer")
    if spec.bincount % rb:
        raise ValueError(
            f"{spec.path}: rebin_energy={rb} does not divide the {spec.bincount} channels"
        )
    _out_dtype(spec, opts)
    return int(first), int(last)


def _out_dtype(spec: SISpec, opts: ReadOptions) -> np.dtype:
    try:
        dt = np.dtype(opts.SI_dtype if opts.SI_dtype is not None else spec.dtype)
    except TypeError as err:
        raise ValueError(f"SI_dtype={opts.SI_dtype!r} is not a numpy dtype") from err
    if dt.kind not in "uif":
        raise ValueError(f"SI_dtype={dt} must be an integer or float dtype")
    return dt


# Output dtypes the kernels accumulate into directly; others (float16, ...) go through
# a wider accumulator and a cast.
_DIRECT = {np.dtype(t) for t in ("u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f4", "f8")}


def _accumulator(dt: np.dtype) -> np.dtype:
    return dt if dt in _DIRECT else np.dtype("f4" if dt.kind == "f" else "i8")


_WARM = False


def _kernels():
    from . import _stream_kernels

    return _stream_kernels


def warm_kernels() -> None:
    """Load the numba kernels now (numba's start-up, a few hundred ms, once per process).

    The eager decoder and the lazy chunks need them; the energy-plane index only for big
    streams (small ones get a flat numpy index, so their first plane never waits for
    numba's start-up)."""
    global _WARM
    if not _WARM:
        _kernels().warm_up()
        _WARM = True


# --- the reference decoder (the oracle the tests compare against) -----------------


def _decode_reference(
    stream: np.ndarray, spec: SISpec, first: int, last: int, sum_frames: bool, rebin: int
) -> np.ndarray:
    npix = spec.ny * spec.nx
    is_sep = stream == SEPARATOR
    pixel = np.cumsum(is_sep) - is_sep  # pixel index of each value
    ev = ~is_sep
    ch = stream[ev].astype(np.int64)
    pix = pixel[ev]
    if ch.size and ch.max() >= spec.bincount:
        raise EMDError(spec.path, f"event channel {int(ch.max())} >= {spec.bincount} channels")
    frame = pix // npix
    keep = (frame >= first) & (frame < last)
    ch, pix, frame = ch[keep] // rebin, pix[keep] % npix, frame[keep] - first
    nch = spec.bincount // rebin
    if sum_frames:
        out = np.bincount(pix * nch + ch, minlength=npix * nch)
        return out.reshape(spec.ny, spec.nx, nch)
    nf = last - first
    out = np.bincount((frame * npix + pix) * nch + ch, minlength=nf * npix * nch)
    return out.reshape(nf, spec.ny, spec.nx, nch)


def read_spectrum_images_reference(spec: SISpec, opts: ReadOptions) -> list[np.ndarray]:
    """The plain numpy decoder: int64 cubes, one per detector (or one summed), for tests.

    Slow and memory hungry on purpose (every event gets int64 pixel/frame/channel
    indices): it is the obviously-correct oracle the fast decoder is compared with.
    """
    first, last = check_options(spec, opts)
    cubes = []
    with open_h5(spec.path) as f:
        for s in spec.streams:
            raw = f[s][()].ravel()
            cubes.append(
                _decode_reference(raw, spec, first, last, opts.sum_frames, opts.rebin_energy)
            )
    if opts.sum_EDS_detectors:
        return [np.sum(cubes, axis=0)]
    return cubes


# --- stream geometry: where scan lines start ----------------------------------------


def _file_key(path: str) -> tuple[str, int, int]:
    st = os.stat(path)
    return (os.path.abspath(path), st.st_mtime_ns, st.st_size)


def _read_span(ds: Any, a: int, b: int, out: np.ndarray | None = None) -> np.ndarray:
    """Values ``a:b`` of an (N, 1) or (N,) stream dataset as a 1-D uint16 array (read
    straight into ``out`` when it is a uint16 array of that length)."""
    if b <= a:
        return np.empty(0, np.uint16)
    if (out is not None and out.shape == (b - a,) and ds.dtype == np.uint16
            and ds.shape[1:] in ((), (1,))):
        ds.read_direct(out.reshape(b - a, *ds.shape[1:]), np.s_[a:b])
        return out
    if ds.ndim == 2:
        out = empty_small_pages((b - a) * ds.shape[1], ds.dtype).reshape(b - a, ds.shape[1])
        ds.read_direct(out, np.s_[a:b, :])
        out = out[:, 0]
    else:
        out = empty_small_pages(b - a, ds.dtype)
        ds.read_direct(out, np.s_[a:b])
    if out.dtype != np.uint16:
        out = out.astype(np.uint16)
    return out


def _stream_dataset(f: h5py.File, name: str, path: str) -> h5py.Dataset:
    """Stream dataset ``name`` of open file ``f``, opened without a chunk cache: a span
    is read once, front to back, so caching its chunks (16 KiB each in Velox files) only
    adds a copy and the cache's bookkeeping per chunk (a 2-frame span of 4 streams of the
    large benchmark file: 47 -> 30 ms)."""
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    dapl.set_chunk_cache(0, 0, 1.0)
    try:
        return h5py.Dataset(h5py.h5d.open(f.id, name.encode(), dapl=dapl))
    except (KeyError, ValueError, TypeError) as err:
        raise EMDError(path, f"spectrum stream {name} is missing") from err


def _load_table(f: Any, name: str | None) -> np.ndarray | None:
    """The frame table ``name`` of open file ``f`` as int64, or None when there is none
    or it cannot be read."""
    if name is None:
        return None
    try:
        return np.asarray(f[name][()]).astype(np.int64).ravel()
    except (KeyError, OSError, ValueError, TypeError):
        return None


def _read_table(spec: SISpec, ds: Any, name: str | None) -> np.ndarray | None:
    t = _load_table(ds.file, name)
    if t is None and name is not None:
        warnings.warn(
            f"{spec.path}: FrameLocationTable {name} is unreadable; frames are found by "
            "scanning the stream",
            EMDWarning,
            stacklevel=4,
        )
    return t


def _starts_pixel(ds: Any, pos: int) -> bool:
    """True when stream position ``pos`` starts a pixel (0, or right after a separator)."""
    return pos == 0 or int(_read_span(ds, pos - 1, pos)[0]) == SEPARATOR


def _table_ok(spec: SISpec, table: np.ndarray | None, n: int) -> bool:
    """Cheap sanity check of a frame table against the stream length."""
    if table is None:
        return False
    if table.size < spec.n_frames or table[0] != 0:
        return False
    t = table[: spec.n_frames]
    return bool(np.all(np.diff(t) >= 0) and t[-1] <= n)


def _warn_table(spec: SISpec, stream: str, why: str) -> None:
    warnings.warn(
        f"{spec.path}: the FrameLocationTable of {stream} disagrees with the stream "
        f"({why}); frames are located by scanning the stream instead",
        EMDWarning,
        stacklevel=5,
    )


def _check_extent(spec: SISpec, stream: str, pixels: int) -> None:
    """Warn when the stream does not fill the grid (a stopped acquisition may leave the
    last frame short, and Velox may start one more pixel: both are normal and silent)."""
    npix = spec.ny * spec.nx
    expected = spec.n_frames * npix
    if pixels <= (spec.n_frames - 1) * npix:
        warnings.warn(
            f"{spec.path}: stream {stream} holds {pixels} pixels, fewer than the "
            f"{spec.n_frames - 1} complete frame(s) of {spec.ny}x{spec.nx} expected before "
            "the last; the missing pixels are zero",
            EMDWarning,
            stacklevel=5,
        )
    elif pixels > expected + 1:
        warnings.warn(
            f"{spec.path}: stream {stream} holds {pixels} pixels, more than the "
            f"{spec.n_frames} frame(s) of {spec.ny}x{spec.nx} = {expected}; the extra "
            "pixels are ignored",
            EMDWarning,
            stacklevel=5,
        )


def index_lines(buf: np.ndarray, nx: int, n_lines: int) -> tuple[np.ndarray, int, int]:
    """Where each scan line (``nx`` pixels) of ``buf`` starts, for ``n_lines`` lines.

    ``buf`` starts at a pixel boundary; lines the buffer does not reach start at
    ``len(buf)``. Returns (``n_lines + 1`` positions, separators, values after the last
    separator). Plain numpy (memory-bound either way), so the lazy display path does
    not have to wake numba up.
    """
    sep = np.flatnonzero(buf == SEPARATOR)
    lines = np.full(n_lines + 1, buf.size, np.int64)
    lines[0] = 0
    ends = sep[nx - 1 :: nx] + 1
    m = min(ends.size, n_lines)
    lines[1 : m + 1] = ends[:m]
    trailing = buf.size - 1 - (int(sep[-1]) if sep.size else -1)
    return lines, int(sep.size), int(trailing)


def _full_lines(spec: SISpec, buf: np.ndarray, stream: str) -> np.ndarray:
    """Line starts (``n_frames * ny + 1``) of a whole stream held in ``buf``.

    Once numba's kernels are loaded (always, for eager reads) its one-pass kernel is used:
    no temporaries the size of the stream, which a fresh process pays for in page faults
    (0.06 vs 0.08-0.3 s for a 58 M-value stream)."""
    if _WARM and buf.dtype == np.uint16:
        lines = np.zeros(spec.n_frames * spec.ny + 1, np.int64)
        seps, trailing = _kernels().index_lines(buf, spec.nx, lines)
        _check_extent(spec, stream, int(seps) + (1 if trailing > 0 else 0))
        return lines
    lines, seps, trailing = index_lines(buf, spec.nx, spec.n_frames * spec.ny)
    _check_extent(spec, stream, int(seps) + (1 if trailing > 0 else 0))
    return lines


def _frame_lines(
    spec: SISpec, buf: np.ndarray, f: int, last_frame: bool
) -> tuple[np.ndarray, str | None]:
    """Line starts of one frame whose values are ``buf`` (starting at the frame start).

    Returns (ny + 1 positions, reason the frame table is wrong or None)."""
    if _WARM and buf.dtype == np.uint16:  # one pass, no temporaries (eager reads)
        lines = np.zeros(spec.ny + 1, np.int64)
        seps, _ = _kernels().index_lines(buf, spec.nx, lines)
    else:
        lines, seps, _ = index_lines(buf, spec.nx, spec.ny)
    npix = spec.ny * spec.nx
    if not last_frame and (seps != npix or lines[-1] != buf.size):
        return lines, f"frame {f} spans {int(seps)} pixel separators, not {npix}"
    return lines, None


class _StreamIndex:
    """Per-process, per-stream index of scan-line starts (absolute stream positions).

    With a trustworthy FrameLocationTable frames are indexed one by one as chunks need
    them (reading only that frame); otherwise the whole stream is scanned once.
    """

    def __init__(self, spec: SISpec, stream: str, table: str | None) -> None:
        self.spec = spec
        self.stream = stream
        self.table_name = table
        self.lock = threading.Lock()
        self.lines = np.zeros(spec.n_frames * spec.ny + 1, np.int64)
        self.have = np.zeros(spec.n_frames, bool)
        self.table: np.ndarray | None = None
        self.table_checked = False
        self.use_table = True
        self.n = 0

    def _dataset(self) -> Any:
        return _stream_dataset(cached_handle(self.spec.path), self.stream, self.spec.path)

    def _check_table(self) -> None:
        """Read the frame table once and decide whether it can be trusted (call locked)."""
        if self.table_checked:
            return
        with H5_LOCK:
            ds = self._dataset()
            self.n = int(ds.shape[0])
            self.table = _read_table(self.spec, ds, self.table_name)
        self.use_table = _table_ok(self.spec, self.table, self.n)
        if self.table is not None and not self.use_table:
            _warn_table(self.spec, self.stream, "it does not fit the stream length")
        self.table_checked = True

    def _from_buffer(self, buf: np.ndarray) -> None:
        """Index the whole stream held in ``buf`` (and check the frame table against it)."""
        spec = self.spec
        lines = _full_lines(spec, buf, self.stream)
        if self.use_table and self.table is not None:
            starts = lines[np.arange(spec.n_frames) * spec.ny]
            want = self.table[: spec.n_frames]
            if not np.array_equal(starts, want):
                bad = int(np.flatnonzero(starts != want)[0])
                _warn_table(spec, self.stream, f"frame {bad} starts at {int(starts[bad])}")
                self.use_table = False
        self.lines[:] = lines
        self.have[:] = True

    def ensure(self, f0: int, f1: int) -> np.ndarray:
        """Make sure frames ``f0:f1`` are indexed; return the line array."""
        with self.lock:
            if self.have[f0:f1].all():
                return self.lines
            self._check_table()
            if self.use_table and self._by_table(f0, f1):
                return self.lines
            with H5_LOCK:
                buf = _read_span(self._dataset(), 0, self.n)
            self._from_buffer(buf)
            return self.lines

    def span(self, f0: int, f1: int) -> tuple[np.ndarray, int, np.ndarray]:
        """(values of frames ``f0:f1``, their first stream position, line array), reading
        the stream once: a stream not yet indexed is read whole and indexed from memory
        when all frames are asked for (or no frame table helps)."""
        spec = self.spec
        ny = spec.ny
        with self.lock:
            self._check_table()
            whole = (f0 == 0 and f1 == spec.n_frames) or not self.use_table
            if not self.have[f0:f1].all() and whole:
                with H5_LOCK:
                    buf = _read_span(self._dataset(), 0, self.n)
                self._from_buffer(buf)
                a, b = int(self.lines[f0 * ny]), int(self.lines[f1 * ny])
                return buf[a:b], a, self.lines
        lines = self.ensure(f0, f1)
        a, b = int(lines[f0 * ny]), int(lines[f1 * ny])
        with H5_LOCK:
            buf = _read_span(self._dataset(), a, b)
        return buf, a, lines

    def _by_table(self, f0: int, f1: int) -> bool:
        spec = self.spec
        t = self.table
        assert t is not None
        ny = spec.ny
        # the frame before the first one asked for is indexed too: its pixel count checks
        # where the first one starts
        for f in range(max(f0 - 1, 0), f1):
            if self.have[f]:
                continue
            a = int(t[f])
            last = f == spec.n_frames - 1
            b = self.n if last else int(t[f + 1])
            with H5_LOCK:
                buf = _read_span(self._dataset(), a, b)
                starts = _starts_pixel(self._dataset(), a)
            lines, why = _frame_lines(spec, buf, f, last)
            if why is None and not starts:
                why = f"frame {f} would start inside a pixel, at {a}"
            if why is not None:
                _warn_table(spec, self.stream, why)
                self.use_table = False
                return False
            if last:
                npix = spec.ny * spec.nx
                seps = int(np.count_nonzero(buf == SEPARATOR))
                trailing = buf.size > 0 and buf[-1] != SEPARATOR
                _check_extent(spec, self.stream, f * npix + seps + int(trailing))
            self.lines[f * ny : (f + 1) * ny + 1] = lines + a
            self.have[f] = True
        return True


_INDEX_LOCK = threading.Lock()
_INDEXES: OrderedDict[tuple, _StreamIndex] = OrderedDict()
_MAX_INDEXES = 64


def stream_index(spec: SISpec, i: int) -> _StreamIndex:
    """The cached line index of stream ``i`` of ``spec`` for this process."""
    check_unchanged(spec.path, spec.identity)
    key = (os.getpid(), *_file_key(spec.path), spec.streams[i], spec.ny, spec.nx, spec.n_frames)
    with _INDEX_LOCK:
        idx = _INDEXES.get(key)
        if idx is None:
            idx = _StreamIndex(spec, spec.streams[i], spec.frame_tables[i])
            _INDEXES[key] = idx
            while len(_INDEXES) > _MAX_INDEXES:
                _INDEXES.popitem(last=False)
        else:
            _INDEXES.move_to_end(key)
        return idx


def clear_caches() -> None:
    """Forget all per-process stream and event indexes (e.g. after rewriting a file)."""
    with _INDEX_LOCK:
        _INDEXES.clear()
    with _EVENT_LOCK:
        _EVENTS.clear()


# --- scattering ------------------------------------------------------------------


def _bad_channel(spec: SISpec, stream: str, buf: np.ndarray, code: int, offset: int) -> EMDError:
    pos = -code - 1
    return EMDError(
        spec.path,
        f"spectrum stream {stream} holds channel {int(buf[pos])} at value {offset + pos}, "
        f"but the spectrum has only {spec.bincount} channels (corrupt stream?)",
    )


def _line_jobs(
    lines: np.ndarray, spec: SISpec, frames: range, r0: int, r1: int, base: int, per_frame: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, output row) of lines r0:r1 of ``frames``, positions relative to base."""
    ny = spec.ny
    nr = r1 - r0
    starts, ends, outs = [], [], []
    for j, f in enumerate(frames):
        s = lines[f * ny + r0 : f * ny + r1] - base
        e = lines[f * ny + r0 + 1 : f * ny + r1 + 1] - base
        starts.append(s)
        ends.append(e)
        o = np.arange(nr, dtype=np.int64)
        outs.append(o + j * nr if per_frame else o)
    return np.concatenate(starts), np.concatenate(ends), np.concatenate(outs)


def _row_bounds(nrows: int, parts: int) -> np.ndarray:
    """Where the scatter splits ``nrows`` output rows among ``parts`` threads."""
    return np.linspace(0, nrows, max(1, parts) + 1).astype(np.int64)


def _probing(out3: np.ndarray) -> bool:
    """Whether a fresh output's pages are faulted in by its writers (big ones only)."""
    return PROBE_PAGES and out3.nbytes >= MIN_PROBE_BYTES and out3.flags.c_contiguous


def _scatter(
    spec: SISpec,
    stream: str,
    buf: np.ndarray,
    jobs: tuple[np.ndarray, np.ndarray, np.ndarray],
    out3: np.ndarray,
    rebin: int,
    offset: int,
    threads: int = 1,
    segments: list[tuple[int, str, int]] | None = None,
    fresh: bool = False,
    probes: list[HugePageProbe] | None = None,
) -> bool:
    """Scatter ``jobs`` of ``buf`` into ``out3`` (rows, nx, E); True when counts overflowed.

    ``buf[0]`` is value ``offset`` of ``stream``; a buffer joined from several streams
    gives ``segments`` instead: (start in ``buf``, stream, its offset) of each part.
    With ``threads > 1`` the jobs are split by output row into blocks, one queue of them
    per thread (a thread done early takes the others' last blocks): a block is written
    by one thread only.
    Jobs go in output-row order, so a row stays in cache while all its lines land in it.
    A ``fresh`` output (all zeros, never written: the probe writes zero bytes into it)
    of ``_memory.MIN_PROBE_BYTES`` and more is written in blocks of about one huge page
    of rows, each thread faulting its own pages in just ahead of its writes (see
    :class:`_memory.HugePageProbe`), taking over ``probes`` (one per thread, from a
    :class:`_memory.FaultAhead` that went ahead while the streams were read)."""
    st, en, ou = jobs
    if st.ndim == 1:  # one detector's lines
        st, en = st[None], en[None]
    nrows = out3.shape[0]
    bounds = _row_bounds(nrows, threads if ou.size >= 2 * threads else 1)
    n_parts = len(bounds) - 1
    probe = fresh and _probing(out3)
    row_bytes = out3.nbytes // max(nrows, 1)
    if probes is not None and [(p.lo, p.hi) for p in probes] != [
        (int(bounds[t]) * row_bytes, int(bounds[t + 1]) * row_bytes) for t in range(n_parts)
    ]:
        probes = None  # split otherwise than expected (very few lines): start afresh
    step = max(1, -(-HUGE // max(row_bytes, 1))) if probe else nrows
    order = np.argsort(ou, kind="stable")
    ou = ou[order]
    st, en = st[:, order], en[:, order]
    queues: list[deque] = []
    pagers: list[HugePageProbe | None] = []
    for t in range(n_parts):
        r0, r1 = int(bounds[t]), int(bounds[t + 1])
        cuts = np.searchsorted(ou, np.r_[np.arange(r0, r1, step), r1])
        # C order: the kernels were loaded for C-ordered job arrays, and another layout
        # (a column slice of a 2-D array) makes numba load one more specialization
        queues.append(deque(
            (np.ascontiguousarray(st[:, i:j]), np.ascontiguousarray(en[:, i:j]), ou[i:j],
             min(r1, int(ou[j - 1]) + 1) * row_bytes)
            for i, j in itertools.pairwise(cuts)
            if j > i
        ))
        pager = None
        if probe:
            pager = probes[t] if probes else HugePageProbe(out3, r0 * row_bytes, r1 * row_bytes)
        pagers.append(pager)
    args = (buf, spec.nx, rebin, spec.bincount, out3)
    if n_parts == 1:
        codes = [_scatter_blocks(queues, 0, pagers[0], *args)]
    else:
        futs = [_pool().submit(_scatter_blocks, queues, t, pagers[t], *args)
                for t in range(n_parts)]
        codes = [fu.result() for fu in futs]
    bad = [c for c in codes if c < 0]
    if bad:
        code = min(bad, key=lambda c: -c)
        if segments:
            start, stream, seg_offset = max(
                (seg for seg in segments if seg[0] <= -code - 1), key=lambda seg: seg[0]
            )
            offset = seg_offset - start
        raise _bad_channel(spec, stream, buf, code, offset)
    return any(c == 1 for c in codes)


def _scatter_blocks(
    queues: list[deque],
    me: int,
    pager: HugePageProbe | None,
    buf: np.ndarray,
    nx: int,
    rebin: int,
    bincount: int,
    out3: np.ndarray,
) -> int:
    """Thread ``me``'s share of a scatter: the blocks of lines in its queue, front to
    back (output-row order), each block's pages faulted in just before (with ``pager``);
    then blocks taken from the back of the other threads' queues, so that a thread whose
    pages came cheap helps the one whose pages came slow instead of idling. A taken
    block's pages are left to the writes (its owner's pager never reaches them: the
    owner takes its blocks from the front only). The kernel's code: negative for a bad
    channel (the first one stops this thread), else 1 when a count overflowed."""
    kern = _kernels().scatter_lines
    own = queues[me]
    over = 0
    while True:
        try:
            block = own.popleft()
        except IndexError:
            block = None
            # deque.pop is atomic: a block is taken by exactly one thread
            for victim in sorted(queues, key=len, reverse=True):
                if victim is not own:
                    try:
                        block = victim.pop()
                        break
                    except IndexError:
                        continue
            if block is None:
                return over
        else:
            if pager is not None:
                pager.advance(block[3])
        st, en, ou, _ = block
        code = kern(buf, st, en, ou, nx, rebin, bincount, out3)
        if code < 0:
            return code
        over |= code


def _n_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The process's worker threads for scatter and page-touch work. Kept alive between
    reads: starting threads per call cost ~2 ms each here. Its tasks never submit to it
    again, so callers on many threads (dask) cannot deadlock it."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_n_threads(), thread_name_prefix="napari-emd")
        return _POOL


def _forget_pool() -> None:  # a forked child has none of the parent's threads
    global _POOL, _POOL_LOCK
    _POOL = None
    _POOL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _cast(acc: np.ndarray, dt: np.dtype) -> np.ndarray:
    return acc if acc.dtype == dt else acc.astype(dt)


def _warn_overflow(spec: SISpec, dt: np.dtype, largest: int) -> None:
    warnings.warn(
        f"{spec.path}: the spectrum image holds counts up to {largest}, more than "
        f"SI_dtype={dt} can hold; values were cast like numpy's astype "
        "(pass a larger SI_dtype, e.g. 'uint32')",
        EMDWarning,
        stacklevel=4,
    )


def _largest_count(spec: SISpec, opts: ReadOptions, streams: tuple[int, ...]) -> int:
    """The largest count of the requested cube, computed exactly in row blocks (used only
    after an overflow, to name it in the warning)."""
    first, last = check_options(spec, opts)
    nch = spec.bincount // opts.rebin_energy
    nf = 1 if opts.sum_frames else last - first
    row_bytes = nf * spec.nx * nch * 8
    step = max(1, min(spec.ny, (64 * 2**20) // max(row_bytes, 1)))
    best = 0
    for r0 in range(0, spec.ny, step):
        r1 = min(spec.ny, r0 + step)
        blk, _ = _decode_block(spec, opts, streams, first, last, r0, r1, np.dtype("i8"))
        best = max(best, int(blk.max(initial=0)))
    return best


def _decode_block(
    spec: SISpec,
    opts: ReadOptions,
    streams: tuple[int, ...],
    f0: int,
    f1: int,
    r0: int,
    r1: int,
    acc_dt: np.dtype,
) -> tuple[np.ndarray, bool]:
    """Rows ``r0:r1`` of frames ``f0:f1`` (summed or not) of ``streams``, read line by
    line through the per-process index: what one lazy chunk computes. Returns the block
    and whether a count overflowed ``acc_dt``."""
    nch = spec.bincount // opts.rebin_energy
    nr = r1 - r0
    per_frame = not opts.sum_frames
    nf = f1 - f0
    out = np.zeros(((nf if per_frame else 1) * nr, spec.nx, nch), acc_dt)
    over = False
    for i in streams:
        idx = stream_index(spec, i)
        lines = idx.ensure(f0, f1)
        frames = range(f0, f1)
        for j, f in enumerate(frames):
            a = int(lines[f * spec.ny + r0])
            b = int(lines[f * spec.ny + r1])
            if b <= a:
                continue
            with H5_LOCK:
                buf = _read_span(idx._dataset(), a, b)
            jobs = _line_jobs(lines, spec, range(f, f + 1), r0, r1, a, False)
            view = out[j * nr : (j + 1) * nr] if per_frame else out
            over |= _scatter(spec, spec.streams[i], buf, jobs, view, opts.rebin_energy, a)
    if per_frame:
        return out.reshape(nf, nr, spec.nx, nch), over
    return out, over


# --- eager ---------------------------------------------------------------------------


@dataclass
class _Work:
    """The scatter jobs of one stream: its events ``buf`` (stream values from
    ``offset``) and (start, end, output row) of each scan line within ``buf``."""

    name: str
    buf: np.ndarray
    offset: int
    jobs: tuple[np.ndarray, np.ndarray, np.ndarray]


def _eager_work(
    spec: SISpec,
    f: Any,
    i: int,
    first: int,
    last: int,
    opts: ReadOptions,
    preloaded: dict[str, np.ndarray] | None = None,
    dest: np.ndarray | None = None,
) -> _Work:
    """Read and index what stream ``i`` holds of frames ``first:last``. A whole stream
    the caller already read (``preloaded``, by stream path) is used, not read again.
    The span the frame table gives is read into ``dest`` when that has its length."""
    name = spec.streams[i]
    ds = _stream_dataset(f, name, spec.path)
    n = int(ds.shape[0])
    table = _read_table(spec, ds, spec.frame_tables[i])
    partial = first > 0 or last < spec.n_frames
    lines = None
    buf = None
    start = 0  # the stream position of buf[0]; lines are positions in buf
    if partial and _table_ok(spec, table, n):
        # Only the frames asked for (and the one before, whose pixel count checks where
        # the first one starts): read their span, index it frame by frame.
        lo = max(first - 1, 0)
        a, b = _frames_span(spec, table, n, first, last)
        buf = _read_span(ds, a, b, dest)
        lines = np.zeros(spec.n_frames * spec.ny + 1, np.int64)
        ok = True
        for fr in range(lo, last):
            fa = int(table[fr]) - a
            fb = (n if fr == spec.n_frames - 1 else int(table[fr + 1])) - a
            if fr < first:  # only checked, not decoded: a count is enough
                seg = buf[fa:fb]
                seps = int(np.count_nonzero(seg == SEPARATOR))
                why = None
                if seps != spec.ny * spec.nx or (seg.size and seg[-1] != SEPARATOR):
                    why = f"frame {fr} spans {seps} pixel separators, not {spec.ny * spec.nx}"
                elif not _starts_pixel(ds, int(table[fr])):
                    why = f"frame {fr} would start inside a pixel, at {int(table[fr])}"
                if why is not None:
                    _warn_table(spec, name, why)
                    ok = False
                    break
                continue
            fl, why = _frame_lines(spec, buf[fa:fb], fr, fr == spec.n_frames - 1)
            if why is None and not _starts_pixel(ds, int(table[fr])):
                why = f"frame {fr} would start inside a pixel, at {int(table[fr])}"
            if why is not None:
                _warn_table(spec, name, why)
                ok = False
                break
            lines[fr * spec.ny : (fr + 1) * spec.ny + 1] = fl + fa
        if ok:
            start = a
            if last >= spec.n_frames:
                fa = int(table[spec.n_frames - 1])
                tail = buf[fa - a :]
                seps = int(np.count_nonzero(tail == SEPARATOR))
                trailing = tail.size > 0 and tail[-1] != SEPARATOR
                npix = spec.ny * spec.nx
                _check_extent(spec, name, (spec.n_frames - 1) * npix + seps + int(trailing))
            # the frame before was only counted: drop it, so a join copies no more
            # than the frames asked for
            skip = int(table[first]) - a
            if skip > 0:
                buf = buf[skip:]
                lines[first * spec.ny : last * spec.ny + 1] -= skip
                start = a + skip
        else:
            lines = None
            buf = None
    elif table is not None and not _table_ok(spec, table, n):
        _warn_table(spec, name, "it does not fit the stream length")
        table = None
    if lines is None:
        pre = preloaded.pop(name, None) if preloaded else None
        buf = pre if pre is not None and pre.size == n else _read_span(ds, 0, n)
        lines = _full_lines(spec, buf, name)
        if table is not None and _table_ok(spec, table, n):
            starts = lines[np.arange(spec.n_frames) * spec.ny]
            if not np.array_equal(starts, table[: spec.n_frames]):
                bad = int(np.flatnonzero(starts != table[: spec.n_frames])[0])
                _warn_table(spec, name, f"frame {bad} starts at {int(starts[bad])}")
    jobs = _line_jobs(lines, spec, range(first, last), 0, spec.ny, 0, not opts.sum_frames)
    return _Work(name, buf, start, jobs)


def _inside(a: np.ndarray, base: np.ndarray) -> bool:
    """Whether 1-D uint16 ``a`` is a contiguous piece of 1-D uint16 ``base``."""
    lo = a.ctypes.data - base.ctypes.data
    return (a.dtype == base.dtype == np.uint16 and a.flags.c_contiguous and lo >= 0
            and lo % 2 == 0 and lo + a.nbytes <= base.nbytes)


def _scatter_all(
    spec: SISpec, works: list[_Work], out3: np.ndarray, opts: ReadOptions, merge: bool,
    fresh: bool, probes: list[HugePageProbe] | None = None,
    joined: np.ndarray | None = None,
) -> bool:
    """Scatter every stream's work into ``out3``; True on overflow. With ``merge`` the
    streams' events are joined into one buffer and scattered in one row-ordered pass
    (costs a copy of them, unless every stream's events already lie in ``joined``: only
    for spans small next to the output). ``fresh``: nothing was written to ``out3``
    yet."""
    threads = _n_threads()
    if not merge or len(works) == 1:
        over = False
        for w in works:
            over |= _scatter(spec, w.name, w.buf, w.jobs, out3, opts.rebin_energy, w.offset,
                             threads, fresh=fresh, probes=probes)
            fresh, probes = False, None
        return over
    if joined is not None and all(_inside(w.buf, joined) for w in works):
        buf = joined
        shifts = [(w.buf.ctypes.data - joined.ctypes.data) // 2 for w in works]
    else:
        shifts = np.cumsum([0] + [w.buf.size for w in works])
        buf = np.concatenate([w.buf for w in works],
                             out=empty_small_pages(shifts[-1], np.uint16))
    if all(np.array_equal(w.jobs[2], works[0].jobs[2]) for w in works):
        # every detector has the same lines (frames x rows): one multi-detector pass
        st = np.stack([w.jobs[0] + shifts[j] for j, w in enumerate(works)])
        en = np.stack([w.jobs[1] + shifts[j] for j, w in enumerate(works)])
        jobs = (st, en, works[0].jobs[2])
    else:
        jobs = tuple(
            np.concatenate([w.jobs[k] + (shifts[j] if k < 2 else 0)
                            for j, w in enumerate(works)])
            for k in range(3)
        )
    segments = sorted((int(shifts[j]), w.name, w.offset) for j, w in enumerate(works))
    return _scatter(spec, "", buf, jobs, out3, opts.rebin_energy, 0, threads, segments,
                    fresh=fresh, probes=probes)


# Let a worker fault an eager output's pages in while the streams are read, and the
# scatter threads the rest just ahead of their writes, huge pages while they come cheap
# (see _memory.FaultAhead and HugePageProbe); False leaves every fault to the kernel's
# default, taken by the scatter's first writes
PROBE_PAGES = True


def _fault_ahead(out3: np.ndarray, read_buf: np.ndarray) -> FaultAhead | None:
    """Start faulting a fresh eager output in, in the ranges the scatter threads will
    write (one per thread), while the caller reads the streams (into ``read_buf``, whose
    pages go first)."""
    if not _probing(out3):
        return None
    row_bytes = out3.nbytes // out3.shape[0]
    bounds = _row_bounds(out3.shape[0], _n_threads())
    ranges = [(int(a) * row_bytes, int(b) * row_bytes) for a, b in itertools.pairwise(bounds)]
    warm_kernels()
    return FaultAhead(out3, ranges, out3.shape[2] * out3.itemsize, _pool().submit, read_buf,
                      _kernels().touch_every)


@dataclass
class EagerStart:
    """The first output of an eager read, allocated and being faulted in (with the
    stream span buffer) ahead of the read: :func:`start_eager` makes it so that the
    caller's other work (reading a file's images) overlaps the page faults, and
    :func:`read_spectrum_images` takes it over. :meth:`release` stops the worker if it
    never is."""

    key: tuple[Any, ...]
    out3: np.ndarray
    joined: np.ndarray
    cuts: np.ndarray  # where each stream's span starts in ``joined`` (and the end)
    merge: bool
    ahead: FaultAhead | None

    def release(self) -> None:
        if self.ahead is not None:
            self.ahead.stop()


def _group_start(
    spec: SISpec, f: Any, opts: ReadOptions, first: int, last: int, group: tuple[int, ...],
    largest_stream: int,
) -> EagerStart:
    """Allocate the output of ``group``'s cube and the buffer its spans are read into,
    and start faulting both in.

    Spans that together take no more than one whole stream (which a read of all frames
    holds anyway) are joined for one row-ordered scatter pass: the table spans are read
    side by side into one buffer, which the scatter then walks as is (no copy)."""
    acc_dt = _accumulator(_out_dtype(spec, opts))
    nch = spec.bincount // opts.rebin_energy
    rows = spec.ny if opts.sum_frames else (last - first) * spec.ny
    spans = [_span(spec, f, i, first, last) for i in group]
    merge = sum(2 * (b - a) for a, b, _ in spans) <= largest_stream
    cuts = np.cumsum([0] + [b - a if tab and merge else 0 for a, b, tab in spans])
    joined = empty_small_pages(int(cuts[-1]), np.uint16)
    out3 = np.zeros((rows, spec.nx, nch), acc_dt)
    key = (spec.path, spec.streams, opts, first, last, group)
    return EagerStart(key, out3, joined, cuts, merge, _fault_ahead(out3, joined))


def _groups(spec: SISpec, opts: ReadOptions) -> list[tuple[int, ...]]:
    """The streams of each cube: all summed, or one cube per detector."""
    n = len(spec.streams)
    return [tuple(range(n))] if opts.sum_EDS_detectors else [(i,) for i in range(n)]


def _largest_stream(spec: SISpec, f: Any) -> int:
    return max(_span_bytes(spec, f, i, 0, spec.n_frames) for i in range(len(spec.streams)))


def start_eager(spec: SISpec, opts: ReadOptions, f: h5py.File) -> EagerStart | None:
    """Start the eager read of ``spec``'s first cube (see :class:`EagerStart`) in open
    file ``f``; None when there is nothing to start (lazy, bad options, small)."""
    if opts.lazy:
        return None
    try:
        first, last = check_options(spec, opts)
        start = _group_start(spec, f, opts, first, last, _groups(spec, opts)[0],
                             _largest_stream(spec, f))
    except (ValueError, KeyError, OSError, EMDError):
        return None  # the read itself reports it
    if start.ahead is None:
        return None
    return start


def _eager(
    spec: SISpec,
    opts: ReadOptions,
    first: int,
    last: int,
    preloaded: dict[str, np.ndarray] | None = None,
    started: EagerStart | None = None,
) -> list[np.ndarray]:
    warm_kernels()
    dt = _out_dtype(spec, opts)
    acc_dt = _accumulator(dt)
    nch = spec.bincount // opts.rebin_energy
    nf = last - first
    results = []
    with open_h5(spec.path) as f:
        largest_stream = _largest_stream(spec, f)
        for group in _groups(spec, opts):
            if started is not None and started.key == (
                spec.path, spec.streams, opts, first, last, group
            ):
                st, started = started, None
            else:
                st = _group_start(spec, f, opts, first, last, group, largest_stream)
            out3, joined, cuts, merge, ahead = st.out3, st.joined, st.cuts, st.merge, st.ahead
            try:
                if merge:
                    works = [
                        _eager_work(spec, f, i, first, last, opts, preloaded,
                                    joined[cuts[j] : cuts[j + 1]])
                        for j, i in enumerate(group)
                    ]
                    probes = ahead.stop() if ahead else None
                    over = _scatter_all(spec, works, out3, opts, merge=True, fresh=True,
                                        probes=probes, joined=joined)
                else:  # one stream in memory at a time: a preloaded one first
                    over = False
                    for n, i in enumerate(
                        sorted(group, key=lambda i: spec.streams[i] not in (preloaded or {}))
                    ):
                        work = _eager_work(spec, f, i, first, last, opts, preloaded)
                        probes = ahead.stop() if ahead and n == 0 else None
                        over |= _scatter_all(spec, [work], out3, opts, merge=False,
                                             fresh=n == 0, probes=probes)
            finally:
                if ahead:  # never leave the worker touching an array given up on
                    ahead.stop()
            cube = out3.reshape(spec.ny, spec.nx, nch) if opts.sum_frames else out3.reshape(
                nf, spec.ny, spec.nx, nch
            )
            if acc_dt == dt:
                if over and dt.kind in "iu":
                    _warn_overflow(spec, dt, _largest_count(spec, opts, group))
                    # that count went through the lazy path's cached handles: an eager
                    # read must not leave the file open
                    close_cached(spec.path)
            else:
                largest = int(cube.max(initial=0))
                limit = np.iinfo(dt).max if dt.kind in "iu" else np.finfo(dt).max
                if largest > limit:
                    _warn_overflow(spec, dt, largest)
            results.append(_cast(cube, dt))
    return results


def _span(spec: SISpec, f: Any, i: int, first: int, last: int) -> tuple[int, int, bool]:
    """Stream positions ``a:b`` an eager read of frames ``first:last`` of stream ``i``
    holds, and whether they come from the frame table (an estimate: the table is only
    checked when read; without one, the whole stream)."""
    try:
        n = int(f[spec.streams[i]].shape[0])
    except KeyError:
        return 0, 0, False
    if first == 0 and last >= spec.n_frames:
        return 0, n, False
    t = _load_table(f, spec.frame_tables[i])
    if t is None or t.size < spec.n_frames:
        return 0, n, False
    a, b = _frames_span(spec, t, n, first, last)
    return a, max(a, min(b, n)), True


def _span_bytes(spec: SISpec, f: Any, i: int, first: int, last: int) -> int:
    """Bytes of stream ``i`` an eager read of frames ``first:last`` holds."""
    a, b, _ = _span(spec, f, i, first, last)
    return 2 * (b - a)


def _frames_span(
    spec: SISpec, table: np.ndarray, n: int, first: int, last: int
) -> tuple[int, int]:
    """Stream positions ``a:b`` an eager read of frames ``first:last`` reads through the
    frame table: from the frame before ``first`` (whose pixel count checks the table)
    to the end of ``last - 1``."""
    a = int(table[max(first - 1, 0)])
    b = n if last >= spec.n_frames else int(table[last])
    return a, b


# --- lazy data ---------------------------------------------------------------------


def _rows_per_chunk(spec: SISpec, nch: int, itemsize: int) -> int:
    row = spec.nx * nch * itemsize
    return int(max(1, min(spec.ny, DATA_CHUNK_BYTES // max(row, 1))))


def _data_chunk(
    spec: SISpec,
    opts: ReadOptions,
    streams: tuple[int, ...],
    first: int,
    last: int,
    rpc: int,
    dtype: str,
    block_id: tuple[int, ...] | None = None,
) -> np.ndarray:
    """One chunk of the lazy SI: rows block ``block_id[-3]`` of one frame (per-frame SI)
    or of the summed frames."""
    assert block_id is not None
    dt = np.dtype(dtype)
    acc_dt = _accumulator(dt)
    rb = block_id[-3]
    r0 = rb * rpc
    r1 = min(spec.ny, r0 + rpc)
    if opts.sum_frames:
        f0, f1 = first, last
    else:
        f0 = first + block_id[0]
        f1 = f0 + 1
    blk, over = _decode_block(spec, opts, streams, f0, f1, r0, r1, acc_dt)
    if dt.kind in "iu" and (over or acc_dt != dt) and blk.size:
        if over:
            wide, _ = _decode_block(spec, opts, streams, f0, f1, r0, r1, np.dtype("i8"))
            largest = int(wide.max(initial=0))
        else:
            largest = int(blk.max(initial=0))
        if largest > np.iinfo(dt).max:
            _warn_overflow(spec, dt, largest)
    elif dt.kind == "f" and acc_dt != dt and blk.size:
        largest = int(blk.max(initial=0))
        if largest > np.finfo(dt).max:
            _warn_overflow(spec, dt, largest)
    return _cast(blk, dt)


def _lazy_data(
    spec: SISpec, opts: ReadOptions, streams: tuple[int, ...], first: int, last: int
) -> Any:
    import dask.array as da

    dt = _out_dtype(spec, opts)
    nch = spec.bincount // opts.rebin_energy
    rpc = _rows_per_chunk(spec, nch, dt.itemsize)
    rows = da.core.normalize_chunks((rpc,), (spec.ny,))[0]
    if opts.sum_frames:
        chunks: tuple = (rows, (spec.nx,), (nch,))
    else:
        chunks = ((1,) * (last - first), rows, (spec.nx,), (nch,))
    token = da.core.tokenize(
        _file_key(spec.path), spec, streams, first, last, opts.sum_frames, opts.rebin_energy,
        str(dt),
    )
    name = f"emd-si-{os.path.basename(spec.path)}-{token}"
    return da.map_blocks(
        _data_chunk,
        spec,
        opts,
        streams,
        first,
        last,
        rpc,
        dt.str,
        chunks=chunks,
        dtype=dt,
        name=name,
        meta=np.empty((0,) * len(chunks), dt),
    )


# --- the energy-first view: a per-process event index -----------------------------


@dataclass
class _EventIndex:
    """Pixel index (within its frame) of every event, grouped by key = channel * nkf +
    frame (``nkf`` = 1 when frames are summed): a plane is a bincount of one slice."""

    starts: np.ndarray  # (bincount * nkf + 1,) int64
    pixels: np.ndarray  # (events,) uint32
    nkf: int

    @property
    def nbytes(self) -> int:
        return self.starts.nbytes + self.pixels.nbytes

    def plane(self, lo: int, hi: int, frame: int | None, npix: int) -> np.ndarray:
        """Counts per pixel of channels ``lo:hi`` (of ``frame``, or of the frame sum)."""
        if self.nkf == 1:  # the channels of a rebinned plane are one slice
            a, b = self.starts[lo], self.starts[hi]
            return np.bincount(self.pixels[a:b], minlength=npix)
        out = np.zeros(npix, np.int64)
        for c in range(lo, hi):
            key = c * self.nkf + (frame or 0)
            out += np.bincount(self.pixels[self.starts[key] : self.starts[key + 1]],
                               minlength=npix)
        return out


@dataclass
class _FlatIndex:
    """Channel and pixel of every event, per stream, in stream order, with where each
    frame's events start: a plane is one vectorised scan (a few ms per 5 million events).
    Built with numpy alone, so a small SI's first plane does not wait for numba's start-up
    and needs no sort."""

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


_EVENT_LOCK = threading.Lock()
_EVENTS: OrderedDict[tuple, _EventIndex] = OrderedDict()
_BUILDING: dict[tuple, threading.Lock] = {}
_EVENT_BUDGET = 2 * 2**30  # bytes of event indexes kept per process


# below this many stream values (about 8 M events) a plane scan of the flat index takes
# under 10 ms; above, the sorted index keeps planes at a few ms
FLAT_INDEX_VALUES = 12_000_000


def _build_events_numba(
    spec: SISpec, streams: tuple[int, ...], first: int, last: int, per_frame: bool
) -> _EventIndex:
    """Counting sort of every event by key with the numba kernels: a count pass and a fill
    pass per stream (streams in parallel threads), no per-event temporaries."""
    k = _kernels()
    npix = spec.ny * spec.nx
    nf = last - first
    nkf = nf if per_frame else 1
    nkeys = spec.bincount * nkf
    frame_key = np.arange(nf, dtype=np.int64) if per_frame else np.zeros(nf, np.int64)
    sel = np.arange(first, last + 1) * spec.ny
    keep_bufs = True

    def count(i: int) -> tuple:
        buf, a, lines = stream_index(spec, i).span(first, last)
        fs = lines[sel[:-1]] - a
        fe = lines[sel[1:]] - a
        counts = np.zeros(nkeys, np.int64)
        code = k.count_keys(buf, fs, fe, frame_key, nkf, spec.bincount, npix, counts)
        if code < 0:
            raise _bad_channel(spec, spec.streams[i], buf, code, a)
        return (i, buf if keep_bufs else None, fs, fe, counts)

    total_values = 0
    with H5_LOCK:
        f = cached_handle(spec.path)
        for i in streams:
            total_values += int(f[spec.streams[i]].shape[0])
    keep_bufs = total_values * 2 <= 256 * 2**20
    threads = min(_n_threads(), len(streams))
    with ThreadPoolExecutor(threads) as ex:
        loaded = list(ex.map(count, streams))
        starts = np.zeros(nkeys + 1, np.int64)
        np.cumsum(np.sum([c[-1] for c in loaded], axis=0), out=starts[1:])
        pixels = np.empty(int(starts[-1]), np.uint32)
        cursors = []
        run = starts[:-1].copy()
        for c in loaded:  # each stream fills its own sub-range of every key
            cursors.append(run.copy())
            run += c[-1]

        def fill(j: int) -> None:
            i, buf, fs, fe, _ = loaded[j]
            if buf is None:
                buf, _, _ = stream_index(spec, i).span(first, last)
            k.fill_keys(buf, fs, fe, frame_key, nkf, npix, cursors[j], pixels)

        list(ex.map(fill, range(len(loaded))))
    return _EventIndex(starts, pixels, nkf)


def _build_events(
    spec: SISpec, streams: tuple[int, ...], first: int, last: int, per_frame: bool
) -> _EventIndex | _FlatIndex:
    """The event index: a flat numpy index for small streams (no sort, no numba start-up;
    a plane scans every event, a few ms), a channel-sorted numba index for big ones (a
    plane reads one slice whatever the size)."""
    with H5_LOCK:
        f = cached_handle(spec.path)
        total = sum(int(f[spec.streams[i]].shape[0]) for i in streams)
    if total < FLAT_INDEX_VALUES:
        return _build_flat(spec, streams, first, last)
    warm_kernels()
    return _build_events_numba(spec, streams, first, last, per_frame)


def _flat_stream(
    spec: SISpec, i: int, first: int, last: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(channels, pixels within frame, frame offsets) of the events of stream ``i`` in
    frames ``first:last``, in arrays of exactly the event count. Frame by frame, so
    temporaries stay one frame big; the pixel of an event is the number of separators
    before it in its frame."""
    buf, a, lines = stream_index(spec, i).span(first, last)
    npix = spec.ny * spec.nx
    nf = last - first
    total = buf.size - int(np.count_nonzero(buf == SEPARATOR))
    ch_out = np.empty(total, np.uint16)
    pix_out = np.empty(total, np.uint32)
    fstarts = lines[np.arange(first, last + 1) * spec.ny] - a
    bounds = np.zeros(nf + 1, np.int64)
    o = 0
    for f in range(nf):
        seg = buf[fstarts[f] : fstarts[f + 1]]
        is_sep = seg == SEPARATOR
        ev = ~is_sep
        n = int(np.count_nonzero(ev))
        seps = np.cumsum(is_sep, dtype=np.uint32)
        pix = np.compress(ev, seps, out=pix_out[o : o + n])
        ch = np.compress(ev, seg, out=ch_out[o : o + n])
        if n and int(ch.max()) >= spec.bincount:
            bad = int(np.flatnonzero((seg >= spec.bincount) & ev)[0])
            raise _bad_channel(spec, spec.streams[i], seg, -(bad + 1), a + int(fstarts[f]))
        if n and pix[-1] >= npix:  # pixels past the grid are ignored (and warned about)
            n = int(np.searchsorted(pix, np.uint32(npix)))
        o += n
        bounds[f + 1] = o
    return ch_out[:o], pix_out[:o], bounds


def _build_flat(spec: SISpec, streams: tuple[int, ...], first: int, last: int) -> _FlatIndex:
    """The flat index of ``streams``: one (channels, pixels, frame offsets) per stream."""
    return _FlatIndex([_flat_stream(spec, i, first, last) for i in streams])


def event_index(
    spec: SISpec, streams: tuple[int, ...], first: int, last: int, per_frame: bool
) -> _EventIndex | _FlatIndex:
    """The cached event index for this process (built on first use)."""
    check_unchanged(spec.path, spec.identity)
    key = (os.getpid(), *_file_key(spec.path), spec, streams, first, last, per_frame)
    with _EVENT_LOCK:
        ev = _EVENTS.get(key)
        if ev is not None:
            _EVENTS.move_to_end(key)
            return ev
        building = _BUILDING.setdefault(key, threading.Lock())
    with building:  # one build per key; concurrent plane tasks wait for it
        with _EVENT_LOCK:
            ev = _EVENTS.get(key)
        if ev is not None:
            return ev
        ev = _build_events(spec, streams, first, last, per_frame)
    with _EVENT_LOCK:
        _BUILDING.pop(key, None)
        _EVENTS[key] = ev
        total = sum(e.nbytes for e in _EVENTS.values())
        while total > _EVENT_BUDGET and len(_EVENTS) > 1:
            _, old = _EVENTS.popitem(last=False)
            total -= old.nbytes
    return ev


def _display_chunk(
    spec: SISpec,
    streams: tuple[int, ...],
    first: int,
    last: int,
    per_frame: bool,
    rebin: int,
    eb: int,
    nch: int,
    dtype: str,
    block_id: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Energy planes ``block_id[-3]`` block (``eb`` planes) of one frame or the sum."""
    assert block_id is not None
    ev = event_index(spec, streams, first, last, per_frame)
    fk = block_id[0] if per_frame else 0
    e0 = block_id[-3] * eb
    e1 = min(nch, e0 + eb)
    npix = spec.ny * spec.nx
    planes = np.zeros((e1 - e0, npix), np.int64)
    for j, e in enumerate(range(e0, e1)):
        planes[j] = ev.plane(e * rebin, (e + 1) * rebin, fk if per_frame else None, npix)
    out = planes.reshape(e1 - e0, spec.ny, spec.nx)
    out = _cast(out, np.dtype(dtype))
    return out[None] if per_frame else out


def _lazy_display(
    spec: SISpec, opts: ReadOptions, streams: tuple[int, ...], first: int, last: int
) -> Any:
    import dask.array as da

    dt = _out_dtype(spec, opts)
    nch = spec.bincount // opts.rebin_energy
    eb = 1
    per_frame = not opts.sum_frames
    e_chunks = da.core.normalize_chunks((eb,), (nch,))[0]
    if per_frame:
        chunks: tuple = ((1,) * (last - first), e_chunks, (spec.ny,), (spec.nx,))
    else:
        chunks = (e_chunks, (spec.ny,), (spec.nx,))
    token = da.core.tokenize(
        _file_key(spec.path), spec, streams, first, last, per_frame, opts.rebin_energy, str(dt)
    )
    name = f"emd-si-display-{os.path.basename(spec.path)}-{token}"
    return da.map_blocks(
        _display_chunk,
        spec,
        streams,
        first,
        last,
        per_frame,
        opts.rebin_energy,
        eb,
        nch,
        dt.str,
        chunks=chunks,
        dtype=dt,
        name=name,
        meta=np.empty((0,) * len(chunks), dt),
    )


# --- public entry point ----------------------------------------------------------


def read_spectrum_images(
    spec: SISpec,
    opts: ReadOptions,
    preloaded: dict[str, np.ndarray] | None = None,
    started: EagerStart | None = None,
) -> list[SIResult]:
    """Decode the spectrum image(s) of ``spec`` as the options ask: one summed over the
    detectors, or one per detector when ``opts.sum_EDS_detectors`` is False.

    ``preloaded`` maps stream paths to whole streams the caller has already read (the
    reader counts one to choose the scan grid); an eager read decodes those instead of
    reading them again, and drops them as it goes. ``started``: the eager read's first
    output, allocated ahead by :func:`start_eager` (taken over if it matches).

    Eager: numpy ``data`` and an energy-first ``display`` view of it (no copy). Lazy:
    dask ``data`` chunked by (frames x rows) and a dask ``display`` chunked per energy
    plane; opening reads nothing of the streams.
    """
    first, last = check_options(spec, opts)
    if opts.lazy and not spec.identity:
        spec = dataclasses.replace(spec, identity=file_identity(spec.path))
    groups = (
        [(None, tuple(range(len(spec.streams))))]
        if opts.sum_EDS_detectors
        else [(d, (i,)) for i, d in enumerate(spec.detectors)]
    )
    if opts.lazy:
        with open_h5(spec.path) as f:
            for s in spec.streams:
                if s not in f:
                    raise EMDError(spec.path, f"spectrum stream {s} is missing")
        return [
            SIResult(
                det,
                _lazy_data(spec, opts, streams, first, last),
                _lazy_display(spec, opts, streams, first, last),
            )
            for det, streams in groups
        ]
    cubes = _eager(spec, opts, first, last, preloaded, started)
    return [
        SIResult(det, cube, np.moveaxis(cube, -1, -3))
        for (det, _), cube in zip(groups, cubes)
    ]
