"""The spectrum-image layer chooser of the spectrum viewer and the EDS analysis dock, and
the Shapes/Labels layer lists both keep.

:class:`SIChooser` is the "SI layer" combo: it lists the viewer's napari-emd spectrum-image
layers and holds the chosen one by object (a renamed layer stays chosen), listens to the
viewer's layer list for its owner (``layers_changed``) and unhooks itself when the dock
closes. :class:`SIOwner` gives a dock ``si_layer``, ``record``, ``set_si_layer`` and
``si_layers`` over its ``layer_combo``. :func:`relist` refills a combo of layer names
keeping the choice; :class:`FollowedLayer` is the one Shapes or Labels layer a dock
listens to (its edits redraw the dock).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox

from .. import compat
from ..layer_meta import is_si_layer, si_record


def _unhooker(connections: list[tuple[Any, Any]]) -> Callable[..., None]:
    """A slot for ``destroyed`` that disconnects ``connections`` (a closure, not a bound
    method: it runs after the widget is gone)."""

    def unhook(*_: Any) -> None:
        for signal, slot in connections:
            with contextlib.suppress(TypeError, ValueError, RuntimeError):
                signal.disconnect(slot)

    return unhook


class SIChooser(QComboBox):
    """Combo of the viewer's spectrum-image layers; the chosen one is held by object."""

    #: the viewer's layer list changed (inserted, removed, reordered, renamed): the event
    layers_changed = Signal(object)

    def __init__(self, viewer: Any, tooltip: str, min_chars: int = 4) -> None:
        super().__init__()
        self.viewer = viewer
        self.listed: list[Any] = []  # the SI layers listed, in the combo's order
        self.setToolTip(tooltip)
        # long layer and file names must not widen the dock (and squeeze the canvas)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(min_chars)
        layers = viewer.layers
        connections = [(ev, self._changed) for ev in (
            layers.events.inserted, layers.events.removed, layers.events.reordered,
            compat.layers_renamed(layers))]
        for signal, slot in connections:
            signal.connect(slot)
        self.destroyed.connect(_unhooker(connections))

    def _changed(self, event: Any = None) -> None:
        self.layers_changed.emit(event)

    @property
    def layer(self) -> Any:
        """The chosen spectrum-image layer, ``None`` when there is none (or it left)."""
        i = self.currentIndex()
        if 0 <= i < len(self.listed):
            layer = self.listed[i]
            if any(lyr is layer for lyr in self.viewer.layers):
                return layer
        return None

    def set_layer(self, layer: Any) -> None:
        """Choose ``layer`` when it is listed (``currentIndexChanged`` tells the owner)."""
        i = next((k for k, lyr in enumerate(self.listed) if lyr is layer), -1)
        if i >= 0:
            self.setCurrentIndex(i)

    def refresh(self, keep: Any) -> bool:
        """List the viewer's SI layers anew without signals, choosing ``keep`` when it is
        one of them (else the first). Whether ``keep`` is still listed."""
        self.blockSignals(True)
        try:
            self.clear()
            self.listed = [lyr for lyr in self.viewer.layers if is_si_layer(lyr)]
            self.addItems([lyr.name for lyr in self.listed])
            i = next((k for k, lyr in enumerate(self.listed) if lyr is keep), -1)
            if i >= 0:
                self.setCurrentIndex(i)
        finally:
            self.blockSignals(False)
        return i >= 0


class SIOwner:
    """``si_layer``, ``record`` and the rest for a dock whose ``layer_combo`` is an
    :class:`SIChooser`."""

    layer_combo: SIChooser

    @property
    def si_layer(self) -> Any:
        """The chosen spectrum-image layer (by object, not by name)."""
        return self.layer_combo.layer

    @property
    def record(self) -> Any:
        """The chosen layer's :class:`~napari_emd.Dataset` record, or ``None``."""
        layer = self.layer_combo.layer
        return si_record(layer) if layer is not None else None

    def set_si_layer(self, layer: Any) -> None:
        """Work on ``layer`` (a napari-emd spectrum-image layer)."""
        self.layer_combo.set_layer(layer)

    def si_layers(self) -> list[Any]:
        """The viewer's spectrum-image layers."""
        return [lyr for lyr in self.layer_combo.viewer.layers if is_si_layer(lyr)]


def layer_names(viewer: Any, *types: type) -> list[str]:
    """Names of the viewer's layers of ``types`` (e.g. napari's Shapes, Labels), in order."""
    return [lyr.name for lyr in viewer.layers if isinstance(lyr, types)]


def relist(combo: QComboBox, names: list[str], choose: str | None) -> None:
    """Fill ``combo`` with ``names`` without signals, choosing ``choose`` when listed."""
    combo.blockSignals(True)
    try:
        combo.clear()
        combo.addItems(names)
        if choose in names:
            combo.setCurrentText(choose)
    finally:
        combo.blockSignals(False)


class FollowedLayer:
    """The one layer a dock listens to: ``slots`` maps event names (``"data"``,
    ``"paint"``...) to the dock's slots; events a layer lacks are skipped."""

    def __init__(self, slots: dict[str, Callable[..., Any]]) -> None:
        self.slots = slots
        self.layer: Any = None

    def follow(self, layer: Any) -> bool:
        """Listen to ``layer`` instead; whether it is another layer than before."""
        if layer is self.layer:
            return False
        self.drop()
        self.layer = layer
        for name, slot in self.slots.items() if layer is not None else ():
            ev = getattr(layer.events, name, None)
            if ev is not None:
                ev.connect(slot)
        return True

    def drop(self, *_: Any) -> None:
        """Stop listening (the layer left, or the dock closed)."""
        old, self.layer = self.layer, None
        for name, slot in self.slots.items() if old is not None else ():
            ev = getattr(old.events, name, None)
            if ev is not None:
                with contextlib.suppress(TypeError, ValueError, RuntimeError):
                    ev.disconnect(slot)
