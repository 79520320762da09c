"""The spectrum plot of the spectrum viewer: a matplotlib figure in Qt with an energy axis
in keV or eV, X-ray line markers, a draggable energy window, log scale and matplotlib's
home/pan/zoom/save toolbar. It only draws; the viewer decides what to plot."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg, NavigationToolbar2QT
from matplotlib.figure import Figure
from matplotlib.widgets import SpanSelector
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QVBoxLayout, QWidget

from ... import xray_lines
from ...spectra import EnergyAxis
from ..look import EDS_NOISE_KEV

_GREEK = {"a": "α", "b": "β", "g": "γ", "l": "l"}
# Default upper end of the EDS energy axis when no element is chosen: the lines used for
# mapping are below it, and the rest of a 40 keV range is mostly empty.
EDS_DEFAULT_MAX_KEV = 20.0


def line_label(element: str, line: str) -> str:
    """``("Fe", "Ka")`` -> ``"Fe Kα"``; ``("Au", "Lb1")`` -> ``"Au Lβ1"``."""
    return f"{element} {line[0]}{_GREEK.get(line[1], line[1])}{line[2:]}"


class _Toolbar(NavigationToolbar2QT):
    """Matplotlib's toolbar with only home, pan, zoom and save."""

    toolitems: ClassVar[list[Any]] = [
        t for t in NavigationToolbar2QT.toolitems if t[0] in ("Home", "Pan", "Zoom", "Save")
    ]


class SpectrumPlot(QWidget):
    """One spectrum on an energy axis. ``on_window(lo, hi)`` is called when the user drags
    an energy window across the plot, ``on_click(energy)`` when they click it without
    dragging; ``changed`` is emitted after every new spectrum."""

    changed = Signal()

    def __init__(
        self,
        on_window: Callable[[float, float], None],
        dark: bool = True,
        on_click: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__()
        self._on_window, self._on_click = on_window, on_click
        self.marker: Any = None
        self.spectrum: np.ndarray | None = None
        self.shown_energy: EnergyAxis | None = None
        self.title = ""
        self.elements: list[str] = []
        self._markers: list[Any] = []
        self._curves: list[Any] = []  # the overlaid region spectra (plot_curves)
        self._ys: list[np.ndarray] = []
        self._spans: list[Any] = []  # background windows of the last element map
        self._xkey: tuple[Any, ...] | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.figure = Figure(figsize=(5, 3), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(320)
        self.ax = self.figure.add_subplot(111)
        (self.line,) = self.ax.plot([], [], lw=1.0, color="#ffb000")
        self._style_axes(dark)
        self.toolbar = _Toolbar(self.canvas, self, coordinates=True)
        self.toolbar.setIconSize(self.toolbar.iconSize() * 0.75)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.canvas, 1)
        self.span = SpanSelector(
            self.ax,
            self._selected,
            "horizontal",
            useblit=True,
            interactive=True,
            props={"alpha": 0.25, "facecolor": "#3aa0ff"},
            minspan=0.0,
        )
        self.log_check = QCheckBox("log scale")
        self.log_check.toggled.connect(self.set_log)

    def _selected(self, lo: float, hi: float) -> None:
        """A drag (a window) or a click (no width: the SpanSelector's minspan is 0)."""
        xlo, xhi = self.ax.get_xlim()
        if hi - lo > 1e-3 * abs(xhi - xlo):
            self._on_window(lo, hi)
        elif self._on_click is not None:
            self.span.set_visible(False)
            self._on_click((lo + hi) / 2)

    def set_marker(self, x: float | None) -> None:
        """Mark energy ``x`` (the viewer's energy slider) with a vertical line."""
        if x is None:
            if self.marker is not None:
                self.marker.set_visible(False)
                self.canvas.draw_idle()
            return
        if self.marker is None:
            self.marker = self.ax.axvline(x, color="#4fc3f7", lw=1.2, alpha=0.9)
        self.marker.set_xdata([x, x])
        self.marker.set_visible(True)
        self.canvas.draw_idle()

    def _style_axes(self, dark: bool) -> None:
        fg, bg = ("#d0d0d0", "#262930") if dark else ("#202020", "#ffffff")
        self.figure.set_facecolor(bg)
        self.ax.set_facecolor(bg)
        for spine in self.ax.spines.values():
            spine.set_color(fg)
        self.ax.tick_params(colors=fg, labelsize=8)
        self.ax.xaxis.label.set_color(fg)
        self.ax.yaxis.label.set_color(fg)
        self.ax.title.set_color(fg)
        self.ax.set_ylabel("counts", fontsize=9)

    def plot(self, spec: np.ndarray | None, title: str, energy: EnergyAxis | None) -> None:
        """Show ``spec`` on ``energy`` (nothing when either is ``None``)."""
        self._clear_curves()
        if spec is None or energy is None:
            self.line.set_data([], [])
            self.spectrum = None
            self.title = ""
        else:
            spec = np.asarray(spec, dtype=np.float64).ravel()
            x = energy.values[: spec.size]
            self.line.set_data(x, spec)
            self.spectrum = spec
            self.shown_energy = energy
            self.title = title
            self._set_energy(energy, x)
        self.autoscale_y()
        self.draw_markers()
        self.canvas.draw_idle()
        self.changed.emit()

    def _set_energy(self, energy: EnergyAxis, x: np.ndarray) -> None:
        self.ax.set_xlabel(f"energy ({energy.units})", fontsize=9)
        ends = (float(x[0]), float(x[-1])) if x.size else (0.0, 0.0)
        key = (energy.units, x.size, *ends)
        if key != self._xkey:
            self._xkey = key
            self.reset_xlim()

    def _clear_curves(self) -> None:
        for artist in self._curves:
            artist.remove()
        self._curves, self._ys = [], []
        legend = self.ax.get_legend()
        if legend is not None:
            legend.remove()
        self.ax.set_ylabel("counts", fontsize=9)

    def plot_curves(self, curves: list[tuple[str, np.ndarray, Any]], title: str,
                    energy: EnergyAxis, ylabel: str = "counts") -> None:
        """Overlay several spectra ``(label, values, colour)`` on ``energy`` with a
        legend (the region spectra); the first curve counts as the plotted spectrum."""
        self._clear_curves()
        self.line.set_data([], [])
        x = energy.values
        for label, y, color in curves:
            y = np.asarray(y, dtype=np.float64).ravel()
            (line,) = self.ax.plot(x[: y.size], y, lw=1.0, color=color, label=label)
            self._curves.append(line)
            self._ys.append(y)
        self.spectrum = self._ys[0] if self._ys else None
        self.shown_energy = energy
        self.title = title
        if curves:
            fg = self.ax.xaxis.label.get_color()
            legend = self.ax.legend(loc="upper right", fontsize=7, frameon=False,
                                    labelcolor=fg)
            legend.set_draggable(True)
        self.ax.set_ylabel(ylabel, fontsize=9)
        self._set_energy(energy, x)
        self.autoscale_y()
        self.draw_markers()
        self.canvas.draw_idle()
        self.changed.emit()

    @property
    def curves(self) -> list[tuple[str, np.ndarray, Any]]:
        """The overlaid curves as ``(label, values, colour)`` (empty for one spectrum)."""
        return [(ln.get_label(), y, ln.get_color()) for ln, y in zip(self._curves, self._ys)]

    def show_background(self, windows: list[tuple[float, float]]) -> None:
        """Shade background windows (of a net-count map) on the plot; ``[]`` clears."""
        for artist in self._spans:
            artist.remove()
        self._spans = [self.ax.axvspan(lo, hi, color="#9e9e9e", alpha=0.25, lw=0)
                       for lo, hi in windows]
        self.canvas.draw_idle()

    def set_elements(self, elements: list[str]) -> None:
        """Mark the X-ray lines of ``elements``."""
        self.elements = list(elements)
        if self.spectrum is not None:
            self.reset_xlim()
        else:
            self.draw_markers()
            self.canvas.draw_idle()

    def default_xlim(self) -> tuple[float, float] | None:
        """The energy range shown by default: the whole axis, except that an EDS axis in
        keV ends a little above the highest marked line (or at 20 keV without elements):
        Velox records up to 40 keV, and the upper half is mostly empty."""
        energy = self.shown_energy
        if energy is None or energy.values.size == 0:
            return None
        lo, hi = energy.low, energy.high
        if energy.units == "keV":
            marks = [e for _, _, e, w in xray_lines.lines_in_range(self.elements, lo, hi)
                     if w >= 0.1]
            top = max(max(marks) * 1.2, 5.0) if marks else EDS_DEFAULT_MAX_KEV
            hi = min(hi, top)
        return lo, hi

    def reset_xlim(self) -> None:
        """Show the default energy range (also what the toolbar's home button returns to)."""
        lim = self.default_xlim()
        if lim is None:
            return
        self.ax.set_xlim(*lim)
        self.autoscale_y()
        self.draw_markers()
        self.toolbar.update()  # the new view becomes "home"
        self.canvas.draw_idle()

    def autoscale_y(self) -> None:
        """Fit the counts axis to the spectrum in view, leaving out an EDS spectrum's
        zero-energy noise peak (it would flatten every X-ray peak)."""
        spec = self.spectrum
        if spec is None or spec.size == 0 or self.shown_energy is None:
            return
        ys = [y for y in self._ys if y.size == spec.size] or [spec]
        x = self.shown_energy.values[: spec.size]
        lo_x, hi_x = self.ax.get_xlim()
        inside = (x >= min(lo_x, hi_x)) & (x <= max(lo_x, hi_x))
        if self.shown_energy.units == "keV":
            inside &= x > EDS_NOISE_KEV
        part = np.concatenate([y[inside] if inside.any() else y for y in ys])
        hi = float(np.nanmax(part)) if np.isfinite(part).any() else 1.0
        low = float(np.nanmin(part)) if np.isfinite(part).any() else 0.0
        if low < 0 and not self.log_check.isChecked():  # a difference curve
            pad = 0.08 * (max(hi, 0.0) - low)
            self.ax.set_ylim(low - pad, max(hi, 0.0) + pad)
        elif self.log_check.isChecked():
            pos = part[part > 0]
            lo = float(pos.min()) * 0.5 if pos.size else 0.5
            self.ax.set_ylim(lo, max(hi * 2, lo * 10))
        else:
            self.ax.set_ylim(0, hi * 1.08 if hi > 0 else 1.0)

    def set_log(self, on: bool) -> None:
        """A logarithmic (or linear) counts axis."""
        self.ax.set_yscale("log", nonpositive="mask") if on else self.ax.set_yscale("linear")
        self.autoscale_y()
        self.draw_markers()
        self.canvas.draw_idle()

    def draw_markers(self) -> None:
        """The chosen elements' X-ray lines (EDS spectra only: those are in keV)."""
        for artist in self._markers:
            artist.remove()
        self._markers = []
        energy = self.shown_energy
        if energy is None or energy.units != "keV" or self.spectrum is None:
            return
        lo, hi = self.ax.get_xlim()
        lines = xray_lines.lines_in_range(self.elements, lo, hi)
        trans = self.ax.get_xaxis_transform()
        gap = 0.025 * (hi - lo)  # labels closer than this would overlap
        labelled: list[float] = []
        for el, name, e, w in sorted(lines, key=lambda t: (-t[3], t[2])):
            if w < 0.1:
                continue
            self._markers.append(
                self.ax.axvline(e, color="#ff5a5a", lw=0.8, alpha=0.3 + 0.5 * w, ls="--")
            )
            if w >= 0.5 and all(abs(e - other) > gap for other in labelled):
                labelled.append(e)
                self._markers.append(
                    self.ax.text(
                        e, 0.98, line_label(el, name), transform=trans, rotation=90,
                        va="top", ha="right", fontsize=7, color="#ff8080",
                    )
                )

    def show_window(self, lo: float, hi: float, units: str) -> None:
        """Draw the mapped window on the plot (typed or from an element, not only
        dragged), so plot and spin boxes always agree."""
        if self.shown_energy is None or self.shown_energy.units != units:
            return
        with contextlib.suppress(Exception):  # purely cosmetic
            self.span.extents = (lo, hi)
            self.span.set_visible(True)
            self.canvas.draw_idle()
