"""Docking napari-emd's widgets so the canvas keeps its room, on a laptop too.

- a tall form (the loader) docks inside a scroll area, so its length never sets the
  window's minimum height (a 1366 × 768 screen kept the Load button, the sliders and
  the status bar below the screen edge);
- docks of napari-emd in a narrow window (napari's default, about 770 to 1090 px) are
  tabified: side by side or stacked they squeezed the canvas to nothing;
- a dock gets a sensible width: :data:`DOCK_WIDTH`, at most :data:`DOCK_SHARE` of the
  window;
- where a dock at the side would leave the canvas less than half the window's width
  (napari's layer controls alone take 320 px), the spectrum viewer and the table docks go
  below the canvas instead, at most :data:`DOCK_HEIGHT_SHARE` of the window's height, and
  the spectrum viewer lays itself out sideways there (its controls left of the plot).

Public API only: napari's ``add_dock_widget(..., tabify=)`` and ``geometry()``, and
Qt's own ``QMainWindow.resizeDocks`` on the dock's parent window.
"""

from __future__ import annotations

import contextlib
from typing import Any

from qtpy.QtCore import QEvent, QObject, QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QDockWidget,
    QGridLayout,
    QLayout,
    QMainWindow,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..compat import dock_widgets

#: A window narrower than this stacks napari-emd's docks as tabs.
NARROW_WINDOW = 1400
#: The width a dock gets (pixels), and at most this share of the window's width.
DOCK_WIDTH = 360
DOCK_SHARE = 0.23
#: The narrowest a scrolling form gets (it scrolls sideways below its own width).
SCROLL_MIN_WIDTH = 290
#: The width napari's layer controls take at the left once an image is open.
NAPARI_CONTROLS = 320
#: A side dock narrower than this is no use: the dock goes below the canvas instead.
SIDE_MIN = 250
#: A dock below the canvas takes at most this share of the window's height.
DOCK_HEIGHT_SHARE = 0.36
#: The least height of a form's wide widget (the spectrum plot) laid out sideways.
SIDEWAYS_HEIGHT = 100
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


def side_room(viewer: Any) -> int | None:
    """The width a dock at the side may take so that the canvas keeps half the window
    (``None`` without a window)."""
    width = window_width(viewer)
    if width is None:
        return None
    left = NAPARI_CONTROLS
    with contextlib.suppress(Exception):
        left = max(left, viewer.window._qt_viewer.dockLayerControls.width())
    return int(width / 2 - left - 24)  # 24: the dock separators and frames


def goes_below(viewer: Any) -> bool:
    """Whether napari-emd's wide docks (spectrum viewer, tables) go below the canvas:
    at the side they would leave it less than half the window."""
    room = side_room(viewer)
    return room is not None and room < SIDE_MIN


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
    if main.dockWidgetArea(dock) == Qt.DockWidgetArea.BottomDockWidgetArea:
        height = main.height() * DOCK_HEIGHT_SHARE
        with contextlib.suppress(Exception):
            main.resizeDocks([dock], [int(height)], Qt.Orientation.Vertical)
        return
    target = int(min(DOCK_WIDTH, DOCK_SHARE * width, max(side_room(viewer) or 0,
                                                         SIDE_MIN)))
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


def _below_docks(viewer: Any) -> list[QDockWidget]:
    """napari-emd's docks (and the tables) shown below the canvas."""
    main = viewer.window._qt_window
    return [d for d in main.findChildren(QDockWidget) if d.isVisible()
            and main.dockWidgetArea(d) == Qt.DockWidgetArea.BottomDockWidgetArea
            and "console" not in d.objectName().lower()]


def move_below(viewer: Any, dock: Any) -> None:
    """Put ``dock`` below the canvas (napari's left docks keep the window's height),
    tabified with napari-emd's docks already there."""
    main = viewer.window._qt_window
    others = [d for d in _below_docks(viewer) if d is not dock]
    # napari's layer list and controls keep the full height at the left: under them the
    # dock would only take their height (and the window would grow)
    main.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
    main.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    if others:
        main.tabifyDockWidget(others[0], dock)
        dock.show()
        dock.raise_()


def add_dock(viewer: Any, widget: Any, name: str, area: str = "right") -> Any:
    """Dock ``widget`` in the viewer's window: below the canvas when a side dock would
    leave it less than half the window, tabified with napari-emd's other docks when the
    window is narrow, then sized. Returns the dock widget."""
    window = viewer.window
    below = goes_below(viewer)
    tabify = not below and is_narrow(viewer) and bool(_napari_emd_dock_names(viewer))
    dock = window.add_dock_widget(widget, name=name, area=area, tabify=tabify)
    if below:
        with contextlib.suppress(Exception):
            move_below(viewer, dock)
    _size_soon(dock, viewer)
    return dock


def _size_soon(dock: Any, viewer: Any) -> None:
    """Size ``dock`` now and once Qt has laid the window out (it widens docks then)."""
    size_dock(dock, viewer)
    QTimer.singleShot(0, lambda: size_dock(dock, viewer))


def add_plugin_dock(viewer: Any, widget_name: str) -> tuple[Any, Any]:
    """napari-emd's plugin widget ``widget_name`` docked (or the one already docked),
    tabified when the window is narrow, the spectrum viewer below the canvas when a
    side dock would leave it less than half the window (:func:`goes_below`), and
    sized."""
    window = viewer.window
    with contextlib.suppress(Exception):
        known = dock_widgets(window)  # already docked: napari returns it
        if any(widget_name in n for n in known):
            return window.add_plugin_dock_widget("napari-emd-io", widget_name)
    below = widget_name == "Spectrum viewer" and goes_below(viewer)
    tabify = not below and is_narrow(viewer) and bool(_napari_emd_dock_names(viewer))
    dock, widget = window.add_plugin_dock_widget("napari-emd-io", widget_name,
                                                 tabify=tabify)
    if below:
        with contextlib.suppress(Exception):
            move_below(viewer, dock)
    _size_soon(dock, viewer)
    return dock, widget


class _Scroll(QScrollArea):
    """A scroll area that asks for :data:`DOCK_WIDTH`, whatever its form's text (a long
    file name in the loader's facts widened the dock as a file was chosen)."""

    def sizeHint(self) -> QSize:
        return QSize(DOCK_WIDTH, 400)


class _Scroller(QObject):
    """Moves a docked widget into a scroll area as soon as it is docked."""

    def __init__(self, native: Any, magic: Any, wide: Any = None) -> None:
        super().__init__(native)
        self.native, self.magic = native, magic
        self.sideways = None if wide is None else _Sideways(native, wide)

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
            if self.sideways is not None:
                dock.dockLocationChanged.connect(self.sideways.follow)
                self.sideways.follow(dock.parentWidget().dockWidgetArea(dock)
                                     if isinstance(dock.parentWidget(), QMainWindow)
                                     else None)


class _Sideways:
    """A form whose layout is a column around one ``wide`` widget (the spectrum plot):
    the controls above and below it, or, docked below the canvas (wide and short), the
    controls in a scrolling column left of it, so the whole plot stays in view."""

    def __init__(self, native: Any, wide: Any) -> None:
        self.wide = wide
        # the minimum heights in ``wide`` (a plot's canvas): lowered when sideways
        self.tall = {w: w.minimumHeight() for w in (wide, *wide.findChildren(QWidget))
                     if w.minimumHeight() > SIDEWAYS_HEIGHT}
        column = native.layout()
        items = [column.takeAt(0) for _ in range(column.count())]
        at = next(i for i, it in enumerate(items) if it.widget() is wide)
        self.above, self.below = QWidget(), QWidget()
        for part, widget in ((items[:at], self.above), (items[at + 1:], self.below)):
            box = QVBoxLayout(widget)
            box.setContentsMargins(0, 0, 0, 0)
            for item in part:
                _move_item(item, box)
        self.side = QScrollArea()  # the controls' column when sideways
        self.side.setWidgetResizable(True)
        self.side.setFrameShape(QScrollArea.NoFrame)
        self.side.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.side.setWidget(QWidget())
        QVBoxLayout(self.side.widget()).setContentsMargins(0, 0, 4, 0)
        self.side.setFixedWidth(SCROLL_MIN_WIDTH)
        self.grid = QGridLayout()
        self.grid.setContentsMargins(0, 0, 0, 0)
        column.addLayout(self.grid)
        self.sideways: bool | None = None
        self.arrange(False)

    def follow(self, area: Any) -> None:
        """Lay out for the dock area ``area`` (sideways below or above the canvas)."""
        self.arrange(area in (Qt.DockWidgetArea.BottomDockWidgetArea,
                              Qt.DockWidgetArea.TopDockWidgetArea))

    def arrange(self, sideways: bool) -> None:
        if sideways == self.sideways:
            return
        grid = self.grid
        for part in (self.above, self.wide, self.below, self.side):
            grid.removeWidget(part)
        if sideways:
            box = self.side.widget().layout()
            box.addWidget(self.above)
            box.addWidget(self.below)
            box.addStretch(1)
            grid.addWidget(self.side, 0, 0)
            grid.addWidget(self.wide, 0, 1)
            for w in self.tall:
                w.setMinimumHeight(SIDEWAYS_HEIGHT)
        else:
            box = self.side.widget().layout()
            while box.count():
                box.takeAt(0)
            grid.addWidget(self.above, 0, 0)
            grid.addWidget(self.wide, 1, 0)
            grid.addWidget(self.below, 2, 0)
            for w, height in self.tall.items():
                w.setMinimumHeight(height)
        self.side.setVisible(sideways)
        grid.setRowStretch(1, 0 if sideways else 1)
        grid.setColumnStretch(1, 1 if sideways else 0)
        self.sideways = sideways


def _move_item(item: Any, target: QVBoxLayout) -> None:
    """Move one item taken from a layout into ``target``."""
    if isinstance(item.widget(), QWidget):
        target.addWidget(item.widget())
    elif isinstance(item.layout(), QLayout):
        sub = item.layout()
        sub.setParent(None)
        target.addLayout(sub)
    else:
        target.addItem(item)


def scroll_when_docked(native: Any, magic: Any = None, wide: Any = None) -> None:
    """Put ``native`` (a form's Qt widget; ``magic`` its magicgui widget) in a scroll area
    whenever it is docked: its full height no longer sets the window's minimum. With
    ``wide`` (a widget of ``native``'s column layout), the form lays itself out
    sideways, its controls left of ``wide``, when docked below the canvas."""
    native.installEventFilter(_Scroller(native, magic, wide))


__all__ = ["DOCK_HEIGHT_SHARE", "DOCK_SHARE", "DOCK_WIDTH", "NARROW_WINDOW", "SMALL_SCREEN",
           "add_dock", "add_plugin_dock", "goes_below", "is_narrow", "move_below",
           "scroll_when_docked", "side_room", "size_dock", "size_docks", "size_docks_soon",
           "widgets_for_screen"]
