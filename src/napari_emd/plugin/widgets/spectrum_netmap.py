"""Element maps of the spectrum viewer: net counts of an X-ray line by default.

"Map element" maps the element's main line (Kα, else Lα, else Mα inside the spectrum)
with :func:`napari_emd.analysis.line_intensities`: an integration window two detector
FWHMs wide and a background window on each side (2 FWHM from the line, 1 FWHM wide),
the background interpolated linearly under the peak and subtracted. "raw window" keeps
the plain window sum of before; "net counts + σ" adds the per-pixel Poisson uncertainty
map as a hidden layer ``<map> σ``. A lazy SI is summed in a worker thread with a napari
progress bar, and the viewer's Cancel button stops it. The maps look as before: their
own colour, additive over the SI, named after the line (:func:`.spectrum_maps.show_map`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...analysis import line_intensities
from ...spectra import energy_axis
from ..layer_meta import Derived
from .runner import StepProgress
from .spectrum_maps import Window, show_map
from .spectrum_plot import line_label

NET = "net counts"
NET_SIGMA = "net counts + σ map"
RAW = "raw window"
MAP_KINDS = (NET, NET_SIGMA, RAW)


def kind_combo() -> Any:
    """The viewer's choice of element map."""
    from qtpy.QtWidgets import QComboBox

    combo = QComboBox()
    combo.addItems(list(MAP_KINDS))
    combo.setToolTip("Net counts: the line's window minus the background interpolated "
                     "from a window on each side; + σ adds the Poisson uncertainty map "
                     "(hidden); raw window: the plain window sum")
    return combo


def map_net(owner: Any, element: str, line: str, with_sigma: bool = False,
            background_windows: Any = None) -> None:
    """Map the net counts of ``element``'s ``line`` (``"Ka"``) of the owner's SI layer
    (a :class:`~.spectrum.SpectrumViewer`) as the layer ``"<SI> <El Kα>"``.
    ``background_windows``: ``(low1, high1, low2, high2)`` in keV instead of the
    placement rule (the file's windows; the status line says so)."""
    layer, rec = owner.si_layer, owner.record
    energy = energy_axis(rec.axes[-1], rec.signal_type)
    key = f"{element}_{line}"
    name = f"{layer.name} {line_label(element, line)}"
    bg = None
    if background_windows is not None:  # keV -> the record's energy unit
        bg = [np.asarray(background_windows, dtype=float) * (1.0 / energy.factor)]

    bar = StepProgress(f"Net counts of {line_label(element, line)} in {layer.name}") \
        if rec.is_lazy else None

    def compute() -> Any:
        try:
            res = line_intensities(rec, [key], compute=True, progress=bar,
                                   background_windows=bg)[key]
        finally:
            if bar is not None:
                bar.close()
        return res, np.asarray(res.net), np.asarray(res.sigma)

    def done(out: Any) -> None:
        if not any(lyr is layer for lyr in owner.viewer.layers):
            return  # the SI layer was removed meanwhile
        res, net, sigma = out
        f = energy.factor
        win = Window.of(energy, res.window[0] * f, res.window[1] * f, layer.name)
        backs = tuple((b[0] * f, b[1] * f) for b in (res.background_windows or ()))
        info = win.info(layer, name, rec.signal_type, energy.units)
        info.derived = Derived(layer.name, (win.e0, win.e1), (win.i0, win.i1),
                               energy.units, line=key, quantity="net counts",
                               background=backs)
        shown = show_map(owner.viewer, layer, name, net, info)
        if with_sigma:
            s_info = win.info(layer, f"{name} σ", rec.signal_type, energy.units)
            s_info.derived = Derived(layer.name, (win.e0, win.e1), (win.i0, win.i1),
                                     energy.units, line=key, quantity="sigma",
                                     background=backs)
            s_layer = show_map(owner.viewer, layer, f"{name} σ", sigma, s_info)
            s_layer.visible = False  # at hand in the layer list, not over the map
        owner.plot.show_window(win.lo, win.hi, energy.units)
        owner.plot.show_background(list(backs))
        text = "; ".join(f"{lo:.3f}–{hi:.3f}" for lo, hi in backs)
        source = "background windows from the file" if bg is not None else "background"
        owner.status.setText(
            f"Map {name}: net counts in {win.e0:.3f}–{win.e1:.3f} {energy.units}, "
            f"{source}: {text} {energy.units} (grey on the plot)")
        owner.map_ready.emit(shown)

    owner.status.setText(f"Mapping the net counts of {line_label(element, line)}…")
    owner.map_runner.submit(compute, done, threaded=rec.is_lazy)
