"""What one read of a Velox spectrum image decodes: one frozen record, :class:`SIRead`.

The Velox reader describes the file's spectrum image from its metadata
(:class:`.grid.SIPlan`: which streams or blob, on which scan grid, with how many
frames), as an :class:`SIFile`; :meth:`SIFile.read` turns that and the reader options
into an :class:`SIRead`: the source (:class:`Streams` or :class:`Blob`), the grid, the frames
and how each is moved (:class:`Frames`), which detectors each output cube sums, the
energy binning and the dtype. Every option that depends on the file is checked there,
once; the decoders (:mod:`.stream`, :mod:`.blob`) take the record and check nothing
again.

The record is hashable: it keys the per-process indexes and names dask graphs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import EMDError
from ...h5 import file_identity
from ...options import ReadOptions

if TYPE_CHECKING:
    from .blob.layout import BlobLayout

#: The stream value that closes a pixel.
SEPARATOR = 65535


@dataclass(frozen=True)
class Streams:
    """A Velox SI's per-detector event streams: the HDF5 paths of their ``Data``
    datasets, the detector each belongs to, the path of each ``FrameLocationTable``
    (``None`` when absent) and the streams' value type."""

    paths: tuple[str, ...]
    detectors: tuple[str, ...]
    frame_tables: tuple[str | None, ...]
    dtype: str = "uint16"


@dataclass(frozen=True)
class Blob:
    """A pruned Velox file's SpectrumImage cube (summed over frames and detectors): the
    HDF5 path of the blob and its parsed header."""

    dataset: str
    layout: BlobLayout


@dataclass(frozen=True)
class Grid:
    """The scan grid of a spectrum image, its frame count and its channel count."""

    ny: int
    nx: int
    n_frames: int
    bincount: int

    @property
    def npix(self) -> int:
        """Pixels per frame."""
        return self.ny * self.nx


@dataclass(frozen=True)
class Frames:
    """Which of the file's frames a read decodes, and where each frame's events land.

    ``frames`` are the file's frame numbers decoded, in order (``first..last - 1``
    without the excluded ones). ``shifts`` is empty (no frame moved) or holds one
    whole-pixel ``(dy, dx)`` per decoded frame: the frame's event scanned at ``(y, x)``
    counts at ``(y - dy, x - dx)`` of the output, and is dropped when that lies outside
    the grid. So a feature at ``(y, x)`` of the reference frame, seen at
    ``(y + dy, x + dx)`` in a drifted frame, lands back on ``(y, x)``.

    ``align`` tells whether alignment was asked for (even when every shift rounds to
    zero), ``shift_source`` where the shifts come from, ``estimated`` the sub-pixel shifts
    measured when ``align_frames=True``.
    """

    first: int
    last: int
    frames: tuple[int, ...]
    shifts: tuple[tuple[int, int], ...] = ()
    align: bool = False
    shift_source: str = ""
    estimated: tuple[tuple[float, float], ...] | None = None

    @classmethod
    def every(cls, first: int, last: int) -> Frames:
        """A plain read of frames ``first:last``."""
        return cls(first, last, tuple(range(first, last)))

    @property
    def moved(self) -> bool:
        """Whether any frame is moved."""
        return any(s != (0, 0) for s in self.shifts)

    @property
    def excluded(self) -> tuple[int, ...]:
        """The frames of ``first:last`` left out."""
        kept = set(self.frames)
        return tuple(f for f in range(self.first, self.last) if f not in kept)

    def moved_by(self, shifts: Any, source: str, estimated: Any = None) -> Frames:
        """These frames moved by ``shifts`` (``(F, 2)`` float ``(dy, dx)``, one per
        frame of ``first:last``, excluded ones too), rounded to whole pixels."""
        whole = whole_pixels(shifts)
        moved = tuple((int(whole[f - self.first, 0]), int(whole[f - self.first, 1]))
                      for f in self.frames)
        est = None if estimated is None else tuple(
            (float(a), float(b)) for a, b in np.asarray(estimated, np.float64).reshape(-1, 2))
        return Frames(self.first, self.last, self.frames, moved, True, source, est)

    def shift(self, j: int) -> tuple[int, int]:
        """``(dy, dx)`` of the ``j``-th decoded frame."""
        return self.shifts[j] if self.shifts else (0, 0)

    def coverage(self, ny: int, nx: int) -> np.ndarray:
        """How many decoded frames contribute to each output pixel: ``(ny, nx)`` uint16
        (every frame everywhere without alignment). Divide a summed SI by it to
        normalise the edges that drifted frames do not reach."""
        out = np.zeros((ny, nx), np.uint16)
        for j in range(len(self.frames)):
            dy, dx = self.shift(j)
            out[max(0, -dy) : min(ny, ny - dy), max(0, -dx) : min(nx, nx - dx)] += 1
        return out

    def title_note(self) -> str:
        """What a title says of the frames: ``" (aligned)"``, ``" (frames 2, 5 left
        out)"``, both, or nothing (for people: nothing parses it back)."""
        notes = ["aligned"] if self.align else []
        if self.excluded:
            nums = ", ".join(str(f + 1) for f in self.excluded)  # Velox numbers from 1
            notes.append(f"frame{'s' if len(self.excluded) > 1 else ''} {nums} left out")
        return f" ({'; '.join(notes)})" if notes else ""

    def parameters(self) -> dict[str, Any]:
        """The entries ``original_metadata['ImportedDataParameter']`` gets."""
        out: dict[str, Any] = {"Excluded_frames": list(self.excluded),
                               "Frames_read": list(self.frames)}
        if self.align:
            out["Frame_shifts"] = self._shift_list()
            out["Frame_shifts_source"] = self.shift_source
        if self.estimated is not None:
            out["Frame_shifts_estimated"] = np.round(self.estimated, 3).tolist()
        return out

    def metadata(self, ny: int, nx: int) -> dict[str, Any]:
        """``metadata['Signal']['Frame_alignment']``: frames read, whole-pixel shifts,
        where they come from, and how many frames cover each pixel (``coverage``)."""
        md: dict[str, Any] = {"frames": list(self.frames),
                              "excluded_frames": list(self.excluded),
                              "aligned": self.align}
        if self.align:
            md["shifts"] = self._shift_list()
            md["shift_convention"] = ("(dy, dx): a feature at (y, x) of the first frame "
                                      "read is at (y + dy, x + dx) in the frame")
            md["rounding"] = "shifts rounded to the nearest whole pixel (numpy.rint)"
            md["source"] = self.shift_source
            if self.estimated is not None:
                md["estimated_shifts"] = np.round(self.estimated, 3).tolist()
        md["coverage"] = self.coverage(ny, nx)
        return md

    def _shift_list(self) -> list[list[int]]:
        return [list(self.shift(j)) for j in range(len(self.frames))]


class _GridFacts:
    """The grid and source facts, named as the decoders use them (``grid``, ``source``
    and ``path`` come from the class that mixes this in)."""

    grid: Grid
    source: Streams | Blob

    @property
    def ny(self) -> int:
        return self.grid.ny

    @property
    def nx(self) -> int:
        return self.grid.nx

    @property
    def npix(self) -> int:
        """Pixels per frame."""
        return self.grid.npix

    @property
    def n_frames(self) -> int:
        return self.grid.n_frames

    @property
    def bincount(self) -> int:
        return self.grid.bincount

    @property
    def streams(self) -> tuple[str, ...]:
        """The stream datasets' paths (empty for a blob)."""
        return self.source.paths if isinstance(self.source, Streams) else ()

    @property
    def detectors(self) -> tuple[str, ...]:
        """The detectors of the streams (empty for a blob)."""
        return self.source.detectors if isinstance(self.source, Streams) else ()

    @property
    def frame_tables(self) -> tuple[str | None, ...]:
        return self.source.frame_tables if isinstance(self.source, Streams) else ()

    @property
    def blob(self) -> Blob:
        """The blob source (``TypeError`` for event streams)."""
        if not isinstance(self.source, Blob):
            raise TypeError("this spectrum image is read from event streams, not a blob")
        return self.source


@dataclass(frozen=True)
class SIFile(_GridFacts):
    """A spectrum image as its file holds it: the file, where the counts are
    (:class:`Streams` or :class:`Blob`) and the :class:`Grid`. :meth:`read` makes the
    :class:`SIRead` of some reader options."""

    path: str
    source: Streams | Blob
    grid: Grid

    def read(self, opts: ReadOptions | None = None, frames: Frames | None = None) -> SIRead:
        """The :class:`SIRead` of ``opts`` on this spectrum image: every option that
        depends on the file (frame range, excluded frames, shifts, detectors, rebinning)
        is checked here (``ValueError`` naming the file), the grid too
        (:class:`EMDError`). ``frames``: frames already checked (:func:`check_frames`)."""
        opts = opts if opts is not None else ReadOptions()
        path, source, grid = self.path, self.source, self.grid
        check_grid(path, grid)
        if frames is None:
            frames = check_frames(path, grid.n_frames, opts)
        if frames.align and not frames.shifts and len(frames.frames) > 1:
            raise ValueError(f"{path}: align_frames=True must be resolved into shifts "
                             "before decoding (napari_emd.estimate_frame_shifts)")
        opts.check_rebin(grid.bincount, path)
        if isinstance(source, Streams):
            if not source.paths or len(source.paths) != len(source.detectors) or \
                    len(source.frame_tables) != len(source.paths):
                raise EMDError(path, "spectrum image without streams, or detectors and "
                                     "frame tables not one per stream")
            chosen = choose_detectors(path, source.detectors, opts.detectors)
            groups = (chosen,) if opts.sum_EDS_detectors else tuple((i,) for i in chosen)
            native = source.dtype
        else:
            groups, native = ((0,),), "uint16"
        dtype = np.dtype(opts.SI_dtype if opts.SI_dtype is not None else native)
        identity = file_identity(path) if opts.lazy else ()
        return SIRead(self, frames, groups, bool(opts.sum_frames), int(opts.rebin_energy),
                      dtype, identity)


@dataclass(frozen=True)
class SIRead(_GridFacts):
    """Everything one read of a spectrum image decodes, checked when made
    (:meth:`SIFile.read`): the spectrum image (``file``), the frames and how each is
    moved, the detector groups, the binning and the output dtype.

    ``groups`` holds, for each output cube, the indexes of the streams it sums (one
    group of every chosen detector when they are summed, one group per chosen detector
    otherwise; a blob has one group, ``(0,)``). ``identity`` is the file's identity when
    a lazy graph is built (:func:`napari_emd.h5.file_identity`): lazy chunks refuse to
    decode a file replaced since; empty for an eager read.
    """

    file: SIFile
    frames: Frames
    groups: tuple[tuple[int, ...], ...]
    sum_frames: bool
    rebin: int
    dtype: np.dtype
    identity: tuple = ()

    @property
    def path(self) -> str:  # type: ignore[override]
        return self.file.path

    @property
    def source(self) -> Streams | Blob:  # type: ignore[override]
        return self.file.source

    @property
    def grid(self) -> Grid:  # type: ignore[override]
        return self.file.grid

    @property
    def nch(self) -> int:
        """Channels of the output (after rebinning)."""
        return self.grid.bincount // self.rebin

    @property
    def lazy(self) -> bool:
        """Whether this read builds dask graphs (it then holds the file's identity)."""
        return bool(self.identity)

    @property
    def group_detectors(self) -> tuple[tuple[str, ...], ...]:
        """The detector names each output cube sums (empty names for a blob)."""
        if not isinstance(self.source, Streams):
            return ((),)
        return tuple(tuple(self.source.detectors[i] for i in g) for g in self.groups)

    def cache_key(self) -> tuple:
        """What per-process caches of this file's indexes are keyed by: the process, the
        file's path and its identity (a file saved over gets new indexes)."""
        return (os.getpid(), os.path.abspath(self.path), *file_identity(self.path))


def choose_detectors(
    path: str, names: Sequence[str], wanted: tuple[str | int, ...] | None
) -> tuple[int, ...]:
    """Indexes into ``names`` (the file's detectors, in stream order) of the detectors
    ``wanted`` names (by name or index; all when ``None``), in the file's order.
    ``ValueError`` listing the file's detectors for one it does not have."""
    if wanted is None:
        return tuple(range(len(names)))
    chosen: set[int] = set()
    for w in wanted:
        if isinstance(w, str):
            if w not in names:
                raise ValueError(f"{path}: no EDS detector named {w!r}; the spectrum image's "
                                 f"detectors are {', '.join(names) or 'none'}")
            chosen.add(list(names).index(w))
        else:
            if not 0 <= w < len(names):
                raise ValueError(f"{path}: detector index {w} is outside the "
                                 f"{len(names)} detector(s) of the spectrum image "
                                 f"({', '.join(names)})")
            chosen.add(int(w))
    return tuple(sorted(chosen))


def check_grid(path: str, grid: Grid) -> None:
    """:class:`EMDError` for a grid no spectrum image can have."""
    if grid.ny < 1 or grid.nx < 1 or grid.n_frames < 1 or grid.bincount < 1:
        raise EMDError(path, f"spectrum image grid {grid.ny}x{grid.nx}, {grid.n_frames} "
                             f"frame(s), {grid.bincount} channels is empty")
    if grid.bincount > SEPARATOR:
        raise EMDError(path, f"bincount {grid.bincount} exceeds the uint16 event range")


def whole_pixels(shifts: Any) -> np.ndarray:
    """``(F, 2)`` shifts rounded to whole pixels (to the nearest integer, halves to the
    even one, as ``numpy.rint``), as int64."""
    return np.rint(np.asarray(shifts, np.float64).reshape(-1, 2)).astype(np.int64)


def check_frames(path: str, n_frames: int, opts: ReadOptions) -> Frames:
    """The :class:`Frames` of ``opts`` on a spectrum image of ``n_frames`` frames, the
    one place they are checked: ``ValueError`` for a range, excluded frames or shifts
    that do not fit. With ``align_frames=True`` the frames are marked for alignment but
    not moved yet: the caller measures the shifts (:meth:`Frames.moved_by`)."""
    first, last = opts.frame_range(n_frames, path)
    kept = opts.check_frames(first, last, path)
    frames = Frames(first, last, kept, align=opts.align_frames is not False)
    if isinstance(opts.align_frames, tuple):
        frames = frames.moved_by(opts.align_frames, "given (align_frames)")
    return frames
