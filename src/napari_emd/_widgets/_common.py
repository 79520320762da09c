"""Helpers shared by the dock widgets: finding spectrum-image layers and their records,
energy axes, pixel lookups and memory facts. No Qt here, so they are easy to test."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._model import SPECTRUM_IMAGE, Axis, Dataset

# Energy unit factors to eV.
_ENERGY_FACTOR = {"eV": 1.0, "keV": 1e3, "meV": 1e-3, "MeV": 1e6}


def emd_meta(layer: Any) -> dict[str, Any]:
    """The ``metadata["emd"]`` dict of a layer made by napari-emd (``{}`` otherwise)."""
    md = getattr(layer, "metadata", None) or {}
    emd = md.get("emd") if isinstance(md, dict) else None
    return emd if isinstance(emd, dict) else {}


def layer_source(layer: Any) -> str | None:
    """The file a layer was read from: napari-emd's metadata first, then napari's own
    ``layer.source.path``."""
    src = emd_meta(layer).get("source")
    if src:
        return os.fspath(src)
    source = getattr(layer, "source", None)
    path = getattr(source, "path", None)
    return os.fspath(path) if path else None


def si_record(layer: Any) -> Dataset | None:
    """The spectrum-image :class:`Dataset` behind a layer, or ``None``."""
    emd = emd_meta(layer)
    rec = emd.get("record")
    if isinstance(rec, Dataset) and rec.kind == SPECTRUM_IMAGE and rec.data.ndim >= 3:
        return rec
    return None


def is_si_layer(layer: Any) -> bool:
    """True for an image layer showing a napari-emd spectrum image."""
    return si_record(layer) is not None and emd_meta(layer).get("emd_part") is None


def energy_unit_for(signal_type: str, units: str) -> str:
    """The unit the energy axis is shown in: keV for EDS (X-rays), eV for EELS, else the
    file's own unit."""
    st = (signal_type or "").upper()
    if units in _ENERGY_FACTOR:
        if "EDS" in st or "EDX" in st:
            return "keV"
        if "EELS" in st:
            return "eV"
    return units


@dataclass
class EnergyAxis:
    """A calibrated energy axis: ``values`` in ``units``, and the factor from the file's
    axis unit to ``units`` (to convert a typed window back to channels)."""

    values: np.ndarray
    units: str
    factor: float

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
    if shown != units and units in _ENERGY_FACTOR and shown in _ENERGY_FACTOR:
        factor = _ENERGY_FACTOR[units] / _ENERGY_FACTOR[shown]
    return EnergyAxis(values * factor, shown or "channel", factor)


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


def si_pixel(layer: Any, record: Dataset, position: Any) -> tuple[int, ...] | None:
    """The record index ``(..., y, x)`` (every axis but energy) under a world position of
    an SI layer shown energy-first (``(..., E, y, x)``), or ``None`` outside the map."""
    coords = world_to_pixel(layer, position)
    nav_shape = record.data.shape[:-1]
    if len(coords) != len(nav_shape) + 1:
        return None
    # display order (..., E, y, x) -> record order (..., y, x)
    lead = coords[:-3]
    yx = coords[-2:]
    idx = [math.floor(c + 0.5) for c in (*lead, *yx)]
    for i, n in zip(idx, nav_shape):
        if not 0 <= i < n:
            return None
    return tuple(idx)


def spatial_calibration(layer: Any, record: Dataset) -> dict[str, Any]:
    """Layer keyword arguments that place a map of ``record`` (its axes without energy)
    exactly over the SI layer: scale, translate, units and axis labels."""
    keep = [i for i in range(layer.ndim) if i != layer.ndim - 3]
    out: dict[str, Any] = {
        "scale": [float(layer.scale[i]) for i in keep],
        "translate": [float(layer.translate[i]) for i in keep],
    }
    try:
        out["units"] = [str(layer.units[i]) for i in keep]
        out["axis_labels"] = [str(layer.axis_labels[i]) for i in keep]
    except (AttributeError, IndexError, TypeError):
        pass
    return out


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def available_memory() -> int | None:
    """Bytes of memory a new allocation can use now, or ``None`` when unknown.

    Linux: ``MemAvailable`` from ``/proc/meminfo`` (free plus reclaimable cache), else
    ``os.sysconf`` free pages; psutil is not needed.
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return int(pages) * int(size)
    except (ValueError, OSError, AttributeError):
        pass
    return None


def divisors(n: int) -> list[int]:
    """Positive divisors of ``n``, ascending (the valid energy rebinning factors)."""
    n = int(n)
    if n < 1:
        return [1]
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def focus_energy(viewer: Any, layer: Any) -> bool:
    """Put the energy slider of a spectrum-image layer on its strongest peak.

    The reader works out that energy from the file's summed spectra when it opens the file
    (``metadata["emd"]["peak_energy"]``), so this reads no data. A plane at the slider's
    default position (energy 0) shows the user nothing. Returns whether it moved.
    """
    energy = emd_meta(layer).get("peak_energy")
    if energy is None or getattr(layer, "ndim", 0) < 3:
        return False
    axis = viewer.dims.ndim - 3  # (..., E, y, x): energy is the third axis from the end
    # napari puts layers with units of one dimension (keV, eV) on one world axis in the
    # smallest of them: express the peak in the world's unit
    world_units = getattr(viewer.layers, "units", None)
    layer_units = getattr(layer, "units", None)
    if world_units is not None and layer_units is not None:
        # incompatible or missing units: keep the layer's own number
        with contextlib.suppress(Exception):
            energy = (energy * layer_units[-3]).to(world_units[axis]).magnitude
    lo, hi = viewer.dims.range[axis][:2]
    viewer.dims.set_point(axis, float(np.clip(energy, lo, hi)))
    return True
