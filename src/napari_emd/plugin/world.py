"""Which napari slider each axis goes on.

napari lines the axes of all layers up from the right: the last two are on screen, the
ones before share sliders by position. Left alone, an EDS energy axis (keV), an EELS
energy-loss axis (eV), a frame-time axis and a simulation's depth all end up on one
slider, with a range and a step that suit none of them, and napari drops the units when
they disagree.

So every axis that is not on screen gets a *slot* named by what it measures
(:func:`axis_key`: ``"energy:EDS"``, ``"energy:EELS"``, ``"time"``, ``"depth"``,
``"angle:<name>"``...). Each slot is one world axis: slots are numbered from the screen
axes outwards, the slots of layers already in the viewer keep their numbers and new ones
come after. A layer's data gets one axis per slot up to its outermost one; a slot the
layer has no axis for becomes a size-1 axis whose extent spans the slot's whole range, so
the layer shows at every position of that slider (:func:`singleton_extent`). No napari
import here: the functions work on plain numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model import Axis
from ..units import length_factor

ENERGY_UNITS = ("eV", "keV", "meV", "MeV")
TIME_UNITS = ("s", "ms", "µs", "us", "ns", "min", "h")
ANGLE_UNITS = ("rad", "mrad", "deg", "°")
_DEPTH_NAMES = ("z", "r_z", "depth", "thickness", "slice", "slices")
_SLOT_LABELS = {"energy:EDS": "EDS energy", "energy:EELS": "EELS energy loss",
                "time": "Time", "depth": "Depth"}


def axis_key(ax: Axis, signal_type: str = "") -> str:
    """The slot of a non-screen axis: what it measures (energies by kind of spectrum,
    lengths by name except depths, which share one slot)."""
    units, name = ax.units or "", (ax.name or "").strip()
    low = name.lower()
    st = (signal_type or "").upper()
    if units in ENERGY_UNITS:
        kind = "EELS" if "EELS" in st else "EDS" if ("EDS" in st or "EDX" in st) else units
        return f"energy:{kind}"
    if units in TIME_UNITS or low in ("time", "frame", "frames"):
        return "time"
    if units in ANGLE_UNITS:
        return f"angle:{name}"
    if units and length_factor(units) is not None:
        if low in _DEPTH_NAMES or "depth" in low:
            return "depth"
        return f"length:{name}"
    if units.startswith("1/"):
        return f"reciprocal:{name}"
    return f"index:{name or 'axis'}"


def slot_label(key: str, fallback: str = "") -> str:
    """The slider label of a slot: the quantity for energies and times, a depth's axis
    name unless it says no more than "depth", else the axis name."""
    if key == "depth" and fallback and "depth" not in fallback.lower():
        return fallback
    return _SLOT_LABELS.get(key) or fallback or key.split(":", 1)[-1]


@dataclass
class LayerAxes:
    """The non-screen axes of one layer in data order: their slot keys (``None`` for a
    size-1 filler axis), and, for real axes, size, scale, translate, units and label."""

    keys: list[str | None]
    sizes: list[int]
    scales: list[float]
    translates: list[float]
    units: list[str]
    labels: list[str]


HIDDEN_MARK = " (hidden: "


def hidden_slider_labels(
    labels: Sequence[str], uses: Sequence[tuple[bool, str, Sequence[bool]]]
) -> list[str]:
    """The slider labels of a viewer whose layers are ``uses``: for each layer whether it
    is shown, its file's name and, right-aligned on the world axes, which of its axes
    are real (not size-1 fillers). A slider only hidden layers have a real axis on moves
    nothing shown (napari's sliders follow every layer, hidden or not): its label says
    which files it belongs to, e.g. ``"EDS energy (hidden: fei_emd_si)"``; the other
    labels lose that note."""
    ndim = len(labels)
    out = [lab.split(HIDDEN_MARK, 1)[0] for lab in labels]
    for axis in range(ndim):
        shown, files = False, []
        for visible, name, real in uses:
            i = axis - (ndim - len(real))
            if i < 0 or not real[i]:
                continue
            if visible:
                shown = True
                break
            if name not in files:
                files.append(name)
        if not shown and files:
            more = f" +{len(files) - 2}" if len(files) > 2 else ""
            out[axis] += f"{HIDDEN_MARK}{', '.join(files[:2])}{more})"
    return out


def slot_order(
    existing: Sequence[Sequence[str | None]], new: Sequence[Sequence[str]]
) -> list[str]:
    """Slots numbered from the screen outwards: those of layers already placed (each
    placed layer's keys are the innermost slots, in order), then new keys in the order
    new layers bring them (each layer's innermost axis first)."""
    order: list[str] = []
    for keys in existing:
        for i, key in enumerate(reversed(list(keys))):
            if key is None:
                continue
            if i < len(order) and order[i] != key:
                continue  # an inconsistent layer (edited by hand): keep the others' order
            if i >= len(order):
                order.extend([""] * (i - len(order) + 1))
            order[i] = key
    order = [k for k in order if k]
    for keys in new:
        for key in reversed(list(keys)):
            if key not in order:
                order.append(key)
    return order


def placement(own: Sequence[str], order: Sequence[str]) -> list[int | None]:
    """For each data axis of a layer placed on ``order`` (outermost first), the index of
    the layer's own axis that goes there, or ``None`` for a size-1 filler."""
    slots = [order.index(k) for k in own]
    if not slots:
        return []
    out: list[int | None] = []
    for s in range(max(slots), -1, -1):
        out.append(slots.index(s) if s in slots else None)
    return out


def place(data: Any, n_screen: int, where: Sequence[int | None]) -> Any:
    """``data`` (own leading axes, then ``n_screen`` screen axes) rearranged so that its
    leading axes follow ``where`` (from :func:`placement`), fillers of size 1 inserted.
    Works on numpy and dask arrays without copying."""
    own = [i for i in where if i is not None]
    n_lead = data.ndim - n_screen
    if own != list(range(n_lead)):
        data = data.transpose([*own, *range(n_lead, data.ndim)])
    index = tuple(None if i is None else slice(None) for i in where)
    return data[(*index, ...)] if any(i is None for i in where) else data


def real_extent(size: int, scale: float, translate: float) -> tuple[float, float]:
    """The world interval napari gives an axis of ``size`` pixels (pixel centres at
    ``translate + scale * i``, each pixel half a step either side)."""
    a = translate - scale / 2
    b = translate + scale * (size - 0.5)
    return (min(a, b), max(a, b))


def singleton_extent(lo: float, hi: float) -> tuple[float, float]:
    """(scale, translate) of a size-1 axis covering the world interval ``[lo, hi]``."""
    width = hi - lo
    if not np.isfinite(width) or width <= 0:
        return 1.0, float(lo) if np.isfinite(lo) else 0.0
    return float(width), float((lo + hi) / 2)


def slot_extents(layers: Sequence[LayerAxes]) -> dict[str, tuple[float, float]]:
    """The world interval of every slot: the union of its real axes' extents."""
    out: dict[str, tuple[float, float]] = {}
    for la in layers:
        for key, n, s, t in zip(la.keys, la.sizes, la.scales, la.translates):
            if key is None or n < 1:
                continue
            lo, hi = real_extent(n, s, t)
            if key in out:
                lo, hi = min(lo, out[key][0]), max(hi, out[key][1])
            out[key] = (lo, hi)
    return out
