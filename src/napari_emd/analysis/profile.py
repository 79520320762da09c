"""Profiles of maps along a drawn polyline, with a width: the net counts of X-ray lines
(or any map) summed across the line and binned along it, with a distance axis in the
scan's units.

Every pixel centre within ``width / 2`` pixels of the polyline (a band with square
ends) is assigned to its nearest point on the path; the profile samples the path every
``step`` pixels from its start (distance 0, step, 2 step...), each sample summing the
pixels whose path position rounds to it, so counts are conserved (a profile's total is the
band's total) and Poisson sigmas add in quadrature.

Non-square pixels: the geometry is worked out with each pixel as tall as its height
over its width, so lengths along the path (and the band's width, and ``step``) are in
pixel widths whatever the direction; a diagonal line's distance is its physical length.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..units import convert_length
from .lines import LineIntensity, line_intensities
from .signal import as_signal


@dataclass(frozen=True)
class Profile:
    """``distance`` (sample positions along the path from its start, in ``units``),
    ``values[name]`` (summed counts per sample), ``sigma[name]`` (when the source had
    sigmas), ``pixels`` (how many pixels each sample summed)."""

    distance: np.ndarray
    units: str
    values: dict[str, np.ndarray]
    sigma: dict[str, np.ndarray] = field(default_factory=dict)
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, int))


def _path_coordinates(points: np.ndarray, ny: int, nx: int, width: float,
                      aspect: float = 1.0) -> tuple[np.ndarray, np.ndarray, float]:
    """Per pixel: distance along the path of its nearest path point (NaN outside the
    band), and the path length, all in pixel widths; ``aspect`` is a pixel's height over
    its width."""
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    yy *= aspect
    points = points * [aspect, 1.0]
    best = np.full((ny, nx), np.inf)
    along = np.full((ny, nx), np.nan)
    start = 0.0
    segments = [(p0, p1) for p0, p1 in itertools.pairwise(points) if np.any(p1 != p0)]
    for k, (p0, p1) in enumerate(segments):
        d = p1 - p0
        length = float(np.hypot(*d))
        t = ((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / length**2
        tc = np.clip(t, 0.0, 1.0)
        dist = np.hypot(yy - (p0[0] + tc * d[0]), xx - (p0[1] + tc * d[1]))
        # the band ends square at the path's two ends (no round caps); at inner
        # vertices the nearest-point rule fills the corner
        beyond = ((t < -1e-9) & (k == 0)) | ((t > 1 + 1e-9) & (k == len(segments) - 1))
        dist = np.where(beyond, np.inf, dist)
        closer = dist < best
        best = np.where(closer, dist, best)
        along = np.where(closer, start + tc * length, along)
        start += length
    along[best > width / 2] = np.nan
    return along, best, start


def line_profile(
    source: Any,
    points: Sequence[Sequence[float]] | np.ndarray,
    width: float = 1.0,
    step: float = 1.0,
    lines: Sequence[str] | None = None,
    scale: float | tuple[float, float] | None = None,
    units: str | None = None,
    **line_options: Any,
) -> Profile:
    """Sum maps across a polyline of ``width`` pixels and bin them along it.

    ``source``: a spectrum image (file_reader dict or ``Dataset``; with ``lines`` its
    net line intensities are profiled, else its total counts per pixel), the result of
    :func:`~napari_emd.analysis.line_intensities` (``{line: LineIntensity}``), one
    ``LineIntensity``, a ``{name: 2-D array}`` mapping or a 2-D array. ``points``:
    ``(N, 2)`` vertices in (y, x) pixel coordinates. ``step``: bin length in pixels.
    The distance axis is in the scan's units when a spectrum image is given (its y and
    x scales), else in ``units`` with ``scale`` per pixel (default: pixels); ``scale``
    may be ``(y, x)`` pixel sizes for non-square pixels, distances along the path then
    being physical lengths (``width`` and ``step`` count pixel widths, x).
    """
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
        raise ValueError("points: at least two (y, x) vertices")
    if width <= 0 or step <= 0:
        raise ValueError("width and step must be positive")
    maps: dict[str, Any] = {}
    sigmas: dict[str, Any] = {}
    px_scale: tuple[float, float] = (1.0, 1.0)
    px_units = "px"
    if (isinstance(source, dict) and "data" in source) or hasattr(source, "axes"):
        sig = as_signal(source)
        if sig.nav_axes:
            sx, px_units = sig.nav_axes[-1][1], sig.nav_axes[-1][3] or "px"
            y_axis = sig.nav_axes[-2] if len(sig.nav_axes) > 1 else sig.nav_axes[-1]
            px_scale = (_in_units(y_axis[1], y_axis[3], px_units), sx)
        if lines:
            source = line_intensities(source, lines, compute=True, **line_options)
        else:
            maps["total"] = sig.data.sum(axis=-1, dtype=np.float64)
            source = None
    if isinstance(source, LineIntensity):
        source = {source.line: source}
    if isinstance(source, Mapping):
        for name, v in source.items():
            maps[str(name)] = getattr(v, "net", v)
            if getattr(v, "sigma", None) is not None:
                sigmas[str(name)] = v.sigma
    elif source is not None:
        maps["map"] = source
    if scale is not None:
        px_scale = (float(scale), float(scale)) if np.ndim(scale) == 0 else \
            (float(scale[0]), float(scale[1]))  # type: ignore[index]
        if not all(np.isfinite(px_scale)) or min(px_scale) <= 0:
            raise ValueError(f"scale must be positive pixel sizes, not {scale!r}")
    if units is not None:
        px_units = units
    arrays = {k: np.asarray(v.compute() if hasattr(v, "compute") else v, dtype=float)
              for k, v in maps.items()}
    shapes = {a.shape[-2:] for a in arrays.values()}
    if len(shapes) != 1 or any(a.ndim < 2 for a in arrays.values()):
        raise ValueError("every map must be 2-D (y, x) and of one shape")
    ny, nx = shapes.pop()
    along, _, length = _path_coordinates(pts, ny, nx, width, px_scale[0] / px_scale[1])
    n_bins = int(np.floor(length / step + 1e-9)) + 1
    inside = np.isfinite(along)
    idx = np.minimum(np.floor(along[inside] / step + 0.5).astype(int), n_bins - 1)
    pixels = np.bincount(idx, minlength=n_bins)
    values = {k: np.bincount(idx, weights=a.reshape(-1, ny, nx).sum(0)[inside],
                             minlength=n_bins) for k, a in arrays.items()}
    sig_out = {}
    for k, s in sigmas.items():
        s = np.asarray(s.compute() if hasattr(s, "compute") else s, dtype=float)
        sig_out[k] = np.sqrt(np.bincount(idx, weights=(s.reshape(-1, ny, nx) ** 2).sum(0)
                                         [inside], minlength=n_bins))
    return Profile(np.arange(n_bins) * step * px_scale[1], px_units, values, sig_out, pixels)


def _in_units(value: float, unit: str, to_unit: str) -> float:
    """``value`` (a y pixel size in ``unit``) in the x axis's ``to_unit`` when both are
    lengths, else as it is."""
    try:
        return convert_length(value, unit or "", to_unit or "")
    except (ValueError, TypeError, KeyError):
        return value
