"""Spectrum math on spectrum-image records, with numpy and dask only (no napari, no Qt):
energy axes in the units microscopists read them in, pixel and region spectra, energy-
window maps, and the masks of drawn regions.

A spectrum image record (:class:`napari_emd.Dataset` of kind ``spectrum_image``) holds
``data`` shaped ``(..., y, x, E)``, numpy or dask: only what a function asks for is read
(one pixel, a region's bounding box, a window of channels).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .model import Axis, Dataset

# Energy unit factors to eV.
ENERGY_FACTOR = {"eV": 1.0, "keV": 1e3, "meV": 1e-3, "MeV": 1e6}


def energy_unit_for(signal_type: str, units: str) -> str:
    """The unit an energy axis is shown in: keV for EDS (X-rays), eV for EELS, else the
    file's own unit."""
    st = (signal_type or "").upper()
    if units in ENERGY_FACTOR:
        if "EDS" in st or "EDX" in st:
            return "keV"
        if "EELS" in st:
            return "eV"
    return units


@dataclass
class EnergyAxis:
    """A calibrated energy axis: ``values`` (channel centres) in ``units``, and the factor
    from the file's axis unit to ``units``."""

    values: np.ndarray
    units: str
    factor: float

    @property
    def low(self) -> float:
        return float(self.values.min()) if self.values.size else 0.0

    @property
    def high(self) -> float:
        return float(self.values.max()) if self.values.size else 0.0

    def channel_range(self, low: float, high: float) -> tuple[int, int]:
        """Channels ``[i0, i1)`` whose centres lie inside ``[low, high]`` (at least one)."""
        lo, hi = sorted((float(low), float(high)))
        v = self.values
        n = len(v)
        if n == 0:
            return 0, 0
        step = (v[-1] - v[0]) / (n - 1) if n > 1 else 1.0
        if step < 0:
            v = v[::-1]
        i0 = int(np.searchsorted(v, lo, side="left"))
        i1 = int(np.searchsorted(v, hi, side="right"))
        i0 = min(max(i0, 0), n - 1)
        i1 = min(max(i1, i0 + 1), n)
        if step < 0:
            i0, i1 = n - i1, n - i0
        return i0, i1


def energy_axis(axis: Axis | dict[str, Any], signal_type: str = "") -> EnergyAxis:
    """The shown energy axis of a signal axis (an :class:`Axis` or a RosettaSciIO axis
    dict), converted to keV for EDS and eV for EELS."""
    if isinstance(axis, Axis):
        size, scale, offset = axis.size, axis.scale, axis.offset
        units, vector = axis.units, axis.vector
    else:
        vector = axis.get("axis")
        size = int(axis.get("size", len(vector) if vector is not None else 0))
        scale = float(axis.get("scale", 1.0))
        offset = float(axis.get("offset", 0.0))
        units = axis.get("units", "") or ""
    if vector is not None:
        values = np.asarray(vector, dtype=float)
    else:
        values = offset + scale * np.arange(size, dtype=float)
    shown = energy_unit_for(signal_type, units)
    factor = 1.0
    if shown != units and units in ENERGY_FACTOR and shown in ENERGY_FACTOR:
        factor = ENERGY_FACTOR[units] / ENERGY_FACTOR[shown]
    return EnergyAxis(values * factor, shown or "channel", factor)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "compute"):
        x = x.compute()
    return np.asarray(x)


def pixel_spectrum(record: Dataset, index: tuple[int, ...]) -> np.ndarray:
    """The spectrum of one pixel: ``record.data[index + (:,)]`` (``index`` is every
    axis but energy), through the record's ``pixel_reader`` when it has one (a lazy
    cube's chunks hold many pixels; the reader reads only this one's)."""
    if record.pixel_reader is not None:
        return np.asarray(record.pixel_reader(tuple(int(i) for i in index)), np.float64)
    return _to_numpy(record.data[(*index, slice(None))]).astype(np.float64)


def map_sum(record: Dataset) -> np.ndarray:
    """The spectrum summed over every pixel (and frame) of the map."""
    data = record.data
    return _to_numpy(data.sum(axis=tuple(range(data.ndim - 1)), dtype=np.float64))


def region_sum(record: Dataset, mask: np.ndarray) -> np.ndarray:
    """The spectrum summed over the pixels where the ``(y, x)`` ``mask`` is true (and
    over every frame). Only the mask's bounding box is read."""
    mask = np.asarray(mask, dtype=bool)
    n_e = record.data.shape[-1]
    if not mask.any():
        return np.zeros(n_e)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    sub = record.data[..., y0:y1, x0:x1, :]
    m = mask[y0:y1, x0:x1, None]
    return _to_numpy((sub * m).sum(axis=tuple(range(sub.ndim - 1)), dtype=np.float64))


def window_map(record: Dataset, i0: int, i1: int) -> Any:
    """Counts integrated over channels ``[i0, i1)``: an array over every other axis
    (lazy when the record is). From the record's energy-first ``display`` when it has
    one (a lazy spectrum image's display is chunked per energy plane, so the window
    costs its planes; its ``data`` is chunked by rows, which would decode every
    channel of every pixel)."""
    data, display = record.data, record.display
    if display is not None and display.shape == (*data.shape[:-3], data.shape[-1],
                                                 *data.shape[-3:-1]):
        return display[..., i0:i1, :, :].sum(axis=-3, dtype=np.float64)
    return data[..., i0:i1].sum(axis=-1, dtype=np.float64)


def polygon_mask(vertices: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Which pixel centres of a ``(ny, nx)`` grid lie inside the polygon ``vertices``
    (``(N, 2)`` in (y, x) pixel coordinates), by the even-odd rule."""
    v = np.asarray(vertices, dtype=float)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    inside = np.zeros((ny, nx), bool)
    for (y0, x0), (y1, x1) in zip(v, np.roll(v, -1, axis=0)):
        if y0 == y1:
            continue
        crosses = (yy >= min(y0, y1)) & (yy < max(y0, y1))
        x_at = x0 + (yy - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xx < x_at)
    return inside


def _ellipse_outline(v: np.ndarray) -> np.ndarray:
    """A polygon following the ellipse napari describes by its bounding box's corners."""
    c = v[:4].mean(axis=0)
    u = (v[1] - v[0]) / 2
    w = (v[3] - v[0]) / 2
    t = np.linspace(0, 2 * np.pi, 73)
    return c + np.outer(np.cos(t), u) + np.outer(np.sin(t), w)


def shapes_mask(shapes: Any, si_layer: Any, ny: int, nx: int) -> np.ndarray:
    """Which ``(y, x)`` pixels of a spectrum-image layer lie inside the shapes of a
    Shapes layer (rectangles, polygons, ellipses; lines and paths enclose nothing).
    Coordinates go through world space with both layers' scale and translate; the layers
    are read duck-typed (``data``, ``shape_type``, ``scale``, ``translate``)."""
    mask = np.zeros((ny, nx), dtype=bool)
    s_sc = np.asarray(shapes.scale, dtype=float)[-2:]
    s_tr = np.asarray(shapes.translate, dtype=float)[-2:]
    i_sc = np.asarray(si_layer.scale, dtype=float)[-2:]
    i_tr = np.asarray(si_layer.translate, dtype=float)[-2:]
    for verts, kind in zip(shapes.data, shapes.shape_type):
        v = np.asarray(verts, dtype=float)[:, -2:]
        v = ((v * s_sc + s_tr) - i_tr) / i_sc  # -> SI pixel coordinates
        if kind == "ellipse" and len(v) >= 4:
            v = _ellipse_outline(v)
        elif kind in ("line", "path") or len(v) < 3:
            continue
        mask |= polygon_mask(v, ny, nx)
    return mask


def labels_grid(labels: Any, si_layer: Any, ny: int, nx: int,
                point: Any = None) -> np.ndarray:
    """The label value of a Labels layer at each ``(y, x)`` pixel centre of a
    spectrum-image layer (0 outside the labels). ``point`` (a world position) picks the
    slice of a labels volume. Coordinates go through world space with both layers'
    scale and translate."""
    data = np.asarray(labels.data)
    if data.ndim > 2:
        if point is not None:
            lead = np.round(np.asarray(labels.world_to_data(point))[: data.ndim - 2])
            lead = tuple(int(np.clip(i, 0, n - 1)) for i, n in zip(lead, data.shape))
        else:
            lead = (0,) * (data.ndim - 2)
        data = data[lead]
    i_sc = np.asarray(si_layer.scale, dtype=float)[-2:]
    i_tr = np.asarray(si_layer.translate, dtype=float)[-2:]
    l_sc = np.asarray(labels.scale, dtype=float)[-2:]
    l_tr = np.asarray(labels.translate, dtype=float)[-2:]
    wy = i_tr[0] + i_sc[0] * np.arange(ny)
    wx = i_tr[1] + i_sc[1] * np.arange(nx)
    ly = np.floor((wy - l_tr[0]) / l_sc[0] + 0.5).astype(int)
    lx = np.floor((wx - l_tr[1]) / l_sc[1] + 0.5).astype(int)
    okay = (ly[:, None] >= 0) & (ly[:, None] < data.shape[0])
    okay = okay & (lx[None, :] >= 0) & (lx[None, :] < data.shape[1])
    vals = data[np.clip(ly, 0, data.shape[0] - 1)][:, np.clip(lx, 0, data.shape[1] - 1)]
    return np.where(okay, vals, 0)


def labels_mask(labels: Any, si_layer: Any, ny: int, nx: int, point: Any = None) -> np.ndarray:
    """Which ``(y, x)`` pixels of a spectrum-image layer carry the Labels layer's
    selected label (any label when the selected one is not painted). ``point`` (a world
    position) picks the slice of a labels volume."""
    vals = labels_grid(labels, si_layer, ny, nx, point)
    sel = getattr(labels, "selected_label", None)
    mask = vals == sel
    if not mask.any():
        mask = vals > 0
    return mask


def world_to_pixel(layer: Any, position: Any) -> np.ndarray:
    """Data coordinates (floats) of a world ``position`` in ``layer``, from the layer's
    scale and translate (spectrum images are never rotated)."""
    pos = np.asarray(position, dtype=float)
    nd = layer.ndim
    if pos.size < nd:
        pos = np.concatenate([np.zeros(nd - pos.size), pos])
    pos = pos[-nd:]
    scale = np.asarray(layer.scale, dtype=float)
    translate = np.asarray(layer.translate, dtype=float)
    return (pos - translate) / scale


def si_pixel(
    layer: Any, record: Dataset, position: Any, record_axes: Any = None
) -> tuple[int, ...] | None:
    """The record index ``(..., y, x)`` (every axis but energy) under a world position of
    a layer showing the record's energy-first display array (``(..., E, y, x)``), or
    ``None`` outside the map. ``record_axes`` maps each layer axis to the display axis
    it shows (``None`` for size-1 fillers); default: the layer is the display array."""
    coords = world_to_pixel(layer, position)
    if record_axes:
        shown = {r: c for r, c in zip(record_axes, coords) if r is not None}
        coords = np.array([shown.get(i, 0.0) for i in range(record.data.ndim)])
    nav_shape = record.data.shape[:-1]
    if len(coords) != len(nav_shape) + 1:
        return None
    lead = coords[:-3]  # display order (..., E, y, x) -> record order (..., y, x)
    yx = coords[-2:]
    idx = [math.floor(c + 0.5) for c in (*lead, *yx)]
    for i, n in zip(idx, nav_shape):
        if not 0 <= i < n:
            return None
    return tuple(idx)


def write_spectrum_csv(
    path: str | os.PathLike, energy: EnergyAxis, spectrum: np.ndarray, title: str = "",
    source: str = "",
) -> None:
    """Write a spectrum as CSV: a ``#`` header naming it and its source file, then
    ``energy,counts`` rows."""
    spec = np.asarray(spectrum, dtype=np.float64).ravel()
    x = energy.values[: spec.size]
    header = (f"napari-emd spectrum: {title}\nsource: {source}\n"
              f"energy ({energy.units}),counts")
    np.savetxt(os.fspath(path), np.column_stack([x, spec]), delimiter=",", header=header,
               fmt=["%.6g", "%.10g"])
