"""The reference decoder: plain numpy, obviously correct, slow and memory hungry on
purpose (every event gets int64 pixel, frame and channel indices). It is the oracle the
fast decoder is tested against, never used to read files."""

from __future__ import annotations

import numpy as np

from ....errors import EMDError
from ....h5 import open_h5
from ..siread import SEPARATOR, Frames, SIRead


def decode_reference(stream: np.ndarray, spec: SIRead) -> np.ndarray:
    """The int64 cube of the frames of ``spec`` of one whole stream: ``(y, x, E)`` summed
    over frames, else ``(frame, y, x, E)`` (one entry per decoded frame), binned by
    ``spec.rebin``.

    Only the frames of ``spec.frames`` are counted, each event moved from ``(y, x)`` to
    ``(y - dy, x - dx)`` by its frame's shift and dropped when that lies outside the grid.
    """
    npix = spec.npix
    plan: Frames = spec.frames
    sum_frames, rebin = spec.sum_frames, spec.rebin
    is_sep = stream == SEPARATOR
    pixel = np.cumsum(is_sep) - is_sep  # pixel index of each value
    ev = ~is_sep
    ch = stream[ev].astype(np.int64)
    pix = pixel[ev]
    if ch.size and ch.max() >= spec.bincount:
        raise EMDError(spec.path, f"event channel {int(ch.max())} >= {spec.bincount} channels")
    frame = pix // npix
    slot = np.full(spec.n_frames + 1, -1, np.int64)  # decoded frame -> its entry
    slot[list(plan.frames)] = np.arange(len(plan.frames))
    entry = slot[np.minimum(frame, spec.n_frames)]
    keep = entry >= 0
    ch, pix, entry = ch[keep] // rebin, pix[keep] % npix, entry[keep]
    shifts = np.array([plan.shift(j) for j in range(len(plan.frames))], np.int64)
    y = pix // spec.nx - shifts[entry, 0]
    x = pix % spec.nx - shifts[entry, 1]
    inside = (y >= 0) & (y < spec.ny) & (x >= 0) & (x < spec.nx)
    ch, entry, pix = ch[inside], entry[inside], (y * spec.nx + x)[inside]
    nch = spec.bincount // rebin
    if sum_frames:
        out = np.bincount(pix * nch + ch, minlength=npix * nch)
        return out.reshape(spec.ny, spec.nx, nch)
    nf = len(plan.frames)
    out = np.bincount((entry * npix + pix) * nch + ch, minlength=nf * npix * nch)
    return out.reshape(nf, spec.ny, spec.nx, nch)


def read_spectrum_images_reference(spec: SIRead) -> list[np.ndarray]:
    """int64 cubes, one per detector group of ``spec`` (each the sum of its detectors),
    as :func:`napari_emd.formats.velox.stream.read_spectrum_images` must give them."""
    with open_h5(spec.path) as f:
        cubes = {i: decode_reference(f[spec.streams[i]][()].ravel(), spec)
                 for i in sorted({i for g in spec.groups for i in g})}
    return [np.sum([cubes[i] for i in group], axis=0) for group in spec.groups]
