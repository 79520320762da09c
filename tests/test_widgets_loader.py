"""The spectrum-image loader widget, driven in a real napari viewer."""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pytest

from conftest import real_file
from napari_emd.model import SIFacts
from napari_emd.plugin.layer_meta import is_si_layer, layer_info
from napari_emd.plugin.widgets.loader import (
    FileFacts,
    LoaderWidget,
    available_memory,
    estimate_nbytes,
    read_facts,
)
from napari_emd.units import format_bytes

pytestmark = pytest.mark.napari

SI4 = "fei_SI_EDS-HAADF-4detectors_2frames.emd"


def _wait_loaded(qtbot, widget, timeout=60_000):
    with qtbot.waitSignal(widget.loaded, timeout=timeout) as blocker:
        worker = widget.load()
        assert worker is not None
    return blocker.args[0]


def _si_layers(viewer):
    return [lyr for lyr in viewer.layers if is_si_layer(lyr)]


def test_divisors_and_bytes():
    every = SIFacts("x", channels=4096).rebin_choices(1)
    assert every[:4] == [1, 2, 4, 8] and every[-1] == 4096
    assert SIFacts("x", channels=4096).rebin_choices()[-1] == 256  # 16 channels left
    assert SIFacts("x", channels=12).rebin_choices(1) == [1, 2, 3, 4, 6, 12]
    assert format_bytes(1536) == "1.5 KiB"
    avail = available_memory()
    assert avail is None or avail > 0


def test_facts_of_a_velox_si_without_data():
    facts = read_facts(real_file(SI4))
    assert facts.format == "velox" and facts.has_si
    assert (facts.ny, facts.nx, facts.n_frames, facts.channels) == (16, 16, 2, 4096)
    assert facts.detectors == ["SuperXG21", "SuperXG22", "SuperXG23", "SuperXG24"]
    assert facts.energy_units == "keV" and facts.energy_range[1] > facts.energy_range[0]
    assert facts.pixel_units == "nm" and facts.pixel_size == pytest.approx(1.234, rel=1e-3)
    assert facts.pruned is False
    text = facts.summary()
    assert "16 × 16" in text and "SuperXG24" in text and "Pruned: no" in text


def test_facts_of_a_file_without_si():
    facts = read_facts(real_file("example_signal.emd"))
    assert facts.format == "ncem" and not facts.has_si
    assert any("3×3×3" in d for d in facts.datasets)


def test_estimate_nbytes():
    f = FileFacts(path="x", format="velox", has_si=True, ny=100, nx=200, n_frames=10,
                  channels=4096, dtype="uint16", detectors=["a", "b", "c", "d"])
    base = 100 * 200 * 4096 * 2
    assert estimate_nbytes(f, {}) == base
    assert estimate_nbytes(f, {"rebin_energy": 4}) == base // 4
    assert estimate_nbytes(f, {"sum_frames": False, "first_frame": 2, "last_frame": 5}) \
        == base * 3
    assert estimate_nbytes(f, {"sum_EDS_detectors": False}, n_detectors=2) == base * 2
    assert estimate_nbytes(f, {"SI_dtype": "float32"}) == base * 2


def test_widget_shows_facts_and_bounds(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    w = LoaderWidget(viewer)
    qtbot.addWidget(w)
    facts = w.set_path(real_file(SI4))
    assert facts is not None
    assert "16 × 16" in w.facts_label.text()
    assert w.si_box.isEnabled()
    assert (w.first_frame.minimum(), w.first_frame.maximum()) == (0, 1)
    assert (w.last_frame.minimum(), w.last_frame.maximum(), w.last_frame.value()) == (1, 2, 2)
    rebins = [int(w.rebin.itemText(i)) for i in range(w.rebin.count())]
    assert rebins == SIFacts("x", channels=4096).rebin_choices(1)
    assert w.detector_list.count() == 4
    assert not w.detector_list.isEnabled()  # summing all detectors
    w.sum_detectors.setChecked(False)
    assert w.detector_list.isEnabled()
    # memory size follows the options
    w.sum_detectors.setChecked(True)
    assert w.estimated_nbytes() == 16 * 16 * 4096 * 2
    w.rebin.setCurrentText("4")
    assert w.estimated_nbytes() == 16 * 16 * 1024 * 2
    assert "KiB" in w.size_label.text()
    # a file without an SI greys out the SI options
    w.set_path(real_file("fei_emd_image.emd"))
    assert not w.si_box.isEnabled()
    assert "No spectrum image" in w.facts_label.text()


def test_lazy_load_with_options_and_detector_subset(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    w = LoaderWidget(viewer)
    qtbot.addWidget(w)
    w.set_path(real_file(SI4))
    w.set_detectors(["SuperXG21", "SuperXG23"])
    w.rebin.setCurrentText("2")
    w.sum_frames.setChecked(False)
    w.select_type.setCurrentText("spectrum images")
    opts = w.options()
    assert opts["sum_EDS_detectors"] is False and opts["rebin_energy"] == 2
    assert opts["lazy"] is True and opts["select_type"] == "spectrum_image"
    added = _wait_loaded(qtbot, w)
    names = sorted(lyr.name for lyr in added)
    assert names == ["EDS - SuperXG21", "EDS - SuperXG23"]
    for layer in added:
        assert isinstance(layer.data, da.Array), "a lazy load must keep the SI on disk"
        assert layer.data.shape == (2, 2048, 16, 16)  # frame, energy, y, x
        assert layer.scale[1] == pytest.approx(0.01)  # 2 x 0.005 keV
        assert str(layer.units[1]) in ("keV", "kiloelectron_volt")
        rec = layer_info(layer).record
        assert rec.is_lazy and rec.shape == (2, 16, 16, 2048)
    assert "Loaded" in w.status.text()


def test_in_memory_load_matches_lazy_and_reload_replaces(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    w = LoaderWidget(viewer)
    qtbot.addWidget(w)
    w.set_path(real_file(SI4))
    lazy_layers = _wait_loaded(qtbot, w)
    n_layers = len(viewer.layers)
    si = next(lyr for lyr in lazy_layers if lyr.name == "EDS")
    lazy_sum = np.asarray(si.data.sum(axis=0).compute())
    assert len(_si_layers(viewer)) == 1

    w.lazy.setChecked(False)
    mem_layers = _wait_loaded(qtbot, w)
    si2 = next(lyr for lyr in mem_layers if lyr.name == "EDS")
    assert isinstance(si2.data, np.ndarray)
    np.testing.assert_array_equal(si2.data.sum(axis=0), lazy_sum)
    # the same file again: its layers are replaced, not piled up
    assert len(viewer.layers) == n_layers
    assert len(_si_layers(viewer)) == 1

    # per-detector layers replace the summed one
    w.lazy.setChecked(True)
    w.set_detectors(["SuperXG22", "SuperXG24"])
    _wait_loaded(qtbot, w)
    assert sorted(lyr.name for lyr in _si_layers(viewer)) == ["EDS - SuperXG22",
                                                              "EDS - SuperXG24"]


def test_cancel_drops_the_result(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    w = LoaderWidget(viewer)
    qtbot.addWidget(w)
    w.set_path(real_file(SI4))
    worker = w.load()
    assert worker is not None and w.cancel_button.isEnabled()
    w.cancel()
    assert "cancelled" in w.status.text()
    assert w.load_button.isEnabled() and not w.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=60_000)
    qtbot.wait(200)
    assert len(viewer.layers) == 0


def test_errors_are_notified(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    w = LoaderWidget(viewer)
    qtbot.addWidget(w)
    bad = tmp_path / "not_emd.emd"
    bad.write_bytes(b"this is not HDF5")
    assert w.set_path(bad) is None
    assert "Cannot read" in w.facts_label.text()
    assert not w.load_button.isEnabled()
    # a file that vanishes between choosing and loading: the worker's error is reported
    src = real_file("example_signal.emd")
    copy = tmp_path / "signal.emd"
    copy.write_bytes(src.read_bytes())
    assert w.set_path(copy) is not None
    os.remove(copy)
    with qtbot.waitSignal(w.failed, timeout=30_000) as blocker:
        w.load()
    assert blocker.args[0]
    assert "could not load" in w.status.text()


def test_memory_warning(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    w = LoaderWidget(viewer)
    qtbot.addWidget(w)
    avail = available_memory()
    if avail is None:
        pytest.skip("free memory is unknown on this system")
    huge = FileFacts(path="huge.emd", format="velox", has_si=True, ny=4096, nx=4096,
                     n_frames=50, channels=4096, dtype="uint16", detectors=["a"])
    w.facts = huge
    w._apply_facts(huge)
    assert w.lazy.isChecked() and w.memory_warning() is None
    w.lazy.setChecked(False)
    assert "needs" in (w.memory_warning() or "")
    assert "needs" in w.size_label.text()


def test_prefilled_from_selected_layer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    path = real_file("fei_emd_image.emd")
    viewer.open(str(path), plugin="napari-emd-io")
    w = LoaderWidget(viewer)
    qtbot.addWidget(w)
    assert w.path_edit.text() == str(path)
    assert w.facts is not None and w.facts.format == "velox"


def test_manifest_docks_the_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-emd-io", "Spectrum-image loader")
    assert isinstance(widget, LoaderWidget)


def test_drop_a_file_on_the_widget(make_napari_viewer, qtbot):
    from qtpy.QtCore import QMimeData, QPointF, Qt, QUrl
    from qtpy.QtGui import QDropEvent

    viewer = make_napari_viewer()
    w = LoaderWidget(viewer)
    qtbot.addWidget(w)
    path = real_file(SI4)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(5, 5), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    w.dropEvent(event)
    assert w.path_edit.text() == str(path)
    assert w.facts is not None and w.facts.has_si


@pytest.mark.slow
def test_load_keeps_the_viewer_responsive(make_napari_viewer, qtbot, tmp_path):
    """An in-memory load decodes in a worker thread: the Qt event loop keeps running."""
    import time

    from qtpy.QtCore import QTimer

    from napari_emd.synthetic import write_velox_si

    path = tmp_path / "big.emd"
    write_velox_si(path, ny=160, nx=160, frames=6, detectors=4, counts_per_pixel=6.0)
    viewer = make_napari_viewer()
    w = LoaderWidget(viewer)
    qtbot.addWidget(w)
    w.set_path(path)
    w.lazy.setChecked(False)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(10)
    t0 = time.monotonic()
    added = _wait_loaded(qtbot, w)
    elapsed = time.monotonic() - t0
    timer.stop()
    assert isinstance(next(lyr for lyr in added if lyr.name == "EDS").data, np.ndarray)
    # the longest pause of the event loop is far shorter than the load
    gaps = np.diff([t0, *ticks, time.monotonic()])
    assert len(ticks) > 3
    # (generous: a shared CI machine can stall any process for a moment)
    assert gaps.max() < max(1.0, 0.6 * elapsed), (gaps.max(), elapsed)


def test_loading_a_file_opened_through_a_symlink_replaces_its_layers(
    make_napari_viewer, qtbot, tmp_path
):
    """A file dropped on napari and then loaded with the widget (here under another
    spelling of its path, and with a renamed layer) gives one layer per dataset."""
    src = real_file("fei_emd_si.emd")
    link = tmp_path / "link.emd"
    os.symlink(src, link)
    viewer = make_napari_viewer()
    opened = viewer.open(str(src), plugin="napari-emd-io")
    opened[0].name = "my HAADF"
    w = LoaderWidget(viewer)
    qtbot.addWidget(w)
    w.set_path(link)
    _wait_loaded(qtbot, w)
    names = sorted(lyr.name for lyr in viewer.layers)
    assert names == ["EDS", "HAADF"], names
