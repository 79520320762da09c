"""The Velox EDS event-stream decoder.

The Velox reader describes what a read decodes in one :class:`..siread.SIRead` (grid,
frames and their shifts, detector groups, binning, dtype, where the streams are);
:func:`read_spectrum_images` turns it into arrays:

* eager (:mod:`.eager`): each stream read once, its events scattered into the cube by
  numba kernels on several threads;
* lazy (:mod:`.lazy`): a dask cube chunked by (frames x rows), each chunk reading only its
  scan lines through a per-process line index (:mod:`.frames`);
* energy planes (:mod:`.planes`): an energy-first dask view for napari, one chunk per
  plane, from a per-process event index;
* one pixel's spectrum (:mod:`.pixel`): one scan line per frame and stream, through the
  same line index as the lazy chunks (what a hover asks for).

:mod:`.reference` is the plain numpy decoder the tests hold the fast one to. See
``docs/spectrum-images.md`` for the format and the damaged-stream rules.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ....errors import EMDError
from ....h5 import open_h5
from ....numba_kernels import STREAM_KERNELS
from ..siread import SEPARATOR, SIRead
from .eager import read_eager
from .frames import clear_indexes, count_pixels, index_lines, load_table
from .lazy import lazy_cube
from .pixel import pixel_spectrum
from .planes import clear_event_indexes, lazy_planes
from .reference import decode_reference, read_spectrum_images_reference
from .spec import SIResult

#: Load the decoder's numba kernels now (numba's start-up, once per process); reads load
#: them by themselves when they need them.
warm_kernels = STREAM_KERNELS.warm


def read_spectrum_images(
    spec: SIRead, preloaded: dict[str, np.ndarray] | None = None
) -> list[SIResult]:
    """Decode the spectrum image(s) ``spec`` describes: one per detector group (the
    chosen detectors summed, or one per chosen detector); only their streams are read.

    ``spec.frames`` says which frames are decoded and how each is moved: every frame's
    events are moved by its whole-pixel shift while they are counted; with
    ``sum_frames=False`` the frame axis holds the decoded frames, each moved.

    Eager (``spec.identity`` empty): numpy ``data`` and an energy-first ``display`` view
    of it (no copy); whole streams in ``preloaded`` (by stream path) are decoded instead
    of read again. Lazy (``spec.identity`` set, ``lazy=True`` options): dask
    ``data`` chunked by (frames x rows) and a dask ``display`` chunked per energy plane;
    opening reads nothing of the streams.
    """
    names = spec.group_detectors
    if spec.lazy:
        with open_h5(spec.path) as f:
            for i in {i for g in spec.groups for i in g}:
                if spec.streams[i] not in f:
                    raise EMDError(spec.path, f"spectrum stream {spec.streams[i]} is missing")
        return [SIResult(det, lazy_cube(spec, group), lazy_planes(spec, group),
                         partial(pixel_spectrum, spec, group))
                for det, group in zip(names, spec.groups)]
    cubes = read_eager(spec, preloaded)
    return [SIResult(det, cube, np.moveaxis(cube, -1, -3)) for det, cube in zip(names, cubes)]


def clear_caches() -> None:
    """Forget all per-process stream and event indexes (e.g. after rewriting a file)."""
    clear_indexes()
    clear_event_indexes()


__all__ = [
    "SEPARATOR",
    "SIResult",
    "clear_caches",
    "count_pixels",
    "decode_reference",
    "index_lines",
    "load_table",
    "read_spectrum_images",
    "read_spectrum_images_reference",
    "warm_kernels",
]
