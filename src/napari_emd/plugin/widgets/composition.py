"""EDS profiles and compositions: the "EDS profile and composition" dock.

* **Profile**: the net counts of the chosen elements' lines along a line or path shape
  (the selected shape of a Shapes layer, else its last line or path), summed across a
  width in pixels, against the distance in the scan's units
  (:func:`napari_emd.analysis.line_profile`), one curve per element.
* **Composition**: the Cliff–Lorimer atomic % (or weight %) with its 1σ uncertainty of
  the whole scan and of every closed shape of the Shapes layers and every label of the
  Labels layers, from the net intensities of each region's summed spectrum
  (:func:`~napari_emd.analysis.region_spectrum`, :func:`~napari_emd.analysis.line_intensities`,
  :func:`~napari_emd.analysis.cliff_lorimer`) and the k-factors typed in the table.
  Without calibrated k-factors (all 1) the numbers are intensity ratios, and the note
  under the table says so.

The sums run in a worker thread (:class:`.runner.LatestRunner`): the window never
freezes on a lazy spectrum image, and Cancel stops them.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ... import xray_lines
from ...analysis import cliff_lorimer, line_intensities, line_profile, region_spectrum
from ...model import Dataset
from ...spectra import energy_axis, labels_grid, shapes_mask
from ..layer_meta import is_si_layer, si_record
from .runner import LatestRunner

CLOSED = ("rectangle", "ellipse", "polygon")
OPEN = ("line", "path")


def element_lines(elements: list[str], rec: Dataset) -> dict[str, str]:
    """``{element: line key}`` (``"Fe": "Fe_Ka"``): each element's mapping line inside
    the spectrum's energy range (elements without one are left out)."""
    energy = energy_axis(rec.axes[-1], rec.signal_type)
    lo = max(float(energy.values.min()) * energy.factor, 0.1)
    hi = float(energy.values.max()) * energy.factor
    out = {}
    for el in elements:
        chosen = xray_lines.map_line(el, lo, hi)
        if chosen is not None:
            out[el] = f"{el}_{chosen[0]}"
    return out


def region_masks(viewer: Any, si_layer: Any, ny: int, nx: int) -> dict[str, np.ndarray]:
    """``{region name: (ny, nx) mask}`` of every closed shape of the visible Shapes
    layers (``"<layer> #<n>"``) and every label of the visible Labels layers
    (``"<layer> <label>"``), placed on the spectrum image through world coordinates."""
    from napari.layers import Labels, Shapes

    out: dict[str, np.ndarray] = {}
    for layer in viewer.layers:
        if not layer.visible:
            continue
        if isinstance(layer, Shapes):
            for i, (data, kind) in enumerate(zip(layer.data, layer.shape_type)):
                if kind not in CLOSED:
                    continue
                one = types.SimpleNamespace(data=[data], shape_type=[kind],
                                            scale=layer.scale, translate=layer.translate)
                mask = shapes_mask(one, si_layer, ny, nx)
                if mask.any():
                    out[f"{layer.name} #{i + 1}"] = mask
        elif isinstance(layer, Labels):
            grid = labels_grid(layer, si_layer, ny, nx, None)
            for value in np.unique(grid):
                if value > 0:
                    out[f"{layer.name} {int(value)}"] = grid == value
    return out


def compositions(
    rec: Dataset, masks: dict[str, np.ndarray | None], keys: dict[str, str],
    kfactors: dict[str, float], weight_percent: bool = False,
) -> dict[str, dict[str, tuple[float, float]]]:
    """``{region: {element: (percent, sigma)}}`` for each region mask (None: the whole
    scan): the region's summed spectrum, its net line intensities and their Poisson
    sigmas, then Cliff–Lorimer with ``kfactors`` (first-order uncertainties). A line
    whose net counts are negative (not detected above its background) counts as zero,
    so no element gets a negative share."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    lines = list(keys.values())
    for name, mask in masks.items():
        spectrum = region_spectrum(rec, mask)
        found = line_intensities(spectrum, lines, compute=True)
        # a negative net count is a line not detected above its background: zero
        inten = {el: max(float(np.asarray(found[k].net)), 0.0) for el, k in keys.items()}
        sig = {el: float(np.asarray(found[k].sigma)) for el, k in keys.items()}
        pct, err = cliff_lorimer(inten, kfactors, weight_percent=weight_percent, sigmas=sig)
        out[name] = {el: (float(pct[el]), float(err[el])) for el in keys}
    return out


def shape_path(shapes: Any, si_layer: Any) -> np.ndarray | None:
    """The vertices (``(N, 2)``, pixel coordinates of the spectrum image) of the selected
    line/path shape of ``shapes``, else its last line or path; None without one."""
    kinds = list(shapes.shape_type)
    picks = [i for i in sorted(shapes.selected_data) if kinds[i] in OPEN]
    picks = picks or [i for i, k in enumerate(kinds) if k in OPEN]
    if not picks:
        return None
    pts = np.asarray(shapes.data[picks[-1]], dtype=float)[:, -2:]
    world = pts * np.asarray(shapes.scale)[-2:] + np.asarray(shapes.translate)[-2:]
    px = (world - np.asarray(si_layer.translate)[-2:]) / np.asarray(si_layer.scale)[-2:]
    return np.round(px, 4)  # napari keeps vertices in float32: 13.9999998 is pixel 14


class ProfileComposition(QWidget):
    """The dock: SI layer, elements, k-factors; a profile plot and a composition table."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.runner = LatestRunner(self._on_error)
        self.result: dict[str, dict[str, tuple[float, float]]] = {}
        self.profile: Any = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        form = QFormLayout()
        self.layer_combo = QComboBox()
        form.addRow("SI layer", self.layer_combo)
        self.elements_edit = QLineEdit()
        self.elements_edit.setPlaceholderText("elements, e.g. Fe, Cu, O")
        self.elements_edit.editingFinished.connect(self._elements_changed)
        form.addRow("Elements", self.elements_edit)
        self.width_box = QDoubleSpinBox()
        self.width_box.setRange(1, 500)
        self.width_box.setValue(3)
        self.width_box.setSuffix(" px")
        self.width_box.setToolTip("Width of the band summed across the line")
        form.addRow("Profile width", self.width_box)
        layout.addLayout(form)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3, 2.2), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(160)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        layout.addWidget(self.canvas, 1)
        buttons = QHBoxLayout()
        prof = QPushButton("Profile along line")
        prof.setToolTip("Net counts of each element along the selected line/path shape")
        prof.clicked.connect(self.run_profile)
        comp = QPushButton("Composition")
        comp.setToolTip("Cliff–Lorimer composition of the scan and of every region")
        comp.clicked.connect(self.run_composition)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.runner.cancel)
        for b in (prof, comp, self.cancel_btn):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        self.weight_check = QCheckBox("weight % (else atomic %)")
        layout.addWidget(self.weight_check)
        self.table = QTableWidget(0, 0)
        self.table.setMinimumHeight(120)
        layout.addWidget(self.table, 1)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        self.kfactors: dict[str, float] = {}
        self.table.itemChanged.connect(self._k_edited)
        for signal in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            signal.connect(self._refresh_layers)
        self._refresh_layers()

    # ---- layers and elements ---------------------------------------------------------
    def si_layers(self) -> list[Any]:
        return [ly for ly in self.viewer.layers if is_si_layer(ly)]

    @property
    def si_layer(self) -> Any:
        name = self.layer_combo.currentText()
        return next((ly for ly in self.si_layers() if ly.name == name), None)

    @property
    def record(self) -> Dataset | None:
        layer = self.si_layer
        return si_record(layer) if layer is not None else None

    def _refresh_layers(self, *_: Any) -> None:
        names = [ly.name for ly in self.si_layers()]
        current = self.layer_combo.currentText()
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        rec = self.record
        if rec is not None and not self.elements_edit.text():
            els = (rec.metadata.get("Sample") or {}).get("elements") or []
            self.set_elements(xray_lines.parse_elements(list(els)))

    def elements(self) -> list[str]:
        return xray_lines.parse_elements(self.elements_edit.text())

    def set_elements(self, elements: list[str]) -> None:
        self.elements_edit.setText(", ".join(elements))
        self._elements_changed()

    def _elements_changed(self) -> None:
        for el in self.elements():
            self.kfactors.setdefault(el, 1.0)
        self._show_table()

    def set_kfactors(self, kfactors: dict[str, float]) -> None:
        """Use these k-factors (relative to one reference element)."""
        self.kfactors.update({xray_lines.normalize_element(k): float(v)
                              for k, v in kfactors.items()})
        self._show_table()

    def _lines(self) -> dict[str, str]:
        rec = self.record
        if rec is None:
            raise ValueError("no spectrum-image layer")
        keys = element_lines(self.elements(), rec)
        if not keys:
            raise ValueError("no element with an X-ray line in the spectrum's range")
        return keys

    # ---- profile ---------------------------------------------------------------------
    def run_profile(self) -> None:
        from napari.layers import Shapes

        rec, si = self.record, self.si_layer
        if rec is None:
            self.note.setText("No spectrum-image layer.")
            return
        path = None
        active = self.viewer.layers.selection.active
        candidates = [active] if isinstance(active, Shapes) else []
        candidates += [ly for ly in self.viewer.layers if isinstance(ly, Shapes)]
        for shapes in candidates:
            path = shape_path(shapes, si)
            if path is not None:
                break
        if path is None:
            self.note.setText("Draw a line or path with a Shapes layer to profile along it.")
            return
        keys, width = self._lines(), float(self.width_box.value())

        def compute() -> Any:
            return line_profile(rec, path, width=width, lines=list(keys.values()))

        self.note.setText("Profiling…")
        self.runner.submit(compute, self._show_profile, threaded=rec.is_lazy,
                           progress="EDS profile")

    def _show_profile(self, profile: Any) -> None:
        self.profile = profile
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        for name, values in profile.values.items():
            label = name.replace("_", " ")
            sig = profile.sigma.get(name)
            ax.plot(profile.distance, values, label=label)
            if sig is not None and len(sig) == len(values):
                ax.fill_between(profile.distance, values - sig, values + sig, alpha=0.25)
        ax.set_xlabel(f"distance ({profile.units})")
        ax.set_ylabel("net counts")
        ax.legend(fontsize=7)
        self.canvas.draw_idle()
        self.note.setText(f"Profile: {len(profile.distance)} samples, width "
                          f"{self.width_box.value():g} px.")

    # ---- composition -----------------------------------------------------------------
    def run_composition(self) -> None:
        rec, si = self.record, self.si_layer
        if rec is None:
            self.note.setText("No spectrum-image layer.")
            return
        keys = self._lines()
        ny, nx = rec.data.shape[-3], rec.data.shape[-2]
        masks: dict[str, np.ndarray | None] = {"whole scan": None}
        masks.update(region_masks(self.viewer, si, ny, nx))
        kf = {el: self.kfactors.get(el, 1.0) for el in keys}
        weight = self.weight_check.isChecked()

        def compute() -> Any:
            return compositions(rec, masks, keys, kf, weight_percent=weight)

        self.note.setText("Quantifying…")
        self.runner.submit(compute, self._show_result, threaded=rec.is_lazy,
                           progress="EDS composition")

    def _show_result(self, result: dict[str, dict[str, tuple[float, float]]]) -> None:
        self.result = result
        self._show_table()
        unit = "wt %" if self.weight_check.isChecked() else "at %"
        calibrated = any(abs(k - 1.0) > 1e-12 for k in self.kfactors.values())
        self.note.setText(
            f"Cliff–Lorimer {unit} ± 1σ (counting statistics) of {len(result)} region(s)."
            + ("" if calibrated else " All k-factors are 1: the numbers are intensity "
               "ratios until calibrated k-factors are typed in the k row."))

    def _show_table(self) -> None:
        els = self.elements()
        rows = ["k", *self.result]
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        self.table.setColumnCount(len(els))
        self.table.setHorizontalHeaderLabels(els)
        self.table.setVerticalHeaderLabels(rows)
        for j, el in enumerate(els):
            self.table.setItem(0, j, QTableWidgetItem(f"{self.kfactors.get(el, 1.0):g}"))
            for i, region in enumerate(self.result, start=1):
                pct, err = self.result[region].get(el, (float("nan"), float("nan")))
                item = QTableWidgetItem(f"{pct:.1f} ± {err:.1f}")
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(i, j, item)
        self.table.blockSignals(False)

    def _k_edited(self, item: QTableWidgetItem) -> None:
        if item.row() != 0:
            return
        el = self.table.horizontalHeaderItem(item.column()).text()
        try:
            value = float(item.text())
            if value <= 0:
                raise ValueError
        except ValueError:
            self.note.setText(f"k-factor of {el}: a positive number, please.")
            self._show_table()
            return
        self.kfactors[el] = value

    def _on_error(self, err: BaseException) -> None:
        self.note.setText(f"{type(err).__name__}: {err}")
