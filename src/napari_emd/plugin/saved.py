"""Layers saved by napari-emd's writer, restored: the napari state stored with a dataset
(the JSON attribute ``napari_layer`` of its EMD data group, see :mod:`.writer`) turned
back into the same layer."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..model import Dataset
from .layer_meta import EMDLayerInfo, attach, user_metadata
from .layers import LayerData, clean_scale, contrast_limits, maybe_eager, napari_unit


def saved_layer_state(ds: Dataset) -> dict[str, Any] | None:
    """The napari layer state napari-emd's writer stored with a dataset (the JSON
    attribute ``napari_layer`` of its EMD data group; see :mod:`.writer`), taken
    from ``ds.extra["napari_layer"]`` or the group attributes the NCEM reader keeps in
    ``original_metadata["dataset"]["attributes"]``. None for any other dataset."""
    state = ds.extra.get("napari_layer")
    if state is None:
        dataset_om = ds.original_metadata.get("dataset")
        attrs = dataset_om.get("attributes") if isinstance(dataset_om, dict) else None
        state = attrs.get("napari_layer") if isinstance(attrs, dict) else None
    if isinstance(state, (str, bytes)):
        import json

        try:
            state = json.loads(state)
        except ValueError:
            return None
    if not isinstance(state, dict) or state.get("layer_type") not in ("image", "labels"):
        return None
    return state


def _finite_pair(value: Any) -> tuple[float, float] | None:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) and hi > lo else None


def saved_layer(
    ds: Dataset, state: dict[str, Any], spectra: list[dict[str, Any]]
) -> list[LayerData]:
    """A layer as it was saved from napari: its type (labels stay labels), colormap,
    contrast limits, rendering settings and user metadata, in the stored axis order."""
    data = maybe_eager(ds.data)
    kind = np.dtype(data.dtype).kind
    if kind not in "biuf":
        return []
    axes = list(ds.axes)
    rgb = (state.get("rgb") is True and state["layer_type"] == "image" and data.ndim >= 3
           and data.shape[-1] in (3, 4))
    if rgb:
        axes = axes[:-1]
    scale = [clean_scale(a) for a in axes]
    translate = [a.linear_offset if math.isfinite(a.linear_offset) else 0.0 for a in axes]
    for key, values in (("scale", scale), ("translate", translate)):
        saved = state.get(key)
        # napari's exact numbers, as long as the file's dim vectors still agree with them
        if (isinstance(saved, list) and len(saved) == len(values)
                and all(isinstance(v, (int, float)) for v in saved)
                and np.allclose(saved, values, rtol=1e-9, atol=1e-12)):
            values[:] = [float(v) for v in saved]
    user_md = user_metadata(state.get("metadata") if isinstance(state.get("metadata"), dict)
                            else {})
    kw: dict[str, Any] = {
        "name": ds.title,
        "scale": scale,
        "translate": translate,
        "units": [napari_unit(a) for a in axes],
        "axis_labels": [a.name or f"axis {i}" for i, a in enumerate(axes)],
        "metadata": attach(user_md, EMDLayerInfo.of_dataset(ds, spectra)),
    }
    for key, types in (("opacity", (int, float)), ("blending", str), ("visible", bool)):
        if isinstance(state.get(key), types):
            kw[key] = state[key]
    if state["layer_type"] == "labels" and kind in "biu":
        return [(data, kw, "labels")]
    if rgb:
        kw["rgb"] = True
    else:
        colors = state.get("colormap_colors")
        if isinstance(colors, list) and colors:
            kw["colormap"] = np.asarray(colors, dtype=float)
        elif isinstance(state.get("colormap"), str):
            kw["colormap"] = state["colormap"]
    cl = _finite_pair(state.get("contrast_limits")) or contrast_limits(data)
    if cl:
        kw["contrast_limits"] = cl
    if isinstance(state.get("gamma"), (int, float)):
        kw["gamma"] = float(state["gamma"])
    return [(data, kw, "image")]

