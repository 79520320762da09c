"""The composition tab of the EDS analysis dock: editable k-factors and the Cliff–Lorimer
table (:func:`napari_emd.analysis.cliff_lorimer`) of the whole scan and of every region,
each closed shape of each Shapes layer and each label of each Labels layer, atomic %
(or weight %) ± 1 σ from the summed net counts of the chosen lines. Copy to the
clipboard (tab-separated, pastes into a spreadsheet) or export CSV.

No k-factor is invented: without one from the user (or a saved session) every k is 1.0
and the table says that the percentages are then ratios of net counts, not calibrated
compositions. Velox files store a cross-section model, not k-factors."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import weakref
from types import SimpleNamespace
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...analysis import cliff_lorimer
from ...spectra import shapes_mask
from .spectrum_plot import line_label

UNCALIBRATED = ("k-factors not calibrated (all 1.0): the percentages are ratios of net "
                "counts, not compositions. Enter the k-factors of your detector.")
CLOSED = ("rectangle", "ellipse", "polygon")
ROLE = Qt.ItemDataRole.UserRole


def label_grid(labels: Any, si_layer: Any, ny: int, nx: int, point: Any = None
               ) -> np.ndarray:
    """The label value under each ``(y, x)`` pixel centre of the SI (0 outside the
    Labels layer), through world space; ``point`` picks the slice of a labels volume."""
    data = np.asarray(labels.data)
    if data.ndim > 2:
        lead = (0,) * (data.ndim - 2)
        if point is not None:
            idx = np.round(np.asarray(labels.world_to_data(point))[: data.ndim - 2])
            lead = tuple(int(np.clip(i, 0, n - 1)) for i, n in zip(idx, data.shape))
        data = data[lead]
    i_sc, i_tr = (np.asarray(v, dtype=float)[-2:] for v in (si_layer.scale, si_layer.translate))
    l_sc, l_tr = (np.asarray(v, dtype=float)[-2:] for v in (labels.scale, labels.translate))
    ly = np.floor((i_tr[0] + i_sc[0] * np.arange(ny) - l_tr[0]) / l_sc[0] + 0.5).astype(int)
    lx = np.floor((i_tr[1] + i_sc[1] * np.arange(nx) - l_tr[1]) / l_sc[1] + 0.5).astype(int)
    ok = ((ly >= 0) & (ly < data.shape[0]))[:, None] & ((lx >= 0) & (lx < data.shape[1]))
    vals = data[np.clip(ly, 0, data.shape[0] - 1)][:, np.clip(lx, 0, data.shape[1] - 1)]
    return np.where(ok, vals, 0)


def region_masks(viewer: Any, si_layer: Any, ny: int, nx: int) -> list[tuple[str, Any]]:
    """``(name, mask)`` of the whole scan (mask ``None``), each closed shape of each
    Shapes layer and each label of each Labels layer, on the SI's ``(y, x)`` grid."""
    from napari.layers import Labels, Shapes

    out: list[tuple[str, Any]] = [("whole scan", None)]
    for layer in viewer.layers:
        if isinstance(layer, Shapes):
            for i, (verts, kind) in enumerate(zip(layer.data, layer.shape_type)):
                if kind not in CLOSED:
                    continue
                one = SimpleNamespace(data=[verts], shape_type=[kind], scale=layer.scale,
                                      translate=layer.translate)
                out.append((f"{layer.name}: {kind} {i}", shapes_mask(one, si_layer, ny, nx)))
        elif isinstance(layer, Labels):
            grid = label_grid(layer, si_layer, ny, nx, viewer.dims.point)
            for value in np.unique(grid):
                if value != 0:
                    out.append((f"{layer.name}: label {int(value)}", grid == value))
    return out


class CompositionPanel(QWidget):
    """k-factor table, weight % option and the composition table."""

    def __init__(self, dock: Any) -> None:
        super().__init__()
        self.dock = dock
        self.rows: list[dict[str, Any]] = []  # the table's numbers (tests, export)
        self._lines: list[str] = []
        self._listened: weakref.WeakSet[Any] = weakref.WeakSet()
        layout = QVBoxLayout(self)
        self.k_table = QTableWidget(0, 2)
        self.k_table.setHorizontalHeaderLabels(["line", "k-factor"])
        self.k_table.verticalHeader().setVisible(False)
        self.k_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.k_table.setToolTip("Cliff–Lorimer k-factors, all relative to one element "
                                "(double-click to edit)")
        self.k_table.setMaximumHeight(130)
        self.k_table.itemChanged.connect(self._k_edited)
        layout.addWidget(self.k_table)
        self.k_note = QLabel("")
        self.k_note.setWordWrap(True)
        layout.addWidget(self.k_note)
        self.weight_check = QCheckBox("weight % (else atomic %)")
        self.weight_check.toggled.connect(self._weight_toggled)
        layout.addWidget(self.weight_check)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        layout.addWidget(self.table, 1)
        row = QHBoxLayout()
        copy = QPushButton("Copy")
        copy.setToolTip("Copy the table (tab-separated, for a spreadsheet)")
        copy.clicked.connect(self.copy)
        export = QPushButton("Export CSV…")
        export.clicked.connect(self._export_clicked)
        row.addStretch(1)
        row.addWidget(copy)
        row.addWidget(export)
        layout.addLayout(row)
        self.velox_note = QLabel("")
        self.velox_note.setWordWrap(True)
        layout.addWidget(self.velox_note)
        dock.maps_ready.connect(self.redraw)

    # ---- k-factors ----------------------------------------------------------------------
    def kfactors(self) -> dict[str, float]:
        """``{line: k}`` as shown in the k-factor table."""
        out = {}
        for r in range(self.k_table.rowCount()):
            line = self.k_table.item(r, 0).data(ROLE)  # Qt.UserRole
            try:
                out[line] = float(self.k_table.item(r, 1).text())
            except (TypeError, ValueError, AttributeError):
                out[line] = 1.0
        return out

    def set_kfactors(self, kfactors: dict[str, float]) -> None:
        """Set k-factors by line (``"Fe_Ka"``) or element (``"Fe"``); recompute."""
        for r in range(self.k_table.rowCount()):
            line = self.k_table.item(r, 0).data(ROLE)
            for key in (line, line.split("_", 1)[0]):
                if key in kfactors:
                    self.k_table.item(r, 1).setText(f"{float(kfactors[key]):g}")

    def lines_changed(self, lines: list[str], saved: dict[str, Any] | None = None) -> None:
        """Show one k-factor row per line, keeping the values already entered."""
        known = {**(saved or {}), **self.kfactors()}
        self._lines = list(lines)
        self.k_table.blockSignals(True)
        self.k_table.setRowCount(len(lines))
        for r, line in enumerate(lines):
            el, name = line.split("_", 1)
            item = QTableWidgetItem(line_label(el, name))
            item.setData(ROLE, line)
            item.setFlags(Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled)
            self.k_table.setItem(r, 0, item)
            k = known.get(line, known.get(el, 1.0))
            self.k_table.setItem(r, 1, QTableWidgetItem(f"{float(k):g}"))
        self.k_table.blockSignals(False)
        self._update_note()

    def _k_edited(self, item: QTableWidgetItem) -> None:
        if item.column() != 1:
            return
        try:
            k = float(item.text())
            if not np.isfinite(k) or k <= 0:
                raise ValueError
        except ValueError:
            self.dock._on_error(ValueError(f"a k-factor is a positive number, got "
                                           f"{item.text()!r}"))
            self.k_table.blockSignals(True)
            item.setText("1")
            self.k_table.blockSignals(False)
        self._update_note()
        self.dock.save_state()
        self.redraw()

    def _update_note(self) -> None:
        ks = self.kfactors()
        self.k_note.setText(UNCALIBRATED if ks and all(k == 1.0 for k in ks.values())
                            else "")

    def _weight_toggled(self, *_: Any) -> None:
        self.dock.save_state()
        self.redraw()

    def set_note(self, text: str) -> None:
        self.velox_note.setText(text)

    # ---- settings kept with the session -------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"kfactors": self.kfactors(), "weight_percent": self.weight_check.isChecked()}

    def restore(self, state: dict[str, Any]) -> None:
        ks = state.get("kfactors") if isinstance(state.get("kfactors"), dict) else {}
        self.k_table.setRowCount(0)
        lines = [str(s) for s in state.get("lines") or []]
        self.lines_changed(lines, {str(k): float(v) for k, v in ks.items()})
        self.weight_check.blockSignals(True)
        self.weight_check.setChecked(bool(state.get("weight_percent", False)))
        self.weight_check.blockSignals(False)

    def refresh_layers(self) -> None:
        from napari.layers import Labels, Shapes

        for layer in self.dock.viewer.layers:
            if isinstance(layer, (Shapes, Labels)) and layer not in self._listened:
                self._listened.add(layer)  # once per layer
                layer.events.data.connect(self._region_edited)
                if hasattr(layer.events, "paint"):
                    layer.events.paint.connect(self._region_edited)
        self.redraw()

    def _region_edited(self, *_: Any) -> None:
        with contextlib.suppress(RuntimeError):  # this widget was deleted
            self.redraw()

    # ---- the table ----------------------------------------------------------------------
    def compute_rows(self) -> list[dict[str, Any]]:
        """Per region: name, pixels, ``{line: percent}`` and ``{line: sigma}``."""
        dock = self.dock
        maps, rec, si = dock.maps(), dock.record, dock.si_layer
        if maps is None or rec is None:
            return []
        lines = [ln for ln in self._lines if ln in maps]
        if not lines:
            return []
        ny, nx = rec.data.shape[-3], rec.data.shape[-2]
        ks = self.kfactors()
        weight = self.weight_check.isChecked()
        rows = []
        for name, mask in region_masks(dock.viewer, si, ny, nx):
            m = np.ones((ny, nx), bool) if mask is None else mask
            n = int(m.sum())
            if n == 0:
                continue
            # a negative net sum is a line not detected above its background: zero, so
            # no element gets a negative share
            inten = {ln: max(float(maps[ln][0][m].sum()), 0.0) for ln in lines}
            sig = {ln: np.sqrt((maps[ln][1][m] ** 2).sum()) for ln in lines}
            pct, err = cliff_lorimer(inten, {ln: ks[ln] for ln in lines},
                                     weight_percent=weight, sigmas=sig)
            els = [ln.split("_", 1)[0] for ln in lines]
            rows.append({"region": name, "pixels": n,
                         "percent": {ln: float(pct[e]) for ln, e in zip(lines, els)},
                         "sigma": {ln: float(err[e]) for ln, e in zip(lines, els)},
                         "net": {ln: float(inten[ln]) for ln in lines}})
        return rows

    def headers(self) -> list[str]:
        unit = "wt%" if self.weight_check.isChecked() else "at%"
        return ["region", "pixels"] + [
            f"{line_label(*ln.split('_', 1))} {unit}" for ln in self._lines]

    def redraw(self, *_: Any) -> None:
        """Recompute the table from the dock's net-count maps."""
        try:
            self.rows = self.compute_rows()
        except ValueError as err:
            self.rows = []
            self.dock._on_error(err)
        lines = [ln for ln in self._lines if self.rows and ln in self.rows[0]["percent"]]
        self.table.clear()
        self.table.setColumnCount(2 + len(lines))
        self.table.setRowCount(len(self.rows))
        self.table.setHorizontalHeaderLabels(self.headers()[:2 + len(lines)])
        for r, row in enumerate(self.rows):
            cells = [row["region"], str(row["pixels"])] + [
                _pm(row["percent"][ln], row["sigma"][ln]) for ln in lines]
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    def text_rows(self) -> list[list[str]]:
        """The table as text: a header row, then each region with ``value ± sigma``."""
        out = [self.headers()]
        for row in self.rows:
            out.append([row["region"], str(row["pixels"])] + [
                _pm(row["percent"][ln], row["sigma"][ln]) for ln in self._lines])
        return out

    def copy(self) -> None:
        """Put the table on the clipboard, tab-separated."""
        buf = io.StringIO()
        csv.writer(buf, delimiter="\t", lineterminator="\n").writerows(self.text_rows())
        QApplication.clipboard().setText(buf.getvalue())

    def _export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export composition",
                                              "composition.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def export_csv(self, path: str | os.PathLike) -> None:
        """Write the table as CSV, value and sigma in columns of their own, with the
        k-factors used in a comment line."""
        unit = "wt%" if self.weight_check.isChecked() else "at%"
        ks = self.kfactors()
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["# Cliff-Lorimer, k-factors: " + ", ".join(
                f"{ln}={ks.get(ln, 1.0):g}" for ln in self._lines)])
            w.writerow(["region", "pixels"] + [c for ln in self._lines for c in (
                f"{ln} {unit}", f"{ln} sigma", f"{ln} net counts")])
            for row in self.rows:
                w.writerow([row["region"], row["pixels"]] + [
                    f"{v:.6g}" for ln in self._lines for v in (
                        row["percent"][ln], row["sigma"][ln], row["net"][ln])])


def _pm(value: float, sigma: float) -> str:
    if not np.isfinite(value):
        return "–"
    return f"{value:.1f} ± {sigma:.1f}"
