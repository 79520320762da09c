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

from ..model import ANNOTATION_TYPES, NAPARI_LAYER_ATTR, SPECTRUM_IMAGE, Axis, Dataset
from ..units import unit_symbol
from . import world
from .annotations import restore_annotation
from .layer_meta import EMDLayerInfo, attach, user_metadata
from .layers import (
    LayerData,
    Part,
    clean_scale,
    contrast_limits,
    display_array,
    maybe_eager,
    napari_unit,
    spectrum_image_look,
)
from .world import _SLOT_LABELS

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
    numbers and its own labels and units as long as they agree with the dims. An axis
    given as ``None`` is a spectrum image's size-1 filler: all of it from the state."""
    n = len(axes)
    scale = [clean_scale(a) if a is not None else 1.0 for a in axes]
    translate = [a.linear_offset if a is not None and math.isfinite(a.linear_offset) else 0.0
                 for a in axes]
    fill = [a is None for a in axes]
    for key, values in (("scale", scale), ("translate", translate)):
        saved = state.get(key)
        if (isinstance(saved, list) and len(saved) == n
                and all(isinstance(v, (int, float)) for v in saved)):
            ok = [f or math.isclose(v, w, rel_tol=1e-9, abs_tol=1e-12)
                  for v, w, f in zip(saved, values, fill)]
            if all(ok):
                values[:] = [float(v) for v in saved]
    units = [napari_unit(a) if a is not None else "pixel" for a in axes]
    saved_units = state.get("units")
    if isinstance(saved_units, list) and len(saved_units) == n:
        units = [str(u) if u else "pixel" for u in saved_units]
    labels = [a.name if a is not None and a.name else f"axis {i}" for i, a in enumerate(axes)]
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
    reader makes it, with the saved look on top, placed as it was saved: the file holds
    the ``(y, x, E)`` record only, so the size-1 filler axes the layer had for other
    datasets' sliders (a frame-time axis opened before it...) are put back from the
    state (:func:`si_record_axes`), with each slider's slot, so its energy stays on a
    slider of its own, labelled as before ("EDS energy")."""
    data, axes = display_array(ds)  # stays lazy: planes come on demand
    info = EMDLayerInfo.of_dataset(ds, spectra)
    look = spectrum_image_look(ds, data, spectra, info)
    rec = si_record_axes(axes, state)
    if rec is None:
        kw = _placement(ds, axes, state)
        rec = list(range(len(axes)))
    else:
        data = world.place(data, 2, rec[:-2])
        kw = _placement(ds, [axes[r] if r is not None else None for r in rec], state)
    info.record_axes = tuple(rec)
    info.world_keys = tuple(_slot_keys(ds, axes, rec, state, kw["axis_labels"]))
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


def si_record_axes(axes: list[Axis], state: dict[str, Any]) -> list[int | None] | None:
    """For each axis of a saved spectrum-image layer, the axis of the record's display
    array ``axes`` it showed, or ``None`` for a size-1 filler; ``None`` when the state
    has as many axes as the record (nothing to put back) or cannot be matched.

    Taken from the state's ``record_axes`` (written since napari-emd kept it); for files
    saved before, matched from the outermost axis in: a saved slider axis is the
    record's next one when their units and steps agree (or when only the record's axes
    are left), else a filler. The screen axes are the record's last two."""
    units, scale = state.get("units"), state.get("scale")
    n = len(axes)
    if not isinstance(units, list) or not isinstance(scale, list) or len(units) != len(scale):
        return None
    n_saved = len(units)
    if n_saved <= n:
        return None
    saved = state.get("record_axes")
    if (isinstance(saved, list) and len(saved) == n_saved
            and all(r is None or (isinstance(r, int) and not isinstance(r, bool)) for r in saved)
            and [r for r in saved if r is not None] == list(range(n))
            and saved[-2:] == [n - 2, n - 1]):
        return list(saved)
    lead, own = n_saved - 2, n - 2
    out: list[int | None] = []
    j = 0
    for i in range(lead):
        if j < own and (lead - i == own - j or _same_axis(axes[j], units[i], scale[i])):
            out.append(j)
            j += 1
        else:
            out.append(None)
    return [*out, n - 2, n - 1] if j == own else None


def _same_axis(ax: Axis, unit: Any, step: Any) -> bool:
    try:
        step = float(step)
    except (TypeError, ValueError):
        return False
    return (unit_symbol(str(unit or "")) == unit_symbol(napari_unit(ax))
            and math.isclose(step, clean_scale(ax), rel_tol=1e-6))


def _slot_keys(ds: Dataset, axes: list[Axis], rec: list[int | None],
               state: dict[str, Any], labels: list[str]) -> list[str]:
    """The slider slot of each leading axis of a restored spectrum-image layer (see
    :mod:`.world`): the saved ones when they fit, else the record's own axes' (as a
    fresh read gives them) and, for a filler, the slot its label names."""
    n_lead = len(rec) - 2
    saved = state.get("world_keys")
    if isinstance(saved, list) and len(saved) == n_lead and all(
            isinstance(k, str) and k for k in saved):
        return list(saved)
    own = Part(None, axes, ds.title, EMDLayerInfo(), signal_type=ds.signal_type).keys
    by_label = {label: key for key, label in _SLOT_LABELS.items()}
    keys = []
    for r, label in zip(rec[:n_lead], labels):
        if r is not None:
            keys.append(own[r])
        else:
            keys.append(by_label.get(label) or f"index:{label}")
    return keys


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
