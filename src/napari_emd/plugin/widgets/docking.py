"""Docking napari-emd's widgets so the canvas keeps its room, on a laptop too.

- a tall form (the loader) docks inside a scroll area, so its length never sets the
  window's minimum height (a 1366 × 768 screen kept the Load button, the sliders and
  the status bar below the screen edge);
- docks of napari-emd in a narrow window (napari's default, about 770 px) are
  tabified: side by side or stacked they squeezed the canvas to nothing;
- a dock gets a sensible width: :data:`DOCK_WIDTH`, at most :data:`DOCK_SHARE` of the
  window.

Public API only: napari's ``add_dock_widget(..., tabify=)`` and ``geometry()``, and
Qt's own ``QMainWindow.resizeDocks`` on the dock's parent window.
"""

from __future__ import annotations

import contextlib
from typing import Any

from qtpy.QtCore import QEvent, QObject, QSize, Qt, QTimer
from qtpy.QtWidgets import QDockWidget, QMainWindow, QScrollArea

from ..compat import dock_widgets

#: A window narrower than this stacks napari-emd's docks as tabs.
NARROW_WINDOW = 1400
#: The width a dock gets (pixels), and at most this share of the window's width.
DOCK_WIDTH = 360
DOCK_SHARE = 0.23
#: The narrowest a scrolling form gets (it scrolls sideways below its own width).
SCROLL_MIN_WIDTH = 290
#: Screens smaller than this (available pixels) get the spectrum viewer docked alone by
#: ``napari-emd view``; the loader stays one click away in the Plugins menu.
SMALL_SCREEN = (1600, 900)


def window_width(viewer: Any) -> int | None:
    """The width of the viewer's window (``None`` without a window)."""
    window = getattr(viewer, "window", None)
    with contextlib.suppress(Exception):
        return int(window.geometry()[2])
    return None


def is_narrow(viewer: Any) -> bool:
    """Whether the viewer's window is too narrow for docks side by side."""
    width = window_width(viewer)
    return width is not None and width < NARROW_WINDOW


def widgets_for_screen(width: int, height: int) -> tuple[str, ...]:
    """The napari-emd widgets ``napari-emd view`` docks on a screen of ``width`` ×
    ``height`` available pixels: both on a big screen, the spectrum viewer alone on a
    small one (a laptop)."""
    if width < SMALL_SCREEN[0] or height < SMALL_SCREEN[1]:
        return ("Spectrum viewer",)
    return ("Spectrum viewer", "Spectrum-image loader")


def size_dock(dock: Any, viewer: Any) -> None:
    """Give ``dock`` (a QDockWidget in the viewer's window) a sensible width."""
    width = window_width(viewer)
    main = dock.parentWidget() if isinstance(dock, QDockWidget) else None
    if width is None or not isinstance(main, QMainWindow):
        return
    target = int(min(DOCK_WIDTH, DOCK_SHARE * width))
    with contextlib.suppress(Exception):
        main.resizeDocks([dock], [target], Qt.Orientation.Horizontal)


def size_docks(viewer: Any) -> None:
    """Give every napari-emd dock of the viewer its sensible width again (after the
    window took its final size)."""
    with contextlib.suppress(Exception):
        for name, widget in dock_widgets(viewer.window).items():
            if "napari-emd" not in name:
                continue
            w = getattr(widget, "native", widget)
            while w is not None and not isinstance(w, QDockWidget):
                w = w.parentWidget()
            if w is not None:
                size_dock(w, viewer)


def size_docks_soon(viewer: Any) -> None:
    """:func:`size_docks` once Qt has laid out what a read changed (the loader's facts
    of a new file can widen its dock)."""
    QTimer.singleShot(0, lambda: size_docks(viewer))


def _napari_emd_dock_names(viewer: Any) -> list[str]:
    with contextlib.suppress(Exception):
        return [n for n in dock_widgets(viewer.window) if "napari-emd" in n]
    return []


def add_dock(viewer: Any, widget: Any, name: str, area: str = "right") -> Any:
    """Dock ``widget`` in the viewer's window: tabified with napari-emd's other docks
    when the window is narrow, then sized. Returns the dock widget."""
    window = viewer.window
    tabify = is_narrow(viewer) and bool(_napari_emd_dock_names(viewer))
    dock = window.add_dock_widget(widget, name=name, area=area, tabify=tabify)
    _size_soon(dock, viewer)
    return dock


def _size_soon(dock: Any, viewer: Any) -> None:
    """Size ``dock`` now and once Qt has laid the window out (it widens docks then)."""
    size_dock(dock, viewer)
    QTimer.singleShot(0, lambda: size_dock(dock, viewer))


def add_plugin_dock(viewer: Any, widget_name: str) -> tuple[Any, Any]:
    """napari-emd's plugin widget ``widget_name`` docked (or the one already docked),
    tabified when the window is narrow, and sized."""
    window = viewer.window
    with contextlib.suppress(Exception):
        known = dock_widgets(window)  # already docked: napari returns it
        if any(widget_name in n for n in known):
            return window.add_plugin_dock_widget("napari-emd-io", widget_name)
    tabify = is_narrow(viewer) and bool(_napari_emd_dock_names(viewer))
    dock, widget = window.add_plugin_dock_widget("napari-emd-io", widget_name,
                                                 tabify=tabify)
    _size_soon(dock, viewer)
    return dock, widget


class _Scroll(QScrollArea):
    """A scroll area that asks for :data:`DOCK_WIDTH`, whatever its form's text (a long
    file name in the loader's facts widened the dock as a file was chosen)."""

    def sizeHint(self) -> QSize:
        return QSize(DOCK_WIDTH, 400)


class _Scroller(QObject):
    """Moves a docked widget into a scroll area as soon as it is docked."""

    def __init__(self, native: Any, magic: Any) -> None:
        super().__init__(native)
        self.native, self.magic = native, magic

    def eventFilter(self, obj: Any, event: Any) -> bool:
        if event.type() == QEvent.ParentChange:
            QTimer.singleShot(0, self.wrap)
        return False

    def wrap(self) -> None:
        with contextlib.suppress(RuntimeError):  # the widget was deleted meanwhile
            dock = self.native.parentWidget()
            if not isinstance(dock, QDockWidget) or dock.widget() is not self.native:
                return
            scroll = _Scroll()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QScrollArea.NoFrame)
            scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
            # napari's dock.inner_widget() finds the widget it was given through this
            scroll._magic_widget = self.native if self.magic is None else self.magic
            dock.setWidget(scroll)
            scroll.setWidget(self.native)
            scroll.setMinimumWidth(min(SCROLL_MIN_WIDTH,
                                       self.native.minimumSizeHint().width() + 16))
            # napari pinned the dock to the form's full size when docking it: that
            # size forced a 1650 px tall window on a 768 px screen
            dock.setMinimumSize(scroll.minimumWidth(), 120)


def scroll_when_docked(native: Any, magic: Any = None) -> None:
    """Put ``native`` (a form's Qt widget; ``magic`` its magicgui widget) in a scroll area
    whenever it is docked: its full height no longer sets the window's minimum."""
    native.installEventFilter(_Scroller(native, magic))


__all__ = ["DOCK_SHARE", "DOCK_WIDTH", "NARROW_WINDOW", "SMALL_SCREEN", "add_dock",
           "add_plugin_dock", "is_narrow", "scroll_when_docked", "size_dock", "size_docks",
           "size_docks_soon",
           "widgets_for_screen"]
