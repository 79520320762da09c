"""What differs between the napari releases napari-emd supports (0.6 to the newest), in
one place. Plugin code calls these helpers instead of version-specific napari APIs.

Each helper detects the feature it needs on the objects it is given (an attribute, an
event), never by parsing ``napari.__version__``, so a release that back-ports or renames
something is handled by what it actually has. What changed, and what we do about it:

- **Canvas and scene models** (napari 0.9): the grid and the overlays (scale bar, text)
  moved from the viewer (``viewer.grid``, ``viewer.scale_bar``, ``viewer.text_overlay``,
  deprecated in 0.9) to ``viewer.canvas``, the camera to ``viewer.scene``.
  :func:`grid_of`, :func:`overlay` and :func:`camera` return whichever exists.
- **Layer renames** (napari 0.7): ``viewer.layers.events.renamed``. Before it, a rename
  is only each layer's own ``events.name``; :func:`layers_renamed` relays those.
- **World units** (napari 0.7): the viewer converts every layer's scale to one unit per
  world axis (``viewer.layers.units``) and the scale bar shows it. Before, world
  coordinates are each layer's own numbers and the scale bar shows no unit unless told;
  :func:`world_units` gives the unit of each world axis either way and
  :func:`label_scale_bar` tells the scale bar the layers' length unit.
- **Slider names from layers** (napari 0.9): the viewer names its sliders from the layers'
  ``axis_labels``. Before, sliders are called ``0``, ``1``...; :func:`sync_axis_labels`
  names them the same way.
- **Default axis labels** (napari 0.7): an axis given no label is called ``-1``; 0.6
  calls it ``axis -1``. :func:`is_default_axis_label` knows both, so neither is saved
  or shown as a name.
- **Removing layers of different dimensionality** (napari 0.7.x): removing a layer
  changes the number of sliders, and napari's slider panel then repaints the canvas at
  once, before the canvas has dropped the removed layer's visual; the world units of
  the layers left are given to that visual, whose axes they do not cover: IndexError
  in ``_update_world_units`` on every such removal (clearing a viewer holding a
  spectrum image and a 3-D simulation, closing it). :func:`guard_world_units` leaves
  the visuals of removed layers out of that update (napari deletes them right after).
  Harmless where napari orders this itself (0.8 on).
- **Docked widgets** (napari 0.6.2): ``window.dock_widgets``; 0.6.0 and 0.6.1 have only
  the private ``window._dock_widgets`` (the dock frames). :func:`dock_widgets` returns
  the widgets either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

#: how older napari names a layer's axes it was given no labels for (0.6: ``axis -1``)
_DEFAULT_LABEL_PREFIXES = ("axis ", "")


def grid_of(viewer: Any) -> Any:
    """The viewer's grid-mode model: ``viewer.canvas.grid`` (napari >= 0.9) or
    ``viewer.grid`` (before; deprecated in 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if hasattr(canvas, "grid") else viewer.grid


def camera(viewer: Any) -> Any:
    """The viewer's camera model: ``viewer.scene.camera`` (napari >= 0.9) or
    ``viewer.camera`` (before; deprecated in 0.9)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if hasattr(scene, "camera") else viewer.camera


def overlay(viewer: Any, name: str) -> Any:
    """The viewer's canvas overlay ``name`` (``"scale_bar"`` or ``"text"``):
    ``viewer.canvas.overlays[name]`` (napari >= 0.9) or the viewer's own attribute
    (``scale_bar``, ``text_overlay``) before. Raises ``KeyError`` for an unknown name."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    if overlays is not None:
        return overlays[name]
    attribute = {"scale_bar": "scale_bar", "text": "text_overlay"}[name]
    return getattr(viewer, attribute)


def dock_widgets(window: Any) -> Mapping[str, Any]:
    """The widgets docked in a napari window, by dock name: ``window.dock_widgets``
    (napari >= 0.6.2); napari 0.6.0 and 0.6.1 have only the private mapping to the dock
    frames (``window._dock_widgets``), whose Qt widget is returned (for a magicgui widget,
    its ``native`` Qt widget; for a widget napari-emd moved into a scroll area, the
    widget itself, as napari's ``inner_widget`` gives it)."""
    docks = getattr(window, "dock_widgets", None)
    if docks is not None:
        return docks
    out = {}
    for name, dock in window._dock_widgets.items():
        inner = dock.widget()
        magic = getattr(inner, "_magic_widget", None)
        out[name] = getattr(magic, "native", magic) if magic is not None else inner
    return out


class _RenameRelay:
    """Stands in for ``LayerList.events.renamed`` (napari < 0.7): calls its slots when any
    layer in the list, present or added later, changes its name. It connects to the
    layers only while it has slots, so a disconnected relay keeps nothing alive."""

    def __init__(self, layers: Any) -> None:
        self._layers = layers
        self._slots: list[Callable[..., Any]] = []

    def connect(self, slot: Callable[..., Any]) -> None:
        """Call ``slot(event)`` on every rename from now on."""
        if not self._slots:
            self._layers.events.inserted.connect(self._watch)
            self._layers.events.removed.connect(self._unwatch)
            for layer in self._layers:
                layer.events.name.connect(self._emit)
        self._slots.append(slot)

    def disconnect(self, slot: Callable[..., Any]) -> None:
        """Stop calling ``slot``; raises ``ValueError`` if it was not connected."""
        self._slots.remove(slot)
        if self._slots:
            return
        for emitter, handler in ((self._layers.events.inserted, self._watch),
                                 (self._layers.events.removed, self._unwatch)):
            emitter.disconnect(handler)
        for layer in self._layers:
            layer.events.name.disconnect(self._emit)

    def _watch(self, event: Any) -> None:
        event.value.events.name.connect(self._emit)

    def _unwatch(self, event: Any) -> None:
        event.value.events.name.disconnect(self._emit)

    def _emit(self, event: Any = None) -> None:
        for slot in list(self._slots):
            slot(event)


def layers_renamed(layers: Any) -> Any:
    """An emitter (``connect``/``disconnect``) that fires when a layer of ``layers`` (a
    napari ``LayerList``) is renamed: napari's own ``events.renamed`` (napari >= 0.7), else
    a relay of every layer's ``events.name``. Keep the returned object to disconnect."""
    renamed = getattr(layers.events, "renamed", None)
    return renamed if renamed is not None else _RenameRelay(layers)


def converts_units(viewer: Any) -> bool:
    """Whether napari puts layers of different units on one world scale (napari >= 0.7:
    ``viewer.layers.units``); before, world coordinates are each layer's own numbers."""
    return hasattr(viewer.layers, "units")


def world_units(viewer: Any) -> tuple[Any, ...]:
    """The unit of each world axis of the viewer (a pint unit, or ``None`` where the
    layers disagree and napari does not convert). napari >= 0.7 says it
    (``viewer.layers.units``); before, an axis is in the unit every layer on it shares,
    since napari uses each layer's numbers as they are."""
    if converts_units(viewer):
        units = viewer.layers.units
        if units is not None:
            return tuple(units)
    ndim = viewer.dims.ndim
    found: list[set[str]] = [set() for _ in range(ndim)]
    first: list[Any] = [None] * ndim
    for layer in viewer.layers:
        units = getattr(layer, "units", None)
        if units is None:
            continue
        offset = ndim - layer.ndim
        for i, unit in enumerate(units):
            found[offset + i].add(str(unit))
            if first[offset + i] is None:
                first[offset + i] = unit
    return tuple(first[i] if len(found[i]) == 1 else None for i in range(ndim))


def label_scale_bar(viewer: Any) -> None:
    """Show the layers' length unit on the scale bar where napari does not (napari < 0.7,
    whose scale bar shows a unit only when told one): the unit of the displayed x axis,
    when every layer shares it. napari >= 0.7 does this itself: nothing changes there."""
    if converts_units(viewer):
        return
    units = world_units(viewer)
    unit = units[-1] if units else None
    if unit is None or str(unit) == "pixel":
        return
    with contextlib.suppress(Exception):  # a unit the scale bar cannot show: none
        overlay(viewer, "scale_bar").unit = str(unit)


def is_default_axis_label(label: Any, index: int, ndim: int) -> bool:
    """Whether ``label`` names nothing: empty, ``None`` or the name napari gives axis
    ``index`` of an ``ndim``-D layer that was given none (its negative index: ``-2`` in
    napari >= 0.7, ``axis -2`` in 0.6), so it must not be saved or shown as a name."""
    text = "" if label is None else str(label).strip()
    back = str(index - ndim)
    return text in {"", "None"} | {f"{prefix}{back}" for prefix in _DEFAULT_LABEL_PREFIXES}


def names_sliders_from_layers(viewer: Any) -> bool:
    """Whether napari names the viewer's sliders from the layers' ``axis_labels`` itself
    (napari >= 0.9, which has ``LayerList.axis_labels``)."""
    return hasattr(type(viewer.layers), "axis_labels")


def sync_axis_labels(viewer: Any) -> None:
    """Name the viewer's sliders from its layers' ``axis_labels`` (right-aligned, as napari
    aligns layers; the first layer to name an axis wins) where napari does not do it
    (before 0.9); axes no layer names keep their label. A no-op on newer napari."""
    if names_sliders_from_layers(viewer):
        return
    ndim = viewer.dims.ndim
    labels = list(viewer.dims.axis_labels)
    named = [False] * ndim
    for layer in viewer.layers:
        offset = ndim - layer.ndim
        for i, label in enumerate(getattr(layer, "axis_labels", ())):
            axis = offset + i
            if named[axis] or is_default_axis_label(label, i, layer.ndim):
                continue
            labels[axis], named[axis] = str(label), True
    if tuple(labels) != tuple(viewer.dims.axis_labels):
        viewer.dims.axis_labels = tuple(labels)


def guard_world_units(viewer: Any) -> None:
    """Let ``viewer``'s canvas update its world units without the visuals of layers
    already removed from ``viewer.layers`` (see the module docstring: napari 0.7 raised
    IndexError there). A no-op without a Qt canvas or on a canvas without world units
    (napari 0.6), and done once per canvas."""
    canvas = getattr(getattr(getattr(viewer, "window", None), "_qt_viewer", None),
                     "canvas", None)
    update = getattr(canvas, "_update_world_units", None)
    visuals = getattr(canvas, "layer_to_visual", None)
    if update is None or not isinstance(visuals, dict) or getattr(update, "_emd", False):
        return

    def guarded() -> None:
        layers = list(viewer.layers)
        gone = {k: v for k, v in visuals.items() if not any(k is ly for ly in layers)}
        for k in gone:
            del visuals[k]
        try:
            update()
        finally:
            visuals.update(gone)  # napari's own removal of them follows

    guarded._emd = True  # type: ignore[attr-defined]
    canvas._update_world_units = guarded


def fit_view(viewer: Any, layers: list[Any]) -> None:
    """Fit the view to ``layers`` only: ``viewer.reset_view(layers=...)`` (napari >= 0.6.2);
    before, and where napari fails on it (up to 0.9.2 at least, ``layers`` with fewer
    dimensions than the viewer raise IndexError: an image opened after a spectrum image
    stayed zoomed on the earlier scan), the view is reset to every layer and then
    centred and zoomed onto the displayed extent of ``layers`` (hidden layers count in
    napari's own extent)."""
    try:
        viewer.reset_view(layers=layers)
        return
    except (TypeError, IndexError):
        pass
    import numpy as np

    viewer.reset_view()
    lo, hi, all_lo, all_hi = _extents_2d(viewer, layers)
    size = np.maximum(hi - lo, 1e-12)
    cam = camera(viewer)
    cam.center = tuple(float(c) for c in (lo + hi) / 2)
    cam.zoom = float(cam.zoom * np.min((all_hi - all_lo) / size))


def _extents_2d(viewer: Any, layers: list[Any]) -> tuple[Any, Any, Any, Any]:
    """The on-screen (last two) world extents of ``layers`` and of every layer, in the
    camera's units: napari converts layers in nm and µm to one unit (0.7 on), while a
    layer's own extent keeps its unit."""
    import numpy as np

    full = viewer.layers.extent
    try:
        sub = viewer.layers.get_extent(layers)
    except AttributeError:  # napari without LayerList.get_extent
        sub = None
    if sub is None:
        ours = np.array([np.asarray(ly.extent.world)[:, -2:] for ly in layers])
        lo, hi = ours[:, 0].min(axis=0), ours[:, 1].max(axis=0)
    else:
        lo, hi = np.asarray(sub.world)[:, -2:]
        to, frm = getattr(full, "units", None), getattr(sub, "units", None)
        if to and frm:
            factor = float((1 * frm[-1]).to(to[-1]).magnitude)
            lo, hi = lo * factor, hi * factor
    all_lo, all_hi = np.asarray(full.world)[:, -2:]
    return lo, hi, all_lo, all_hi


__all__ = [
    "camera",
    "converts_units",
    "dock_widgets",
    "fit_view",
    "grid_of",
    "guard_world_units",
    "is_default_axis_label",
    "label_scale_bar",
    "layers_renamed",
    "names_sliders_from_layers",
    "overlay",
    "sync_axis_labels",
    "world_units",
]
