"""The reference decoder: plain numpy, obviously correct, slow and memory hungry on
purpose (every event gets int64 pixel, frame and channel indices). It is the oracle the
fast decoder is tested against, never used to read files."""

from __future__ import annotations

import numpy as np

from ....errors import EMDError
from ....h5 import open_h5
from ....options import ReadOptions
from .spec import SEPARATOR, SISpec, check_options


def decode_reference(
    stream: np.ndarray, spec: SISpec, first: int, last: int, sum_frames: bool, rebin: int
) -> np.ndarray:
    """The int64 cube of frames ``first:last`` of one whole stream: ``(y, x, E)`` summed
    over frames, else ``(frame, y, x, E)``."""
    npix = spec.npix
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
    """int64 cubes, one per detector (or one summed over detectors), as
    :func:`napari_emd.formats.velox.stream.read_spectrum_images` must give them."""
    first, last = check_options(spec, opts)
    cubes = []
    with open_h5(spec.path) as f:
        for s in spec.streams:
            raw = f[s][()].ravel()
            cubes.append(
                decode_reference(raw, spec, first, last, opts.sum_frames, opts.rebin_energy)
            )
    if opts.sum_EDS_detectors:
        return [np.sum(cubes, axis=0)]
    return cubes
