"""Energy-window maps of the spectrum viewer: checking a window against the spectrum,
and showing the map like Velox's mix view (its own colour, additive, placed over the
spectrum image, which is hidden; the file's plain images dimmed, :func:`.look.mix_view`)."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ...spectra import EnergyAxis
from ..layer_meta import DERIVED, Derived, EMDLayerInfo, attach, layer_info, source_file
from ..layers import apply_mix_view, map_layer
from ..look import MAP_COLORMAPS, map_limits


@dataclass
class Window:
    """A checked energy window: ``[lo, hi]`` (in the axis' units, cut at the spectrum's
    ends), its channels ``[i0, i1)`` and the energies of their centres."""

    lo: float
    hi: float
    i0: int
    i1: int
    e0: float
    e1: float
    cut: bool

    @classmethod
    def of(cls, energy: EnergyAxis, low: float, high: float, layer_name: str) -> Window:
        """The window ``[low, high]`` on ``energy``; ``ValueError`` when it lies outside
        the spectrum (a window reaching past an end is cut there)."""
        lo, hi = sorted((float(low), float(high)))
        half = abs(float(energy.values[1] - energy.values[0])) / 2 \
            if energy.values.size > 1 else 0.0
        first, last = energy.low - half, energy.high + half
        if hi < first or lo > last:
            raise ValueError(
                f"the window {lo:.4g}–{hi:.4g} {energy.units} is outside {layer_name}'s "
                f"energy range {energy.low:.4g}–{energy.high:.4g} {energy.units}")
        cut = lo < first or hi > last
        lo, hi = max(lo, first), min(hi, last)
        i0, i1 = energy.channel_range(lo, hi)
        return cls(lo, hi, i0, i1, float(energy.values[i0]), float(energy.values[i1 - 1]), cut)

    def info(self, si_layer: Any, name: str, signal_type: str, units: str) -> EMDLayerInfo:
        """The layer info of the map of this window."""
        return EMDLayerInfo(
            source=source_file(si_layer) or "", title=name, kind=DERIVED,
            signal_type=signal_type,
            derived=Derived(si_layer.name, (self.e0, self.e1), (self.i0, self.i1), units),
        )


def next_map_colormap(viewer: Any) -> str:
    """The first map colour no visible layer uses yet."""
    used = {getattr(getattr(ly, "colormap", None), "name", None) for ly in viewer.layers
            if ly.visible}
    free = [c for c in MAP_COLORMAPS if c not in used]
    return (free or list(MAP_COLORMAPS))[0]


def _of_si(layer: Any, si_layer: Any) -> bool:
    """Whether ``layer`` is a map made from ``si_layer`` (same layer, same file)."""
    info = layer_info(layer)
    return (info is not None and info.derived is not None
            and info.derived.si_layer == si_layer.name
            and (info.source or "") == (source_file(si_layer) or ""))


def _map_slot(viewer: Any, si_layer: Any, name: str) -> tuple[str, Any]:
    """(the name the map of ``si_layer`` called ``name`` gets, the layer of that name it
    updates or None). A same-named layer of another file or SI is never replaced: the
    map is named after its file instead (``Cu map — <file>``, then ``(2)``...)."""
    stem = os.path.splitext(os.path.basename(source_file(si_layer) or ""))[0] or \
        si_layer.name
    tagged = f"{name} — {stem}"
    names = itertools.chain([name, tagged], (f"{tagged} ({n})" for n in itertools.count(2)))
    by_name = {lyr.name: lyr for lyr in viewer.layers}
    for candidate in names:
        held = by_name.get(candidate)
        if held is None or _of_si(held, si_layer):
            return candidate, held
    raise AssertionError("unreachable")  # pragma: no cover


def show_map(viewer: Any, si_layer: Any, name: str, data: np.ndarray,
             info: EMDLayerInfo) -> Any:
    """Add (or update) the map layer ``name`` over ``si_layer`` and hide the spectrum
    image; returns the layer."""
    from napari.layers import Layer

    name, existing = _map_slot(viewer, si_layer, name)
    if name != info.title:
        info = replace(info, title=name)
    limits = map_limits(data) or (0.0, 1.0)
    if existing is not None and existing.ndim >= data.ndim and data.size == existing.data.size:
        existing.data = data.reshape(existing.data.shape)
        existing.metadata = attach(existing.metadata, info)
        existing.contrast_limits = limits
        layer = existing
    else:
        if existing is not None:
            viewer.layers.remove(existing)
        look_kw = {"colormap": next_map_colormap(viewer), "blending": "additive",
                   "contrast_limits": limits}
        layer = Layer.create(*map_layer(si_layer, data, name, info, look_kw, viewer.layers))
        viewer.add_layer(layer)
    # the mix view the reader gives a file with maps: SI hidden, its HAADF dimmed
    apply_mix_view(viewer.layers, source_file(si_layer) or "")
    si_layer.visible = False
    return layer
