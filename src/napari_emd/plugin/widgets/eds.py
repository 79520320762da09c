"""The EDS analysis dock: line profiles and Cliff–Lorimer compositions of a spectrum
image, from the net counts of the chosen X-ray lines (:mod:`napari_emd.analysis`).

The dock owns what both tabs share: the spectrum-image layer, the chosen lines, the
net-count maps of those lines (computed once per layer and line set, in a worker thread
for a lazy SI) and the analysis settings kept with the session. The settings (lines,
k-factors, weight %, profile width) live in the SI layer's metadata under
:data:`STATE_KEY`, which napari-emd's writer stores with the layer: reopening a saved
session gives them back. The tabs are :mod:`.profile` and :mod:`.composition`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ... import xray_lines
from ...analysis import line_intensities
from ...errors import Cancelled
from ...formats.velox.quantsettings import eds_quant_settings
from .runner import LatestRunner, StepProgress, cancel_button
from .si_chooser import SIChooser, SIOwner

#: The key of the analysis settings in a spectrum-image layer's metadata.
STATE_KEY = "eds_analysis"


def parse_lines(text: str | list[str], e_min: float = 0.1, e_max: float = 20.0) -> list[str]:
    """Line names like ``"Fe_Ka"`` from text such as ``"Fe, Cu_Ka, O Ka"``: an element
    alone stands for its mapping line inside ``[e_min, e_max]`` keV (Kα, else Lα, else
    Mα). ``ValueError`` names what is not an element or not one of its lines."""
    tokens = text if isinstance(text, list) else \
        [t for t in str(text).replace(";", ",").split(",") if t.strip()]
    out: list[str] = []
    for token in tokens:
        parts = str(token).strip().replace("_", " ").split()
        if not parts:
            continue
        if xray_lines.unknown_elements(parts[0]):
            raise ValueError(f"{parts[0]!r} is not an element symbol")
        el = xray_lines.normalize_element(parts[0])
        if len(parts) > 1:
            if parts[1] not in xray_lines.lines(el):
                raise ValueError(f"{el} has no line {parts[1]!r} (it has "
                                 f"{', '.join(xray_lines.lines(el))})")
            name = f"{el}_{parts[1]}"
        else:
            chosen = xray_lines.map_line(el, e_min, e_max)
            if chosen is None:
                raise ValueError(f"{el} has no X-ray line inside {e_min:.2f}–{e_max:.2f} keV")
            name = f"{el}_{chosen[0]}"
        if name not in out:
            out.append(name)
    return out


def velox_quant_settings(rec: Any) -> str:
    """What a Velox file says about its own quantification (cross-section model,
    absorption correction), as one line for the user, or ``""``."""
    om = getattr(rec, "original_metadata", None) or {}
    groups = [(om.get("SharedProperties") or {}).get("EDSSpectrumQuantificationSettings"),
              (om.get("Operations") or {}).get("ImageQuantificationOperation")]
    for group in groups:
        for v in (group or {}).values() if isinstance(group, dict) else ():
            if not isinstance(v, dict):
                continue
            model = v.get("ionizationCrossSectionModel")
            absorption = v.get("absorptionCorrection") or {}
            on = str(absorption.get("enabled", absorption.get("useAbsorptionCorrection",
                                                               ""))).lower() == "true"
            bits = []
            if model:
                bits.append(f"cross sections {model}")
            bits.append(f"absorption correction {'on' if on else 'off'}")
            return ("Velox settings in the file: " + ", ".join(bits)
                    + " (Velox quantifies with cross sections, no k-factors are stored)")
    return ""


class EDSAnalysis(SIOwner, QWidget):
    """Dock widget: profiles along line/path shapes and the composition table of the
    whole scan and each region, for the chosen lines of one spectrum-image layer."""

    #: emitted when new net-count maps are ready (the tabs redraw)
    maps_ready = Signal()

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.runner = LatestRunner(self._on_error)
        self._maps: tuple[Any, Any, dict[str, Any]] | None = None
        self._restoring = False

        from .composition import CompositionPanel
        from .profile import ProfilePanel

        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.layer_combo = SIChooser(self.viewer, "Spectrum-image layer to analyse", 6)
        form.addRow("SI layer", self.layer_combo)
        self.lines_edit = QLineEdit()
        self.lines_edit.setPlaceholderText("lines, e.g. Fe, Cu_Ka, O")
        self.lines_edit.setToolTip(
            "X-ray lines to quantify: 'Fe_Ka', or an element alone for its main line. "
            "Net counts: a window of 2 FWHM minus the background interpolated from "
            "windows on both sides")
        self.lines_edit.editingFinished.connect(self._lines_typed)
        form.addRow("Lines", self.lines_edit)
        layout.addLayout(form)
        self.file_bg = QCheckBox("Background windows from the file")
        self.file_bg.setChecked(True)
        self.file_bg.setVisible(False)  # shown when the file stores windows of a line
        self.file_bg.toggled.connect(self._file_bg_toggled)
        layout.addWidget(self.file_bg)
        self.tabs = QTabWidget()
        self.profile = ProfilePanel(self)
        self.composition = CompositionPanel(self)
        self.tabs.addTab(self.profile, "Profile")
        self.tabs.addTab(self.composition, "Composition")
        layout.addWidget(self.tabs, 1)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.status, 1)
        self.cancel_btn = cancel_button([self.runner])  # stops a lazy SI's net maps
        row.addWidget(self.cancel_btn)
        layout.addLayout(row)
        self.layer_combo.currentIndexChanged.connect(self._si_layer_changed)
        self.layer_combo.layers_changed.connect(self._refresh_layers)
        self._refresh_layers()

    # ---- the spectrum-image layer -------------------------------------------------------
    def _refresh_layers(self, event: Any = None) -> None:
        cur = self.si_layer
        self.layer_combo.refresh(cur)
        if self.si_layer is not cur:
            self._si_layer_changed()
        self.profile.refresh_layers()
        self.composition.refresh_layers()

    def _si_layer_changed(self, *_: Any) -> None:
        self._maps = None
        layer, rec = self.si_layer, self.record
        if rec is None:
            self.status.setText("Open a spectrum image.")
            return
        state = (layer.metadata or {}).get(STATE_KEY)
        self._restoring = True
        try:
            # by default as Velox did: its windows when its quantification used them
            settings = eds_quant_settings(getattr(rec, "original_metadata", None))
            used = settings is None or settings.manual_background_windows
            self.file_bg.blockSignals(True)
            self.file_bg.setChecked(bool(state.get("file_background", used))
                                    if isinstance(state, dict) else used)
            self.file_bg.blockSignals(False)
            if isinstance(state, dict) and state.get("lines"):
                self.lines_edit.setText(", ".join(str(s) for s in state["lines"]))
                self.composition.restore(state)
                self.profile.restore(state)
            else:
                els = (rec.metadata.get("Sample") or {}).get("elements") or []
                try:
                    lines = parse_lines(list(els), *self.energy_range())
                except ValueError:
                    lines = []
                self.lines_edit.setText(", ".join(lines))
                self.composition.restore({"lines": lines})
        finally:
            self._restoring = False
        self.composition.set_note(velox_quant_settings(rec))
        self.recompute()

    def energy_range(self) -> tuple[float, float]:
        """The SI's energy range in keV (for choosing an element's line)."""
        rec = self.record
        ax = rec.axes[-1]
        factor = 1e-3 if (ax.units or "") == "eV" else 1.0
        ends = (ax.offset * factor, (ax.offset + ax.scale * (ax.size - 1)) * factor)
        return max(min(ends), 0.1), max(ends)

    # ---- lines and settings -------------------------------------------------------------
    def lines(self) -> list[str]:
        """The chosen lines (``"Fe_Ka"``...)."""
        if self.record is None:
            return []
        return parse_lines(self.lines_edit.text(), *self.energy_range())

    def set_lines(self, lines: str | list[str]) -> None:
        """Choose the lines (text like ``"Fe, Cu_Ka"`` or a list); recompute."""
        self.lines_edit.setText(lines if isinstance(lines, str) else ", ".join(lines))
        self._lines_typed()

    def _lines_typed(self) -> None:
        try:
            lines = self.lines()
        except ValueError as err:
            self._on_error(err)
            return
        self.lines_edit.setText(", ".join(lines))
        self.composition.lines_changed(lines)
        self.save_state()
        self.recompute()

    def save_state(self) -> None:
        """Keep the settings in the SI layer's metadata (saved with the session)."""
        layer = self.si_layer
        if layer is None or self._restoring:
            return
        try:
            lines = self.lines()
        except ValueError:
            return
        state = {"lines": lines, "file_background": self.file_bg.isChecked(),
                 **self.composition.state(), **self.profile.state()}
        layer.metadata = {**(layer.metadata or {}), STATE_KEY: state}

    def file_windows(self, lines: list[str]) -> dict[str, tuple[float, ...]]:
        """``{line: (low1, high1, low2, high2)}`` keV: the background windows the SI's
        Velox file stores for each of ``lines`` that has a pair (see
        :meth:`~napari_emd.formats.velox.quantsettings.EDSQuantSettings.line_background`)."""
        rec = self.record
        settings = eds_quant_settings(getattr(rec, "original_metadata", None))
        if settings is None:
            return {}
        found = {ln: settings.line_background(ln) for ln in lines}
        return {ln: w for ln, w in found.items() if w is not None}

    def _file_bg_toggled(self, *_: Any) -> None:
        self.save_state()
        self.recompute()

    # ---- net-count maps -----------------------------------------------------------------
    def recompute(self) -> None:
        """Compute the net-count maps of the chosen lines when they are not at hand,
        then let both tabs redraw."""
        rec = self.record
        try:
            lines = tuple(self.lines())
        except ValueError as err:
            self._on_error(err)
            return
        stored = self.file_windows(list(lines)) if rec is not None else {}
        self.file_bg.setVisible(bool(stored))
        settings = eds_quant_settings(getattr(rec, "original_metadata", None))
        velox = ("Velox's quantification used them" if settings is None
                 or settings.manual_background_windows else
                 "Velox's quantification did not use them (manual windows off)")
        self.file_bg.setToolTip(f"Net counts with the background windows the Velox file "
                                f"stores ({velox}; else placed 2 FWHM either side of the "
                                "line): " +
                                "; ".join(f"{ln} {w[0]:.3f}–{w[1]:.3f}, {w[2]:.3f}–"
                                          f"{w[3]:.3f} keV" for ln, w in stored.items()))
        if not self.file_bg.isChecked():
            stored = {}
        if rec is None or not lines:
            self.profile.redraw()
            self.composition.redraw()
            return
        key = (lines, tuple(stored.items()))
        if self._maps is not None and self._maps[0] is rec.data and self._maps[1] == key:
            self.maps_ready.emit()
            return
        self.status.setText(f"Computing net counts of {', '.join(lines)}…")

        bar = StepProgress(f"Net counts of {', '.join(lines)} in {self.si_layer.name}") \
            if rec.is_lazy and self.si_layer is not None else None

        def compute() -> tuple[dict[str, Any], str]:
            try:
                return _net_maps(rec, list(lines), stored, bar)
            finally:
                if bar is not None:
                    bar.close()

        def done(result: tuple[dict[str, Any], str]) -> None:
            try:
                if self.record is not rec:
                    return
            except RuntimeError:  # the viewer (its widgets) closed while computing
                return
            maps, note = result
            self._maps = (rec.data, key, maps)
            from_file = (f"; background windows from the file for {', '.join(stored)}"
                         if stored else "")
            self.status.setText(f"Net counts of {', '.join(lines)}{from_file}" + (
                f". {note}" if note else ""))
            self.maps_ready.emit()

        self.runner.submit(compute, done, threaded=rec.is_lazy)

    def maps(self) -> dict[str, Any] | None:
        """``{line: (net (y, x), sigma (y, x))}`` of the chosen lines, when computed (not
        those of lines chosen before, e.g. when the new ones' maps were cancelled)."""
        rec = self.record
        if self._maps is None or rec is None or self._maps[0] is not rec.data:
            return None
        try:
            if self._maps[1][0] != tuple(self.lines()):
                return None
        except ValueError:
            return None
        return self._maps[2]

    def _on_error(self, err: BaseException) -> None:
        from napari.utils.notifications import show_error

        if isinstance(err, Cancelled):  # the tabs drop what they showed of older lines
            self.status.setText("Cancelled.")
            self.profile.redraw()
            self.composition.redraw()
            return
        msg = f"napari-emd EDS analysis: {err}"
        self.status.setText(msg)
        show_error(msg)


def _net_maps(rec: Any, lines: list[str], file_windows: dict[str, tuple[float, ...]],
              progress: Any = None) -> tuple[dict[str, Any], str]:
    """Net counts and sigmas of ``lines`` on the ``(y, x)`` grid (frames summed), with
    the background windows ``file_windows`` (keV) for the lines it names."""
    import warnings

    bg = None
    if file_windows:  # keV -> the record's energy unit; NaN: the placement rule
        per_kev = 1e3 if (rec.axes[-1].units or "") == "eV" else 1.0
        bg = [np.asarray(file_windows.get(ln, (np.nan,) * 4), dtype=float) * per_kev
              for ln in lines]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = line_intensities(rec, lines, compute=True, background_windows=bg,
                               progress=progress)
    out: dict[str, Any] = {}
    ny, nx = rec.data.shape[-3], rec.data.shape[-2]
    for line, r in res.items():
        net = np.asarray(r.net, dtype=float).reshape(-1, ny, nx).sum(0)
        var = (np.asarray(r.sigma, dtype=float) ** 2).reshape(-1, ny, nx).sum(0)
        out[line] = (net, np.sqrt(var))
    return out, "; ".join(str(w.message) for w in caught)
