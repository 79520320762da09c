"""The small facts every part of the stream decoder shares: the result record, output
dtypes, overflow and bad-channel reports. What a read decodes is one
:class:`..siread.SIRead` (grid, frames, detectors, binning, dtype).

Format facts: ``Data/SpectrumStream/<id>/Data`` is a uint16 ``(N, 1)`` event list per EDS
detector. Each value is the energy channel of one detected X-ray; ``65535`` closes the
current pixel; pixels run x-fastest, frame after frame; the last pixel may lack its
``65535`` and a stopped acquisition leaves the last frame short (both happen in real
files). ``FrameLocationTable`` (Velox 6+) gives the stream index where each frame starts.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ....errors import EMDError, EMDWarning
from ..siread import SIRead


@dataclass
class SIResult:
    """One spectrum image: the detectors it sums (one for a per-detector cube).

    ``data`` is ``(y, x, E)`` or ``(frame, y, x, E)`` when frames are not summed (numpy, or
    dask when lazy). ``display`` optionally holds an energy-first view
    (``(E, y, x)`` / ``(frame, E, y, x)``) for napari. ``pixel`` (lazy reads) gives
    ``data[index + (:,)]`` for one pixel's ``index`` (every axis but energy) without
    computing ``data``'s chunks (:mod:`.pixel`).
    """

    detectors: tuple[str, ...]
    data: Any
    display: Any = None
    pixel: Callable[[tuple[int, ...]], np.ndarray] | None = None


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


def bad_channel(spec: SIRead, stream: str, buf: np.ndarray, code: int, offset: int) -> EMDError:
    """The error for the channel beyond the spectrum at ``buf[-code - 1]`` (a kernel's
    negative return code); ``offset`` is the stream position of ``buf[0]``."""
    pos = -code - 1
    return EMDError(
        spec.path,
        f"spectrum stream {stream} holds channel {int(buf[pos])} at value {offset + pos}, "
        f"but the spectrum has only {spec.bincount} channels (corrupt stream?)",
    )
