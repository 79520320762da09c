"""The profile tab of the EDS analysis dock: net counts of the chosen X-ray lines along
a line or path shape drawn over the spectrum image (:func:`napari_emd.analysis.
line_profile`), one curve per element in the colour of its element map, ±1 σ shaded,
distance in the scan's units. It follows the shape as it is edited."""

from __future__ import annotations

import csv
import os
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ...analysis import Profile, line_profile
from ...units import convert_length
from ..look import MAP_COLORMAPS
from .si_chooser import FollowedLayer, layer_names, relist
from .spectrum_plot import line_label

PROFILE_TYPES = ("line", "path")


def _rgb(colormap: Any) -> tuple[float, float, float]:
    """The brightest colour of a napari colormap (a name or an object)."""
    from napari.utils.colormaps import ensure_colormap

    cmap = ensure_colormap(colormap)
    return tuple(float(c) for c in np.asarray(cmap.colors)[-1][:3])  # type: ignore[return-value]


def line_colours(viewer: Any, si_layer: Any, lines: list[str]) -> dict[str, tuple]:
    """Per line: the colour of its element map over ``si_layer`` when there is one
    (named "<SI> Fe Kα" by the spectrum viewer), else the map colours in order."""
    out: dict[str, tuple] = {}
    for k, line in enumerate(lines):
        el, name = line.split("_", 1)
        wanted = f"{si_layer.name} {line_label(el, name)}" if si_layer is not None else ""
        layer = next((lyr for lyr in viewer.layers if lyr.name == wanted), None)
        cmap = getattr(layer, "colormap", None) if layer is not None else None
        out[line] = _rgb(cmap if cmap is not None else MAP_COLORMAPS[k % len(MAP_COLORMAPS)])
    return out


def si_pixel_points(shapes: Any, si_layer: Any, vertices: Any) -> np.ndarray:
    """A shape's vertices in the SI's ``(y, x)`` pixel coordinates (through world space
    with both layers' scale and translate)."""
    v = np.asarray(vertices, dtype=float)[:, -2:]
    s_sc = np.asarray(shapes.scale, dtype=float)[-2:]
    s_tr = np.asarray(shapes.translate, dtype=float)[-2:]
    i_sc = np.asarray(si_layer.scale, dtype=float)[-2:]
    i_tr = np.asarray(si_layer.translate, dtype=float)[-2:]
    return ((v * s_sc + s_tr) - i_tr) / i_sc


class ProfilePanel(QWidget):
    """Profile plot of the dock's lines along the chosen Shapes layer's line or path
    (the selected one, else the last drawn)."""

    def __init__(self, dock: Any) -> None:
        super().__init__()
        self.dock = dock
        self.result: Profile | None = None
        self._followed = FollowedLayer({"data": self.redraw,
                                        "highlight": self._selection_changed})
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.shapes_combo = QComboBox()
        self.shapes_combo.setToolTip("Shapes layer holding the line or path to profile")
        self.shapes_combo.currentIndexChanged.connect(self._shapes_changed)
        form.addRow("Shapes", self.shapes_combo)
        self.width_spin = QDoubleSpinBox()
        self.width_spin.setRange(1.0, 1000.0)
        self.width_spin.setDecimals(0)
        self.width_spin.setValue(3.0)
        self.width_spin.setSuffix(" px")
        self.width_spin.setKeyboardTracking(False)
        self.width_spin.setToolTip("Width of the band summed across the line (SI pixels)")
        self.width_spin.valueChanged.connect(self._width_changed)
        form.addRow("Width", self.width_spin)
        layout.addLayout(form)
        dark = str(getattr(dock.viewer, "theme", "dark")) != "light"
        self.fg, self.bg = ("#d0d0d0", "#262930") if dark else ("#202020", "#ffffff")
        self.figure = Figure(figsize=(4, 3), layout="constrained")
        self.figure.set_facecolor(self.bg)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(240)
        self.ax = self.figure.add_subplot(111)
        layout.addWidget(self.canvas, 1)
        row = QHBoxLayout()
        self.info = QLabel("Draw a line or path (Shapes layer) over the spectrum image.")
        self.info.setWordWrap(True)
        row.addWidget(self.info, 1)
        export = QPushButton("Export CSV…")
        export.clicked.connect(self._export_clicked)
        row.addWidget(export)
        layout.addLayout(row)
        dock.maps_ready.connect(self.redraw)
        self.destroyed.connect(self._followed.drop)

    # ---- settings kept with the session --------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"profile_width": float(self.width_spin.value())}

    def restore(self, state: dict[str, Any]) -> None:
        w = state.get("profile_width")
        if isinstance(w, (int, float)) and w >= 1:
            self.width_spin.blockSignals(True)
            self.width_spin.setValue(float(w))
            self.width_spin.blockSignals(False)

    def _width_changed(self, *_: Any) -> None:
        self.dock.save_state()
        self.redraw()

    # ---- the shapes layer ---------------------------------------------------------------
    def refresh_layers(self) -> None:
        from napari.layers import Shapes

        cur = self.shapes_combo.currentText()
        names = layer_names(self.dock.viewer, Shapes)
        with_line = [n for n in names if any(
            t in PROFILE_TYPES for t in self._layer(n).shape_type)]
        keep = cur in with_line or (cur in names and not with_line)
        # else a layer holding a line or path, the newest
        relist(self.shapes_combo, names, cur if keep else (with_line or [None])[-1])
        self._shapes_changed()

    def _layer(self, name: str) -> Any:
        return next((lyr for lyr in self.dock.viewer.layers if lyr.name == name), None)

    @property
    def _shapes(self) -> Any:
        """The Shapes layer followed."""
        return self._followed.layer

    def _shapes_changed(self, *_: Any) -> None:
        if self._followed.follow(self._layer(self.shapes_combo.currentText())):
            self.redraw()

    def _selection_changed(self, *_: Any) -> None:
        if self._shapes is not None and self._shapes.selected_data:
            self.redraw()

    def profile_shape(self) -> tuple[int, np.ndarray] | None:
        """The line or path profiled: the selected one, else the last; ``(index,
        vertices)`` in the Shapes layer's data coordinates."""
        layer = self._shapes
        if layer is None:
            return None
        kinds = list(layer.shape_type)
        usable = [i for i, t in enumerate(kinds) if t in PROFILE_TYPES]
        chosen = [i for i in sorted(layer.selected_data) if i in usable]
        if not usable:
            return None
        i = chosen[-1] if chosen else usable[-1]
        return i, np.asarray(layer.data[i])

    # ---- the profile --------------------------------------------------------------------
    def redraw(self, *_: Any) -> None:
        """Recompute the profile from the dock's net-count maps and draw it."""
        dock = self.dock
        maps, si, rec = dock.maps(), dock.si_layer, dock.record
        shape = self.profile_shape()
        self.result = None
        self.ax.clear()
        self._style()
        if rec is None or maps is None or shape is None:
            self.info.setText("Draw a line or path (Shapes layer) over the spectrum image."
                              if maps is not None else "Choose the lines to profile.")
            self.canvas.draw_idle()
            return
        index, verts = shape
        pts = si_pixel_points(self._shapes, si, verts)
        y_axis, x_axis = rec.axes[-3], rec.axes[-2]
        lines = [ln for ln in maps if ln in dock.lines()]
        try:
            sy = float(y_axis.scale) if (y_axis.units or "") == (x_axis.units or "") else \
                convert_length(float(y_axis.scale), y_axis.units or "", x_axis.units or "")
            prof = line_profile({ln: _Map(*maps[ln]) for ln in lines}, pts,
                                width=float(self.width_spin.value()),
                                scale=(sy, float(x_axis.scale)), units=x_axis.units or "px")
        except ValueError as err:
            self.info.setText(str(err))
            self.canvas.draw_idle()
            return
        self.result = prof
        colours = line_colours(dock.viewer, si, lines)
        for ln in lines:
            y, s = prof.values[ln], prof.sigma.get(ln)
            el, name = ln.split("_", 1)
            self.ax.plot(prof.distance, y, color=colours[ln], lw=1.4,
                         label=line_label(el, name))
            if s is not None:
                self.ax.fill_between(prof.distance, y - s, y + s, color=colours[ln],
                                     alpha=0.2, lw=0)
        self.ax.set_xlabel(f"distance ({prof.units})", fontsize=9)
        if lines:
            leg = self.ax.legend(fontsize=8, facecolor=self.bg, edgecolor=self.fg)
            for t in leg.get_texts():
                t.set_color(self.fg)
        kind = self._shapes.shape_type[index]
        self.info.setText(
            f"{kind} {index} of {self._shapes.name}: {prof.distance[-1]:.4g} "
            f"{prof.units} long, {self.width_spin.value():.0f} px wide; net counts per "
            f"{float(x_axis.scale):.3g} {prof.units} step, ±1σ shaded")
        self.canvas.draw_idle()

    def _style(self) -> None:
        self.ax.set_facecolor(self.bg)
        for spine in self.ax.spines.values():
            spine.set_color(self.fg)
        self.ax.tick_params(colors=self.fg, labelsize=8)
        self.ax.xaxis.label.set_color(self.fg)
        self.ax.yaxis.label.set_color(self.fg)
        self.ax.set_ylabel("net counts", fontsize=9)

    # ---- export -------------------------------------------------------------------------
    def _export_clicked(self) -> None:
        if self.result is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export profile", "profile.csv",
                                              "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def export_csv(self, path: str | os.PathLike) -> None:
        """Write the profile: distance, then net counts and sigma of each line."""
        prof = self.result
        if prof is None:
            raise ValueError("no profile is shown")
        names = list(prof.values)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow([f"distance ({prof.units})", "pixels"]
                       + [c for n in names for c in (f"{n} net", f"{n} sigma")])
            for k, d in enumerate(prof.distance):
                w.writerow([f"{d:.6g}", int(prof.pixels[k])] + [
                    f"{v:.6g}" for n in names for v in (
                        prof.values[n][k], prof.sigma.get(n, np.full_like(
                            prof.values[n], np.nan))[k])])


class _Map:
    """A net-count map with its sigma, as :func:`line_profile` reads them."""

    def __init__(self, net: np.ndarray, sigma: np.ndarray) -> None:
        self.net, self.sigma = net, sigma
