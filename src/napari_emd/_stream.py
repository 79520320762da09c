"""Velox EDS spectrum-stream decoding (the interface; a simple reference implementation).

Format facts: ``Data/SpectrumStream/<id>/Data`` is a uint16 event list per EDS detector.
Each value is the energy channel of one detected X-ray; ``65535`` closes the current pixel;
pixels run x-fastest, frame after frame; the last pixel may lack its ``65535``.
``FrameLocationTable`` (Velox 6+) gives the stream index where each frame starts.

The Velox reader (``formats/velox.py``) finds the grid, frames, detectors and channel count
and describes them in an :class:`SISpec`; :func:`read_spectrum_images` turns that plus the
reader options into arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._h5 import open_h5
from ._options import ReadOptions
from .errors import EMDError

SEPARATOR = 65535


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
    """Validate frame range and rebinning against ``spec``; return (first, last)."""
    first = opts.first_frame
    last = spec.n_frames if opts.last_frame is None else opts.last_frame
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
    if spec.bincount % opts.rebin_energy:
        raise ValueError(
            f"{spec.path}: rebin_energy={opts.rebin_energy} does not divide the "
            f"{spec.bincount} channels"
        )
    return first, last


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


def read_spectrum_images(spec: SISpec, opts: ReadOptions) -> list[SIResult]:
    """Decode the spectrum image(s) of ``spec`` as the options ask: one summed over the
    detectors, or one per detector when ``opts.sum_EDS_detectors`` is False."""
    first, last = check_options(spec, opts)
    dtype = np.dtype(opts.SI_dtype or spec.dtype)
    cubes = []
    with open_h5(spec.path) as f:
        for s in spec.streams:
            raw = f[s][()].ravel()
            cubes.append(
                _decode_reference(raw, spec, first, last, opts.sum_frames, opts.rebin_energy)
            )
    if opts.sum_EDS_detectors:
        total = np.sum(cubes, axis=0)
        results = [SIResult(None, total.astype(dtype))]
    else:
        results = [SIResult(d, c.astype(dtype)) for d, c in zip(spec.detectors, cubes)]
    if opts.lazy:
        import dask.array as da

        for r in results:
            r.data = da.from_array(r.data, chunks=-1)
    return results
