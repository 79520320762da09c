"""napari annotation layers (points, shapes, vectors, tracks) as EMD data groups, and back.

An annotation layer becomes one EMD data group whose ``data`` is a coordinate table in
world (physical) coordinates, ``world = data * scale + translate``, so any EMD reader
gets meaningful numbers; the ``dim`` vector of the coordinate axis is text naming each
column (``y``, ``x``) with the common unit, ``column_units`` giving each column's.
Beside ``data`` (see :mod:`napari_emd.writer.tables`): the ``features`` table, the text
each element shows (``text``, for h5py users; napari re-renders it from the features),
per-element napari state under ``napari/`` (colours, sizes, symbols, widths) when it
differs between elements, and per type:

- points: ``data`` (N, D);
- shapes: ``data`` (V, D), every shape's vertices in turn; ``shape_index`` (V,) the
  shape each vertex belongs to; ``shape_type`` (S,) text (rectangle, ellipse, polygon,
  line, path); rectangles and ellipses by their four corners, as napari keeps them;
- vectors: ``data`` (N, 2, D), start points and displacements (displacements scaled,
  not translated);
- tracks: ``data`` (N, 1 + D), ``track_id`` then the coordinates; ``graph`` (M, 2)
  ``[track_id, parent_id]`` pairs.

The rest of the napari state (uniform colours and sizes, text template, widths,
visibility, blending, opacity, rendering settings) is the ``napari_layer`` JSON attribute.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import EMDError
from ..model import Dataset
from ..units import unit_symbol
from ..writer import jsonable
from ..writer.layout import ncem_units
from ..writer.tables import Item, Items, decode_table, table_items, text_array
from .layer_meta import KEY, EMDLayerInfo, attach, layer_info, user_metadata
from .save_axes import WorldFrame, floats, per_axis, warn_transform

#: Subgroup of a data group with the per-element napari state.
STATE_GROUP = "napari"

#: Version of the ``napari_layer`` JSON.
NAPARI_LAYER_VERSION = 2

# napari layer arguments kept per element (an array when elements differ) and as a whole.
PER_ELEMENT = {
    "points": ("size", "face_color", "border_color", "border_width", "symbol", "shown"),
    "shapes": ("edge_width", "edge_color", "face_color", "z_index"),
    "vectors": ("edge_color",),
    "tracks": (),
}
SCALARS = {
    "points": ("border_width_is_relative", "shading", "antialiasing", "canvas_size_limits",
               "projection_mode"),
    "shapes": ("projection_mode",),
    "vectors": ("length", "edge_width", "vector_style", "projection_mode"),
    "tracks": ("color_by", "colormap", "tail_width", "tail_length", "head_length",
               "hide_completed_tracks", "projection_mode"),
}
COMMON = ("opacity", "blending", "visible")
ROW_NAMES = {"points": "point", "shapes": "vertex", "vectors": "vector", "tracks": "track point"}


def signal_metadata(layer_md: Any, name: str, signal_type: str = "") -> tuple[dict, dict]:
    """HyperSpy ``metadata`` and ``original_metadata`` of a layer's group: those of the
    dataset napari-emd read it from (if any), titled after the layer."""
    info = layer_info(layer_md) if isinstance(layer_md, Mapping) else None
    rec = info.record if info is not None else None
    md = _deep_copy_dicts(rec.full_metadata()) if rec is not None else {}
    md.setdefault("General", {})["title"] = name
    fallback = info.signal_type if info is not None else signal_type
    md.setdefault("Signal", {}).setdefault("signal_type", fallback or signal_type)
    return md, (rec.original_metadata if rec is not None else {})


def _deep_copy_dicts(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy_dicts(v) if isinstance(v, Mapping) else v for k, v in d.items()}


def layer_metadata_state(layer_md: Any) -> dict[str, Any]:
    """The layer's metadata, JSON-safe, without the stored metadata trees (of
    napari-emd's own entry only :meth:`.EMDLayerInfo.summary`)."""
    if not isinstance(layer_md, Mapping):
        return {}
    md = user_metadata(layer_md)
    info = layer_info(layer_md)
    if info is not None:
        md[KEY] = info.summary()
    out = jsonable(md)
    return out if isinstance(out, dict) else {}


# --- saving ---------------------------------------------------------------------------


def annotation_group(
    data: Any, meta: Mapping[str, Any], layer_type: str, *, path: str | None,
    frame: WorldFrame,
) -> tuple[dict[str, Any], dict[str, Any], Items]:
    """One annotation layer data tuple -> (signal dict, ``napari_layer`` state, items).
    Everything is validated here, before any file is opened: a value that cannot be
    stored raises :class:`EMDError` naming the layer."""
    name = str(meta.get("name") or layer_type)
    where = f"layer {name!r}"
    ndim = _annotation_ndim(data, meta, layer_type)
    scale = floats(meta.get("scale"), ndim, 1.0)
    scale = [s if s != 0 else 1.0 for s in scale]
    translate = floats(meta.get("translate"), ndim, 0.0)
    names, units = frame.axes(meta, ndim, adopt_units=True)
    warn_transform(name, meta, ndim)

    items: Items = {}
    # napari's own labels and units (the dims carry the world's, see WorldFrame)
    own_labels = ["" if v is None else str(v) for v in per_axis(meta.get("axis_labels"), ndim)]
    own_units = [unit_symbol(u) for u in per_axis(meta.get("units"), ndim)]
    state: dict[str, Any] = {"version": NAPARI_LAYER_VERSION, "layer_type": layer_type,
                             "name": name, "ndim": ndim, "scale": scale,
                             "translate": translate, "units": own_units,
                             "axis_labels": own_labels,
                             "metadata": layer_metadata_state(meta.get("metadata"))}
    column_names, column_units = list(names), list(units)
    if layer_type == "points":
        world = _to_world(_coords(data, ndim, where, path), scale, translate)
        n = len(world)
    elif layer_type == "shapes":
        world, n = _shapes(data, meta, ndim, scale, translate, items, where, path)
    elif layer_type == "vectors":
        vec = _numeric(data, where, path).reshape(-1, 2, ndim)
        world = np.stack([_to_world(vec[:, 0], scale, translate),
                          _to_world(vec[:, 1], scale, np.zeros(ndim))], axis=1)
        n = len(world)
    else:  # tracks
        arr = _numeric(data, where, path).reshape(-1, ndim + 1)
        world = np.concatenate([arr[:, :1], _to_world(arr[:, 1:], scale, translate)], axis=1)
        n = len(world)
        if names[0] == "axis 0":  # napari's tracks: track_id, t, (z), y, x
            names[0] = "t"
        column_names, column_units = ["track_id", *names], ["", *units]
        items["graph"] = Item(_graph_pairs(meta.get("graph"), where, path),
                              {"columns": ["track_id", "parent_id"]})
    for key in COMMON + SCALARS[layer_type]:
        if key in meta and (value := jsonable(meta[key])) is not None:
            state[key] = value
    per_element = _per_element_state(meta, layer_type, n, state, where, path)
    if per_element:
        items[STATE_GROUP] = per_element
        state["per_element"] = list(per_element)
    _text(meta, n, state, items)
    items.update(table_items(path, where, meta.get("features")))

    md, om = signal_metadata(meta.get("metadata"), name)
    signal = {"data": world, "axes": _table_axes(world, layer_type, column_names,
                                                 column_units),
              "metadata": md, "original_metadata": om}
    return signal, state, items


def _annotation_ndim(data: Any, meta: Mapping[str, Any], layer_type: str) -> int:
    if isinstance(meta.get("ndim"), int):
        return int(meta["ndim"])
    if meta.get("scale") is not None:
        return len(list(meta["scale"]))
    arr = np.asarray(data, dtype=object) if layer_type == "shapes" else np.asarray(data)
    return int(arr.shape[-1]) - (1 if layer_type == "tracks" else 0) if arr.ndim else 2


def _numeric(data: Any, where: str, path: str | None) -> np.ndarray:
    try:
        return np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise EMDError(path, f"{where}: its coordinates are not numbers ({err})") from err


def _coords(data: Any, ndim: int, where: str, path: str | None) -> np.ndarray:
    arr = _numeric(data, where, path)
    if arr.size == 0:
        return np.empty((0, ndim))
    if arr.ndim != 2 or arr.shape[1] != ndim:
        raise EMDError(path, f"{where}: coordinates of shape {arr.shape} do not match its "
                             f"{ndim} dimensions")
    return arr


def _to_world(coords: np.ndarray, scale: Any, translate: Any) -> np.ndarray:
    return np.asarray(coords, dtype=np.float64) * np.asarray(scale) + np.asarray(translate)


def _shapes(data: Any, meta: Mapping[str, Any], ndim: int, scale: list[float],
            translate: list[float], items: Items, where: str, path: str | None
            ) -> tuple[np.ndarray, int]:
    shapes = [_coords(s, ndim, where, path) for s in (data if data is not None else [])]
    types = meta.get("shape_type")
    types = [types] * len(shapes) if isinstance(types, str) else list(types or [])
    if len(types) != len(shapes):
        raise EMDError(path, f"{where}: {len(types)} shape types for {len(shapes)} shapes")
    verts = np.concatenate(shapes) if shapes else np.empty((0, ndim))
    counts = [len(s) for s in shapes]
    items["shape_index"] = Item(np.repeat(np.arange(len(shapes), dtype=np.int64), counts),
                                {"description": "the shape each vertex belongs to"})
    items["shape_type"] = Item(text_array([getattr(t, "value", t) for t in types]), {})
    return _to_world(verts, scale, translate), len(shapes)


def _graph_pairs(graph: Any, where: str, path: str | None) -> np.ndarray:
    pairs = []
    for child, parents in (graph or {}).items():
        for parent in np.atleast_1d(parents):
            pairs.append((child, parent))
    try:
        return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    except (TypeError, ValueError) as err:
        raise EMDError(path, f"{where}: its track graph is not integer ids ({err})") from err


def _per_element_state(meta: Mapping[str, Any], layer_type: str, n: int,
                       state: dict[str, Any], where: str, path: str | None) -> Items:
    """Per-element values: one value in ``state`` when all elements share it (or the
    layer is empty: napari then gives the value for new elements), else an array item."""
    out: Items = {}
    for key in PER_ELEMENT[layer_type]:
        if key not in meta or meta[key] is None:
            continue
        value = meta[key]
        if key == "symbol" and not isinstance(value, str):
            value = [getattr(s, "value", s) for s in np.atleast_1d(np.asarray(value,
                                                                             dtype=object))]
        arr = np.asarray(value)
        if n == 0:  # napari gives the value new elements get, in a list of one
            first = arr[0] if arr.ndim and len(arr) == 1 else arr
            if arr.size and (j := jsonable(first)) is not None:
                state[key] = j
            continue
        if arr.ndim == 0 or arr.shape[0] != n:
            if (j := jsonable(arr)) is not None:
                state[key] = j
            continue
        if all(np.array_equal(row, arr[0]) for row in arr[1:]):
            state[key] = jsonable(arr[0])
        elif arr.dtype.kind in "biuf":
            out[key] = Item(arr, {})
        elif arr.dtype.kind in "OU":
            out[key] = Item(text_array(arr), {})
        else:
            raise EMDError(path, f"{where}: its {key} values ({arr.dtype}) cannot be stored")
    return out


def _text(meta: Mapping[str, Any], n: int, state: dict[str, Any], items: Items) -> None:
    """The text settings into ``state``; the text each element shows as ``text``."""
    text = meta.get("text")
    if not isinstance(text, Mapping):
        return
    state["text"] = jsonable(text)
    rendered = render_text(text.get("string"), meta.get("features"), n)
    if rendered is not None and any(rendered):
        items["text"] = Item(text_array(rendered), {
            "description": "the text napari shows for each element"})


def render_text(encoding: Any, features: Any, n: int) -> list[str] | None:
    """The strings a napari text encoding gives ``n`` elements (None when it cannot be
    worked out: napari re-renders from the stored template anyway)."""
    if isinstance(encoding, str):
        encoding = {"format": encoding} if "{" in encoding else {"constant": encoding}
    if not isinstance(encoding, Mapping):
        return None
    try:
        if "constant" in encoding:
            return [str(encoding["constant"])] * n
        if "array" in encoding:
            return [str(v) for v in np.asarray(encoding["array"], dtype=object)][:n]
        rows = _rows(features, n)
        if "feature" in encoding:
            return [str(r[encoding["feature"]]) for r in rows]
        if "format" in encoding:
            fmt = str(encoding["format"])
            fields = [f for _, f, _, _ in string.Formatter().parse(fmt) if f]
            return [fmt.format(**{f: r[f] for f in fields}) for r in rows]
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    return None


def _rows(features: Any, n: int) -> list[dict[str, Any]]:
    if features is None:
        return [{} for _ in range(n)]
    if hasattr(features, "to_dict"):
        return features.to_dict("records")
    cols = dict(features)
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


def _table_axes(world: np.ndarray, layer_type: str, names: list[str], units: list[str]
                ) -> list[dict[str, Any]]:
    """Axis dicts of a coordinate table: a row index, (vectors) start/displacement,
    and the coordinate columns named by text labels."""
    same = {u for u in units if u}
    common = same.pop() if len(same) == 1 and all(units) else ""
    axes: list[dict[str, Any]] = [
        {"name": ROW_NAMES[layer_type], "units": "", "size": int(world.shape[0]),
         "offset": 0.0, "scale": 1.0, "navigate": True}]
    if layer_type == "vectors":
        axes.append({"name": "component", "labels": ["position", "projection"],
                     "navigate": True})
    axes.append({"name": "axis", "labels": names, "units": common, "navigate": False,
                 "dim_attrs": {"column_units": [ncem_units(u) for u in units]}})
    for i, ax in enumerate(axes):
        ax["index_in_array"] = i
    return axes


# --- restoring ------------------------------------------------------------------------


def restore_annotation(ds: Dataset, state: Mapping[str, Any], spectra: list[dict[str, Any]]
                       ) -> tuple[Any, dict[str, Any], str]:
    """The layer data tuple of an annotation group saved by :func:`annotation_group`."""
    layer_type = str(state["layer_type"])
    extras = ds.saved.items if ds.saved is not None else {}
    world = np.asarray(ds.data.compute() if hasattr(ds.data, "compute") else ds.data,
                       dtype=np.float64)
    ndim = int(state.get("ndim") or world.shape[-1] - (layer_type == "tracks"))
    scale = np.asarray(_state_floats(state.get("scale"), ndim, 1.0))
    translate = np.asarray(_state_floats(state.get("translate"), ndim, 0.0))
    kw: dict[str, Any] = {"name": ds.title, "scale": scale.tolist(),
                          "translate": translate.tolist()}
    units = state.get("units")
    if isinstance(units, list) and len(units) == ndim:
        kw["units"] = [u or "pixel" for u in units]
    labels = state.get("axis_labels")
    if isinstance(labels, list) and len(labels) == ndim and all(labels):
        kw["axis_labels"] = [str(v) for v in labels]
    user_md = user_metadata(state.get("metadata") if isinstance(state.get("metadata"), dict)
                            else {})
    kw["metadata"] = attach(user_md, EMDLayerInfo.of_dataset(ds, spectra))

    if layer_type == "points":
        data: Any = (world.reshape(-1, ndim) - translate) / scale
        kw["ndim"] = ndim
        n = len(data)
    elif layer_type == "shapes":
        data, types = _restore_shapes(world.reshape(-1, ndim), extras, scale, translate)
        kw["shape_type"] = types
        kw["ndim"] = ndim
        n = len(data)
    elif layer_type == "vectors":
        vec = world.reshape(-1, 2, ndim)
        data = np.stack([(vec[:, 0] - translate) / scale, vec[:, 1] / scale], axis=1)
        kw["ndim"] = ndim
        n = len(data)
    else:
        arr = world.reshape(-1, ndim + 1)
        data = np.concatenate([arr[:, :1], (arr[:, 1:] - translate) / scale], axis=1)
        kw["graph"] = _restore_graph(extras.get("graph"))
        n = len(data)
    for key in COMMON + SCALARS.get(layer_type, ()):
        if key in state:
            kw[key] = _tuple_lists(state[key]) if key == "canvas_size_limits" else state[key]
    per_element = extras.get(STATE_GROUP) if isinstance(extras.get(STATE_GROUP), Mapping) \
        else {}
    for key in PER_ELEMENT.get(layer_type, ()):
        if key in per_element and not isinstance(per_element[key], Mapping):
            arr = np.asarray(per_element[key][0])
            # napari tests some of these (shapes' z_index) for truth: lists, not arrays
            kw[key] = arr.tolist() if arr.ndim == 1 else arr
        elif key in state:
            kw[key] = state[key]
    if isinstance(state.get("text"), Mapping):
        kw["text"] = dict(state["text"])
    features = decode_table(extras, n)
    if len(features.columns):
        kw["features"] = features
    return data, kw, layer_type


def _state_floats(values: Any, n: int, default: float) -> list[float]:
    out = floats(values, n, default)
    return [v if (v != 0 or default == 0) and math.isfinite(v) else default for v in out]


def _tuple_lists(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _restore_shapes(verts: np.ndarray, extras: Mapping[str, Any], scale: np.ndarray,
                    translate: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    index = extras.get("shape_index")
    types = extras.get("shape_type")
    kinds = [str(t) for t in (types[0] if types is not None else [])]
    idx = np.asarray(index[0], dtype=np.int64) if index is not None else np.zeros(len(verts),
                                                                                 np.int64)
    coords = (verts - translate) / scale
    shapes = [coords[idx == k] for k in range(len(kinds))]
    return shapes, kinds


def _restore_graph(item: Any) -> dict[int, list[int]]:
    if item is None or isinstance(item, Mapping):
        return {}
    graph: dict[int, list[int]] = {}
    for child, parent in np.asarray(item[0], dtype=np.int64).reshape(-1, 2):
        graph.setdefault(int(child), []).append(int(parent))
    return graph
