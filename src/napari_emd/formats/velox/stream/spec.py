"""What the decoder needs to know about one spectrum image, and the small facts every part
of the decoder shares: the event separator, output dtypes, overflow and bad-channel
reports.

Format facts: ``Data/SpectrumStream/<id>/Data`` is a uint16 ``(N, 1)`` event list per EDS
detector. Each value is the energy channel of one detected X-ray; ``65535`` closes the
current pixel; pixels run x-fastest, frame after frame; the last pixel may lack its
``65535`` and a stopped acquisition leaves the last frame short (both happen in real
files). ``FrameLocationTable`` (Velox 6+) gives the stream index where each frame starts.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ....errors import EMDError, EMDWarning
from ....h5 import file_identity
from ....options import ReadOptions

#: The stream value that closes a pixel.
SEPARATOR = 65535


@dataclass(frozen=True)
class SISpec:
    """Everything needed to decode the spectrum streams of one spectrum image.

    ``streams`` are HDF5 paths of the ``Data`` datasets (one per detector) and
    ``frame_tables`` the paths of their ``FrameLocationTable`` (``None`` when absent).
    ``identity`` is the file's identity when a lazy graph was built
    (:func:`napari_emd.h5.file_identity`): lazy chunks refuse to decode a file replaced
    since.
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
    identity: tuple = ()

    @property
    def npix(self) -> int:
        """Pixels per frame."""
        return self.ny * self.nx

    def check(self) -> None:
        """Raise :class:`EMDError` when the spec describes an impossible image."""
        if self.ny < 1 or self.nx < 1 or self.n_frames < 1 or self.bincount < 1:
            raise EMDError(
                self.path,
                f"spectrum image grid {self.ny}x{self.nx}, {self.n_frames} frame(s), "
                f"{self.bincount} channels is empty",
            )
        if self.bincount > SEPARATOR:
            raise EMDError(self.path,
                           f"bincount {self.bincount} exceeds the uint16 event range")
        if not self.streams or len(self.streams) != len(self.detectors):
            raise EMDError(
                self.path, "spectrum image without streams, or detectors not one per stream"
            )
        if len(self.frame_tables) != len(self.streams):
            raise EMDError(self.path,
                           "frame_tables must hold one entry (or None) per stream")

    def cache_key(self) -> tuple:
        """What per-process caches of this file's indexes are keyed by: the process, the
        file's path and its identity (a file saved over gets new indexes)."""
        return (os.getpid(), os.path.abspath(self.path), *file_identity(self.path))


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
    """Check ``spec`` and the options that depend on it (frame range, rebinning, excluded
    frames, the number of given shifts) before anything is decoded; return the frame
    range ``(first, last)``.

    ``ValueError`` for options that do not fit this spectrum image, :class:`EMDError`
    when the spec itself is impossible. The options' own types and ranges were checked
    when :class:`ReadOptions` was made.
    """
    spec.check()
    first, last = opts.frame_range(spec.n_frames, spec.path)
    opts.check_rebin(spec.bincount, spec.path)
    opts.check_frames(first, last, spec.path)
    return first, last


@dataclass(frozen=True)
class FramePlan:
    """Which frames are decoded and where each frame's events land.

    ``frames`` are the file's frame numbers decoded, in order (``first..last - 1``
    without the excluded ones). ``shifts`` is empty (no alignment) or holds one
    whole-pixel ``(dy, dx)`` per decoded frame: the frame's event scanned at ``(y, x)``
    counts at ``(y - dy, x - dx)`` of the output, and is dropped when that lies outside
    the grid. So a feature at ``(y, x)`` of the reference frame, seen at
    ``(y + dy, x + dx)`` in a drifted frame, lands back on ``(y, x)``.
    """

    first: int
    last: int
    frames: tuple[int, ...]
    shifts: tuple[tuple[int, int], ...] = ()

    @property
    def aligned(self) -> bool:
        """Whether any frame is moved."""
        return any(s != (0, 0) for s in self.shifts)

    @property
    def every_frame(self) -> bool:
        """Whether the plan is a plain read of ``first:last`` (nothing left out or moved)."""
        return len(self.frames) == self.last - self.first and not self.aligned

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


def whole_pixels(shifts: Any) -> np.ndarray:
    """``(F, 2)`` shifts rounded to whole pixels (to the nearest integer, halves to the
    even one, as ``numpy.rint``), as int64."""
    return np.rint(np.asarray(shifts, np.float64).reshape(-1, 2)).astype(np.int64)


def frame_plan(spec: SISpec, opts: ReadOptions) -> FramePlan:
    """The :class:`FramePlan` of a read, after :func:`check_options`. ``align_frames``
    must be given as shifts here (``True`` is resolved by the Velox reader, which
    estimates them from the image stack)."""
    first, last = check_options(spec, opts)
    kept = opts.check_frames(first, last, spec.path)
    if opts.align_frames is True:
        raise ValueError(f"{spec.path}: align_frames=True must be resolved into shifts "
                         "before decoding (napari_emd.estimate_frame_shifts)")
    shifts: tuple[tuple[int, int], ...] = ()
    if opts.align_frames:
        whole = whole_pixels(opts.align_frames)
        shifts = tuple((int(whole[f - first, 0]), int(whole[f - first, 1])) for f in kept)
    return FramePlan(first, last, kept, shifts)


def out_dtype(spec: SISpec, opts: ReadOptions) -> np.dtype:
    """The dtype of the decoded cube: ``SI_dtype``, else the stream's own."""
    return np.dtype(opts.SI_dtype if opts.SI_dtype is not None else spec.dtype)


# Output dtypes the kernels accumulate into directly; others (float16, ...) go through
# a wider accumulator and a cast.
_DIRECT = {np.dtype(t) for t in ("u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f4", "f8")}


def accumulator(dt: np.dtype) -> np.dtype:
    """The dtype counts are accumulated in for an output of dtype ``dt``."""
    return dt if dt in _DIRECT else np.dtype("f4" if dt.kind == "f" else "i8")


def cast(acc: np.ndarray, dt: np.dtype) -> np.ndarray:
    """``acc`` in dtype ``dt`` (no copy when it already is)."""
    return acc if acc.dtype == dt else acc.astype(dt)


def dtype_limit(dt: np.dtype) -> float:
    """The largest count dtype ``dt`` holds."""
    return float(np.iinfo(dt).max if dt.kind in "iu" else np.finfo(dt).max)


def warn_overflow(path: str, dt: np.dtype, largest: int) -> None:
    """Say that the spectrum image of file ``path`` holds counts up to ``largest``, more
    than ``SI_dtype`` ``dt`` holds, and how to avoid it (the stream and the blob decoders
    alike; the counts were cast like ``astype``)."""
    warnings.warn(
        f"{path}: the spectrum image holds counts up to {largest}, more than "
        f"SI_dtype={dt} can hold; values were cast like numpy's astype "
        "(pass a larger SI_dtype, e.g. 'uint32')",
        EMDWarning,
        stacklevel=4,
    )


def bad_channel(spec: SISpec, stream: str, buf: np.ndarray, code: int, offset: int) -> EMDError:
    """The error for the channel beyond the spectrum at ``buf[-code - 1]`` (a kernel's
    negative return code); ``offset`` is the stream position of ``buf[0]``."""
    pos = -code - 1
    return EMDError(
        spec.path,
        f"spectrum stream {stream} holds channel {int(buf[pos])} at value {offset + pos}, "
        f"but the spectrum has only {spec.bincount} channels (corrupt stream?)",
    )
