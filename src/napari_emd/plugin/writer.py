"""napari writer contributions: image and labels layers -> one NCEM EMD 0.2 file.

Each layer becomes one EMD data group (see :mod:`napari_emd.writer`), with the layer's
calibration in ``dim1..dimN`` (scale, translate, units as short symbols, axis labels) and
the napari state in a JSON group attribute ``napari_layer`` so that re-opening the file
in napari restores the same layers:

``napari_layer`` (JSON object, ``version`` 1)
    ``layer_type`` ("image" | "labels"), ``name``, ``scale``, ``translate``, ``units``,
    ``axis_labels`` (numpy order, one per layer dimension), ``rgb``, ``colormap`` (a
    napari colormap name; ``colormap_colors`` / ``colormap_controls`` /
    ``colormap_interpolation`` for a custom one), ``contrast_limits``, ``gamma``,
    ``opacity``, ``blending``, ``visible``, ``multiscale`` (True when only level 0 of a
    multiscale layer was saved) and ``metadata`` (the layer's metadata, JSON-safe values
    only; of napari-emd's own entry only :meth:`.layer_meta.EMDLayerInfo.summary`: the
    dataset's metadata trees are stored as the group's own ``metadata`` and
    ``original_metadata`` attributes).

Only this module imports napari (for the progress bar and colormap names).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import EMDError, EMDWarning
from ..units import unit_symbol
from ..writer import jsonable, write_signals
from .layer_meta import KEY, layer_info, source_file, user_metadata

FullLayerData = tuple[Any, dict[str, Any], str]

SUPPORTED_LAYER_TYPES = ("image", "labels")
NAPARI_LAYER_VERSION = 1


def write_layers(path: str, layer_data: list[FullLayerData]) -> list[str]:
    """Save image and labels layers into one ``.emd`` file, one data group per layer."""
    path = _with_extension(path)
    if not layer_data:
        raise EMDError(path, "no layers to save")
    signals: list[dict[str, Any]] = []
    attrs: list[dict[str, Any]] = []
    for data, meta, layer_type in layer_data:
        signal, napari_layer = layer_signal(data, meta, layer_type, path=path)
        signals.append(signal)
        attrs.append({"napari_layer": napari_layer})
    with _NapariProgress(f"Saving {os.path.basename(path)}") as progress:
        written = write_signals(path, signals, progress=progress, group_attrs=attrs)
    _warn_stale_lazy_layers(written)
    return [written]


def _warn_stale_lazy_layers(path: str) -> None:
    """Saving over a file that open layers still read lazily replaces what they read:
    those layers refuse to compute from then on (``_h5.check_unchanged``); say so now,
    naming them, rather than at their next redraw."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:
        return
    if viewer is None:
        return
    target = os.path.abspath(path)
    stale = [
        layer.name
        for layer in viewer.layers
        if os.path.abspath(source_file(layer) or "") == target
        and not isinstance(layer.data, np.ndarray)
    ]
    if stale:
        warnings.warn(
            f"{path}: saved over the file that layer(s) {', '.join(map(repr, stale))} "
            "read lazily; open the file again to see its new content in them",
            EMDWarning,
            stacklevel=2,
        )


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save one image layer to an ``.emd`` file."""
    return write_layers(path, [(data, meta, "image")])


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save one labels layer to an ``.emd`` file."""
    return write_layers(path, [(data, meta, "labels")])


def _with_extension(path: str) -> str:
    path = os.fspath(path)
    return path if os.path.splitext(path)[1] else path + ".emd"


def layer_signal(
    data: Any, meta: Mapping[str, Any], layer_type: str, *, path: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One napari layer data tuple -> (RosettaSciIO-style signal dict, ``napari_layer``).

    Raises :class:`EMDError` for layer types EMD files cannot hold.
    """
    name = str(meta.get("name") or layer_type)
    if layer_type not in SUPPORTED_LAYER_TYPES:
        raise EMDError(path, f"layer {name!r} is a {layer_type} layer; napari-emd saves only "
                             "image and labels layers to EMD (save it with another "
                             "writer, e.g. as .csv)")
    multiscale = bool(meta.get("multiscale", False))
    if multiscale or (isinstance(data, (list, tuple)) and data and hasattr(data[0], "shape")):
        warnings.warn(f"layer {name!r} is multiscale: only the full-resolution level is "
                      "saved", EMDWarning, stacklevel=3)
        data = data[0]
        multiscale = True
    if not hasattr(data, "ndim"):
        data = np.asarray(data)
    rgb = bool(meta.get("rgb", False)) and layer_type == "image"
    ndim = data.ndim - (1 if rgb else 0)

    scale = _floats(meta.get("scale"), ndim, 1.0)
    translate = _floats(meta.get("translate"), ndim, 0.0)
    units = _per_axis(meta.get("units"), ndim)
    unit_syms = [unit_symbol(u) for u in units]
    labels = [str(x) for x in _per_axis(meta.get("axis_labels"), ndim)]
    labels = [lab if lab != "None" else f"axis {i}" for i, lab in enumerate(labels)]
    _warn_transform(name, meta, ndim)

    axes: list[dict[str, Any]] = []
    for i in range(ndim):
        axes.append({
            "name": labels[i],
            "units": unit_syms[i],
            "index_in_array": i,
            "size": int(data.shape[i]),
            "scale": scale[i],
            "offset": translate[i],
            "navigate": i < ndim - 2,
        })
    if rgb:
        axes.append({"name": "channel", "units": "", "index_in_array": ndim,
                     "size": int(data.shape[-1]), "scale": 1.0, "offset": 0.0,
                     "navigate": False})

    layer_md = meta.get("metadata") or {}
    info = layer_info(layer_md)
    rec = info.record if info is not None else None
    hs_md = _deep_copy_dicts(rec.full_metadata()) if rec is not None else {}
    hs_md.setdefault("General", {})["title"] = name
    hs_md.setdefault("Signal", {}).setdefault("signal_type",
                                              info.signal_type if info is not None else "")
    signal = {
        "data": data,
        "axes": axes,
        "metadata": hs_md,
        "original_metadata": rec.original_metadata if rec is not None else {},
    }

    napari_layer: dict[str, Any] = {
        "version": NAPARI_LAYER_VERSION,
        "layer_type": layer_type,
        "name": name,
        "scale": scale,
        "translate": translate,
        "units": unit_syms,
        "axis_labels": labels,
        "rgb": rgb,
        "multiscale": multiscale,
        "metadata": _layer_metadata(layer_md),
    }
    for key in ("gamma", "opacity", "blending", "visible"):
        if key in meta:
            napari_layer[key] = jsonable(meta[key])
    if layer_type == "image":
        napari_layer.update(_colormap_state(meta.get("colormap")))
        cl = meta.get("contrast_limits")
        if cl is not None:
            lims = [float(x) for x in cl]
            if len(lims) == 2 and all(math.isfinite(x) for x in lims):
                napari_layer["contrast_limits"] = lims
    return signal, napari_layer


def _floats(values: Any, n: int, default: float) -> list[float]:
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


def _per_axis(values: Any, n: int) -> list[Any]:
    if values is None or isinstance(values, str) or not isinstance(values, Sequence):
        return [values] * n
    vals = list(values)
    if len(vals) >= n:
        return vals[-n:]
    return [None] * (n - len(vals)) + vals


def _warn_transform(name: str, meta: Mapping[str, Any], ndim: int) -> None:
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


def _deep_copy_dicts(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy_dicts(v) if isinstance(v, Mapping) else v for k, v in d.items()}


def _layer_metadata(layer_md: Any) -> dict[str, Any]:
    """The layer's metadata, JSON-safe, without duplicating the stored metadata trees."""
    if not isinstance(layer_md, Mapping):
        return {}
    md = user_metadata(layer_md)
    info = layer_info(layer_md)
    if info is not None:
        md[KEY] = info.summary()
    out = jsonable(md)
    return out if isinstance(out, dict) else {}


def _colormap_state(cmap: Any) -> dict[str, Any]:
    """A colormap as a napari name, plus its colours when it is not a built-in one."""
    if cmap is None:
        return {}
    if isinstance(cmap, str):
        return {"colormap": cmap}
    if isinstance(cmap, Mapping):
        name, colors = cmap.get("name"), cmap.get("colors")
        controls, interp = cmap.get("controls"), cmap.get("interpolation")
    else:
        name = getattr(cmap, "name", None)
        colors = getattr(cmap, "colors", None)
        controls = getattr(cmap, "controls", None)
        interp = getattr(cmap, "interpolation", None)
    state: dict[str, Any] = {"colormap": str(name) if name else None}
    if not _builtin_colormap(state["colormap"]) and colors is not None:
        state["colormap_colors"] = jsonable(np.asarray(colors, dtype=float))
        if controls is not None:
            state["colormap_controls"] = jsonable(np.asarray(controls, dtype=float))
        if interp is not None:
            state["colormap_interpolation"] = jsonable(getattr(interp, "value", interp))
    return state


def _builtin_colormap(name: str | None) -> bool:
    """True for colormaps every napari session knows by name (not runtime additions)."""
    if not name:
        return False
    try:
        from napari.utils.colormaps.colormap_utils import ALL_COLORMAPS
    except ImportError:  # pragma: no cover
        return False
    return name in ALL_COLORMAPS


class _NapariProgress:
    """A napari progress bar driven by ``progress(done, total)`` calls (optional: the
    write works without it)."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.bar: Any = None

    def __enter__(self) -> _NapariProgress:
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            try:
                from napari.utils import progress
            except ImportError:  # pragma: no cover
                return
            self.bar = progress(total=total, desc=self.description)
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
