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
  the spectrum viewer dock and each table in a table dock; it stays open until the
  next file opens (it has no layer to remove), then its docks close;
- a file with images opens on its own: the shown layers of earlier files are hidden
  (:func:`hide_other_files`), so two scans are never drawn over each other;
- napari's grid mode follows what is shown (:meth:`.view.Presenter.update_grid`, here
  and whenever layers are removed): on for several independent images (Velox's
  panels; :func:`side_by_side`), off for a scan with maps or a spectrum image;
- reciprocal-space layers (FFTs, 1/length units) that would share the viewer with
  real-space ones open in a window of their own instead (:func:`split_spaces`): napari
  has one world and one scale bar per viewer, so a hidden FFT in 1/µm among images in
  µm would still set the view's extent (the image a speck) and drop every unit.

Nothing here reads data or adds layers; without a viewer none of it runs, so reading
stays free of napari.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..model import Dataset
from .layer_meta import source_file
from .layers import LayerData, file_info
from .view import install, layer_space, side_by_side


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
    before napari adds them: install its presenter, close the earlier files without an
    image, hide the layers of earlier files when this read brings images, dock the
    spectra and tables of files without an image, open reciprocal-space layers that
    would meet real-space ones in a window of their own, and set grid mode from what
    will be shown (``had_layers``: whether the viewer held layers before the read).
    Returns the layer tuples ``viewer`` gets. See the module docstring for when it
    runs."""
    presenter = install(viewer)
    paths = {os.path.realpath(f.path) for f in opened}
    presenter.close_files(keep={f.path for f in opened})
    here, elsewhere = split_spaces(viewer, [ly for f in opened for ly in f.layers])
    if elsewhere:
        presenter.open_elsewhere(elsewhere, [kw["name"] for _, kw, _ in here])
        opened = [OpenedFile(f.path, f.datasets, [ly for ly in f.layers
                                            if any(ly is h for h in here)])
                  for f in opened]
    if had_layers and here:
        hide_other_files(viewer, paths)
        presenter.fit_to(paths)  # the view fits the new scan, not every file's extent
    else:
        presenter.fit_to(set())
    for f in opened:
        if not f.layers and f.datasets:
            # spectra and tables only: they open in the spectrum viewer and table docks
            presenter.show_file(file_info(f.datasets, f.path))
    presenter.update_grid(adding=here)
    if getattr(viewer, "window", None) is not None:
        from .widgets.docking import size_docks_soon

        size_docks_soon(viewer)  # napari-emd's docks keep a sensible width
    return here


def hide_other_files(viewer: Any, paths: set[str]) -> list[Any]:
    """Hide the shown layers of files other than ``paths`` (real paths): a new file
    opens on its own, not drawn over an earlier file's scan (two scans rarely share a
    field of view, size or energy range); the earlier layers stay one click away in the
    layer list. Returns the layers hidden."""
    hidden = []
    for ly in viewer.layers:
        src = source_file(ly)
        if ly.visible and src and os.path.realpath(src) not in paths:
            ly.visible = False
            hidden.append(ly)
    return hidden


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


__all__ = ["OpenedFile", "hide_other_files", "set_up_viewer", "side_by_side", "split_spaces"]
