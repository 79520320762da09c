"""What each frame of a Velox spectrum image holds, to decide which frames to sum and
whether to align them: X-rays per frame (the dose, from the frame table: no stream is
read), the mean of each image acquired with the SI, and the estimated drift."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ...errors import EMDError
from ...h5 import open_h5
from .grid import plan_spectrum_image
from .identify import detect
from .metadata import VeloxMetadata
from .sistack import shifts_of_open_file, si_image_stacks
from .stream import load_table


@dataclass
class FrameReport:
    """Per frame of a spectrum image (index 0 = Velox's frame 1): ``counts`` X-rays over
    all detectors (``None`` without a frame table), ``image_means`` the mean of each SI
    image stack by title, ``shifts`` the estimated ``(dy, dx)`` drift in pixels
    (``None`` when it cannot be estimated), and ``notes`` saying what is missing and why."""

    n_frames: int
    counts: np.ndarray | None = None
    image_means: dict[str, np.ndarray] = field(default_factory=dict)
    shifts: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def frame_report(filename: str | os.PathLike, shifts: bool = True) -> FrameReport:
    """The :class:`FrameReport` of the EDS spectrum image of a Velox file (``shifts``:
    estimate the drift too, from the image stacks). ``EMDError`` for a file without one.
    The loader plots it so frames can be left out and aligned."""
    path = os.path.abspath(os.fspath(filename))

    with open_h5(path) as f:
        if not detect(f):
            raise EMDError(path, "not a Velox file with a spectrum image")
        md = VeloxMetadata(path, f)
        plan = plan_spectrum_image(md, lazy=True)
        if plan is None or plan.pruned or not plan.streams:
            raise EMDError(path, "no EDS spectrum image with frames")
        nf, npix = plan.n_frames, plan.ny * plan.nx
        report = FrameReport(nf)
        total = np.zeros(nf, np.int64)
        for s in plan.streams:
            table = load_table(f, s.frame_table)
            if table is None or table.size < nf:
                report.notes.append("no frame table: counting each frame's X-rays would read "
                                    "the whole stream")
                total = None
                break
            bounds = np.append(table[:nf], s.length)
            total += np.maximum(np.diff(bounds) - npix, 0)  # a separator closes each pixel
        report.counts = total
        report.image_means = {t: a.mean(axis=(1, 2))
                              for t, a in si_image_stacks(md, plan, 0, nf).items()}
        if not report.image_means:
            report.notes.append("no image stack acquired with the SI")
        if shifts and nf > 1:
            try:
                report.shifts = shifts_of_open_file(md, plan, 0, nf)[0]
            except ValueError as err:
                report.notes.append(f"drift not estimated: {err}")
    return report
