"""Make the screenshots of docs/widgets.md: both dock widgets on the synthetic Velox sample.

Run under a virtual display (the napari window must really be shown)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py

Writes ``docs/images/loader.png``, ``docs/images/spectrum_viewer.png`` (whole window) and
``docs/images/*_widget.png`` (the dock widgets alone); with the real files present
(``../shared/emd-data`` or ``$NAPARI_EMD_TEST_DATA``) also the ``docs/images/view_*.png``
of docs/what-you-see.md: real files as they first open, dropped on an empty viewer
(``--views``: only those) and ``docs/images/region_spectra*.png`` of docs/analysis.md:
region spectra over a real Velox SI (``--regions``: only those),
``docs/images/eds_*.png`` of docs/widgets.md: the EDS analysis dock on the real Test SI
file and on a synthetic file storing background windows (``--eds``: only those), and the
``docs/images/session_*.png`` of files opened one after another (``--session``), and
``docs/images/index_preview.png``: a big SI's first plane while its index is built
(``--preview``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"


def wait(ms: int) -> None:
    """Let Qt paint and run queued signals for ``ms`` milliseconds."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def wait_until(cond, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("the widget did not finish in time")
        wait(50)


def close_toasts() -> None:
    """Close napari's notification pop-ups (e.g. its PyQt5 deprecation notice), which
    would otherwise cover the canvas in the pictures."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    for w in QApplication.allWidgets():
        if isinstance(w, NapariQtNotification):
            w.hide()


def save(widget, name: str) -> None:
    close_toasts()
    widget.grab()  # a first grab lays out and paints what changed (a dock's plot)
    wait(300)
    path = OUT / name
    widget.grab().save(str(path))
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> int:
    import warnings

    # napari's PyQt5 deprecation notice would sit on top of the canvas in the pictures
    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated.*")
    import napari
    import numpy as np

    from napari_emd.plugin.sample import velox_si_path
    from napari_emd.plugin.widgets.spectrum import REGION

    if not os.environ.get("DISPLAY"):
        print("no DISPLAY: run me under xvfb-run (see the docstring)", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    only = {"--views": first_views, "--regions": region_spectra, "--eds": eds_views,
            "--session": session, "--preview": index_preview}
    for flag, make in only.items():  # one group of pictures only
        if flag in sys.argv:
            make()
            return 0
    path = velox_si_path()

    viewer = napari.Viewer(title="napari-emd", show=True)
    win = viewer.window._qt_window
    win.resize(1560, 960)
    wait(300)

    # 1. The loader: facts of the file, options, a per-detector lazy load.
    loader_dock, loader = viewer.window.add_plugin_dock_widget(
        "napari-emd-io", "Spectrum-image loader"
    )
    loader.ask_before_big_load = False
    worker = loader(path=path, rebin_energy=2)  # what pressing Load with these does
    assert worker is not None
    wait_until(lambda: loader.worker is None)
    wait(500)
    si = viewer.layers["EDS"]
    # the energy slider opened on the strongest peak of the file's spectrum
    viewer.layers.selection.active = si
    wait(500)
    save(win, "loader.png")
    save(loader.native, "loader_widget.png")

    # 2. The spectrum viewer: a hovered pixel with element markers, and an Fe map.
    viewer.window.remove_dock_widget(loader_dock)
    _, spec = viewer.window.add_plugin_dock_widget("napari-emd-io", "Spectrum viewer")
    spec.set_si_layer(si)
    spec.set_elements(["C", "O", "Fe", "Cu"])
    haadf = viewer.layers["HAADF"]
    haadf.visible = False
    spec.map_element("Cu")
    wait_until(lambda: not spec.map_runner.busy)
    spec.map_element("Fe")
    wait_until(lambda: not spec.map_runner.busy)
    fe = viewer.layers["EDS Fe Kα"]
    cu = viewer.layers["EDS Cu Kα"]
    fe.colormap, cu.colormap = "red", "cyan"
    si.visible = False
    # a circle around the iron-rich particle: the spectrum summed inside it
    fe_map = np.asarray(fe.data, dtype=float)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(fe_map, 4), (9, 9))
    smooth = windows.sum(axis=(-2, -1))  # 9 x 9 box sums: the middle of a particle
    idx = np.unravel_index(np.argmax(smooth), fe_map.shape)
    sc, tr = np.asarray(si.scale)[-2:], np.asarray(si.translate)[-2:]
    centre = tr + sc * np.asarray(idx, dtype=float)
    r = 5 * sc
    box = np.array([centre - r, [centre[0] - r[0], centre[1] + r[1]], centre + r,
                    [centre[0] + r[0], centre[1] - r[1]]])
    viewer.add_shapes([box], shape_type="ellipse", name="particle", edge_color="yellow",
                      face_color="transparent", edge_width=0.4,
                      units=tuple(si.units[-2:]))
    spec.region_combo.setCurrentText("particle")
    spec.set_mode(REGION)
    wait_until(lambda: not spec.runner.busy)
    wait(800)
    spec.plot.canvas.draw()
    wait(300)
    save(win, "spectrum_viewer.png")
    save(spec, "spectrum_widget.png")
    viewer.close()
    first_views()
    region_spectra()
    eds_views()
    session()
    index_preview()
    return 0


def session() -> None:
    """docs/what-you-see.md's session pictures: napari's default window (its own size)
    with a spectra file then the Test SI (the spectrum viewer below the canvas), and a
    1280 x 800 window with an SI then an image file (the SI's slider says whose it is)."""
    import napari

    from napari_emd.plugin.widgets.docking import size_docks

    data = Path(os.environ.get("NAPARI_EMD_TEST_DATA", ROOT.parent / "shared" / "emd-data"))
    if not data.is_dir():
        print(f"no real files in {data}: session pictures skipped")
        return
    viewer = napari.Viewer(title="napari-emd", show=True)  # napari's default size
    wait(300)
    for name in ("fei_emd_spectrum.emd", "Test SI 16x16 215 kx.emd"):
        viewer.open(str(data / name), plugin="napari-emd-io")
        wait(800)
    size_docks(viewer)
    wait(500)
    save(viewer.window._qt_window, "session_default_window.png")
    viewer.close()
    viewer = napari.Viewer(title="napari-emd", show=True)
    viewer.window._qt_window.resize(1280, 800)
    wait(300)
    for name in ("fei_emd_si.emd", "fei_emd_image.emd"):
        viewer.open(str(data / name), plugin="napari-emd-io")
        wait(800)
    save(viewer.window._qt_window, "session_hidden_slider.png")
    viewer.close()


def index_preview() -> None:
    """docs/spectrum-images.md's picture of a big SI's first plane, shown as a preview
    while its index is built: a synthetic 512 x 512 x 20-frame, 4-detector file (about
    210 M X-rays, written to a temporary folder), opened with an empty disk cache, the
    window grabbed as soon as the preview layer is there."""
    import tempfile

    import napari

    from napari_emd.plugin.indexing import is_preview
    from napari_emd.synthetic import write_velox_si

    with tempfile.TemporaryDirectory(prefix="napari-emd-shot-") as tmp:
        os.environ["NAPARI_EMD_CACHE"] = str(Path(tmp) / "cache")
        path = Path(tmp) / "big_si.emd"
        write_velox_si(path, ny=512, nx=512, frames=20, detectors=4,
                       counts_per_pixel=10.0, seed=1)
        viewer = napari.Viewer(title="napari-emd", show=True)
        viewer.window._qt_window.resize(1280, 800)
        wait(300)
        viewer.open(str(path), plugin="napari-emd-io")
        wait_until(lambda: any(is_preview(ly) for ly in viewer.layers), 300)
        viewer.window._qt_window.grab()
        wait(100)
        viewer.window._qt_window.grab().save(str(OUT / "index_preview.png"))
        print(f"wrote {(OUT / 'index_preview.png').relative_to(ROOT)}")
        viewer.close()


REGIONS_FILE = "fei_SI_SuperX-HAADF_10frames_10x50.emd"


def region_spectra() -> None:
    """docs/analysis.md: the spectra of two drawn regions and a painted label over a real
    Velox SI, overlaid with the whole scan, and the normalised difference view."""
    import napari
    import numpy as np
    from napari.layers import Layer

    from napari_emd.plugin.reader import reader_function
    from napari_emd.plugin.widgets.spectrum_regions import DIFFERENCE, NORMALISED, REGIONS

    path = Path(os.environ.get("NAPARI_EMD_TEST_DATA", "/work/shared/emd-data")) / REGIONS_FILE
    if not path.is_file():
        print(f"skipped region spectra: {path} not found", file=sys.stderr)
        return
    viewer = napari.Viewer(title="napari-emd", show=True)
    win = viewer.window._qt_window
    win.resize(1560, 960)
    for data, meta, kind in reader_function(str(path)):
        viewer.add_layer(Layer.create(data, meta, kind))
    _, spec = viewer.window.add_plugin_dock_widget("napari-emd-io", "Spectrum viewer")
    si = spec.si_layers()[0]
    spec.set_si_layer(si)
    ny, nx = spec.record.data.shape[-3:-1]
    sc, tr = np.asarray(si.scale)[-2:], np.asarray(si.translate)[-2:]

    def rect(y0, x0, y1, x1):
        c = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], float) - 0.5
        return c * sc + tr

    viewer.add_shapes([rect(0, 0, ny // 2, nx // 4), rect(ny // 2, nx // 2, ny, 3 * nx // 4)],
                      shape_type="rectangle", name="regions",
                      edge_color=["#1f9bff", "#ff4f8b"], face_color="transparent",
                      edge_width=float(sc[0]) * 0.3, units=tuple(si.units[-2:]))
    labels = np.zeros((ny, nx), int)
    labels[:, 3 * nx // 4 + 2:] = 2
    viewer.add_labels(labels, name="painted", scale=sc, translate=tr, opacity=0.35)
    si.visible = False  # the regions drawn over the HAADF image
    spec.set_mode(REGIONS)
    wait_until(lambda: not (spec.regions.runner.busy or spec.regions.timer.isActive()))
    spec.scale_combo.setCurrentText(NORMALISED)  # the scan has 10x the regions' counts
    wait(800)
    spec.plot.canvas.draw()
    wait(300)
    save(win, "region_spectra.png")
    spec.scale_combo.setCurrentText(DIFFERENCE)
    wait(500)
    spec.plot.canvas.draw()
    wait(300)
    save(spec, "region_spectra_difference_widget.png")
    viewer.close()


EDS_FILE = "Test SI 16x16 215 kx.emd"


def eds_views() -> None:
    """docs/widgets.md: the EDS analysis dock's profile along a diagonal line and its
    composition table (the scan and a rectangle) on the real Test SI file; then the dock
    alone on a synthetic SI whose file stores background windows for Fe."""
    import tempfile

    import napari
    import numpy as np
    from napari.layers import Layer

    from napari_emd.plugin.reader import reader_function
    from napari_emd.synthetic import write_velox_si

    def dock_on(path: Path) -> tuple:
        viewer = napari.Viewer(title="napari-emd", show=True)
        viewer.window._qt_window.resize(1560, 960)
        for data, meta, kind in reader_function(str(path)):
            viewer.add_layer(Layer.create(data, meta, kind))
        from qtpy.QtCore import Qt

        holder, dock = viewer.window.add_plugin_dock_widget(
            "napari-emd-io", "EDS analysis (profiles, composition)")
        viewer.window._qt_window.resizeDocks([holder], [430], Qt.Orientation.Horizontal)
        wait_until(lambda: not dock.runner.busy)
        return viewer, dock

    path = Path(os.environ.get("NAPARI_EMD_TEST_DATA", "/work/shared/emd-data")) / EDS_FILE
    if path.is_file():
        viewer, dock = dock_on(path)
        si = dock.si_layer
        si.visible = False
        ny, nx = dock.record.data.shape[-3:-1]
        sc, tr = np.asarray(si.scale)[-2:], np.asarray(si.translate)[-2:]
        box = np.array([[0, 0], [0, nx // 2], [ny - 1, nx // 2], [ny - 1, 0]], float)
        viewer.add_shapes([box * sc + tr], shape_type="rectangle", name="left",
                          edge_color="yellow", face_color="transparent",
                          edge_width=float(sc[0]) * 0.3, units=tuple(si.units[-2:]))
        viewer.add_shapes([np.array([[2.0, 1.0], [13.0, 14.0]]) * sc + tr],
                          shape_type="line", name="cut", edge_color="cyan",
                          edge_width=float(sc[0]) * 0.1, units=tuple(si.units[-2:]))
        dock.profile.refresh_layers()
        wait_until(lambda: not dock.runner.busy)
        wait(800)
        dock.profile.canvas.draw()
        wait(300)
        save(viewer.window._qt_window, "eds_profile.png")
        dock.tabs.setCurrentWidget(dock.composition)
        wait(500)
        save(viewer.window._qt_window, "eds_composition.png")
        viewer.close()
    else:
        print(f"skipped the EDS dock on {path}: not found", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        syn = Path(tmp) / "windows.emd"
        write_velox_si(syn, ny=48, nx=64, frames=1, detectors=2, counts_per_pixel=300.0,
                       seed=11, background_windows={"Fe": [(5.55, 5.85), (7.25, 7.55)]})
        viewer, dock = dock_on(syn)
        dock.set_lines("Fe, Cu, O")
        dock.tabs.setCurrentWidget(dock.composition)
        wait_until(lambda: not dock.runner.busy)
        wait(800)
        save(dock, "eds_file_windows_widget.png")
        viewer.close()


FIRST_VIEWS = {  # docs/what-you-see.md: file -> picture
    "Test SI 16x16 215 kx.emd": "view_velox_si.png",
    "example_velox_EELS_EDS.emd": "view_velox_eels_eds.png",
    "FFTComplexEven.emd": "view_velox_fft.png",
    "Si100_2D_3D_DPC_potential_2slices.emd": "view_prismatic.png",
}


def first_views() -> None:
    """Each file of FIRST_VIEWS opened as a user would (``viewer.open``), the presenter's
    workers given time to set the energy and contrast, then the whole window saved."""
    import napari

    data = Path(os.environ.get("NAPARI_EMD_TEST_DATA", ROOT.parent / "shared" / "emd-data"))
    if not data.is_dir():
        print(f"no real files in {data}: the view_*.png pictures are left as they are")
        return
    for name, png in FIRST_VIEWS.items():
        viewer = napari.Viewer(title=f"napari-emd: {name}", show=True)
        viewer.window._qt_window.resize(1500, 950)
        viewer.scale_bar.visible = True
        wait(300)
        layers = viewer.open(str(data / name), plugin="napari-emd-io")
        wait(2500)
        shown = viewer
        if name == "FFTComplexEven.emd":  # the FFT opens in a window of its own, in 1/µm
            from napari_emd.plugin.view import install

            shown = install(viewer).companion or viewer
            shown.window.resize(1500, 950)
            wait(1500)
        del layers
        shown.reset_view()
        wait(500)
        save(shown.window._qt_window, png)
        if shown is not viewer:
            shown.close()
        viewer.close()


if __name__ == "__main__":
    raise SystemExit(main())
