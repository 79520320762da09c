"""The Velox EDS event-stream decoder.

The Velox reader describes a spectrum image in an :class:`SISpec` (grid, frames,
detectors, channels, where the streams are); :func:`read_spectrum_images` turns that plus
the reader options into arrays:

* eager (:mod:`.eager`): each stream read once, its events scattered into the cube by
  numba kernels on several threads;
* lazy (:mod:`.lazy`): a dask cube chunked by (frames x rows), each chunk reading only its
  scan lines through a per-process line index (:mod:`.frames`);
* energy planes (:mod:`.planes`): an energy-first dask view for napari, one chunk per
  plane, from a per-process event index.

:mod:`.reference` is the plain numpy decoder the tests hold the fast one to. See
``docs/spectrum-images.md`` for the format and the damaged-stream rules.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ....errors import EMDError
from ....h5 import file_identity, open_h5
from ....numba_kernels import STREAM_KERNELS
from ....options import ReadOptions
from .eager import detector_groups, read_eager
from .frames import clear_indexes, count_pixels, index_lines, load_table
from .lazy import lazy_cube
from .planes import clear_event_indexes, lazy_planes
from .reference import decode_reference, read_spectrum_images_reference
from .spec import (
    SEPARATOR,
    FramePlan,
    SIResult,
    SISpec,
    check_options,
    frame_plan,
    whole_pixels,
)

#: Load the decoder's numba kernels now (numba's start-up, once per process); reads load
#: them by themselves when they need them.
warm_kernels = STREAM_KERNELS.warm


def read_spectrum_images(
    spec: SISpec,
    opts: ReadOptions,
    preloaded: dict[str, np.ndarray] | None = None,
) -> list[SIResult]:
    """Decode the spectrum image(s) of ``spec`` as the options ask: one summed over the
    detectors, or one per detector when ``opts.sum_EDS_detectors`` is False.

    ``opts.exclude_frames`` are left out, and with ``opts.align_frames`` given as shifts
    (``(F, 2)``, one per frame of the range) every frame's events are moved by the shift
    rounded to whole pixels while they are counted (see :class:`FramePlan`); with
    ``sum_frames=False`` the frame axis holds the decoded frames, each moved.

    Eager: numpy ``data`` and an energy-first ``display`` view of it (no copy); whole
    streams in ``preloaded`` (by stream path) are decoded instead of read again. Lazy:
    dask ``data`` chunked by (frames x rows) and a dask ``display`` chunked per energy
    plane; opening reads nothing of the streams.
    """
    plan = frame_plan(spec, opts)
    groups = detector_groups(spec, opts)
    names = [None] if opts.sum_EDS_detectors else list(spec.detectors)
    if opts.lazy:
        if not spec.identity:
            spec = dataclasses.replace(spec, identity=file_identity(spec.path))
        with open_h5(spec.path) as f:
            for s in spec.streams:
                if s not in f:
                    raise EMDError(spec.path, f"spectrum stream {s} is missing")
        return [
            SIResult(det, lazy_cube(spec, opts, streams, plan),
                     lazy_planes(spec, opts, streams, plan))
            for det, streams in zip(names, groups)
        ]
    cubes = read_eager(spec, opts, plan, preloaded)
    return [SIResult(det, cube, np.moveaxis(cube, -1, -3)) for det, cube in zip(names, cubes)]


def clear_caches() -> None:
    """Forget all per-process stream and event indexes (e.g. after rewriting a file)."""
    clear_indexes()
    clear_event_indexes()


__all__ = [
    "SEPARATOR",
    "FramePlan",
    "SIResult",
    "SISpec",
    "check_options",
    "clear_caches",
    "count_pixels",
    "decode_reference",
    "frame_plan",
    "index_lines",
    "load_table",
    "read_spectrum_images",
    "read_spectrum_images_reference",
    "warm_kernels",
    "whole_pixels",
]
