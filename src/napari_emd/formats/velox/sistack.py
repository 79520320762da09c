"""The images acquired with a Velox spectrum image, frame by frame: which image stacks
belong to the SI, the drift of its frames measured on them (or on the SI's own counts),
and image stacks moved onto the first frame's grid like an aligned SI.

Velox scans the STEM detectors (HAADF, BF, DF...) together with the X-rays, one image
frame per SI frame, and stores each detector's frames as ``Data/Image/<id>/Data``
``(y, x, frame)`` with the SI's scan (area, size, dwell time) in its metadata.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np

from ...alignment import SOURCES, align_image, estimate_shifts
from ...errors import EMDError
from ...h5 import lazy_dataset, open_h5
from ...options import ReadOptions
from .grid import SIPlan, plan_spectrum_image, scan_key
from .identify import detect
from .jsontree import warn
from .metadata import VeloxMetadata
from .siread import Frames, check_frames
from .stream import read_spectrum_images


def is_si_image(plan: SIPlan | None, meta: dict[str, Any], shape: tuple[int, int, int]) -> bool:
    """True for an image acquired with the spectrum image: same scan (area, size, dwell
    time), or, when its metadata is lost, the SI's grid and frame count."""
    if plan is None or plan.scan is None:
        return False
    key = scan_key(meta)
    if key is not None:
        return key == plan.scan
    return not plan.pruned and shape == plan.shape


def si_image_stacks(
    md: VeloxMetadata, plan: SIPlan, first: int, last: int,
    names: str | Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Frames ``first:last`` of the image stacks acquired with the SI on its grid, as
    ``(F, ny, nx)`` float arrays by title (``names``: only those titles). Stacks with fewer
    frames, another grid or complex data are left out."""
    group = md.data.get("Image")
    wanted = None if names is None else {names} if isinstance(names, str) else set(names)
    found: dict[str, np.ndarray] = {}
    if not isinstance(group, h5py.Group):
        return found
    for key in group:
        g = group[key]
        dset = g.get("Data") if isinstance(g, h5py.Group) else None
        if not isinstance(dset, h5py.Dataset) or dset.ndim != 3 or dset.dtype.names:
            continue
        ny, nx, nf = dset.shape
        meta = md.image_meta(g, f"Data/Image/{key}")
        if (ny, nx) != (plan.ny, plan.nx) or nf < last or \
                not is_si_image(plan, meta, (ny, nx, nf)):
            continue
        title = md.image_title(key, meta)
        if wanted is not None and title not in wanted:
            continue
        found[title if title not in found else f"{title} ({key})"] = np.stack(
            [dset[:, :, f].astype(np.float64) for f in range(first, last)])
    return found


#: Energy bands the counts are split into to measure drift on them.
COUNT_BANDS = 32


def count_maps(path: str, plan: SIPlan, first: int, last: int) -> list[np.ndarray]:
    """``(F, ny, nx)`` X-ray count maps of frames ``first:last`` (all detectors), one per
    energy band that holds counts, each divided by the square root of its mean count.

    Bands, not the total: the phases of a specimen differ more in which X-rays they give
    off than in how many, so each element's lines carry contrast the total count mixes
    away. The scaling gives every band the same Poisson noise, so a band of few counts
    cannot drown the others."""
    rebin = next(r for r in range(max(1, plan.bincount // COUNT_BANDS), plan.bincount + 1)
                 if plan.bincount % r == 0)
    opts = ReadOptions(first_frame=first, last_frame=last, sum_frames=False,
                       rebin_energy=rebin, SI_dtype=np.dtype("uint32"))
    (res,) = read_spectrum_images(plan.read(path, opts), plan.preloaded)
    cube = np.asarray(res.data)
    per_pixel = float(cube.sum()) / max(1, cube.shape[0] * cube.shape[1] * cube.shape[2])
    if per_pixel < 2:
        warn(f"{path}: only {per_pixel:.2g} X-rays per pixel and frame: drift measured on "
             "so few counts is unreliable (check the shifts, or give your own)")
    maps = []
    for b in range(cube.shape[-1]):
        band = cube[..., b].astype(np.float64)
        mean = band.mean()
        if mean > 0:
            maps.append(band / np.sqrt(mean))
    return maps


def shifts_of_open_file(
    md: VeloxMetadata, plan: SIPlan, first: int, last: int, source: str = "images",
    images: str | Sequence[str] | None = None, upsample: int = 20,
    smooth: float | None = None,
) -> tuple[np.ndarray, str]:
    """``(F, 2)`` float shifts of frames ``first:last`` of the SI of an open file, and
    what they were measured on (see :func:`napari_emd.estimate_frame_shifts`)."""
    if last - first == 1:
        return np.zeros((1, 2)), "one frame: nothing to align"
    if source == "counts":
        maps = count_maps(md.path, plan, first, last)
        if not maps:
            raise ValueError(f"{md.path}: the spectrum image holds no X-ray counts in "
                             f"frames {first}..{last - 1} to measure their drift on")
        return (estimate_shifts(maps, upsample, 3.0 if smooth is None else smooth,
                                refine=True),
                "X-ray counts of the spectrum image (energy bands)")
    stacks = si_image_stacks(md, plan, first, last, images)
    if not stacks:
        which = f" named {images!r}" if images is not None else ""
        raise ValueError(
            f"{md.path}: no image stack{which} was acquired with the spectrum image "
            f"({plan.ny} x {plan.nx}, frames {first}..{last - 1}), so the frames' drift "
            "cannot be measured on images. Instead: estimate it from the X-ray counts, "
            "estimate_frame_shifts(path, source='counts'), and pass the result as "
            "align_frames=shifts; or pass shifts of your own as an (F, 2) array")
    shifts = estimate_shifts(list(stacks.values()), upsample,
                             1.0 if smooth is None else smooth)
    return shifts, f"image stack(s) {', '.join(stacks)}"


def si_frame_shifts(
    filename: str | os.PathLike, first_frame: int = 0, last_frame: int | None = None,
    **kw: Any,
) -> np.ndarray:
    """:func:`shifts_of_open_file` of the SI of a Velox file (its implementation of
    :func:`napari_emd.estimate_frame_shifts`)."""
    path = os.path.abspath(os.fspath(filename))
    opts = ReadOptions(first_frame=first_frame, last_frame=last_frame)

    with open_h5(path) as f:
        if not detect(f):
            raise EMDError(path, "not a Velox file: frame shifts are measured on Velox "
                                 "spectrum images")
        md = VeloxMetadata(path, f)
        plan = plan_spectrum_image(md, lazy=True)
        if plan is None or plan.pruned or not plan.streams:
            why = plan.reason if plan is not None and plan.reason else "there is none"
            raise EMDError(path, f"no EDS spectrum image with frames to align ({why})")
        first, last = opts.frame_range(plan.n_frames, path)
        shifts, _ = shifts_of_open_file(md, plan, first, last, **kw)
    return shifts


def estimate_frame_shifts(
    filename: str | os.PathLike,
    first_frame: int = 0,
    last_frame: int | None = None,
    *,
    source: str = "images",
    images: str | Sequence[str] | None = None,
    upsample: int = 20,
    smooth: float | None = None,
) -> np.ndarray:
    """The drift of every frame of a Velox spectrum image: an ``(F, 2)`` float array of
    ``(dy, dx)`` in pixels of the SI's grid, one row per frame ``first_frame ..
    last_frame - 1`` (``last_frame`` exclusive, ``None`` = all), the first at ``(0, 0)``.

    A feature at ``(y, x)`` in the first frame appears at ``(y + dy, x + dx)`` in frame
    ``f``. Pass the result (or your own edit of it) as ``file_reader(...,
    align_frames=shifts)``; ``align_frames=True`` does both in one call.

    ``source="images"`` (default) measures the drift on the images acquired with the
    spectrum image (the HAADF, BF, DF... stacks ``load_SI_image_stack`` reads): with
    several detectors their phase correlations are added, each with an equal say;
    ``images`` picks stacks by title (e.g. ``"HAADF"``). ``source="counts"`` measures it
    on per-frame maps of the X-ray counts in 32 energy bands, decoded from the event
    streams (for files without an image stack; it reads the streams once, and needs
    several counts per pixel and frame; noisier, so smoothed more). ``smooth``:
    gaussian damping of noise in pixels (default 1 for images, 3 for counts). Sub-pixel precision
    is ``1 / upsample``; the decoder rounds to whole pixels.

    Raises ``ValueError`` when the frame range does not fit or the file has no image
    stack for the SI (the message says what would work instead), :class:`EMDError` when
    the file is not a Velox file with a spectrum image.
    """
    if source not in SOURCES:
        raise ValueError(f"source={source!r} must be one of {SOURCES}")
    return si_frame_shifts(filename, first_frame, last_frame, source=source, images=images,
                           upsample=upsample, smooth=smooth)


def aligned_stack(path: str, dset: h5py.Dataset, fplan: Frames, lazy: bool) -> Any:
    """``(F, ny, nx)``: the frames of ``fplan`` of an image stack stored ``(y, x, frame)``,
    each moved back by its whole-pixel shift (zero where the frame did not reach), so they
    line up with the aligned SI; a dask array reading one frame per task when ``lazy``."""
    ny, nx, _ = dset.shape
    if lazy:
        import dask.array as da

        arr = lazy_dataset(path, dset, chunks=(ny, nx, 1))
        frames = [arr[:, :, f].map_blocks(align_image, *fplan.shift(j), dtype=dset.dtype)
                  for j, f in enumerate(fplan.frames)]
        return da.stack(frames)
    out = np.empty((len(fplan.frames), ny, nx), dset.dtype)
    for j, f in enumerate(fplan.frames):
        out[j] = align_image(dset[:, :, f], *fplan.shift(j))
    return out


def resolve_frames(
    md: VeloxMetadata, plan: SIPlan | None, opts: ReadOptions
) -> tuple[ReadOptions, Frames | None]:
    """Check ``align_frames`` / ``exclude_frames`` against the SI and measure the shifts
    when ``align_frames=True`` (on the SI's image stacks): the options with the shifts
    filled in, and the read's :class:`Frames` (``None``, with a warning, when the
    file has no SI with frames). ``ValueError`` for values that do not fit the SI."""
    if plan is None or plan.pruned or not plan.streams:
        warn(f"{md.path}: align_frames and exclude_frames are ignored: the file has no EDS "
             "spectrum image with frames (no event streams)")
        return opts, None
    frames = check_frames(md.path, plan.n_frames, opts)
    if opts.align_frames is True:
        estimated, source = shifts_of_open_file(md, plan, frames.first, frames.last)
        frames = frames.moved_by(estimated, source, estimated)
        opts = dataclasses.replace(
            opts, align_frames=tuple((float(a), float(b)) for a, b in estimated))
    return opts, frames
