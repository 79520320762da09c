"""How napari-emd layers are shown in a viewer: where the sliders start."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from .layer_meta import layer_info


def focus_energy(viewer: Any, layer: Any) -> bool:
    """Put the energy slider of a spectrum-image layer on its strongest peak.

    The reader works out that energy from the file's summed spectra when it opens the file
    (:attr:`.layer_meta.EMDLayerInfo.peak_energy`), so this reads no data. A plane at the slider's
    default position (energy 0) shows the user nothing. Returns whether it moved.
    """
    info = layer_info(layer)
    energy = info.peak_energy if info is not None else None
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
