"""The reference decoder: plain numpy, obviously correct, slow and memory hungry on
purpose (every event gets int64 pixel, frame and channel indices). It is the oracle the
fast decoder is tested against, never used to read files."""

from __future__ import annotations

import numpy as np

from ....errors import EMDError
from ....h5 import open_h5
from ....options import ReadOptions
from .spec import SEPARATOR, FramePlan, SISpec, frame_plan


def decode_reference(
    stream: np.ndarray, spec: SISpec, first: int, last: int, sum_frames: bool, rebin: int,
    plan: FramePlan | None = None,
) -> np.ndarray:
    """The int64 cube of frames ``first:last`` of one whole stream: ``(y, x, E)`` summed
    over frames, else ``(frame, y, x, E)``.

    With ``plan``, only its frames (one entry each on the frame axis), each event moved
    from ``(y, x)`` to ``(y - dy, x - dx)`` by its frame's shift and dropped when that
    lies outside the grid.
    """
    npix = spec.npix
    if plan is None:
        plan = FramePlan(first, last, tuple(range(first, last)))
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


def read_spectrum_images_reference(spec: SISpec, opts: ReadOptions) -> list[np.ndarray]:
    """int64 cubes, one per detector (or one summed over detectors), as
    :func:`napari_emd.formats.velox.stream.read_spectrum_images` must give them
    (``align_frames`` given as shifts, ``exclude_frames`` honoured)."""
    plan = frame_plan(spec, opts)
    cubes = []
    with open_h5(spec.path) as f:
        for s in spec.streams:
            raw = f[s][()].ravel()
            cubes.append(decode_reference(raw, spec, plan.first, plan.last, opts.sum_frames,
                                          opts.rebin_energy, plan))
    if opts.sum_EDS_detectors:
        return [np.sum(cubes, axis=0)]
    return cubes
