"""What opening EMD files does to a napari viewer, all in one place.

Reading a file (:func:`napari_emd.plugin.reader.read_layers`) makes layer data tuples
and touches no viewer; when it is given one (napari's reader hook and File > Open
Sample pass the current viewer, the loader its own), it then calls
:func:`set_up_viewer` once, after every file of the call was read and before the layer
tuples are returned, that is before napari adds the layers. That is the only place the
reader changes a viewer:

- the viewer gets its :class:`~napari_emd.plugin.view.Presenter` (one per viewer,
  :func:`napari_emd.plugin.view.install`), which gives every napari-emd layer its first
  view as napari inserts it (energy slider on the strongest peak, contrast, filler axes,
  energy readout);
- a file with nothing to show as an image (spectra and tables only) opens its spectra in
  the spectrum viewer dock and each table in a table dock;
- napari's grid mode is turned on when the viewer had no layers and the first file that
  gives layers is best seen side by side (several independent images, like Velox's
  panels; :func:`side_by_side`);
- reciprocal-space layers (FFTs, 1/length units) that would share the viewer with
  real-space ones open in a window of their own instead (:func:`split_spaces`): napari
  has one world and one scale bar per viewer, so a hidden FFT in 1/µm among images in
  µm would still set the view's extent (the image a speck) and drop every unit.

Nothing here reads data or adds layers; without a viewer none of it runs, so reading
stays free of napari.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..model import Dataset
from .compat import grid_of
from .layer_meta import is_si_layer
from .layers import LayerData, file_info
from .view import install, layer_space


@dataclass(frozen=True)
class OpenedFile:
    """One file of a read: its path, its records and the layer tuples made of them."""

    path: str
    datasets: list[Dataset]
    layers: list[LayerData]


def set_up_viewer(
    viewer: Any, opened: Sequence[OpenedFile], had_layers: bool
) -> list[LayerData]:
    """Prepare ``viewer`` for the layers of ``opened`` (the files of one read, in order)
    before napari adds them: install its presenter, dock the spectra and tables of files
    without an image, open reciprocal-space layers that would meet real-space ones in
    a window of their own, and turn grid mode on for side-by-side images in an empty
    viewer (``had_layers``: whether the viewer held layers before the read). Returns
    the layer tuples ``viewer`` gets. See the module docstring for when it runs."""
    presenter = install(viewer)
    here, elsewhere = split_spaces(viewer, [ly for f in opened for ly in f.layers])
    if elsewhere:
        presenter.open_elsewhere(elsewhere, [kw["name"] for _, kw, _ in here])
        opened = [OpenedFile(f.path, f.datasets, [ly for ly in f.layers
                                            if any(ly is h for h in here)])
                  for f in opened]
    for f in opened:
        if not f.layers and f.datasets:
            # spectra and tables only: they open in the spectrum viewer and table docks
            presenter.show_file(file_info(f.datasets, f.path))
    first = next((f.layers for f in opened if f.layers), None)
    if not had_layers and first is not None and side_by_side(first):
        grid = grid_of(viewer)
        grid.enabled = True  # like Velox's panels: every image in view
        grid.spacing = 0.05
    return here


def _space_of_units(units: Sequence[Any]) -> str:
    return layer_space(units[-1]) if units else "real"


def split_spaces(
    viewer: Any, layers: list[LayerData]
) -> tuple[list[LayerData], list[LayerData]]:
    """The layer tuples ``viewer`` gets and the reciprocal-space ones that open in a
    window of their own: those that would meet real-space layers (already in the viewer
    or of this read). Layers in pixels count as neither; a viewer without a window (a
    bare model) keeps them all."""
    if getattr(viewer, "window", None) is None:
        return layers, []
    spaces = {_space_of_units([str(u) for u in ly.units]) for ly in viewer.layers
              if getattr(ly, "units", None) is not None and ly.ndim >= 2
              and str(ly.units[-1]) != "pixel"}
    def space(kw: dict[str, Any]) -> str | None:
        units = kw.get("units") or []
        return None if not units or units[-1] == "pixel" else _space_of_units(units)

    spaces |= {sp for _, kw, _ in layers if (sp := space(kw)) is not None}
    if not {"real", "reciprocal"} <= spaces:
        return layers, []
    here = [ly for ly in layers if space(ly[1]) != "reciprocal"]
    return here, [ly for ly in layers if space(ly[1]) == "reciprocal"]


def side_by_side(layers: list[LayerData]) -> bool:
    """Whether a file's layers are best seen side by side (napari's grid): several
    independent images, none of them an element map drawn over the others and no
    spectrum image (its maps, regions and annotations are drawn over its scan, which a
    grid would put in cells of their own)."""
    images = [kw for _, kw, kind in layers if kind == "image"]
    if any(is_si_layer(kw) for kw in images):
        return False
    shown = [kw for kw in images if kw.get("visible", True)]
    if any(kw.get("blending") == "additive" for kw in shown):
        return False
    return len(shown) >= 2


__all__ = ["OpenedFile", "set_up_viewer", "side_by_side", "split_spaces"]
