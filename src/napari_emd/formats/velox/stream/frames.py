"""Stream geometry: where each frame and each scan line of an event stream starts.

The stream is cut into *scan lines* (``nx`` pixels). One linear pass over a frame's
values finds where its lines start. With a trustworthy ``FrameLocationTable`` only the
frames asked for are read and indexed (plus the frame before, whose pixel count checks
where the first one starts, unless it is indexed already), so one frame costs one
frame's worth of work; without one,
or when the table disagrees with the stream (warned about once), the whole stream is
indexed, in blocks of at most :data:`INDEX_BLOCK` values that each start at a scan line
(the pixel count carried from block to block), so indexing never holds a whole stream.
:meth:`StreamIndex.frames` hands a span out frame by frame, for callers that must not hold
it whole either.

:class:`StreamIndex` holds one stream's line starts. The lazy chunks share one per stream
and process (:func:`stream_index`, keyed by the file's identity); an eager read makes its
own on the file it has open. The shared ones keep their finished index (8 bytes per scan
line) in the per-user disk cache (:mod:`napari_emd.diskcache`), so a reopened file's
pixel spectra (:mod:`.pixel`) read one scan line per frame without a pass over the
stream; an index whose building warned (a damaged stream or frame table) is never kept.

Values are read straight from the file by offset where the stream's chunks are stored
plainly (:mod:`napari_emd.rawchunks`: every thread reads at once), else through h5py
under the HDF5 lock.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import h5py
import numpy as np

from .... import diskcache, rawchunks
from ....cache import ProcessCache
from ....errors import EMDError, EMDWarning
from ....h5 import H5_LOCK, cached_handle, check_unchanged
from ....numba_kernels import STREAM_KERNELS
from ..siread import SEPARATOR, SIRead

#: The disk-cache kind of a stream's finished line index (:mod:`napari_emd.diskcache`).
LINES_KIND = "velox-stream-lines"
#: Reads of at least this many values go straight to the file (:mod:`napari_emd.rawchunks`).
RAW_READS_FROM = 1 << 20
#: Stream values read at a time when a whole stream is indexed (64 MiB of uint16).
INDEX_BLOCK = 1 << 25


def stream_dataset(f: h5py.File, name: str, path: str) -> h5py.Dataset:
    """Stream dataset ``name`` of open file ``f``, opened without a chunk cache: a span
    is read once, front to back, so caching its chunks (16 KiB each in Velox files) only
    adds a copy and the cache's bookkeeping per chunk."""
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    dapl.set_chunk_cache(0, 0, 1.0)
    try:
        return h5py.Dataset(h5py.h5d.open(f.id, name.encode(), dapl=dapl))
    except (KeyError, ValueError, TypeError) as err:
        raise EMDError(path, f"spectrum stream {name} is missing") from err


def read_span(ds: Any, a: int, b: int) -> np.ndarray:
    """Values ``a:b`` of an (N, 1) or (N,) stream dataset as a 1-D uint16 array."""
    if b <= a:
        return np.empty(0, np.uint16)
    if ds.ndim == 2:
        out = np.empty((b - a, ds.shape[1]), ds.dtype)
        ds.read_direct(out, np.s_[a:b, :])
        out = out[:, 0]
    else:
        out = np.empty(b - a, ds.dtype)
        ds.read_direct(out, np.s_[a:b])
    return out if out.dtype == np.uint16 else out.astype(np.uint16)


def count_pixels(
    ds: h5py.Dataset, keep: bool = False, block: int = 1 << 23
) -> tuple[int, np.ndarray | None]:
    """Pixels in an event stream: its 65535 separators, plus an unclosed last pixel.

    With ``keep`` the stream is read whole and returned too (as the 1-D uint16 values),
    so an eager read decodes it without reading it again; else it is read in blocks."""
    flat_len = int(np.prod(ds.shape))
    if keep and ds.dtype == np.uint16 and ds.ndim in (1, 2) and flat_len == ds.shape[0]:
        values = np.empty(ds.shape, np.uint16)
        if flat_len:
            ds.read_direct(values)
        values = values.reshape(-1)
        count = int(np.count_nonzero(values == SEPARATOR))
        last = int(values[-1]) if flat_len else SEPARATOR
        return count + (1 if last != SEPARATOR else 0), values
    count = 0
    last = SEPARATOR
    n0 = ds.shape[0]
    step = max(1, block // max(1, flat_len // max(n0, 1)))
    for start in range(0, n0, step):
        chunk = np.asarray(ds[start : start + step]).ravel()
        if chunk.size:
            count += int(np.count_nonzero(chunk == SEPARATOR))
            last = int(chunk[-1])
    return count + (1 if flat_len and last != SEPARATOR else 0), None


def load_table(f: Any, name: str | None) -> np.ndarray | None:
    """The frame table ``name`` of open file ``f`` as int64, or None when there is none
    or it cannot be read."""
    if name is None:
        return None
    try:
        return np.asarray(f[name][()]).astype(np.int64).ravel()
    except (KeyError, OSError, ValueError, TypeError):
        return None


def table_fits(spec: SIRead, table: np.ndarray | None, n: int) -> bool:
    """Cheap sanity check of a frame table against the stream length ``n``."""
    if table is None or table.size < spec.n_frames or table[0] != 0:
        return False
    t = table[: spec.n_frames]
    return bool(np.all(np.diff(t) >= 0) and t[-1] <= n)


def warn_table(spec: SIRead, stream: str, why: str) -> None:
    warnings.warn(
        f"{spec.path}: the FrameLocationTable of {stream} disagrees with the stream "
        f"({why}); frames are located by scanning the stream instead",
        EMDWarning,
        stacklevel=5,
    )


def check_extent(spec: SIRead, stream: str, pixels: int) -> bool:
    """Warn when the stream does not fill the grid (a stopped acquisition may leave the
    last frame short, and Velox may start one more pixel: both are normal and silent);
    True when it warned."""
    npix = spec.npix
    expected = spec.n_frames * npix
    if pixels <= (spec.n_frames - 1) * npix:
        warnings.warn(
            f"{spec.path}: stream {stream} holds {pixels} pixels, fewer than the "
            f"{spec.n_frames - 1} complete frame(s) of {spec.ny}x{spec.nx} expected before "
            "the last; the missing pixels are zero",
            EMDWarning,
            stacklevel=5,
        )
        return True
    if pixels > expected + 1:
        warnings.warn(
            f"{spec.path}: stream {stream} holds {pixels} pixels, more than the "
            f"{spec.n_frames} frame(s) of {spec.ny}x{spec.nx} = {expected}; the extra "
            "pixels are ignored",
            EMDWarning,
            stacklevel=5,
        )
        return True
    return False


def index_lines(buf: np.ndarray, nx: int, n_lines: int) -> tuple[np.ndarray, int, int]:
    """Where each scan line (``nx`` pixels) of ``buf`` starts, for ``n_lines`` lines: the
    numpy reference of the numba kernel ``kernels.index_lines``.

    ``buf`` starts at a pixel boundary; lines the buffer does not reach start at
    ``len(buf)``. Returns (``n_lines + 1`` positions, separators, values after the last
    separator).
    """
    sep = np.flatnonzero(buf == SEPARATOR)
    lines = np.full(n_lines + 1, buf.size, np.int64)
    lines[0] = 0
    ends = sep[nx - 1 :: nx] + 1
    m = min(ends.size, n_lines)
    lines[1 : m + 1] = ends[:m]
    trailing = buf.size - 1 - (int(sep[-1]) if sep.size else -1)
    return lines, int(sep.size), int(trailing)


def _lines(buf: np.ndarray, nx: int, n_lines: int) -> tuple[np.ndarray, int, int]:
    """:func:`index_lines`, by the numba kernel once it is loaded (one pass, no
    temporaries the size of the buffer; eager reads always load it), else numpy (so the
    lazy display path need not wake numba up)."""
    if STREAM_KERNELS.is_warm() and buf.dtype == np.uint16:
        lines = np.zeros(n_lines + 1, np.int64)
        seps, trailing = STREAM_KERNELS.module().index_lines(buf, nx, lines)
        return lines, int(seps), int(trailing)
    return index_lines(buf, nx, n_lines)


def index_blocks(
    read: Callable[[int, int], np.ndarray], n: int, nx: int, n_lines: int, block: int
) -> tuple[np.ndarray, int]:
    """Where each of ``n_lines`` scan lines of a stream of ``n`` values starts (``n``
    for lines it does not reach), and how many pixels it holds (an unclosed last pixel
    counts), reading ``read(a, b)`` in blocks of about ``block`` values.

    Each block starts at a scan line, so the line index of one block is
    :func:`index_lines` (its kernel) of that block: the pixel count is carried across
    blocks as whole lines, and the partial line at a block's end is read again at the
    start of the next (a line longer than a block doubles the block). The same
    positions as one :func:`index_lines` of the whole stream."""
    lines = np.full(n_lines + 1, n, np.int64)
    lines[0] = 0
    done, a, step = 0, 0, max(1, block)
    while done < n_lines and a < n:
        b = min(n, a + step)
        part, seps, trailing = _lines(read(a, b), nx, n_lines - done)
        found = min(seps // nx, n_lines - done)
        if b == n:  # the last block: every line it reaches, and its pixels
            lines[done + 1 : done + found + 1] = part[1 : found + 1] + a
            return lines, done * nx + seps + (1 if trailing > 0 else 0)
        if found == 0:  # not one whole line in the block
            step *= 2
            continue
        lines[done + 1 : done + found + 1] = part[1 : found + 1] + a
        done += found
        a = int(lines[done])
    # every line found before the end: the rest are pixels past the grid
    pixels, last = done * nx, SEPARATOR
    for s0 in range(a, n, step):
        buf = read(s0, min(n, s0 + step))
        pixels += int(np.count_nonzero(buf == SEPARATOR))
        last = int(buf[-1]) if buf.size else last
    return lines, pixels + (1 if a < n and last != SEPARATOR else 0)


def _frame_lines(spec: SIRead, seg: np.ndarray, f: int) -> tuple[np.ndarray, str | None]:
    """Line starts of frame ``f`` whose values are ``seg`` (from the frame's start), and
    why the frame table is wrong about it (``None`` when it is right)."""
    lines, seps, _ = _lines(seg, spec.nx, spec.ny)
    last = f == spec.n_frames - 1
    if not last and (seps != spec.npix or lines[-1] != seg.size):
        return lines, f"frame {f} spans {seps} pixel separators, not {spec.npix}"
    return lines, None


class StreamIndex:
    """The scan-line starts of stream ``i`` of ``spec`` (absolute stream positions),
    filled in as reads need them.

    ``opener()`` returns the open stream dataset; it is called under ``H5_LOCK`` for
    every read, so a per-process handle cache may close and reopen files between reads.
    """

    def __init__(self, spec: SIRead, i: int, opener: Callable[[], h5py.Dataset],
                 persist: bool = False) -> None:
        self.spec = spec
        self.stream = spec.streams[i]
        self.table_name = spec.frame_tables[i]
        self.opener = opener
        self.lock = threading.Lock()
        self.lines = np.zeros(spec.n_frames * spec.ny + 1, np.int64)
        self.have = np.zeros(spec.n_frames, bool)
        self.table: np.ndarray | None = None
        self.use_table = False
        self.n = -1  # the stream's length, once looked at
        # where its chunks lie in the file (read without the HDF5 lock), listed at the
        # first big read (small ones, a scan line, go through h5py meanwhile)
        self.chunks: rawchunks.ChunkMap | None = None
        self.mapped = False
        # keep the finished index in the per-user disk cache (lazy reads: a reopened
        # file's pixel spectra need no pass over the stream); only an index whose
        # building warned about nothing is kept, so a damaged file warns every time
        self.persist = persist
        self.clean = True
        self.ident: diskcache.FileIdentity | None = None

    def _read(self, a: int, b: int) -> np.ndarray:
        m = self.chunks
        if m is None and b - a >= RAW_READS_FROM and not self.mapped:
            with H5_LOCK:  # listing the chunks costs about 2 us each: big reads only
                if not self.mapped:
                    self.chunks = m = rawchunks.chunk_map(self.opener())
                    self.mapped = True
                m = self.chunks
        if m is not None:  # straight from the file: threads read at once
            got = rawchunks.read(m, a, b)
            return got if got.dtype == np.uint16 else got.astype(np.uint16)
        with H5_LOCK:
            return read_span(self.opener(), a, b)

    def _look(self) -> None:
        """Read the stream's length and frame table once, and decide whether the table
        can be trusted (call locked)."""
        if self.n >= 0:
            return
        with H5_LOCK:
            ds = self.opener()
            n = int(ds.shape[0])
            self.table = load_table(ds.file, self.table_name)
        if self.table is None and self.table_name is not None:
            self.clean = False
            warnings.warn(
                f"{self.spec.path}: FrameLocationTable {self.table_name} is unreadable; "
                "frames are found by scanning the stream", EMDWarning, stacklevel=4)
        self.use_table = table_fits(self.spec, self.table, n)
        if self.table is not None and not self.use_table:
            self.clean = False
            warn_table(self.spec, self.stream, "it does not fit the stream length")
        self.n = n
        if self.persist:
            self._load_cached()

    def _cache_key(self) -> str:
        spec = self.spec
        return f"{self.stream}|{spec.ny}x{spec.nx}x{spec.n_frames}"

    def _load_cached(self) -> None:
        """Take the whole line index from the disk cache, when a valid entry holds it
        (call locked)."""
        try:
            self.ident = diskcache.identify(self.spec.path)
        except OSError:
            return
        entry = diskcache.lookup(LINES_KIND, self._cache_key(), self.ident)
        if entry is None:
            return
        try:
            lines = entry.read(0, self.lines.nbytes).view(np.int64)
            ok = entry.meta.get("crc") == diskcache.crc32(lines) and \
                bool(np.all(np.diff(lines) >= 0)) and int(lines[-1]) <= self.n
        except (OSError, ValueError):
            ok = False
        if ok:
            self.lines[:] = lines
            self.have[:] = True
        else:
            entry.discard()
        entry.close()

    def _save(self) -> None:
        """Keep the finished line index in the disk cache (call locked; once)."""
        if not (self.persist and self.clean and self.ident is not None
                and self.have.all()) or diskcache.cache_root() is None:
            return
        self.persist = False
        lines = self.lines.copy()
        entry = diskcache.publish(LINES_KIND, self._cache_key(), self.ident,
                                  {"crc": diskcache.crc32(lines)}, lines.nbytes,
                                  lambda w: w.pwrite(0, lines))
        if entry is not None:
            entry.close()

    def _index_whole(self, read: Callable[[int, int], np.ndarray]) -> None:
        """Index the whole stream, checking the frame table against it. ``read(a, b)``
        gives values ``a:b``; they are read in blocks of at most :data:`INDEX_BLOCK`
        values (more only for a scan line longer than that), each starting at a scan
        line, so the stream is never held whole."""
        spec = self.spec
        lines, pixels = index_blocks(read, self.n, spec.nx, spec.n_frames * spec.ny,
                                     INDEX_BLOCK)
        self.clean &= not check_extent(spec, self.stream, pixels)
        if self.use_table and self.table is not None:
            starts = lines[np.arange(spec.n_frames) * spec.ny]
            want = self.table[: spec.n_frames]
            if not np.array_equal(starts, want):
                bad = int(np.flatnonzero(starts != want)[0])
                warn_table(spec, self.stream, f"frame {bad} starts at {int(starts[bad])}")
                self.use_table = False
                self.clean = False
        self.lines[:] = lines
        self.have[:] = True
        self._save()

    def _frame_end(self, f: int) -> int:
        assert self.table is not None
        return self.n if f == self.spec.n_frames - 1 else int(self.table[f + 1])

    def _check_frames(self, buf: np.ndarray, lo: int,
                      hi: int) -> tuple[list[np.ndarray], str | None, bool]:
        """The line starts of frames ``lo:hi`` from ``buf``, which holds the stream from
        the table's start of frame ``lo``; why the table is wrong about one (or None);
        whether the stream runs past the scan (checked at its last frame). Needs no lock:
        it only reads ``buf``, the table and one value of the stream."""
        spec, table = self.spec, self.table
        assert table is not None
        a = int(table[lo])
        found = []
        for f in range(lo, hi):
            fa, fb = int(table[f]) - a, self._frame_end(f) - a
            lines, why = _frame_lines(spec, buf[fa:fb], f)
            if why is None and fa == 0 and table[f] > 0 and \
                    int(self._read(table[f] - 1, table[f])[0]) != SEPARATOR:
                why = f"frame {f} would start inside a pixel, at {int(table[f])}"
            if why is not None:
                return [], why, False
            found.append(lines + int(table[f]))
        past = False
        if hi == spec.n_frames:
            tail = buf[int(table[hi - 1]) - a :]
            seps = int(np.count_nonzero(tail == SEPARATOR))
            trailing = tail.size > 0 and tail[-1] != SEPARATOR
            past = check_extent(spec, self.stream, (hi - 1) * spec.npix + seps + int(trailing))
        return found, None, past

    def _keep_frames(self, lo: int, found: list[np.ndarray], why: str | None,
                     past: bool) -> bool:
        """Store what :meth:`_check_frames` found (call locked); False (and the table is
        dropped, warned about) when a frame disagrees with the table."""
        if why is not None:
            warn_table(self.spec, self.stream, why)
            self.use_table = False
            self.clean = False
            return False
        self.clean &= not past
        ny = self.spec.ny
        for f, lines in enumerate(found, lo):
            self.lines[f * ny : (f + 1) * ny + 1] = lines
            self.have[f] = True
        self._save()
        return True

    def _index_frames(self, buf: np.ndarray, lo: int, hi: int) -> bool:
        """Index frames ``lo:hi`` from ``buf`` (see :meth:`_check_frames`; call locked)."""
        return self._keep_frames(lo, *self._check_frames(buf, lo, hi))

    def span(
        self, f0: int, f1: int, whole: np.ndarray | None = None
    ) -> tuple[np.ndarray, int, np.ndarray]:
        """(values of frames ``f0:f1``, the stream position of the first one, the line
        array), reading the stream once and indexing what was read. ``whole``: the whole
        stream, already read by the caller (then nothing is read). Frames found through
        the frame table are read and checked without holding the stream's lock, so
        threads read several frames of one stream at once."""
        spec, ny = self.spec, self.spec.ny
        job = None
        with self.lock:
            self._look()
            if whole is not None and whole.size == self.n:
                if not self.have[f0:f1].all():
                    self._index_whole(lambda a, b: whole[a:b])
                a, b = int(self.lines[f0 * ny]), int(self.lines[f1 * ny])
                return whole[a:b], a, self.lines
            if self.have[f0:f1].all():
                a, b = int(self.lines[f0 * ny]), int(self.lines[f1 * ny])
                job = (a, b, None)
            elif self.use_table and (f0 > 0 or f1 < spec.n_frames):
                assert self.table is not None
                # the frame before checks where f0 starts, unless it is indexed
                # (checked already, ending where the table says f0 starts)
                lo = max(f0 - 1, 0)
                if lo < f0 and self.have[lo] and \
                        int(self.lines[f0 * ny]) == int(self.table[f0]):
                    lo = f0
                job = (int(self.table[lo]), self._frame_end(f1 - 1), lo)
        if job is not None:
            a0, end, lo = job
            buf = self._read(a0, end)
            if lo is None:
                return buf, a0, self.lines
            checked = self._check_frames(buf, lo, f1)
            with self.lock:
                if self.use_table and (self.have[f0:f1].all()
                                       or self._keep_frames(lo, *checked)):
                    assert self.table is not None
                    a = int(self.table[f0])
                    return buf[a - a0 :], a, self.lines
        with self.lock:
            if self.have[f0:f1].all():
                a, b = int(self.lines[f0 * ny]), int(self.lines[f1 * ny])
                return self._read(a, b), a, self.lines
            if not (f0 > 0 or f1 < spec.n_frames):  # the whole stream: read it once
                buf = self._read(0, self.n)
                self._index_whole(lambda a, b: buf[a:b])
                a, b = int(self.lines[f0 * ny]), int(self.lines[f1 * ny])
                return buf[a:b], a, self.lines
            self._index_whole(self._read)  # in blocks, then only the frames asked for
            a, b = int(self.lines[f0 * ny]), int(self.lines[f1 * ny])
            return self._read(a, b), a, self.lines

    def table_frame(self, f: int) -> tuple[np.ndarray, int] | None:
        """The values of frame ``f`` where the frame table puts it, and their stream
        position, read without checking or indexing them (the caller checks what it
        needs); None without a trusted table."""
        with self.lock:
            self._look()
            if not self.use_table or self.table is None:
                return None
            a, b = int(self.table[f]), self._frame_end(f)
        return self._read(a, b), a

    def span_size(self, f0: int, f1: int) -> int:
        """Values :meth:`span` reads for frames ``f0:f1`` (an estimate: a table found wrong
        later makes it read the whole stream)."""
        with self.lock:
            self._look()
            if self.have[f0:f1].all():
                return int(self.lines[f1 * self.spec.ny] - self.lines[f0 * self.spec.ny])
            if self.use_table and (f0 > 0 or f1 < self.spec.n_frames):
                assert self.table is not None
                return self._frame_end(f1 - 1) - int(self.table[max(f0 - 1, 0)])
            return self.n

    def frames(self, f0: int, f1: int) -> Iterator[tuple[int, np.ndarray, int]]:
        """(frame, its values, the stream position of the first) for frames ``f0:f1``,
        one frame read at a time: what :meth:`span` gives, without ever holding more
        than a frame (and, the first time a stream without a trusted frame table is
        indexed, one :data:`INDEX_BLOCK`). Frames are indexed on the way."""
        ny = self.spec.ny
        for f in range(f0, f1):
            got = None
            with self.lock:
                self._look()
                if self.have[f]:
                    a, b = int(self.lines[f * ny]), int(self.lines[(f + 1) * ny])
                    got = (f, self._read(a, b), a)
                elif self.use_table and f > f0 and self.have[f - 1]:
                    # the frame before is indexed (so checked): this one alone
                    assert self.table is not None
                    a = int(self.table[f])
                    buf = self._read(a, self._frame_end(f))
                    if self._index_frames(buf, f, f + 1):
                        got = (f, buf, a)
            if got is None:  # the first (checked with the frame before), or no table
                buf, a, _ = self.span(f, f + 1)
                got = (f, buf, a)
            yield got

    def ensure(self, f0: int, f1: int) -> np.ndarray:
        """Make sure frames ``f0:f1`` are indexed, reading one frame at a time; return
        the line array."""
        with self.lock:
            self._look()  # may take the whole index from the disk cache
            missing = np.flatnonzero(~self.have[f0:f1])
        if missing.size:
            for _ in self.frames(f0 + int(missing[0]), f0 + int(missing[-1]) + 1):
                pass
        return self.lines

    def read(self, a: int, b: int) -> np.ndarray:
        """Stream values ``a:b`` (positions from :attr:`lines`)."""
        return self._read(a, b)

    def read_lines(self, f: int, r0: int, r1: int) -> tuple[np.ndarray, int]:
        """(values of rows ``r0:r1`` of frame ``f``, the stream position of the first)."""
        lines = self.ensure(f, f + 1)
        ny = self.spec.ny
        a, b = int(lines[f * ny + r0]), int(lines[f * ny + r1])
        return self._read(a, b), a


_INDEXES: ProcessCache[StreamIndex] = ProcessCache(max_items=64)


def stream_index(spec: SIRead, i: int) -> StreamIndex:
    """The line index of stream ``i`` of ``spec`` this process shares between lazy chunks,
    reading through the process's handle cache."""
    check_unchanged(spec.path, spec.identity)
    key = (*spec.cache_key(), spec.streams[i], spec.ny, spec.nx, spec.n_frames)
    name, path = spec.streams[i], spec.path
    return _INDEXES.get(key, lambda: StreamIndex(
        spec, i, lambda: stream_dataset(cached_handle(path), name, path), persist=True))


def clear_indexes() -> None:
    """Forget this process's shared stream indexes."""
    _INDEXES.clear()
