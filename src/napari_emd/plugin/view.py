"""The first view of napari-emd layers in a viewer, and what it keeps up to date.

When napari adds a layer napari-emd made (by drag and drop, ``viewer.open``, the loader
or a sample), :class:`Presenter`, one per viewer, sets its first view up:

- a big lazy spectrum image whose energy-plane index is not built yet opens hidden; its
  index is built in a worker with napari progress (removing the layer stops it), a
  preview of its first plane shows after the first pass, and the layer when the index
  is ready (:mod:`.indexing`);
- a spectrum image's energy slider goes to its strongest characteristic peak (decided
  by the reader from the file), and its contrast is set from that plane once computed
  (in a worker thread for a lazy cube, so opening never waits for decoding);
- the size-1 filler axes of every napari-emd layer are widened to the full range of
  their slider (:mod:`.world`), so a layer shows at every position of sliders it has
  no axis for;
- the energies of the energy sliders are shown in keV / eV in the canvas's text
  overlay, updated as the sliders move;
- an in-memory stack opens on a plane with signal (not an empty angle bin or slice),
  with that plane's contrast; a sparse spectrum image opens hidden under its HAADF;
- the scale bar comes on for the first calibrated layer;
- reciprocal-space layers that would meet real-space ones go to a companion window
  (:meth:`Presenter.open_elsewhere`, called by :mod:`.viewer_setup`); when layers in
  real and in reciprocal space still share the viewer, napari cannot give them one
  scale bar: a notification says so once, naming the layers.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from typing import Any

import numpy as np

from . import compat, indexing, look, world
from .layer_meta import EMDLayerInfo, is_si_layer, layer_info

#: The contrast a lazy spectrum image opens with, until its first plane is computed.
PLACEHOLDER_LIMITS = (0.0, 1.0)

_PRESENTERS: weakref.WeakKeyDictionary[Any, Presenter] = weakref.WeakKeyDictionary()
#: The companion viewers made for reciprocal-space layers (:meth:`Presenter.open_elsewhere`).
COMPANIONS: weakref.WeakSet[Any] = weakref.WeakSet()


def _model(viewer: Any) -> Any:
    """The viewer behind napari's public-only proxy (widgets get a proxy)."""
    return getattr(viewer, "__wrapped__", viewer)


def energy_axis(viewer: Any, layer: Any) -> int | None:
    """The viewer (world) axis of a spectrum-image layer's energy, or ``None``."""
    info = layer_info(layer)
    if info is None or not info.is_spectrum_image:
        return None
    rec = info.record
    energy = rec.data.ndim - 3  # of the record's display array (..., E, y, x)
    data_axis = (info.record_axes.index(energy) if info.record_axes else layer.ndim - 3)
    return data_axis + viewer.dims.ndim - layer.ndim


def energy_of_world(viewer: Any, layer: Any, value: float) -> float:
    """A world position on the energy axis in the layer's own energy unit."""
    axis = energy_axis(viewer, layer)
    return _convert(viewer, layer, axis, value, to_layer=True)


def _convert(viewer: Any, layer: Any, axis: int | None, value: float, to_layer: bool) -> float:
    """Convert ``value`` between the viewer's unit of ``axis`` and the layer's own (napari
    expresses a slider in one unit for all layers)."""
    if axis is None:
        return value
    world_unit = compat.world_units(viewer)[axis]
    layer_units = getattr(layer, "units", None)
    if world_unit is None or layer_units is None:
        return value
    data_axis = axis - (viewer.dims.ndim - layer.ndim)
    with contextlib.suppress(Exception):
        a, b = layer_units[data_axis], world_unit
        return float((value * (b if to_layer else a)).to(a if to_layer else b).magnitude)
    return value


def focus_energy(viewer: Any, layer: Any, energy: float | None = None) -> bool:
    """Put the energy slider of a spectrum-image layer on ``energy`` (in the layer's
    unit; default: the peak the reader chose). Returns whether it moved."""
    info = layer_info(layer)
    axis = energy_axis(viewer, layer)
    if energy is None and info is not None:
        energy = info.peak_energy
    if energy is None or axis is None:
        return False
    value = _convert(viewer, layer, axis, float(energy), to_layer=False)
    lo, hi = viewer.dims.range[axis][:2]
    viewer.dims.set_point(axis, float(np.clip(value, lo, hi)))
    return True


def refresh_fillers(viewer: Any) -> None:
    """Widen the size-1 filler axes of napari-emd layers to their slider's full range."""
    from .layers import _existing_axes

    layers = [ly for ly in viewer.layers if layer_info(ly) is not None
              and layer_info(ly).world_keys]
    extents = world.slot_extents(_existing_axes(layers))
    for ly in layers:
        info = layer_info(ly)
        scale, translate = list(ly.scale), list(ly.translate)
        changed = False
        for i, (key, rec) in enumerate(zip(info.world_keys, info.record_axes)):
            if rec is not None or key not in extents:
                continue
            sc, tr = world.singleton_extent(*extents[key])
            if not (np.isclose(scale[i], sc) and np.isclose(translate[i], tr)):
                scale[i], translate[i] = sc, tr
                changed = True
        if changed:
            ly.scale, ly.translate = scale, translate


def energy_readout(viewer: Any) -> str:
    """The energy of every energy slider of a shown file, e.g. ``"EDS energy 8.05
    keV"`` (the slider of an earlier file, all hidden, moves nothing in view)."""
    parts, seen = [], set()
    shown = {layer_info(ly).source for ly in viewer.layers
             if ly.visible and layer_info(ly) is not None}
    for ly in viewer.layers:
        axis = energy_axis(viewer, ly)
        if axis is None or axis in seen or layer_info(ly).source not in shown:
            continue
        seen.add(axis)
        info = layer_info(ly)
        value = energy_of_world(viewer, ly, float(viewer.dims.point[axis]))
        units = str(ly.units[axis - (viewer.dims.ndim - ly.ndim)])
        units = {"kiloelectron_volt": "keV", "electron_volt": "eV"}.get(units, units)
        key = info.world_keys[axis - (viewer.dims.ndim - ly.ndim)] if info.world_keys else ""
        digits = 3 if units == "keV" else 1
        parts.append(f"{world.slot_label(key, 'Energy')} {value:.{digits}f} {units}")
    return " · ".join(parts)


def layer_space(unit: Any) -> str:
    """``"reciprocal"`` for a 1/length unit (as napari or a file spells it), else
    ``"real"``."""
    text = str(unit)
    return "reciprocal" if ("1 /" in text or text.startswith("1/") or "/ " in text) else "real"


class Presenter:
    """Sets up the first view of napari-emd layers added to one viewer (see the module
    docstring); :func:`install` makes one per viewer."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.workers: list[Any] = []
        # the plane indexes being built (indexing.IndexBuild), by layer id
        self.indexing: dict[int, Any] = {}
        # files with nothing to show as an image: their spectra and tables, by file
        self.files: dict[str, EMDLayerInfo] = {}
        self._warned: set[frozenset[str]] = set()
        self._focused: dict[tuple[Any, str], int] = {}
        self._bar_done = False  # the scale bar was switched on for a calibrated layer
        self.companion: Any = None  # the window of reciprocal-space layers (open_elsewhere)
        # the table docks of each file in `files`, closed with it (close_files)
        self.docks: dict[str, list[Any]] = {}
        # called (weakly) when `files` or `indexing` change: the spectrum viewer lists
        # the files' spectra, the loader follows the index builds of what it loaded
        self.listeners: list[weakref.WeakMethod[Any]] = []
        # grid mode follows what is shown (update_grid) until set by hand or overridden
        self.grid_auto = True
        self._setting_grid = False
        # the files (real paths) the view is fitted to as their layers come (fit_to)
        self._fit_paths: set[str] = set()
        viewer.layers.events.inserted.connect(self._inserted)
        viewer.layers.events.removed.connect(self._changed)
        viewer.dims.events.current_step.connect(self._update_readout)
        with contextlib.suppress(Exception):
            compat.grid_of(viewer).events.enabled.connect(self._grid_toggled)
        compat.guard_world_units(viewer)  # napari 0.7: removing layers raised

    def _inserted(self, event: Any) -> None:
        layer = event.value
        layer.events.visible.connect(self._label_hidden_sliders)
        layer.events.visible.connect(self._update_readout)
        self._follow_layers()
        info = layer_info(layer)
        if info is None:
            return
        refresh_fillers(self.viewer)
        if not info.presented:
            info.presented = True
            self.present(layer)
            self._show_scale_bar(layer)
        self._check_units()
        self._update_readout()
        self._fit(layer)

    def fit_to(self, paths: set[str]) -> None:
        """Fit the view to the layers of ``paths`` (real paths) as they are added: a file
        opened after others opens fitted to its own scan, not to the extent of every
        file (hidden layers count in napari's extent)."""
        self._fit_paths = set(paths)

    def _fit(self, layer: Any) -> None:
        import os

        src = layer_info(layer).source if layer_info(layer) is not None else ""
        if not self._fit_paths or not src or os.path.realpath(src) not in self._fit_paths:
            return
        mine = [ly for ly in self.viewer.layers if ly.visible
                and (o := layer_info(ly)) is not None and o.source
                and os.path.realpath(o.source) in self._fit_paths]
        if mine:
            with contextlib.suppress(Exception):  # a view that cannot fit is no error
                compat.fit_view(self.viewer, mine)

    def show_file(self, info: EMDLayerInfo) -> None:
        """Show a file that has no image: its spectra in the spectrum viewer (opened if
        needed, the first spectrum plotted) and each table in a table dock (tabified
        with the other docks in a narrow window)."""
        self.files[info.source] = info
        self.tell_listeners()
        window = getattr(self.viewer, "window", None)
        if window is None:
            return
        from .widgets.docking import add_dock, add_plugin_dock

        if info.spectra:
            _, widget = add_plugin_dock(self.viewer, "Spectrum viewer")
            with contextlib.suppress(AttributeError):
                widget.show_file_spectra(info)
        from .widgets.table import TableView

        for title, values in info.tables.items():
            dock = add_dock(self.viewer, TableView(title, values, info.source),
                            f"{info.title}: {title}")
            self.docks.setdefault(info.source, []).append(dock)

    def close_files(self, keep: Any = ()) -> None:
        """Forget the files without an image (spectra and tables) except ``keep``: their
        spectra leave the spectrum viewer and their table docks close. A file without
        an image has no layer to remove, so it stays open until the next file opens."""
        gone = [src for src in self.files if src not in keep]
        for src in gone:
            del self.files[src]
            for dock in self.docks.pop(src, []):
                with contextlib.suppress(Exception):
                    self.viewer.window.remove_dock_widget(dock)
        if gone:
            self.tell_listeners()

    def tell_listeners(self) -> None:
        for ref in list(self.listeners):
            method = ref()
            if method is None:
                self.listeners.remove(ref)
                continue
            with contextlib.suppress(RuntimeError):  # its Qt widget was deleted
                method()

    def update_grid(self, adding: Any = ()) -> None:
        """Grid mode on when what is shown is best seen side by side (several
        independent images, :func:`side_by_side`), off otherwise: it follows the open
        layers (and the layer tuples being ``adding``), not the first file opened.
        Set by hand (the grid button) or by ``napari-emd view --grid``, it stays."""
        if not self.grid_auto:
            return
        shown = [*(_as_tuple(ly) for ly in self.viewer.layers), *adding]
        on = side_by_side(shown)
        grid = compat.grid_of(self.viewer)
        if bool(grid.enabled) == on:
            return
        self._setting_grid = True
        try:
            grid.enabled = on  # like Velox's panels: every image in view
            if on:
                with contextlib.suppress(Exception):  # napari >= 0.6
                    grid.spacing = 0.05
        finally:
            self._setting_grid = False

    def _grid_toggled(self, event: Any = None) -> None:
        if not self._setting_grid:
            self.grid_auto = False  # the user's choice stays

    def _follow_layers(self) -> None:
        """What newer napari does itself when layers come and go (see :mod:`.compat`):
        name the sliders from the layers' axis labels, put their unit on the scale bar."""
        compat.sync_axis_labels(self.viewer)
        compat.label_scale_bar(self.viewer)
        self._label_hidden_sliders()

    def _label_hidden_sliders(self, event: Any = None) -> None:
        """Sliders only the layers of hidden files use (files none of whose layers is
        shown) say which file they belong to (:func:`.world.hidden_slider_labels`)."""
        uses, shown = [], set()
        for ly in self.viewer.layers:
            info = layer_info(ly)
            n_lead = len(info.record_axes) if info is not None else 0
            real = [info.record_axes[i] is not None if i < n_lead else True
                    for i in range(ly.ndim)] if info is not None else [True] * ly.ndim
            name = os.path.splitext(os.path.basename(info.source))[0] if info else ly.name
            uses.append((name, real))
            if ly.visible:
                shown.add(name)
        # a file's own hidden SI (under its maps) is no hidden file: shown by file
        uses = [(name in shown, name, real) for name, real in uses]
        dims = self.viewer.dims
        labels = world.hidden_slider_labels([str(x) for x in dims.axis_labels], uses)
        if tuple(labels) != tuple(dims.axis_labels):
            dims.axis_labels = tuple(labels)

    def _changed(self, event: Any = None) -> None:
        job = self.indexing.pop(id(getattr(event, "value", None)), None)
        if job is not None:  # a layer removed while its index builds: stop building
            job.stop.set()
        self._follow_layers()
        refresh_fillers(self.viewer)
        self._update_readout()
        self.update_grid()

    def present(self, layer: Any) -> None:
        """The first view of one spectrum-image layer: energy slider on its strongest
        peak, and the contrast of that plane. For a lazy cube both are worked out in a
        worker thread (the peak from one chunk of the cube when the file has no summed
        spectrum), so opening never waits for decoding."""
        info = layer_info(layer)
        if info is None:
            return
        if not info.is_spectrum_image:
            self._open_on_signal(layer, info)
            return
        if info.indexing:
            self.build_index(layer, info)
            return
        if info.peak_energy is not None:
            self._focus(layer, info)
            if isinstance(layer.data, np.ndarray):
                # the reader set the contrast of that plane already
                index = self._data_index(layer)
                if index is not None:
                    self._hide_if_sparse(layer, info, layer.data[index])
                return
        elif isinstance(layer.data, np.ndarray):
            return
        data, record, peak = layer.data, info.record, info.peak_energy

        def work() -> tuple[float | None, np.ndarray | None]:
            energy = peak if peak is not None else look.chunk_peak(record)
            index = self._plane_index(layer, energy)
            if index is None:
                return energy, None
            block = data[index]
            return energy, np.asarray(block.compute() if hasattr(block, "compute") else block)

        def done(result: tuple[float | None, np.ndarray | None]) -> None:
            energy, values = result
            if info.peak_energy is None and energy is not None:
                info.peak_energy, info.peak_confidence = energy, look.LIKELY
                self._focus(layer, info)
            limits = look.robust_limits(values) if values is not None else None
            if values is not None:
                self._hide_if_sparse(layer, info, values)
            if limits is not None and tuple(layer.contrast_limits) == PLACEHOLDER_LIMITS:
                layer.contrast_limits_range = (min(0.0, limits[0]),
                                               max(limits[1], float(values.max(initial=1))))
                layer.contrast_limits = limits

        from napari.qt.threading import create_worker

        worker = create_worker(work, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(done)
        worker.finished.connect(lambda: self.workers.remove(worker)
                                if worker in self.workers else None)
        self.workers.append(worker)
        worker.start()

    def build_index(self, layer: Any, info: EMDLayerInfo) -> None:
        """Build the energy-plane index of a hidden lazy spectrum image in a worker, a
        preview of its first plane shown on the way (:mod:`.indexing`)."""
        indexing.start(self, layer, info)

    def _open_on_signal(self, layer: Any, info: EMDLayerInfo) -> None:
        """The first view of an in-memory stack (prismatic's detector bins and depth
        slices, a 4D-STEM cube): when the plane the sliders show is weak (an empty
        angle bin or slice), move the layer's sliders to the nearest plane with signal;
        then take the contrast from the plane shown, not from the whole stack (whose
        strongest planes would leave the shown one black)."""
        data = layer.data
        rec = info.record
        if (not isinstance(data, np.ndarray) or data.ndim <= 2 or rec is None
                or rec.saved is not None or info.derived is not None
                or getattr(layer, "rgb", False) or data.dtype.kind not in "biuf"):
            return  # saved layers keep their state; maps and RGB are not stacks
        index = self._data_index(layer)
        if index is None:
            return
        target = look.plane_with_signal(look.plane_strengths(data, data.ndim - 2), index)
        if target is not None:
            offset = self.viewer.dims.ndim - layer.ndim
            for i, (now, new) in enumerate(zip(index, target)):
                if now != new:
                    value = float(layer.translate[i] + layer.scale[i] * new)
                    self.viewer.dims.set_point(i + offset, value)
            index = self._data_index(layer) or target
        limits = look.robust_limits(data[index])
        if limits is None or not np.isfinite(data[index]).any():
            return
        finite = data[np.isfinite(data)] if data.dtype.kind == "f" else data
        lo, hi = float(finite.min()), float(finite.max())
        layer.contrast_limits_range = (min(lo, limits[0]), max(hi, limits[1]))
        layer.contrast_limits = limits

    def _hide_if_sparse(self, layer: Any, info: EMDLayerInfo, values: Any) -> None:
        """Hide a spectrum image whose opening plane holds a few stray counts (a black
        canvas with a few bright pixels) when its file shows an image of the scan (the
        HAADF) in this viewer: that image is what tells the scan; the SI stays one click
        away and its spectra and maps are the spectrum viewer's."""
        if not layer.visible or not look.sparse_plane(np.asarray(values)):
            return
        images = [ly.name for ly in self.viewer.layers
                  if ly is not layer and ly.visible and (o := layer_info(ly)) is not None
                  and o.source == info.source and not o.is_spectrum_image]
        if not images:
            return
        layer.visible = False
        from napari.utils.notifications import show_info

        show_info(
            f"napari-emd: {layer.name} holds a few stray counts per plane at the energy it "
            f"opens on, so it opens hidden under {', '.join(images)}; show it in the "
            "layer list, or make element maps (energy-window sums) in the spectrum viewer."
        )

    def _show_scale_bar(self, layer: Any) -> None:
        """Switch the viewer's scale bar on for the first calibrated napari-emd image
        (its screen axes in a physical unit), once: a user who hides it keeps it hidden."""
        if self._bar_done:
            return
        units = getattr(layer, "units", None)
        if units is None or layer.ndim < 2 or any(str(u) == "pixel" for u in units[-2:]):
            return
        self._bar_done = True
        with contextlib.suppress(Exception):
            compat.overlay(self.viewer, "scale_bar").visible = True

    def open_elsewhere(self, layers: list[Any], kept: list[str]) -> Any:
        """Open reciprocal-space layer tuples in this viewer's companion window (made on
        first use, made again when closed), with their own presenter: napari has one
        world and one scale bar per viewer. ``kept``: the names of the layers this
        viewer gets, for the notification. Returns the companion viewer."""
        import napari
        from napari.layers import Layer
        from napari.utils.notifications import show_info

        companion = self.companion
        if companion is None or not hasattr(companion.window, "_qt_window"):
            show = True
            with contextlib.suppress(Exception):
                show = bool(self.viewer.window._qt_window.isVisible())
            companion = napari.Viewer(title="napari-emd: reciprocal space", show=show)
            self.companion = companion
            COMPANIONS.add(companion)
            # napari's current viewer is the newest window: the next file dropped or
            # opened must still go to this viewer, not the companion
            with contextlib.suppress(Exception):
                self.viewer.window.activate()
                from qtpy.QtWidgets import QApplication

                QApplication.processEvents()
        install(companion)
        names = []
        for data, kw, kind in layers:
            kw = {k: v for k, v in kw.items() if k != "visible"}  # shown in its own window
            companion.add_layer(Layer.create(data, kw, kind))
            names.append(kw.get("name", kind))
        with contextlib.suppress(Exception):
            compat.overlay(companion, "scale_bar").visible = True
        show_info(
            f"napari-emd: {', '.join(names)} (reciprocal space) opened in a window of its "
            f"own, 'napari-emd: reciprocal space'; {', '.join(kept) or 'the images'} (real "
            "space) stay in this one: napari has one scale bar per viewer."
        )
        return companion

    def _focus(self, layer: Any, info: EMDLayerInfo) -> None:
        """Move the energy slider to the layer's opening energy, unless a surer one of
        the same file is already shown there (three EELS ranges share one slider)."""
        key = (energy_axis(self.viewer, layer), info.source)
        if info.peak_confidence >= self._focused.get(key, -1):
            self._focused[key] = info.peak_confidence
            focus_energy(self.viewer, layer)

    def _plane_index(self, layer: Any, energy: float | None) -> tuple[int, ...] | None:
        """The index of the plane at ``energy`` (the viewer's current plane of the other
        slider axes)."""
        index = self._data_index(layer)
        axis = energy_axis(self.viewer, layer)
        if index is None or axis is None or energy is None:
            return index
        i = axis - (self.viewer.dims.ndim - layer.ndim)
        step = (energy - layer.translate[i]) / layer.scale[i]
        return (*index[:i], int(np.clip(np.rint(step), 0, layer.data.shape[i] - 1)),
                *index[i + 1:])

    def _data_index(self, layer: Any) -> tuple[int, ...] | None:
        """The index of the plane the viewer shows of ``layer`` (its leading axes)."""
        with contextlib.suppress(Exception):
            coords = np.asarray(layer.world_to_data(self.viewer.dims.point), dtype=float)
            lead = coords[: layer.ndim - 2]
            return tuple(int(np.clip(np.rint(c), 0, n - 1))
                         for c, n in zip(lead, layer.data.shape))
        return None

    def _check_units(self) -> None:
        """Say once when real- and reciprocal-space layers share the viewer."""
        groups: dict[str, list[str]] = {}
        for ly in self.viewer.layers:
            units = getattr(ly, "units", None)
            if units is None or ly.ndim < 2 or str(units[-1]) == "pixel":
                continue
            groups.setdefault(layer_space(units[-1]), []).append(ly.name)
        if len(groups) < 2:
            return
        key = frozenset(name for names in groups.values() for name in names)
        if key in self._warned:
            return
        self._warned.add(key)
        from napari.utils.notifications import show_info

        show_info(
            "napari-emd: napari can show one kind of space with a scale bar; these "
            f"layers are in real space: {', '.join(groups['real'])}; these in reciprocal "
            f"space: {', '.join(groups['reciprocal'])}. Show one kind at a time (a "
            "file's reciprocal-space layers open hidden) or open them in another window "
            "to keep calibrated units."
        )

    def _update_readout(self, event: Any = None) -> None:
        text = energy_readout(self.viewer)
        with contextlib.suppress(Exception):
            overlay = compat.overlay(self.viewer, "text")
            if text:
                overlay.text = text
                overlay.position = "top_left"
                overlay.font_size = 12
                overlay.visible = True
            elif overlay.text and ("energy" in overlay.text.lower()):
                overlay.visible = False


def _as_tuple(layer: Any) -> tuple[Any, dict[str, Any], str]:
    """A napari layer as the (data, keywords, kind) :func:`side_by_side` reads."""
    kind = type(layer).__name__.lower()
    return (None, {"name": layer.name, "visible": bool(layer.visible),
                   "blending": str(getattr(layer, "blending", "")),
                   "metadata": layer.metadata}, kind)


def side_by_side(layers: Any) -> bool:
    """Whether layers (data tuples) are best seen side by side (napari's grid): several
    independent images shown, none of them an element map drawn over the others and no
    spectrum image (its maps, regions and annotations are drawn over its scan, which a
    grid would put in cells of their own)."""
    images = [kw for _, kw, kind in layers if kind == "image"]
    shown = [kw for kw in images if kw.get("visible", True)]
    # a spectrum image counts, shown or not, when its scan is shown; another file's
    # hidden one does not
    files = {info.source for kw in shown if (info := layer_info(kw)) is not None}
    if any(is_si_layer(kw) and (kw.get("visible", True) or layer_info(kw).source in files)
           for kw in images):
        return False
    if any(kw.get("blending") == "additive" for kw in shown):
        return False
    return len(shown) >= 2


def install(viewer: Any) -> Presenter:
    """The :class:`Presenter` of ``viewer`` (made on first use)."""
    model = _model(viewer)
    presenter = _PRESENTERS.get(model)
    if presenter is None:
        presenter = _PRESENTERS[model] = Presenter(model)
    return presenter
