"""napari writer contributions: layers -> one NCEM EMD 0.2 file, one data group per layer.

Image and labels layers are stored as arrays with their calibration in ``dim1..dimN``;
a spectrum-image layer (shown energy-first) as the spectrum image itself, ``(y, x, E)``
with HyperSpy's signal type, navigation flags and acquisition metadata, and the single
spectra the layers carry as 1-D groups of their own; points, shapes, vectors and tracks
as coordinate tables in world units (:mod:`.annotations`). Layers that leave axis names
and units at napari's defaults get those of the world the other layers define
(:mod:`.world`). Every group holds the napari state in a JSON attribute
``napari_layer`` so that re-opening the file restores the same layers (:mod:`.saved`):

``napari_layer`` (JSON object, ``version`` 2)
    ``layer_type``, ``name``, ``scale``, ``translate``, ``units`` and ``axis_labels``
    (napari's own, one per layer dimension), ``opacity``, ``blending``, ``visible``,
    ``metadata`` (the layer's metadata, JSON-safe values only; of napari-emd's own entry
    only :meth:`.layer_meta.EMDLayerInfo.summary`: the dataset's metadata trees are the
    group's own ``metadata`` and ``original_metadata`` attributes); images add ``rgb``,
    ``multiscale``, ``colormap`` (``colormap_colors``/``_controls``/``_interpolation``
    for a custom one), ``contrast_limits``, ``gamma`` and ``spectrum_image`` (a spectrum
    image also ``record_axes``: the record axis each layer axis shows, ``null`` for a
    size-1 filler axis the file does not store, and ``world_keys``: the slider slot of
    each leading axis); labels ``labels_colormap``; annotation layers the keys
    :mod:`.annotations` lists.

Only this module imports napari (for the progress bar and colormap names).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import EMDError, EMDWarning
from ..model import ANNOTATION_TYPES, NAPARI_LAYER_ATTR
from ..units import unit_symbol
from ..writer import jsonable, write_signals
from ..writer.tables import Items, table_items
from .annotations import (
    NAPARI_LAYER_VERSION,
    annotation_group,
    layer_metadata_state,
    signal_metadata,
)
from .indexing import PREVIEW_KEY
from .layer_meta import layer_info, si_record, source_file
from .save_axes import WorldFrame, floats, per_axis, warn_transform

FullLayerData = tuple[Any, dict[str, Any], str]

SUPPORTED_LAYER_TYPES = ("image", "labels", *ANNOTATION_TYPES)


def write_layers(path: str, layer_data: list[FullLayerData]) -> list[str]:
    """Save layers of any supported type into one ``.emd`` file, one data group per
    layer in layer order (bottom first), plus the single spectra the layers carry.

    A layer type EMD cannot hold is refused with an :class:`EMDError` naming the layer,
    before anything is written.
    """
    path = _with_extension(path)
    # the preview of a spectrum image being indexed is not data: the spectrum image is
    layer_data = [ld for ld in layer_data
                  if PREVIEW_KEY not in (ld[1].get("metadata") or {})]
    if not layer_data:
        raise EMDError(path, "no layers to save")
    for _data, meta, layer_type in layer_data:
        check_layer_type(path, str(meta.get("name") or layer_type), layer_type)
    frame = WorldFrame.of_layers(layer_data)
    signals: list[dict[str, Any]] = []
    attrs: list[dict[str, Any] | None] = []
    items: list[Items | None] = []
    for data, meta, layer_type in layer_data:
        signal, napari_layer, extra = layer_group(data, meta, layer_type, path=path,
                                                  frame=frame)
        signals.append(signal)
        attrs.append({NAPARI_LAYER_ATTR: napari_layer})
        items.append(extra)
    for spectrum in carried_spectra(layer_data):
        signals.append(spectrum)
        attrs.append(None)
        items.append(None)
    with _NapariProgress(f"Saving {os.path.basename(path)}") as progress:
        written = write_signals(path, signals, progress=progress, group_attrs=attrs,
                                group_items=items)
    _warn_stale_lazy_layers(written)
    return [written]


def check_layer_type(path: str | None, name: str, layer_type: str) -> None:
    """Refuse, naming the layer, a layer type napari-emd cannot store."""
    if layer_type not in SUPPORTED_LAYER_TYPES:
        raise EMDError(path, f"layer {name!r} is a {layer_type} layer, which napari-emd "
                             "cannot store in an EMD file (it stores image, labels, points, "
                             "shapes, vectors and tracks layers); nothing was written. Save "
                             "it with another writer, or save the other layers without it")


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
    """One napari layer data tuple -> (RosettaSciIO-style signal dict, ``napari_layer``),
    the layer saved on its own. Raises :class:`EMDError` for layer types EMD files
    cannot hold."""
    signal, state, _items = layer_group(data, meta, layer_type, path=path,
                                        frame=WorldFrame.of_layers([(data, meta, layer_type)]))
    return signal, state


def layer_group(
    data: Any, meta: Mapping[str, Any], layer_type: str, *, path: str | None,
    frame: WorldFrame,
) -> tuple[dict[str, Any], dict[str, Any], Items]:
    """One layer data tuple -> (signal dict, ``napari_layer`` state, arrays stored next
    to the data), in the world ``frame`` of the layers saved with it."""
    name = str(meta.get("name") or layer_type)
    check_layer_type(path, name, layer_type)
    if layer_type in ANNOTATION_TYPES:
        return annotation_group(data, meta, layer_type, path=path, frame=frame)
    rec = si_record(meta) if layer_type == "image" else None
    if rec is not None:
        return _spectrum_image_group(rec, meta, name)
    return _raster_group(data, meta, layer_type, name, path, frame)


def _own_axes(meta: Mapping[str, Any], ndim: int) -> tuple[list[str], list[str]]:
    """napari's own axis labels and unit symbols of a layer (what restoring gives back)."""
    labels = ["" if v is None else str(v) for v in per_axis(meta.get("axis_labels"), ndim)]
    return labels, [unit_symbol(u) for u in per_axis(meta.get("units"), ndim)]


def _common_state(meta: Mapping[str, Any], layer_type: str, name: str, ndim: int
                  ) -> dict[str, Any]:
    labels, units = _own_axes(meta, ndim)
    state: dict[str, Any] = {
        "version": NAPARI_LAYER_VERSION,
        "layer_type": layer_type,
        "name": name,
        "scale": floats(meta.get("scale"), ndim, 1.0),
        "translate": floats(meta.get("translate"), ndim, 0.0),
        "units": units,
        "axis_labels": labels,
        "metadata": layer_metadata_state(meta.get("metadata")),
    }
    for key in ("gamma", "opacity", "blending", "visible"):
        if key in meta and (value := jsonable(meta[key])) is not None:
            state[key] = value
    return state


def _image_look(meta: Mapping[str, Any], state: dict[str, Any]) -> None:
    state.update(_colormap_state(meta.get("colormap")))
    cl = meta.get("contrast_limits")
    if cl is not None:
        lims = [float(x) for x in cl]
        if len(lims) == 2 and all(math.isfinite(x) for x in lims):
            state["contrast_limits"] = lims


def _raster_group(data: Any, meta: Mapping[str, Any], layer_type: str, name: str,
                  path: str | None, frame: WorldFrame
                  ) -> tuple[dict[str, Any], dict[str, Any], Items]:
    multiscale = bool(meta.get("multiscale", False))
    if multiscale or (isinstance(data, (list, tuple)) and data and hasattr(data[0], "shape")):
        warnings.warn(f"layer {name!r} is multiscale: only the full-resolution level is "
                      "saved", EMDWarning, stacklevel=4)
        data = data[0]
        multiscale = True
    if not hasattr(data, "ndim"):
        data = np.asarray(data)
    rgb = bool(meta.get("rgb", False)) and layer_type == "image"
    ndim = data.ndim - (1 if rgb else 0)
    state = _common_state(meta, layer_type, name, ndim)
    names, units = frame.axes(meta, ndim, adopt_units=layer_type == "labels")
    warn_transform(name, meta, ndim)

    axes: list[dict[str, Any]] = [
        {"name": names[i], "units": units[i], "index_in_array": i,
         "size": int(data.shape[i]), "scale": state["scale"][i],
         "offset": state["translate"][i], "navigate": i < ndim - 2}
        for i in range(ndim)
    ]
    if rgb:
        axes.append({"name": "channel", "units": "", "index_in_array": ndim,
                     "size": int(data.shape[-1]), "scale": 1.0, "offset": 0.0,
                     "navigate": False})
    md, om = signal_metadata(meta.get("metadata"), name)
    state["rgb"] = rgb
    state["multiscale"] = multiscale
    items: Items = {}
    if layer_type == "image":
        _image_look(meta, state)
    else:
        cmap = _labels_colormap_state(meta.get("colormap"))
        if cmap:
            state["labels_colormap"] = cmap
        items.update(table_items(path, f"layer {name!r}", meta.get("features")))
    return {"data": data, "axes": axes, "metadata": md, "original_metadata": om}, state, items


def _spectrum_image_group(rec: Any, meta: Mapping[str, Any], name: str
                          ) -> tuple[dict[str, Any], dict[str, Any], Items]:
    """A spectrum-image layer as the spectrum image it shows: the record's
    ``(..., y, x, E)`` array (lazy: written block by block), its axes with HyperSpy's
    navigation flags, signal type and acquisition metadata. The layer's own (energy
    first) placement stays in the state."""
    ndim = len(list(meta.get("scale") or [])) or rec.data.ndim
    state = _common_state(meta, "image", name, ndim)
    state["spectrum_image"] = True
    # the record is stored without the layer's size-1 filler axes: which record axis
    # each layer axis shows, and each slider's slot, put them back on reopening
    info = layer_info(meta)
    if info is not None and len(info.record_axes) == ndim:
        state["record_axes"] = list(info.record_axes)
        if len(info.world_keys) == ndim - 2:
            state["world_keys"] = list(info.world_keys)
    _image_look(meta, state)
    md = rec.full_metadata()
    md.setdefault("General", {})["title"] = name
    md.setdefault("Signal", {})["signal_type"] = rec.signal_type
    signal = {"data": rec.data, "axes": [ax.to_dict(i) for i, ax in enumerate(rec.axes)],
              "metadata": md, "original_metadata": rec.original_metadata}
    return signal, state, {}


def carried_spectra(layer_data: list[FullLayerData]) -> list[dict[str, Any]]:
    """The single spectra the layers carry (a Velox file's per-detector sums, listed by
    the spectrum viewer), each file's once, as signal dicts."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for _data, meta, _type in layer_data:
        info = layer_info(meta)
        for sp in info.spectra if info is not None else []:
            key = (str(info.source), str(sp.get("title")))
            if key in seen or sp.get("data") is None:
                continue
            seen.add(key)
            md = dict(sp.get("metadata") or {})
            md["General"] = {**(md.get("General") or {}), "title": str(sp.get("title"))}
            md["Signal"] = {**(md.get("Signal") or {}),
                            "signal_type": str(sp.get("signal_type") or "")}
            out.append({"data": np.asarray(sp["data"]), "axes": list(sp.get("axes") or []),
                        "metadata": md, "original_metadata": {}})
    return out


def _labels_colormap_state(cmap: Any) -> dict[str, Any] | None:
    """A labels colormap napari can rebuild: a direct one's label -> colour mapping, or
    a cyclic one's colours and seed."""
    if cmap is None:
        return None
    color_dict = getattr(cmap, "color_dict", None)
    if color_dict is not None:
        pairs = [[None if k is None else int(k), np.asarray(v, dtype=float).tolist()]
                 for k, v in color_dict.items()]
        return {"type": "direct", "color_dict": pairs}
    colors = getattr(cmap, "colors", None)
    if colors is None:
        return None
    state: dict[str, Any] = {"type": "cyclic",
                             "colors": np.asarray(colors, dtype=float).tolist()}
    for key in ("seed", "background_value"):
        value = jsonable(getattr(cmap, key, None))
        if value is not None:
            state[key] = value
    return state


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
