"""Layers saved by napari-emd's writer, restored: the napari state stored with a dataset
(the JSON attribute ``napari_layer`` of its EMD data group, see :mod:`.writer`) turned
back into the same layer: its type, name, placement, look and, for annotation layers
(:mod:`.annotations`), coordinates, features and text. A spectrum image saved from its
energy-first layer comes back as a spectrum-image layer over the stored ``(y, x, E)``
record, as when it was first read."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ..model import ANNOTATION_TYPES, NAPARI_LAYER_ATTR, SPECTRUM_IMAGE, Dataset
from .annotations import restore_annotation
from .layer_meta import EMDLayerInfo, attach, user_metadata
from .layers import (
    LayerData,
    clean_scale,
    contrast_limits,
    display_array,
    maybe_eager,
    napari_unit,
    spectrum_image_look,
)

RESTORED_TYPES = ("image", "labels", *ANNOTATION_TYPES)


def saved_layer_state(ds: Dataset) -> dict[str, Any] | None:
    """The napari layer state napari-emd's writer stored with a dataset (the JSON
    attribute ``napari_layer`` of its EMD data group; see :mod:`.writer`), taken
    from ``ds.saved`` or the group attributes the NCEM reader keeps in
    ``original_metadata["dataset"]["attributes"]``. None for any other dataset."""
    state: Any = ds.saved.state if ds.saved is not None else None
    if state is None:
        dataset_om = ds.original_metadata.get("dataset")
        attrs = dataset_om.get("attributes") if isinstance(dataset_om, dict) else None
        state = attrs.get(NAPARI_LAYER_ATTR) if isinstance(attrs, dict) else None
    if isinstance(state, (str, bytes)):
        try:
            state = json.loads(state)
        except ValueError:
            return None
    if not isinstance(state, dict) or state.get("layer_type") not in RESTORED_TYPES:
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
    """A layer as it was saved from napari: its type (labels stay labels, points stay
    points), colormap, contrast limits, rendering settings and user metadata."""
    if state["layer_type"] in ANNOTATION_TYPES:
        return [restore_annotation(ds, state, spectra)]
    if state.get("spectrum_image") and ds.kind == SPECTRUM_IMAGE and ds.data.ndim >= 3:
        return [_spectrum_image(ds, state, spectra)]
    data = maybe_eager(ds.data)
    kind = np.dtype(data.dtype).kind
    if kind not in "biuf":
        return []
    axes = list(ds.axes)
    rgb = (state.get("rgb") is True and state["layer_type"] == "image" and data.ndim >= 3
           and data.shape[-1] in (3, 4))
    if rgb:
        axes = axes[:-1]
    kw = _placement(ds, axes, state)
    kw["metadata"] = _metadata(ds, state, spectra)
    for key, types in (("opacity", (int, float)), ("blending", str), ("visible", bool)):
        if isinstance(state.get(key), types):
            kw[key] = state[key]
    if state["layer_type"] == "labels" and kind in "biu":
        return [(data, {**kw, **_labels_extras(ds, state, data)}, "labels")]
    if rgb:
        kw["rgb"] = True
    else:
        kw.update(_colormap(state))
    cl = _finite_pair(state.get("contrast_limits")) or contrast_limits(data)
    if cl:
        kw["contrast_limits"] = cl
    if isinstance(state.get("gamma"), (int, float)):
        kw["gamma"] = float(state["gamma"])
    return [(data, kw, "image")]


def _placement(ds: Dataset, axes: list[Any], state: dict[str, Any]) -> dict[str, Any]:
    """Scale, translate, units and axis labels: the file's dims, with napari's exact
    numbers and its own labels and units as long as they agree with the dims."""
    n = len(axes)
    scale = [clean_scale(a) for a in axes]
    translate = [a.linear_offset if math.isfinite(a.linear_offset) else 0.0 for a in axes]
    for key, values in (("scale", scale), ("translate", translate)):
        saved = state.get(key)
        if (isinstance(saved, list) and len(saved) == n
                and all(isinstance(v, (int, float)) for v in saved)
                and np.allclose(saved, values, rtol=1e-9, atol=1e-12)):
            values[:] = [float(v) for v in saved]
    units = [napari_unit(a) for a in axes]
    saved_units = state.get("units")
    if isinstance(saved_units, list) and len(saved_units) == n:
        units = [str(u) if u else "pixel" for u in saved_units]
    labels = [a.name or f"axis {i}" for i, a in enumerate(axes)]
    saved_labels = state.get("axis_labels")
    if (isinstance(saved_labels, list) and len(saved_labels) == n
            and all(isinstance(v, str) and v for v in saved_labels)):
        labels = list(saved_labels)
    return {"name": ds.title, "scale": scale, "translate": translate, "units": units,
            "axis_labels": labels}


def _metadata(ds: Dataset, state: dict[str, Any], spectra: list[dict[str, Any]]
              ) -> dict[str, Any]:
    user_md = user_metadata(state.get("metadata") if isinstance(state.get("metadata"), dict)
                            else {})
    return attach(user_md, EMDLayerInfo.of_dataset(ds, spectra))


def _colormap(state: dict[str, Any]) -> dict[str, Any]:
    colors = state.get("colormap_colors")
    if isinstance(colors, list) and colors:
        return {"colormap": np.asarray(colors, dtype=float)}
    if isinstance(state.get("colormap"), str):
        return {"colormap": state["colormap"]}
    return {}


def _spectrum_image(ds: Dataset, state: dict[str, Any], spectra: list[dict[str, Any]]
                    ) -> LayerData:
    """A saved spectrum image: the energy-first layer over the stored record, as the
    reader makes it, with the saved look on top."""
    data, axes = display_array(ds)  # stays lazy: planes come on demand
    info = EMDLayerInfo.of_dataset(ds, spectra)
    look = spectrum_image_look(ds, data, spectra, info)
    kw = _placement(ds, axes, state)
    kw.update(look)
    kw["metadata"] = attach(user_metadata(state.get("metadata") if isinstance(
        state.get("metadata"), dict) else {}), info)
    kw.update(_colormap(state))
    cl = _finite_pair(state.get("contrast_limits"))
    if cl:
        kw["contrast_limits"] = cl
    for key, types in (("opacity", (int, float)), ("blending", str), ("visible", bool),
                       ("gamma", (int, float))):
        if isinstance(state.get(key), types):
            kw[key] = state[key]
    return (data, kw, "image")


def _labels_extras(ds: Dataset, state: dict[str, Any], data: Any) -> dict[str, Any]:
    """A labels layer's features table and colormap."""
    from ..writer.tables import decode_table

    out: dict[str, Any] = {}
    extras = ds.saved.items if ds.saved is not None else {}
    if extras.get("features"):
        features = decode_table(extras, 0)
        if len(features.columns):
            out["features"] = features
    cmap = labels_colormap(state.get("labels_colormap"))
    if cmap is not None:
        out["colormap"] = cmap
    return out


def labels_colormap(state: Any) -> Any:
    """The napari labels colormap the writer's ``labels_colormap`` state describes."""
    if not isinstance(state, dict):
        return None
    try:
        if state.get("type") == "direct":
            from napari.utils.colormaps import DirectLabelColormap

            pairs = state.get("color_dict") or []
            return DirectLabelColormap(color_dict={k: np.asarray(v) for k, v in pairs})
        if state.get("type") == "cyclic":
            from napari.utils.colormaps import CyclicLabelColormap

            kw = {k: state[k] for k in ("seed", "background_value") if k in state}
            return CyclicLabelColormap(colors=np.asarray(state["colors"]), **kw)
    except Exception:  # a colormap napari no longer accepts: its default is fine
        return None
    return None
