"""The spectrum viewer: spectra of a spectrum-image layer on a real energy axis.

It shows the spectrum under the mouse, at a clicked pixel, summed over a Shapes or Labels
region, or summed over the whole map, and the file's own single spectra. Spectra come from
the layer's :class:`~napari_emd.Dataset` record (:func:`..layer_meta.si_record`):
a pixel spectrum is ``record.data[..., y, x, :]`` of the lazy array, so only the pixels
asked for are decoded, in a worker thread (the newest request wins). An energy window,
dragged on the plot or typed, makes an energy-window map layer calibrated like the SI;
X-ray line markers show the chosen elements, and one click maps an element.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from typing import Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ... import xray_lines
from ...errors import Cancelled
from ...model import Dataset
from ...spectra import (
    EnergyAxis,
    energy_axis,
    labels_mask,
    map_sum,
    pixel_spectrum,
    region_sum,
    shapes_mask,
    window_map,
    write_spectrum_csv,
)
from .. import view
from ..layer_meta import KEY, EMDLayerInfo, file_spectra, is_si_layer, source_file
from .docking import scroll_when_docked
from .runner import LatestRunner, cancel_button
from .si_chooser import FollowedLayer, SIChooser, SIOwner, layer_names, relist
from .spectrum_maps import Window, show_map
from .spectrum_netmap import NET_SIGMA, RAW, kind_combo, map_net
from .spectrum_plot import SpectrumPlot, line_label
from .spectrum_pointer import CLICK, MOUSE, PointerMixin
from .spectrum_regions import REGIONS, RegionSpectra
from .spectrum_velox_settings import VeloxSettingsBox

REGION = "sum over a region (Shapes/Labels)"
MAP = "sum over the whole map"
MODES = (MOUSE, CLICK, REGION, REGIONS, MAP)
FILE_PREFIX = "file spectrum: "


def _region_types() -> tuple[type, ...]:
    from napari.layers import Labels, Shapes

    return Shapes, Labels


def _disconnector(viewer: Any, connections: list[tuple[Any, Any]], drag: Any) -> Any:
    """A slot for ``destroyed`` that unhooks a widget from the viewer, so a closed dock
    widget no longer reacts to the mouse or the selection."""

    def disconnect(*_: Any) -> None:
        for signal, slot in connections:
            with contextlib.suppress(TypeError, ValueError, RuntimeError):
                signal.disconnect(slot)
        with contextlib.suppress(ValueError):
            viewer.mouse_drag_callbacks.remove(drag)

    return disconnect


class SpectrumViewer(SIOwner, PointerMixin, QWidget):
    """Dock widget: spectra of the selected spectrum-image layer, energy-window and
    element maps, X-ray line markers, CSV export."""

    spectrum_changed = Signal()
    map_ready = Signal(object)

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        # napari hands widgets a public-only proxy of the viewer, whose layers are proxies
        # too: work on the viewer itself, so a layer is the same object wherever it comes
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.runner = LatestRunner(self._on_error)
        self.map_runner = LatestRunner(self._on_error)
        # the SI's energy axis (set when the SI layer changes; spectra of the SI are
        # computed on it) and the axis of what is plotted now (may be a file spectrum's)
        self.energy: EnergyAxis | None = None
        self.clicked: tuple[int, ...] | None = None
        self._hover: tuple[int, ...] | None = None
        self._sum_cache: dict[str, tuple[Any, np.ndarray]] = {}
        self._region = FollowedLayer(dict.fromkeys(("data", "paint", "selected_label"),
                                                   self._region_edited))
        self._elements_edited = False

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)  # every pixel of a laptop's dock counts
        form = QFormLayout()
        self.layer_combo = SIChooser(self.viewer, "Spectrum-image layer the spectra come from")
        form.addRow("SI layer", self.layer_combo)
        self.mode_combo = QComboBox()
        form.addRow("Spectrum", self.mode_combo)
        self.region_combo = QComboBox()
        self.region_combo.setToolTip("Shapes or Labels layer that outlines the region")
        form.addRow("Region", self.region_combo)
        self.regions = RegionSpectra(self)
        self.scale_combo = self.regions.scale_combo
        form.addRow("Show", self.scale_combo)
        layout.addLayout(form)

        dark = str(getattr(self.viewer, "theme", "dark")) != "light"
        self.plot = SpectrumPlot(self._window_dragged, dark, on_click=self._plot_clicked)
        self.plot.changed.connect(self.spectrum_changed.emit)
        self.plot.setMinimumHeight(180)  # the dock fits a laptop's screen with the loader
        # expanding: the plot takes the dock's height (napari then adds no stretch below)
        self.plot.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        layout.addWidget(self.plot, 1)

        row = QHBoxLayout()
        export = QPushButton("Export…")
        export.setToolTip("Save the spectrum as CSV; region spectra as one CSV and an "
                          "EMSA/MSA file per curve")
        export.clicked.connect(self._export_clicked)
        row.addWidget(self.plot.log_check)
        row.addStretch(1)
        row.addWidget(export)
        layout.addLayout(row)

        win = QHBoxLayout()
        self.win_lo = QDoubleSpinBox()
        self.win_hi = QDoubleSpinBox()
        for s in (self.win_lo, self.win_hi):
            s.setDecimals(3)
            # neither its range's digits nor napari's style (min-width 70 px plus
            # padding) may widen the dock past a laptop's share
            s.setStyleSheet("QDoubleSpinBox { min-width: 50px; }")
            s.setMaximumWidth(80)
            s.setButtonSymbols(QDoubleSpinBox.NoButtons)
            s.setToolTip("Energy window to map (or drag across the plot)")
            s.setRange(-1e6, 1e6)
            s.setKeyboardTracking(False)
        self.win_units = QLabel("")
        map_btn = QPushButton("Map window")
        map_btn.setToolTip("Add (or update) a map of the counts in this energy window")
        map_btn.clicked.connect(lambda: self._window_dragged(self.win_lo.value(),
                                                              self.win_hi.value()))
        win.addWidget(QLabel("Window"))
        win.setSpacing(4)
        win.addWidget(self.win_lo)
        win.addWidget(QLabel("–"))
        win.addWidget(self.win_hi)
        win.addWidget(self.win_units)
        win.addStretch(1)
        layout.addLayout(win)

        el = QHBoxLayout()
        self.elements_edit = QLineEdit()
        self.elements_edit.setPlaceholderText("elements, e.g. Fe, Cu, O")
        self.elements_edit.setToolTip("Elements whose X-ray lines are marked on the plot")
        self.elements_edit.editingFinished.connect(self._elements_typed)
        self.element_combo = QComboBox()
        el_btn = QPushButton("Map element")
        el_btn.setToolTip("Map the element's main line: net counts (background "
                          "subtracted) or the raw window sum")
        self.map_kind = kind_combo()
        el_btn.clicked.connect(self._element_clicked)
        el.addWidget(QLabel("Lines"))
        el.addWidget(self.elements_edit, 1)
        el.addWidget(self.map_kind)
        layout.addLayout(el)
        # the map buttons on a row of their own: the dock stays narrow (a laptop's canvas)
        maps = QHBoxLayout()
        maps.setSpacing(4)
        maps.addWidget(self.element_combo)
        maps.addWidget(el_btn)
        maps.addStretch(1)
        maps.addWidget(map_btn)
        layout.addLayout(maps)
        self.cancel_btn = cancel_button([self.runner, self.map_runner, self.regions.runner])
        row.insertWidget(2, self.cancel_btn)
        self.velox_settings = VeloxSettingsBox()
        layout.addWidget(self.velox_settings)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        for combo in (self.mode_combo, self.region_combo,
                      self.element_combo, self.scale_combo, self.map_kind):
            # long layer and file names must not widen the dock (and squeeze the canvas)
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(4)

        self.layer_combo.currentIndexChanged.connect(self._si_layer_changed)
        self.layer_combo.layers_changed.connect(self._refresh_layers)
        self.mode_combo.currentIndexChanged.connect(self._mode_changed)
        self.region_combo.currentIndexChanged.connect(self._region_changed)
        connections = [
            (self.viewer.layers.selection.events.active, self._active_changed),
            (self.viewer.cursor.events.position, self._cursor_moved),
            (self.viewer.dims.events.current_step, self._slider_moved),
            (self.viewer.dims.events.current_step, self._update_marker),
        ]
        for signal, slot in connections:
            signal.connect(slot)
        self.viewer.mouse_drag_callbacks.append(self._mouse_pressed)
        self.destroyed.connect(_disconnector(self.viewer, connections, self._mouse_pressed))
        self.destroyed.connect(self.regions.unwatch)
        self.destroyed.connect(self._region.drop)
        # the files without an image come and go (view.Presenter.close_files)
        view.install(self.viewer).listeners.append(weakref.WeakMethod(self._refresh_layers))
        self._refresh_layers()
        self._active_changed()
        scroll_when_docked(self, wide=self.plot)  # it scrolls; sideways below the canvas

    def show_file_spectra(self, info: EMDLayerInfo) -> None:
        """List a file's spectra (a file with no image) and plot the first."""
        self._refresh_layers()
        first = next((f"{FILE_PREFIX}{sp.get('title')}" for sp in info.spectra), None)
        if first is not None and self.mode_combo.findText(first) >= 0:
            self.set_mode(first)

    # ---- what is plotted --------------------------------------------------------------
    @property
    def spectrum(self) -> np.ndarray | None:
        """The plotted spectrum (counts per channel), or ``None``."""
        return self.plot.spectrum

    @property
    def shown_energy(self) -> EnergyAxis | None:
        """The energy axis of the plotted spectrum."""
        return self.plot.shown_energy

    @property
    def spectrum_title(self) -> str:
        """What the plotted spectrum is (layer and pixel, region or file spectrum)."""
        return self.plot.title

    def _show(self, spec: np.ndarray | None, title: str, energy: EnergyAxis | None) -> None:
        self.plot.plot(spec, title, energy)
        if spec is not None and energy is not None:
            self.status.setText(title)

    # ---- layers ------------------------------------------------------------------------
    def _refresh_layers(self, event: Any = None) -> None:
        cur = self.si_layer
        new = getattr(event, "value", None) if getattr(event, "type", "") == "inserted" \
            else None
        if new is not None and is_si_layer(new) and (
                cur is None or source_file(new) != source_file(cur)):
            cur = new  # another file's spectrum image came: its spectra are wanted now
        kept = self.layer_combo.refresh(cur)
        names = self.layer_combo.listed
        if cur is not None and not kept:
            self._si_layer_changed()  # the shown SI layer is gone

        mode = self.mode_combo.currentText()
        self.mode_combo.blockSignals(True)
        self.mode_combo.clear()
        self.mode_combo.addItems(list(MODES))
        layers = list(self.viewer.layers)
        if self.si_layer is not None:  # its file's spectra first
            layers.insert(0, self.si_layer)
        layers += [{"metadata": {KEY: info}} for info in view.install(self.viewer).files.values()]
        self._spectra = {f"{FILE_PREFIX}{label}": sp for label, sp in file_spectra(layers).items()}
        self.mode_combo.addItems(list(self._spectra))
        if self.mode_combo.findText(mode) >= 0:
            self.mode_combo.setCurrentText(mode)
        elif not names and self._spectra:
            self.mode_combo.setCurrentText(next(iter(self._spectra)))
        self.mode_combo.blockSignals(False)

        relist(self.region_combo, layer_names(self.viewer, *_region_types()),
               self.region_combo.currentText())
        self.regions.watch()
        self._region_changed()
        if cur != self.layer_combo.currentText() or not self.spectrum_title:
            self._si_layer_changed()

    def _active_changed(self, event: Any = None) -> None:
        layer = self.viewer.layers.selection.active
        if layer is None:
            return
        if is_si_layer(layer) and layer.name != self.layer_combo.currentText():
            self.set_si_layer(layer)
        elif isinstance(layer, _region_types()):
            i = self.region_combo.findText(layer.name)
            if i >= 0:
                self.region_combo.setCurrentIndex(i)

    def _si_layer_changed(self, *_: Any) -> None:
        self._hover = None
        self.clicked = None
        rec = self.record
        self.velox_settings.show_record(rec)
        self.plot.show_background([])
        if rec is not None:
            self.energy = energy_axis(rec.axes[-1], rec.signal_type)
            self.win_units.setText(self.energy.units)
            lo, hi = float(self.energy.values.min()), float(self.energy.values.max())
            for s in (self.win_lo, self.win_hi):
                s.setRange(lo, hi)
                values = self.energy.values
                step = abs(values[1] - values[0]) if len(values) > 1 else 1.0
                s.setSingleStep(step)
            if not self._elements_edited:
                els = (rec.metadata.get("Sample") or {}).get("elements") or []
                self.set_elements(xray_lines.parse_elements(list(els)), edited=False)
        self._mode_changed()

    def _region_changed(self, *_: Any) -> None:
        name = self.region_combo.currentText()
        layer = next((lyr for lyr in self.viewer.layers if lyr.name == name), None)
        if self._region.follow(layer) and self.mode == REGION:
            self.update_spectrum()

    def _region_edited(self, event: Any = None) -> None:
        if self.mode == REGION:
            self.update_spectrum()

    # ---- modes and spectra -------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.mode_combo.currentText()

    def set_mode(self, mode: str) -> None:
        """Choose what is plotted: one of :data:`MODES`, or ``"file spectrum: <title>"``."""
        i = self.mode_combo.findText(mode)
        if i < 0:
            raise ValueError(f"unknown spectrum mode {mode!r}")
        self.mode_combo.setCurrentIndex(i)

    def _mode_changed(self, *_: Any) -> None:
        self.region_combo.setEnabled(self.mode == REGION)
        self.scale_combo.setEnabled(self.mode == REGIONS)
        self.update_spectrum()

    def update_spectrum(self) -> None:
        """Recompute and plot the spectrum the current mode asks for."""
        mode = self.mode
        if mode.startswith(FILE_PREFIX):
            sp = self._spectra.get(mode)
            if sp is not None:
                self._show_file_spectrum(mode[len(FILE_PREFIX):], sp)
            return
        layer, rec = self.si_layer, self.record
        if rec is None:
            self._show(None, "", None)
            self.status.setText("Open a spectrum image (or pick a file spectrum).")
            return
        if mode == MAP:
            self._compute(
                f"{layer.name}: sum over the map", lambda: self._map_sum(rec), progress=True
            )
        elif mode == REGIONS:
            self.regions.update()
        elif mode == CLICK:
            if self.clicked is not None:
                self.show_pixel(self.clicked)
            else:
                self.status.setText("Click a pixel of the map.")
        elif mode == REGION:
            mask = self.region_mask()
            if mask is None:
                self.status.setText("Choose a Shapes or Labels layer outlining a region.")
                return
            n = int(mask.sum())
            self._compute(
                f"{layer.name}: sum over {n} pixel(s) of {self._region.layer.name}",
                lambda: region_sum(rec, mask),
                progress=n > 4096,
            )
        elif mode == MOUSE and self._hover is not None:
            self.show_pixel(self._hover)
        elif mode == MOUSE:
            self._show_overview(layer, rec)

    def _show_overview(self, layer: Any, rec: Dataset) -> None:
        """Before the mouse reaches the map: the whole scan's spectrum from the file's own
        single spectra (summed over detectors), which costs nothing to show."""
        total, axis = None, None
        for sp in self._spectra.values():
            data = np.asarray(sp["data"], dtype=np.float64)
            if sp.get("signal_type") != rec.signal_type or data.ndim != 1:
                continue
            if total is None:
                total, axis = data.copy(), (sp.get("axes") or [None])[-1]
            elif data.shape == total.shape:
                total += data
        if total is None or axis is None:
            self.status.setText("Move the mouse over the map.")
            return
        energy = energy_axis(axis, rec.signal_type)
        self._show(total, f"{layer.name}: whole scan (file spectra)", energy)
        self.status.setText("Whole scan from the file's spectra; move the mouse over the map.")

    def _map_sum(self, rec: Dataset) -> np.ndarray:
        # keyed by the array object itself (kept alive here), not a reusable id()
        cached = self._sum_cache.get("sum")
        if cached is None or cached[0] is not rec.data:
            self._sum_cache = {"sum": (rec.data, map_sum(rec))}
        return self._sum_cache["sum"][1]

    def region_mask(self) -> np.ndarray | None:
        """The ``(y, x)`` mask of the chosen Shapes/Labels layer on the SI grid."""
        layer, rec, region = self.si_layer, self.record, self._region.layer
        if rec is None or region is None:
            return None
        ny, nx = rec.data.shape[-3], rec.data.shape[-2]
        from napari.layers import Shapes

        if isinstance(region, Shapes):
            return shapes_mask(region, layer, ny, nx)
        return labels_mask(region, layer, ny, nx, self.viewer.dims.point)

    def show_pixel(self, index: tuple[int, ...]) -> None:
        """Plot the spectrum of the pixel ``index`` (every record axis but energy)."""
        layer, rec = self.si_layer, self.record
        if rec is None:
            return
        index = tuple(int(i) for i in index)
        where = ", ".join(f"{n}={i}" for n, i in zip(("y", "x"), index[-2:]))
        if len(index) > 2:
            where = f"frame {index[:-2]}, {where}"
        self._compute(f"{layer.name}: pixel {where}", lambda: pixel_spectrum(rec, index))

    def _compute(self, title: str, func: Any, progress: bool = False) -> None:
        rec = self.record
        lazy = rec is not None and rec.is_lazy
        energy = self.energy

        def done(spec: np.ndarray) -> None:
            try:
                current = self.record
            except RuntimeError:  # the widget itself was deleted meanwhile
                return
            if current is not rec:
                return  # the SI layer changed or was removed meanwhile
            self._show(spec, title, energy)

        self.runner.submit(
            func, done, threaded=lazy, progress=f"Computing {title}" if progress else None
        )

    def _show_file_spectrum(self, title: str, sp: dict[str, Any]) -> None:
        data = np.asarray(sp["data"], dtype=np.float64).ravel()
        axes = sp.get("axes") or []
        ax = axes[-1] if axes else {"size": data.size, "scale": 1.0, "offset": 0.0}
        self._show(data, f"file spectrum: {title}", energy_axis(ax, sp.get("signal_type", "")))

    # ---- the slider's energy on the plot ------------------------------------------------
    def _update_marker(self, event: Any = None) -> None:
        """Mark the energy the viewer's slider shows on the plot."""
        layer, energy = self.si_layer, self.energy
        axis = view.energy_axis(self.viewer, layer) if layer is not None else None
        if axis is None or energy is None:
            self.plot.set_marker(None)
            return
        value = view.energy_of_world(self.viewer, layer, float(self.viewer.dims.point[axis]))
        self.plot.set_marker(value * energy.factor)

    def _plot_clicked(self, x: float) -> None:
        """A click on the plot moves the energy slider there."""
        layer, energy = self.si_layer, self.energy
        if layer is not None and energy is not None:
            view.focus_energy(self.viewer, layer, x / energy.factor)

    def _window_dragged(self, lo: float, hi: float) -> None:
        try:
            self.map_window(lo, hi)
        except ValueError as err:
            self._on_error(err)

    # ---- elements ----------------------------------------------------------------------
    def elements(self) -> list[str]:
        """The elements whose lines are marked."""
        return xray_lines.parse_elements(self.elements_edit.text())

    def set_elements(self, elements: list[str] | str, edited: bool = True) -> None:
        """Mark the X-ray lines of ``elements`` (symbols, or text like ``"Fe, Cu"``).
        ``ValueError`` names symbols that are not elements (nothing changes then)."""
        unknown = xray_lines.unknown_elements(elements)
        if unknown:
            raise ValueError(f"not element symbol(s): {', '.join(unknown)} (the X-ray line "
                             "table covers Li to U)")
        els = xray_lines.parse_elements(elements)
        self.elements_edit.setText(", ".join(els))
        self._elements_edited = edited
        cur = self.element_combo.currentText()
        self.element_combo.clear()
        self.element_combo.addItems(els)
        if cur in els:
            self.element_combo.setCurrentText(cur)
        self.plot.set_elements(els)

    def _elements_typed(self) -> None:
        try:
            self.set_elements(self.elements_edit.text(), edited=True)
        except ValueError as err:
            self._on_error(err)

    # ---- energy-window maps ------------------------------------------------------------
    def map_window(self, low: float, high: float, name: str | None = None) -> None:
        """Add or update the map of counts in the energy window ``[low, high]`` (in the
        plot's energy units) of the current SI layer. Without ``name`` the layer is the
        SI's single "window" map, updated as the window moves. ``ValueError`` when the
        window lies outside the spectrum's energy range (a window reaching past an end is
        cut there, and the status line says so)."""
        layer, rec = self.si_layer, self.record
        if rec is None:
            self.status.setText("No spectrum-image layer to map.")
            return
        energy = energy_axis(rec.axes[-1], rec.signal_type)
        win = Window.of(energy, low, high, layer.name)
        for s, v in ((self.win_lo, win.lo), (self.win_hi, win.hi)):
            s.blockSignals(True)
            s.setValue(v)
            s.blockSignals(False)
        self.plot.show_window(win.lo, win.hi, energy.units)
        layer_name = name or f"{layer.name} window"
        info = win.info(layer, layer_name, rec.signal_type, energy.units)
        desc = f"{layer_name}: {win.e0:.3f}–{win.e1:.3f} {energy.units}"
        if win.cut:
            desc += " (window cut at the end of the spectrum)"

        def done(result: np.ndarray) -> None:
            if not any(lyr is layer for lyr in self.viewer.layers):
                return  # the SI layer was removed while its map was computed
            shown = show_map(self.viewer, layer, layer_name, np.asarray(result), info)
            self.status.setText(f"Map {desc}")
            self.map_ready.emit(shown)

        def compute() -> np.ndarray:
            out = window_map(rec, win.i0, win.i1)
            return np.asarray(out.compute() if hasattr(out, "compute") else out)

        self.status.setText(f"Mapping {desc}…")
        self.map_runner.submit(compute, done, threaded=rec.is_lazy, progress=f"Mapping {desc}")

    def _element_clicked(self) -> None:
        try:
            self.map_element(self.element_combo.currentText())
        except ValueError as err:
            self._on_error(err)

    def map_element(self, element: str, kind: str | None = None) -> None:
        """Map ``element``'s main line (Kα, else Lα, else Mα inside the spectrum's range)
        as a layer named after the line: ``kind`` (default: the viewer's choice) is one
        of :data:`.spectrum_netmap.MAP_KINDS`, net counts (background subtracted, see
        :mod:`.spectrum_netmap`), net counts with a σ map, or the raw window of ± one
        peak width around the line."""
        rec = self.record
        if rec is None or not element:
            return
        energy = energy_axis(rec.axes[-1], rec.signal_type)
        if energy.units != "keV":
            self.status.setText("Element maps are made from X-ray (EDS) spectrum images.")
            return
        to_kev = 1.0
        e_lo = max(float(energy.values.min()) * to_kev, 0.1)
        e_hi = float(energy.values.max()) * to_kev
        win = xray_lines.element_window(element, e_lo, e_hi)
        if win is None:
            self.status.setText(f"{element}: no X-ray line inside the spectrum's range.")
            return
        line, lo, hi = win
        el = xray_lines.normalize_element(element)
        if el not in self.elements():
            self.set_elements([*self.elements(), el])
        kind = kind or self.map_kind.currentText()
        if kind != RAW:
            map_net(self, el, line, with_sigma=kind == NET_SIGMA,
                    background_windows=self.velox_settings.windows_for(f"{el}_{line}"))
            return
        self.plot.show_background([])
        self.map_window(
            lo / to_kev, hi / to_kev, name=f"{self.si_layer.name} {line_label(el, line)}"
        )

    # ---- export ------------------------------------------------------------------------
    def _export_clicked(self) -> None:
        if self.spectrum is None:
            self.status.setText("Nothing to export.")
            return
        if self.mode == REGIONS:
            return self.regions.export_dialog()
        path, _ = QFileDialog.getSaveFileName(
            self, "Export spectrum", "spectrum.csv", "CSV (*.csv)"
        )
        if path:
            self.export_csv(path)

    def export_csv(self, path: str | os.PathLike) -> None:
        """Write the shown spectrum as CSV: a header naming its source, then
        ``energy,counts`` rows."""
        if self.spectrum is None or self.shown_energy is None:
            raise ValueError("no spectrum is shown")
        src = source_file(self.si_layer) if self.si_layer is not None else ""
        write_spectrum_csv(path, self.shown_energy, self.spectrum, self.spectrum_title,
                           src or "")
        self.status.setText(f"Saved {os.path.basename(os.fspath(path))}")

    def _on_error(self, err: BaseException) -> None:
        from napari.utils.notifications import show_error

        if isinstance(err, Cancelled):
            self.status.setText("Cancelled.")
            return

        msg = f"napari-emd spectrum viewer: {err}"
        self.status.setText(msg)
        show_error(msg)
