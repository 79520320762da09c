"""Following the mouse and the sliders in the spectrum viewer: the pixel under the
cursor, a clicked pixel pinned, the same pixel in another frame. A mixin of
:class:`.spectrum.SpectrumViewer` (it uses the viewer's ``si_layer``, ``record``,
``mode`` and ``show_pixel``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...spectra import si_pixel, world_to_pixel
from ..layer_meta import layer_info

MOUSE = "pixel under the mouse"
CLICK = "clicked pixel"


class PointerMixin:
    """The mouse and slider handling of the spectrum viewer."""

    viewer: Any
    clicked: tuple[int, ...] | None
    _hover: tuple[int, ...] | None

    def _cursor_moved(self, event: Any = None) -> None:
        if self.mode != MOUSE:
            return
        _layer, rec = self.si_layer, self.record
        if rec is None:
            return
        idx = self._pixel(self.viewer.cursor.position)
        if idx is None or idx == self._hover:
            return
        self._hover = idx
        self.show_pixel(idx)

    def _slider_moved(self, event: Any = None) -> None:
        """With frames kept, moving the frame slider shows the same pixel's spectrum in
        the new frame."""
        _layer, rec = self.si_layer, self.record
        if rec is None or rec.data.ndim <= 3 or self.mode not in (MOUSE, CLICK):
            return
        pinned = self.clicked if self.mode == CLICK else self._hover
        if pinned is None:
            return
        coords = self._pixel(self.viewer.dims.point)
        if coords is None:
            # the dims point sits at the centre of the map; only its leading axes matter
            raw = self._display_coords(self.viewer.dims.point)[: rec.data.ndim - 3]
            lead = tuple(
                int(np.clip(np.floor(c + 0.5), 0, n - 1)) for c, n in zip(raw, rec.data.shape)
            )
        else:
            lead = coords[:-2]
        index = (*lead, *pinned[-2:])
        if index == pinned:
            return
        if self.mode == CLICK:
            self.clicked = index
        else:
            self._hover = index
        self.show_pixel(index)

    def _mouse_pressed(self, viewer: Any, event: Any) -> Any:
        """A click (press and release without dragging: a drag pans the view) on the map
        pins the pixel under it."""
        if event.type != "mouse_press" or self.mode not in (CLICK, MOUSE):
            return
        _layer, rec = self.si_layer, self.record
        if rec is None:
            return
        idx = self._pixel(event.position)
        if idx is None:
            return
        start = np.asarray(getattr(event, "pos", (0, 0)), dtype=float)
        yield
        while event.type == "mouse_move":
            yield
        end = np.asarray(getattr(event, "pos", start), dtype=float)
        if event.type == "mouse_release" and np.hypot(*(end - start)[:2]) <= 4:
            self.click_pixel(idx)

    def click_pixel(self, index: tuple[int, ...]) -> None:
        """Pin the pixel ``index``: its spectrum stays shown when the mouse moves on."""
        self.clicked = tuple(int(i) for i in index)
        if self.mode != CLICK:
            self.mode_combo.blockSignals(True)
            self.set_mode(CLICK)
            self.mode_combo.blockSignals(False)
            self.region_combo.setEnabled(False)
        self.show_pixel(self.clicked)

    def _pixel(self, position: Any) -> tuple[int, ...] | None:
        """The record index (every axis but energy) under a world position."""
        layer, rec = self.si_layer, self.record
        if rec is None:
            return None
        info = layer_info(layer)
        return si_pixel(layer, rec, position, info.record_axes if info else None)

    def _display_coords(self, position: Any) -> np.ndarray:
        """Coordinates in the record's display array ``(..., E, y, x)`` of a world
        position (0 on axes the layer has no axis for)."""
        layer, rec = self.si_layer, self.record
        coords = world_to_pixel(layer, position)
        info = layer_info(layer)
        if info is None or not info.record_axes:
            return coords
        shown = {r: c for r, c in zip(info.record_axes, coords) if r is not None}
        return np.array([shown.get(i, 0.0) for i in range(rec.data.ndim)])

