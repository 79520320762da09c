"""Region spectra of the spectrum viewer: the spectra of every region overlaid.

Every shape (rectangle, polygon, ellipse) of the visible Shapes layers and every label of
the visible Labels layers over the spectrum image is a region; its spectrum is the sum
over its pixels (:func:`napari_emd.analysis.region_spectrum`, which reads only the
region's bounding box of a lazy SI), drawn in the shape's edge colour (its face colour
when the edge is transparent) or the label's colour, with the whole scan for reference.
Shapes still in napari's default grey get a colour of their own, on the map and in the
plot, so curve and outline match. The curves show counts, counts normalised to each
region's total, or the normalised difference to the scan. They are recomputed (in a
worker thread for a lazy SI, regions already summed are cached) a moment after the last
edit, and export in one click: one EMSA/MSA file per curve and one CSV of all of them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from ...analysis import region_spectrum, write_msa
from ...cancel import check
from ...spectra import EnergyAxis, energy_axis, labels_grid, shapes_mask
from ..layer_meta import source_file
from .runner import LatestRunner, StepProgress

REGIONS = "spectra of every region (overlay)"
COUNTS = "counts"
NORMALISED = "normalised to total counts"
DIFFERENCE = "difference to the scan (normalised)"
SCALES = (COUNTS, NORMALISED, DIFFERENCE)
SCAN = "whole scan"
SCAN_COLOR = "#ffb000"  # the single-spectrum colour of the plot
# colours for shapes left in napari's default grey edge and white face
PALETTE = ("#1f9bff", "#ff4f8b", "#3fd36b", "#b57bff", "#ff8c1a", "#27d3d3", "#e8e23a",
           "#ff5f5f")
_DEFAULT_EDGE = (0.467, 0.467, 0.467)
_EVENTS = ("data", "set_data", "paint", "labels_update", "edge_color", "face_color",
           "colormap", "visible")


@dataclass
class Region:
    """A region over the SI: its legend name, colour (``#rrggbb``) and ``(y, x)`` mask
    (``None``: the whole scan)."""

    name: str
    color: str
    mask: np.ndarray | None


def _hex(rgba: Any) -> str:
    r, g, b = (round(float(c) * 255) for c in np.asarray(rgba, dtype=float)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _usable(rgba: Any) -> bool:
    c = np.asarray(rgba, dtype=float)
    return c.size >= 3 and (c.size < 4 or c[3] > 0.05)


def shape_regions(layer: Any, si_layer: Any, ny: int, nx: int) -> list[Region]:
    """One region per closed shape of a Shapes layer (lines and paths enclose none).
    Shapes whose edge is napari's default grey and face the default white get a
    palette colour set on the layer (the curve must be told apart from the others)."""
    out: list[Region] = []
    edges = np.asarray(layer.edge_color, dtype=float)
    faces = np.asarray(layer.face_color, dtype=float)
    recolour: dict[int, str] = {}
    for i, (verts, kind) in enumerate(zip(layer.data, layer.shape_type)):
        if kind in ("line", "path"):
            continue
        one = SimpleNamespace(data=[verts], shape_type=[kind], scale=layer.scale,
                              translate=layer.translate)
        mask = shapes_mask(one, si_layer, ny, nx)
        edge = edges[i] if i < len(edges) else np.zeros(4)
        face = faces[i] if i < len(faces) else np.zeros(4)
        default = np.allclose(edge[:3], _DEFAULT_EDGE, atol=0.01) and (
            not _usable(face) or np.allclose(face[:3], 1.0))
        if default:
            color = PALETTE[i % len(PALETTE)]
            recolour[i] = color
        else:
            color = _hex(edge if _usable(edge) else face)
        out.append(Region(f"{layer.name} #{i + 1}", color, mask))
    if recolour:
        from napari.utils.colormaps.standardize_color import transform_color

        new = edges.copy()
        for i, color in recolour.items():
            new[i] = transform_color(color)[0]
        layer.edge_color = new
    return out


def label_regions(layer: Any, si_layer: Any, ny: int, nx: int,
                  point: Any = None) -> list[Region]:
    """One region per label (> 0) of a Labels layer painted over the SI."""
    grid = labels_grid(layer, si_layer, ny, nx, point)
    out = []
    for lab in np.unique(grid):
        if lab <= 0:
            continue
        color = _hex(layer.get_color(int(lab)))
        out.append(Region(f"{layer.name} {int(lab)}", color, grid == lab))
    return out


def collect_regions(viewer: Any, si_layer: Any, ny: int, nx: int) -> list[Region]:
    """The regions of every visible Shapes and Labels layer, in layer order."""
    from napari.layers import Labels, Shapes

    out: list[Region] = []
    for layer in viewer.layers:
        if not layer.visible:
            continue
        if isinstance(layer, Shapes):
            out += shape_regions(layer, si_layer, ny, nx)
        elif isinstance(layer, Labels):
            out += label_regions(layer, si_layer, ny, nx, viewer.dims.point)
    return out


def scaled(curves: list[np.ndarray], scan: np.ndarray, how: str) -> list[np.ndarray]:
    """The curves as shown: counts, each normalised to its total counts, or normalised
    minus the normalised scan."""
    if how == COUNTS:
        return [np.asarray(c, dtype=np.float64) for c in curves]

    def norm(y: np.ndarray) -> np.ndarray:
        total = float(np.sum(y))
        return np.asarray(y, dtype=np.float64) / total if total > 0 else np.zeros(len(y))

    if how == NORMALISED:
        return [norm(c) for c in curves]
    if how == DIFFERENCE:
        ref = norm(scan)
        return [norm(c) - ref for c in curves]
    raise ValueError(f"unknown scale {how!r}; one of {', '.join(SCALES)}")


def ylabel(how: str) -> str:
    return {COUNTS: "counts", NORMALISED: "counts / total counts",
            DIFFERENCE: "difference to the scan (normalised)"}[how]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "region"


class RegionSpectra(QObject):
    """The region spectra of a :class:`~.spectrum.SpectrumViewer` (``owner``): collects
    the regions, sums them off the GUI thread, draws them on the owner's plot and
    exports them. ``updated`` is emitted after each redraw."""

    updated = Signal()

    def __init__(self, owner: Any) -> None:
        super().__init__(owner)
        self.owner = owner
        self.runner = LatestRunner(owner._on_error)
        self.scale = COUNTS
        self.regions: list[Region] = []
        self.spectra: list[dict[str, Any]] = []  # file_reader-style dicts, scan first
        self._cache: dict[tuple[int, str], dict[str, Any]] = {}
        self._cache_data: Any = None
        self._watched: list[Any] = []
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(250)  # an edit in progress (painting, dragging) settles
        self.timer.timeout.connect(self.update)
        from qtpy.QtWidgets import QComboBox

        self.scale_combo = QComboBox()  # the viewer places it
        self.scale_combo.addItems(list(SCALES))
        self.scale_combo.setToolTip("Region spectra as counts, normalised to each "
                                    "region's total, or minus the normalised scan")
        self.scale_combo.currentTextChanged.connect(self.set_scale)

    @property
    def active(self) -> bool:
        return self.owner.mode == REGIONS

    # ---- the layers watched ------------------------------------------------------------
    def watch(self) -> None:
        """Listen to edits of every Shapes and Labels layer (called when layers change)."""
        from napari.layers import Labels, Shapes

        self.unwatch()
        for layer in self.owner.viewer.layers:
            if isinstance(layer, (Shapes, Labels)):
                for name in _EVENTS:
                    ev = getattr(layer.events, name, None)
                    if ev is not None:
                        ev.connect(self._edited)
                self._watched.append(layer)

    def unwatch(self) -> None:
        for layer in self._watched:
            for name in _EVENTS:
                ev = getattr(layer.events, name, None)
                if ev is not None:
                    with contextlib.suppress(TypeError, ValueError, RuntimeError):
                        ev.disconnect(self._edited)
        self._watched = []

    def _edited(self, event: Any = None) -> None:
        if self.active:
            self.timer.start()

    def set_scale(self, how: str) -> None:
        """Show counts, normalised counts or the difference to the scan."""
        if how not in SCALES:
            raise ValueError(f"unknown scale {how!r}; one of {', '.join(SCALES)}")
        self.scale = how
        if self.active and self.spectra:
            self._draw()

    # ---- computing -------------------------------------------------------------------
    def update(self) -> None:
        """Collect the regions and (re)compute their spectra."""
        self.timer.stop()
        w = self.owner
        layer, rec = w.si_layer, w.record
        if rec is None:
            return
        ny, nx = rec.data.shape[-3], rec.data.shape[-2]
        self.regions = [Region(SCAN, SCAN_COLOR, None),
                        *collect_regions(w.viewer, layer, ny, nx)]
        if self._cache_data is not rec.data:
            self._cache, self._cache_data = {}, rec.data
        regions, cache = list(self.regions), self._cache
        todo = [r for r in regions if self._key(r) not in cache]
        n_pix = sum(int(r.mask.sum()) if r.mask is not None else ny * nx for r in todo)

        bar = StepProgress(f"Summing {len(todo)} region spectra of {layer.name}") \
            if rec.is_lazy and todo else None

        def compute() -> list[dict[str, Any]]:
            try:
                for k, r in enumerate(todo):
                    check()
                    cache[self._key(r)] = region_spectrum(rec, r.mask)
                    if bar is not None:
                        bar(k + 1, len(todo))
            finally:
                if bar is not None:
                    bar.close()
            return [cache[self._key(r)] for r in regions]

        def done(spectra: list[dict[str, Any]]) -> None:
            try:
                if w.record is not rec or not self.active:
                    return  # the SI layer or the mode changed meanwhile
            except RuntimeError:  # the viewer (its widgets) closed while summing
                return
            self.spectra = spectra
            self._draw()

        w.status.setText(f"Summing {len(regions)} region spectra…" if todo else "")
        self.runner.submit(compute, done, threaded=rec.is_lazy or n_pix > 65536)

    @staticmethod
    def _key(r: Region) -> tuple[int, str]:
        if r.mask is None:
            return (0, "scan")
        return (r.mask.shape[0], hashlib.sha1(np.packbits(r.mask).tobytes()).hexdigest())

    def energy(self) -> EnergyAxis | None:
        rec = self.owner.record
        return energy_axis(rec.axes[-1], rec.signal_type) if rec is not None else None

    def shown(self) -> list[tuple[str, np.ndarray, str]]:
        """The curves as drawn: ``(legend label, values, colour)``, the scan first."""
        counts = [np.asarray(s["data"], dtype=np.float64) for s in self.spectra]
        if not counts:
            return []
        values = scaled(counts, counts[0], self.scale)
        labels = [f"{r.name} ({int(r.mask.sum())} px)" if r.mask is not None else r.name
                  for r in self.regions]
        out = list(zip(labels, values, [r.color for r in self.regions]))
        if self.scale == DIFFERENCE:
            out = out[1:]  # the scan's difference to itself is zero
        return out

    def _draw(self) -> None:
        energy = self.energy()
        if energy is None:
            return
        w = self.owner
        n = len(self.regions) - 1
        title = f"{w.si_layer.name}: {n} region(s) and the whole scan"
        w.plot.plot_curves(self.shown(), title, energy, ylabel(self.scale))
        w.status.setText(title if n else f"{title} — draw shapes or paint labels over "
                         "the map to compare regions.")
        self.updated.emit()

    # ---- export ------------------------------------------------------------------------
    def export_dialog(self) -> None:
        """Ask where to save and :meth:`export` there."""
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(
            self.owner, "Export region spectra (CSV, and one .msa per curve)",
            "regions.csv", "CSV (*.csv)")
        if path:
            files = self.export(path)
            self.owner.status.setText(f"Saved {len(files)} files: "
                                      + ", ".join(f.name for f in files))

    def export(self, path: str | os.PathLike) -> list[Path]:
        """Write the region spectra: ``path`` (CSV: an energy column, then one column
        per curve as shown) and next to it one EMSA/MSA file of counts per curve,
        ``<stem>_<region>.msa``. Returns the files written."""
        if not self.spectra:
            raise ValueError("no region spectra are shown")
        path = Path(path)
        energy = self.energy()
        assert energy is not None
        written = [self._write_csv(path.with_suffix(".csv"), energy)]
        for r, spec in zip(self.regions, self.spectra):
            out = path.with_name(f"{path.stem}_{_safe(r.name)}.msa")
            write_msa(out, spec, title=f"{r.name}: {spec['metadata']['General']['title']}")
            written.append(out)
        return written

    def _write_csv(self, path: Path, energy: EnergyAxis) -> Path:
        curves = self.shown()
        layer = self.owner.si_layer
        with open(path, "w", newline="", encoding="utf-8") as fh:
            fh.write(f"# napari-emd region spectra of {layer.name} "
                     f"({source_file(layer) or ''}); values: {ylabel(self.scale)}\n")
            writer = csv.writer(fh)
            writer.writerow([f"energy ({energy.units})", *[c[0] for c in curves]])
            cols = [c[1] for c in curves]
            for i, e in enumerate(energy.values):
                writer.writerow([f"{e:.6g}", *[f"{c[i]:.8g}" for c in cols]])
        return path
