"""The world axes of the layers of one save: per-axis scale, translate, units and names.

EMD axes hold a scale, an offset, a unit and a name: what napari calls scale, translate,
units and axis labels. napari's defaults say nothing (axis labels ``"-2"``, ``"-1"``,
units ``pixel``), yet a points layer drawn over a calibrated image lives in that image's
world: its coordinates are nanometres along y and x. :class:`WorldFrame` collects the
names and units the layers of one save give each world axis (napari aligns layers' axes
from the right), so a layer that leaves them at napari's defaults is saved with the
names and units of the world it was drawn in.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EMDWarning
from ..units import unit_symbol
from .compat import is_default_axis_label

#: Names for the last world axes when no layer names them.
FALLBACK_NAMES = {-1: "x", -2: "y"}


def floats(values: Any, n: int, default: float) -> list[float]:
    """``n`` finite floats from the last ``n`` of ``values`` (padded in front with
    ``default``)."""
    vals = list(values) if values is not None else []
    vals = vals[-n:] if len(vals) >= n else [default] * (n - len(vals)) + vals
    out = []
    for v in vals:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = default
        out.append(f if math.isfinite(f) else default)
    return out


def per_axis(values: Any, n: int) -> list[Any]:
    """One value per axis: a sequence's last ``n`` (padded with None), or a scalar
    repeated."""
    if values is None or isinstance(values, str) or not isinstance(values, Sequence):
        return [values] * n
    vals = list(values)
    if len(vals) >= n:
        return vals[-n:]
    return [None] * (n - len(vals)) + vals


def is_default_label(label: Any, index: int, ndim: int) -> bool:
    """True for an axis label that names nothing: empty, ``None`` or napari's default for
    the axis (whose spelling depends on the napari release: see :mod:`.compat`)."""
    return is_default_axis_label(label, index, ndim)


@dataclass
class WorldFrame:
    """Names and units of world axes, keyed by their index from the right (-1 = last)."""

    names: dict[int, str] = field(default_factory=dict)
    units: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of_layers(cls, layer_data: Sequence[tuple[Any, Mapping[str, Any], str]]) -> WorldFrame:
        """The frame the layers of one save define: image layers first, then the rest,
        each axis named by the first layer that names it."""
        frame = cls()
        ordered = sorted(layer_data, key=lambda ld: ld[2] != "image")
        for data, meta, layer_type in ordered:
            ndim = layer_ndim(data, meta, layer_type)
            labels = per_axis(meta.get("axis_labels"), ndim)
            units = per_axis(meta.get("units"), ndim)
            for i in range(ndim):
                r = i - ndim
                if r not in frame.names and not is_default_label(labels[i], i, ndim):
                    frame.names[r] = str(labels[i])
                sym = unit_symbol(units[i])
                if r not in frame.units and sym:
                    frame.units[r] = sym
        return frame

    def axes(self, meta: Mapping[str, Any], ndim: int, adopt_units: bool
             ) -> tuple[list[str], list[str]]:
        """Names and unit symbols for a layer's ``ndim`` axes: its own where it has them,
        else the frame's (units only when ``adopt_units``: for layers whose coordinates
        are world coordinates), else ``y``/``x`` for the last two and ``axis i``."""
        labels = per_axis(meta.get("axis_labels"), ndim)
        units = [unit_symbol(u) for u in per_axis(meta.get("units"), ndim)]
        names = []
        for i in range(ndim):
            r = i - ndim
            if not is_default_label(labels[i], i, ndim):
                names.append(str(labels[i]))
            else:
                names.append(self.names.get(r) or FALLBACK_NAMES.get(r) or f"axis {i}")
            if not units[i] and adopt_units:
                units[i] = self.units.get(r, "")
        return names, units


def layer_ndim(data: Any, meta: Mapping[str, Any], layer_type: str) -> int:
    """The number of world axes a layer spans."""
    if isinstance(meta.get("ndim"), int):
        return int(meta["ndim"])
    scale = meta.get("scale")
    if scale is not None:
        return len(list(scale))
    if layer_type in ("image", "labels"):
        arr = data[0] if isinstance(data, (list, tuple)) and data else data
        ndim = int(getattr(arr, "ndim", np.ndim(arr)))
        return ndim - (1 if layer_type == "image" and meta.get("rgb") else 0)
    return 2


def warn_transform(name: str, meta: Mapping[str, Any], ndim: int) -> None:
    """EMD axes hold scale and offset only: warn when a rotation/shear/affine is lost."""
    eye = np.eye(ndim)
    lost = []
    for key, ident in (("rotate", eye), ("shear", None), ("affine", np.eye(ndim + 1))):
        val = meta.get(key)
        if val is None:
            continue
        try:
            arr = np.asarray(val, dtype=float)
        except (TypeError, ValueError):
            continue
        if key == "shear":
            if arr.size and np.any(np.abs(arr[np.triu_indices(ndim, 1)] if arr.ndim == 2
                                          else arr) > 1e-12):
                lost.append(key)
        elif ident is not None and arr.shape == ident.shape and not np.allclose(arr, ident):
            lost.append(key)
    if lost:
        warnings.warn(f"layer {name!r}: {', '.join(lost)} cannot be stored in EMD and is "
                      "not saved (only scale and translate are)", EMDWarning, stacklevel=4)
