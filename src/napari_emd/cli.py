"""The ``napari-emd`` command: ``info FILE`` lists datasets, ``view [FILE]`` opens napari,
``--version`` prints the version.

``view`` works on machines without a display too: it starts a private Xvfb server (when
installed), renders the viewer there and saves a screenshot, printing its path. Qt's
``offscreen`` platform is not used because napari's OpenGL canvas needs a real X server.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence

from .api import read_datasets, si_facts
from .errors import EMDError
from .model import Dataset, SIFacts
from .version import __version__


def _axis_text(ds: Dataset) -> str:
    parts = []
    for ax in ds.axes:
        unit = f" {ax.units}" if ax.units else ""
        if ax.vector is not None:
            parts.append(f"{ax.name}[{ax.size}] vector{unit}")
        else:
            parts.append(f"{ax.name}[{ax.size}] {ax.scale:.4g}{unit}")
    return ", ".join(parts)


def info_table(path: str) -> str:
    """A text table of the datasets of ``path`` (opened lazily: no data is read), and
    what the file says about its spectrum image."""
    datasets = read_datasets(path, lazy=True)
    rows = [("path", "title", "kind", "shape", "dtype", "axes (size, scale, units)")]
    for ds in datasets:
        rows.append(
            (ds.path, ds.title, ds.kind, "x".join(map(str, ds.shape)) or "()", str(ds.dtype),
             _axis_text(ds))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(r[-1]))
    lines.extend(si_lines(si_facts(path)))
    return "\n".join(lines)


def si_lines(facts: SIFacts) -> list[str]:
    """What ``napari-emd info`` says about a spectrum image."""
    if not facts.has_si:
        return []
    out = ["", f"Spectrum image ({facts.signal_type or 'unknown kind'}):"]
    if not facts.readable:
        return [*out, f"  cannot be read: {facts.reason}"]
    px = f", pixel {facts.pixel_size:.4g} {facts.pixel_units}" if facts.pixel_size else ""
    source = facts.grid_source or "the data"
    out.append(f"  scan grid     {facts.ny} x {facts.nx}{px} (from {source})")
    table = " (frame table: a frame range reads only those frames)" if facts.frame_table else ""
    out.append(f"  frames        {facts.n_frames}{table}")
    if facts.detectors:
        out.append(f"  detectors     {len(facts.detectors)}: {', '.join(facts.detectors)}")
    if facts.energy_range:
        lo, hi = facts.energy_range
        per = facts.energy_scale * (1000 if facts.energy_units == "keV" else 1)
        step = f", {per:.4g} eV per channel" if facts.energy_units in ("keV", "eV") else ""
        out.append(f"  channels      {facts.channels}, {lo:.4g} to {hi:.4g} "
                   f"{facts.energy_units}{step}")
    if facts.elements:
        out.append(f"  elements      {', '.join(facts.elements)}")
    if facts.source:
        out.append(f"  read from     {facts.source}")
    for lo, hi in facts.eels_ranges:
        out.append(f"  EELS SI       {lo:.4g} to {hi:.4g} eV")
    return out


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
        for name in ("Spectrum viewer", "Spectrum-image loader"):
            with contextlib.suppress(Exception):
                viewer.window.add_plugin_dock_widget("napari-emd-io", name)
    if grid is not None:
        from .plugin.reader import grid_of

        grid_of(viewer).enabled = grid
    bar = viewer.canvas.overlays["scale_bar"] if hasattr(viewer, "canvas") else viewer.scale_bar
    bar.visible = True
    if screenshot:
        from qtpy.QtWidgets import QApplication

        viewer.window._qt_window.resize(1500, 950)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-emd`` console script."""
    parser = argparse.ArgumentParser(
        prog="napari-emd",
        description="Electron Microscopy Datasets (.emd) from the shell: list what a file "
                    "holds, or open it in napari.")
    parser.add_argument("--version", action="version", version=f"napari-emd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="list the datasets of an EMD file (no data read)")
    p_info.add_argument("file")
    p_view = sub.add_parser("view", help="open napari with the plugin (sample when no file)")
    p_view.add_argument("file", nargs="?")
    p_view.add_argument("--screenshot", metavar="PNG", help="save a screenshot and exit")
    p_view.add_argument("--no-widgets", action="store_true", help="do not dock the widgets")
    p_view.add_argument("--grid", action=argparse.BooleanOptionalAction, default=None,
                        help="show the layers side by side (--no-grid: overlaid); by "
                             "default several independent images are side by side")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            print(info_table(args.file))
            return 0
        return view(args.file, args.screenshot, widgets=not args.no_widgets, grid=args.grid)
    except EMDError as err:
        print(f"napari-emd: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
