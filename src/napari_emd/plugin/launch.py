"""Opening napari from the shell (``napari-emd view``): a viewer with a file (or the
bundled synthetic sample), the dock widgets (the spectrum viewer alone on a small
screen such as a 1366 × 768 laptop, :func:`.widgets.docking.widgets_for_screen`; the
loader is in the Plugins menu), and optionally a screenshot.

It works on machines without a display too: it starts a private Xvfb server (when
installed), renders the viewer there and saves a screenshot, printing its path. Qt's
``offscreen`` platform is not used because napari's OpenGL canvas needs a real X server.
The command line itself is :mod:`napari_emd.cli` (library side, no napari import), which
imports this module only to run ``view``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import time

from .compat import grid_of, overlay
from .view import install

_BIG = (1920, 1080)  # a screen size when Qt knows none


def _needs_virtual_display() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def start_virtual_display(size: str = "1600x1000x24") -> subprocess.Popen:
    """Start Xvfb on a free display number and point ``DISPLAY`` at it."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise SystemExit(
            "napari-emd: there is no display and Xvfb is not installed; install it "
            "(Debian/Ubuntu: apt-get install xvfb) or set DISPLAY"
        )
    for n in range(99, 400):
        if not os.path.exists(f"/tmp/.X{n}-lock") and not os.path.exists(f"/tmp/.X11-unix/X{n}"):
            break
    else:  # pragma: no cover
        raise SystemExit("napari-emd: no free X display number for Xvfb")
    proc = subprocess.Popen(
        [xvfb, f":{n}", "-screen", "0", size, "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(_stop, proc)
    deadline = time.monotonic() + 15
    while not os.path.exists(f"/tmp/.X11-unix/X{n}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("napari-emd: Xvfb did not start")
        time.sleep(0.05)
    os.environ["DISPLAY"] = f":{n}"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(Exception):
        proc.terminate()
        proc.wait(5)


def view(
    path: str | None, screenshot: str | None, widgets: bool = True,
    grid: bool | None = None,
) -> int:
    """Open napari with ``path`` (the bundled synthetic sample when ``None``); ``grid``
    True shows every layer side by side, False overlays them, None keeps the reader's
    choice (side by side for several independent images)."""
    headless = _needs_virtual_display()
    if headless:
        start_virtual_display()
        screenshot = screenshot or "napari-emd-sample.png"
    import napari

    viewer = napari.Viewer(title="napari-emd")
    if path is None:
        layers = viewer.open_sample("napari-emd-io", "velox_si")
    else:
        layers = viewer.open(path, plugin="napari-emd-io")
    del layers  # their first view (energy on the peak, contrast) is the presenter's
    if widgets:
        from qtpy.QtWidgets import QApplication

        from .widgets.docking import add_plugin_dock, size_docks, widgets_for_screen

        screen = QApplication.primaryScreen()
        avail = screen.availableGeometry() if screen is not None else None
        names = (widgets_for_screen(avail.width(), avail.height()) if avail is not None
                 else widgets_for_screen(*_BIG))
        for name in names:
            with contextlib.suppress(Exception):
                add_plugin_dock(viewer, name)
        # the docks took their room: fit the layers into the canvas that is left
        QApplication.processEvents()
        size_docks(viewer)
        QApplication.processEvents()
        viewer.reset_view()
    if grid is not None:
        install(viewer).grid_auto = False  # the user's choice, kept as layers change
        grid_of(viewer).enabled = grid
    overlay(viewer, "scale_bar").visible = True
    if screenshot:
        from qtpy.QtWidgets import QApplication

        viewer.window.resize(1500, 950)
        viewer.window.show()
        for i in range(20):
            QApplication.processEvents()
            time.sleep(0.05)
            if i == 10:  # the canvas has its final size now: fit the layers into it
                viewer.reset_view()
        viewer.screenshot(screenshot, canvas_only=False)
        print(os.path.abspath(screenshot))
        viewer.close()
        return 0
    napari.run()
    return 0


__all__ = ["start_virtual_display", "view"]
