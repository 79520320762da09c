"""The spectrum-image loader (a magicgui form), driven in a real napari viewer: facts and
bounds from each file, calling it with parameters, frames numbered as in Velox, memory
warning, cancel, reload, two files in one viewer."""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pytest

from conftest import real_file
from napari_emd.model import SIFacts
from napari_emd.plugin.layer_meta import is_si_layer, layer_info
from napari_emd.plugin.widgets.loader import LoaderWidget
from napari_emd.plugin.widgets.loader_options import (
    available_memory,
    needed_bytes,
    reader_options,
)
from napari_emd.units import format_bytes

pytestmark = pytest.mark.napari

SI4 = "fei_SI_EDS-HAADF-4detectors_2frames.emd"
SI10 = "fei_SI_SuperX-HAADF_10frames_10x50.emd"


def _loader(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    w = LoaderWidget(viewer)
    qtbot.addWidget(w.native)
    w.ask_before_big_load = False
    return viewer, w


def _wait_loaded(qtbot, w, timeout=60_000, **params):
    with qtbot.waitSignal(w.loaded, timeout=timeout) as blocker:
        worker = w(**params) if params else w.load()
        assert worker is not None
    return blocker.args[0]


def _si_layers(viewer):
    return [lyr for lyr in viewer.layers if is_si_layer(lyr)]


def test_rebin_choices_memory_and_bytes():
    assert SIFacts("x", channels=4096).rebin_choices()[-1] == 256  # 16 channels left
    assert SIFacts("x", channels=12).rebin_choices(1) == [1, 2, 3, 4, 6, 12]
    assert format_bytes(1536) == "1.5 KiB"
    avail = available_memory()
    assert avail is None or avail > 0


def test_velox_frame_numbers_become_file_reader_s_range():
    facts = SIFacts("x", format="velox", has_si=True, readable=True, source="event streams",
                    ny=100, nx=200, n_frames=10, channels=4096, detectors=("a", "b"))
    values = {"first_frame": 3, "last_frame": 5, "sum_frames": False,
              "sum_EDS_detectors": True, "detectors": ["a", "b"], "rebin_energy": 4,
              "SI_dtype": "float32", "load_SI_image_stack": False,
              "select_type": "spectrum images", "lazy": True}
    opts = reader_options(facts, values)
    assert (opts["first_frame"], opts["last_frame"]) == (2, 5)  # frames 3, 4, 5
    assert opts["select_type"] == "spectrum_image" and opts["SI_dtype"] == "float32"
    assert needed_bytes(facts, values) == 100 * 200 * 3 * 1024 * 4
    with pytest.raises(ValueError, match="not inside 1 to 10"):
        reader_options(facts, {**values, "last_frame": 11})
    assert reader_options(facts, {**values, "first_frame": 1, "last_frame": 10})[
        "last_frame"] is None


def test_choices_bounds_and_defaults_come_from_each_file(make_napari_viewer, qtbot):
    _viewer, w = _loader(make_napari_viewer, qtbot)
    assert w.set_path(real_file(SI10)) is not None
    assert (w.first_frame.min, w.first_frame.max, w.first_frame.value) == (1, 10, 1)
    assert (w.last_frame.max, w.last_frame.value) == (10, 10)
    assert w.rebin_energy.choices == tuple(SIFacts("x", channels=4096).rebin_choices(16))
    assert "50 × 10" in w.facts_label.value
    w.first_frame.value, w.last_frame.value, w.sum_frames.value = 3, 7, False
    w.rebin_energy.value = 8
    # a second file: everything is reset to its own bounds and defaults
    w.set_path(real_file(SI4))
    assert (w.first_frame.max, w.last_frame.max, w.last_frame.value) == (2, 2, 2)
    assert w.first_frame.value == 1 and w.sum_frames.value is True
    assert w.rebin_energy.value == 1
    assert w.detectors.choices == ("SuperXG21", "SuperXG22", "SuperXG23", "SuperXG24")
    # the detectors to read: which are summed, or which become a layer each
    assert w.detectors.enabled and "summed" in w.detectors.tooltip
    assert w.detectors.value == list(w.detectors.choices)
    assert "16 × 16" in w.facts_label.value and "each frame can be read alone" in \
        w.facts_label.value
    # memory size follows the options
    w.sum_EDS_detectors.value = True
    assert w.estimated_nbytes() == 16 * 16 * 4096 * 2
    w.rebin_energy.value = 4
    assert w.estimated_nbytes() == 16 * 16 * 1024 * 2 and "KiB" in w.size_label.value
    # a file without an SI: the SI options are off, and say why
    w.set_path(real_file("fei_emd_image.emd"))
    assert not w.sum_frames.enabled and "no spectrum image" in w.sum_frames.tooltip
    assert "No spectrum image" in w.facts_label.value
    # one frame: frame options off, with the reason
    w.set_path(real_file("Test SI 16x16 215 kx.emd"))
    assert w.first_frame.enabled  # two frames
    w.set_path(real_file("example_velox_EELS_EDS.emd"))
    assert not w.first_frame.enabled and "one frame" in w.first_frame.tooltip


def test_calling_the_loader_with_parameters_loads_what_the_form_would(
    make_napari_viewer, qtbot
):
    _viewer, w = _loader(make_napari_viewer, qtbot)
    added = _wait_loaded(qtbot, w, path=str(real_file(SI4)), sum_frames=False,
                         sum_EDS_detectors=False, detectors=["SuperXG21", "SuperXG23"],
                         rebin_energy=2, select_type="spectrum_image", lazy=True)
    # the form shows what was loaded
    assert w.sum_frames.value is False and w.rebin_energy.value == 2
    assert w.select_type.value == "spectrum images"
    assert sorted(lyr.name for lyr in added) == ["EDS - SuperXG21", "EDS - SuperXG23"]
    for layer in added:
        assert isinstance(layer.data, da.Array), "a lazy load keeps the SI on disk"
        rec = layer_info(layer).record
        assert rec.is_lazy and rec.shape == (2, 16, 16, 2048)
    assert "Loaded" in w.status.value


def test_in_memory_load_equals_lazy_and_reload_replaces(make_napari_viewer, qtbot):
    viewer, w = _loader(make_napari_viewer, qtbot)
    w.set_path(real_file(SI4))
    lazy = _wait_loaded(qtbot, w)
    n_layers = len(viewer.layers)
    lazy_cube = np.asarray(layer_info(_si_layers(viewer)[0]).record.data.compute())
    w.lazy.value = False
    _wait_loaded(qtbot, w)
    (si,) = _si_layers(viewer)
    np.testing.assert_array_equal(layer_info(si).record.data, lazy_cube)
    assert len(viewer.layers) == n_layers == len(lazy)  # replaced, not piled up
    w.lazy.value = True
    w.sum_EDS_detectors.value = False
    w.detectors.value = ["SuperXG22", "SuperXG24"]
    _wait_loaded(qtbot, w)
    assert sorted(lyr.name for lyr in _si_layers(viewer)) == ["EDS - SuperXG22",
                                                              "EDS - SuperXG24"]


def test_frames_as_velox_numbers_them(make_napari_viewer, qtbot):
    viewer, w = _loader(make_napari_viewer, qtbot)
    _wait_loaded(qtbot, w, path=str(real_file(SI10)), first_frame=2, last_frame=4,
                 sum_frames=False, select_type="spectrum images")
    (si,) = _si_layers(viewer)
    rec = layer_info(si).record
    assert rec.shape[0] == 3  # frames 2, 3, 4
    md = rec.original_metadata["ImportedDataParameter"]
    assert (md["First_frame"], md["Last_frame"]) == (1, 4)


def test_cancel_drops_the_result(make_napari_viewer, qtbot):
    viewer, w = _loader(make_napari_viewer, qtbot)
    w.set_path(real_file(SI4))
    worker = w.load()
    assert worker is not None and w.cancel_button.enabled
    w.cancel()
    assert "cancelled" in w.status.value
    assert w.call_button.enabled and not w.cancel_button.enabled
    qtbot.waitUntil(lambda: not worker.is_running, timeout=60_000)
    qtbot.wait(200)
    assert len(viewer.layers) == 0


def test_errors_are_notified(make_napari_viewer, qtbot, tmp_path):
    _viewer, w = _loader(make_napari_viewer, qtbot)
    bad = tmp_path / "not_emd.emd"
    bad.write_bytes(b"this is not HDF5")
    assert w.set_path(bad) is None
    assert "Cannot read" in w.facts_label.value and not w.call_button.enabled
    src = real_file("example_signal.emd")
    copy = tmp_path / "signal.emd"
    copy.write_bytes(src.read_bytes())
    assert w.set_path(copy) is not None
    os.remove(copy)  # vanishes between choosing and loading
    with qtbot.waitSignal(w.failed, timeout=30_000) as blocker:
        w.load()
    assert blocker.args[0] and "could not load" in w.status.value


def test_memory_warning(make_napari_viewer, qtbot, tmp_path):
    from napari_emd.synthetic import write_velox_si

    _viewer, w = _loader(make_napari_viewer, qtbot)
    avail = available_memory()
    if avail is None:
        pytest.skip("free memory is unknown on this system")
    path = tmp_path / "s.emd"
    write_velox_si(path, ny=8, nx=8, frames=2, detectors=1)
    w.set_path(path)
    w.facts = SIFacts(str(path), format="velox", has_si=True, readable=True,
                      source="event streams", ny=4096, nx=4096, n_frames=50, channels=4096)
    assert w.lazy.value and w.memory_warning() is None
    w.lazy.value = False
    assert "needs" in (w.memory_warning() or "") and "needs" in w.size_label.value


def test_prefilled_from_the_selected_layer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    path = real_file("fei_emd_image.emd")
    viewer.open(str(path), plugin="napari-emd-io")
    w = LoaderWidget(viewer)
    qtbot.addWidget(w.native)
    assert str(w.path.value) == str(path)
    assert w.facts is not None and w.facts.format == "velox"


def test_manifest_docks_the_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-emd-io",
                                                         "Spectrum-image loader")
    assert isinstance(widget, LoaderWidget)


def test_drop_a_file_on_the_loader(make_napari_viewer, qtbot):
    from qtpy.QtCore import QMimeData, QPointF, Qt, QUrl
    from qtpy.QtGui import QDropEvent

    _viewer, w = _loader(make_napari_viewer, qtbot)
    path = real_file(SI4)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(5, 5), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    w._drops.filter.eventFilter(w.native, event)
    assert str(w.path.value) == str(path) and w.facts is not None and w.facts.has_si


def test_two_files_in_one_viewer_keep_usable_sliders(make_napari_viewer, qtbot):
    """A second file's layers go on sliders of their own kind: the EELS/EDS file after an
    EDS-only one gets an EELS slider next to the shared EDS one."""
    viewer, w = _loader(make_napari_viewer, qtbot)
    _wait_loaded(qtbot, w, path=str(real_file(SI4)))
    _wait_loaded(qtbot, w, path=str(real_file("example_velox_EELS_EDS.emd")))
    labels = [viewer.dims.axis_labels[a] for a in viewer.dims.not_displayed]
    assert sorted(labels) == ["EDS energy", "EELS energy loss"]
    for axis in viewer.dims.not_displayed:
        assert viewer.dims.nsteps[axis] <= 2 * 4096 + 256
    names = [ly.name for ly in viewer.layers]
    assert len(set(names)) == len(names)


def test_per_frame_view_leave_out_and_align(make_napari_viewer, qtbot, tmp_path):
    """A drifting SI: the loader plots each frame's X-rays, image mean and estimated
    drift; frames can be left out and the rest aligned; the layer says so."""
    from napari_emd.synthetic import write_velox_si

    drift = np.array([[0, 0], [1, 2], [3, -1], [4, 3]])
    path = tmp_path / "drift.emd"
    write_velox_si(path, ny=48, nx=40, frames=4, detectors=2, counts_per_pixel=3,
                   bincount=256, seed=2, drift=drift)
    _viewer, w = _loader(make_napari_viewer, qtbot)
    w.set_path(path)
    assert w.exclude_frames.choices == (1, 2, 3, 4) and w.align_frames.enabled
    qtbot.waitUntil(lambda: w.frames_panel.report is not None, timeout=60_000)
    report = w.frames_panel.report
    assert report.n_frames == 4 and report.counts is not None and (report.counts > 0).all()
    assert "HAADF" in report.image_means
    np.testing.assert_allclose(report.shifts, drift, atol=0.5)
    assert w.frames_panel.isVisibleTo(w.native)
    added = _wait_loaded(qtbot, w, exclude_frames=[3], align_frames=True,
                         select_type="spectrum images")
    names = [ly.name for ly in added]
    assert "EDS (aligned; frame 3 left out)" in names
    si = next(ly for ly in added if ly.name.startswith("EDS ("))
    fa = layer_info(si).record.metadata["Signal"]["Frame_alignment"]
    assert fa["frames"] == [0, 1, 3] and fa["excluded_frames"] == [2]
    assert w.options()["exclude_frames"] == (2,) and w.options()["align_frames"] is True


def _si_detectors(layers):
    return sorted(layer_info(lyr).record.si.detector for lyr in layers if is_si_layer(lyr))


@pytest.mark.realdata
def test_chosen_detectors_kept_apart_with_aligned_or_left_out_frames(make_napari_viewer,
                                                                      qtbot):
    """Two of four detectors, not summed, with align frames and then with a frame left
    out: exactly those two spectrum images, the record saying which (titles then read
    ``EDS - SuperXG21 (aligned)``; parsing them lost every spectrum image)."""
    viewer, w = _loader(make_napari_viewer, qtbot)
    chosen = ["SuperXG21", "SuperXG23"]
    _wait_loaded(qtbot, w, path=str(real_file(SI4)), sum_EDS_detectors=False,
                 detectors=chosen, align_frames=True)
    assert w.options()["detectors"] == chosen
    (si,) = {layer_info(lyr).record.si.aligned for lyr in _si_layers(viewer)}
    assert si is True and _si_detectors(viewer.layers) == chosen
    _wait_loaded(qtbot, w, align_frames=False, exclude_frames=[2])
    assert _si_detectors(viewer.layers) == chosen  # replaced, not piled up
    for layer in _si_layers(viewer):
        assert layer_info(layer).record.si.excluded_frames == (1,)
    # summed: the Select chooses which detectors are summed
    _wait_loaded(qtbot, w, sum_EDS_detectors=True, exclude_frames=[])
    (summed,) = _si_layers(viewer)
    assert layer_info(summed).record.si.detectors == tuple(chosen)


@pytest.mark.realdata
@pytest.mark.parametrize("frames", [{"align_frames": True}, {"exclude_frames": [1]}])
def test_file_reader_returns_the_chosen_detectors_kept_apart(frames):
    """The same through ``file_reader``: the two chosen detectors' cubes, equal to those
    of a read of all four kept apart with the same frame options."""
    from napari_emd import file_reader, read_datasets

    path = real_file(SI4)
    every = {d.si.detector: np.asarray(d.data)
             for d in read_datasets(path, sum_EDS_detectors=False, **frames)
             if d.si is not None}
    assert sorted(every) == ["SuperXG21", "SuperXG22", "SuperXG23", "SuperXG24"]
    out = file_reader(path, sum_EDS_detectors=False, detectors=["SuperXG23", "SuperXG21"],
                      select_type="spectrum_image", **frames)
    assert len(out) == 2
    for d, name in zip(out, ["SuperXG21", "SuperXG23"]):
        np.testing.assert_array_equal(d["data"], every[name])
        fa = d["metadata"]["Signal"]["Frame_alignment"]
        assert fa["aligned"] == ("align_frames" in frames)
        assert fa["excluded_frames"] == list(frames.get("exclude_frames", []))


def _chosen(w):
    return (w.detectors.choices, w.detectors.value, w.exclude_frames.choices,
            w.exclude_frames.value, w.rebin_energy.choices, w.rebin_energy.value)


@pytest.mark.realdata
def test_choices_survive_resets_new_layers_loads_and_docking(make_napari_viewer, qtbot):
    """napari resets a docked form's choices whenever a layer is added (and magicgui when
    it is docked): the detectors, frames left out and rebin choices come from the file's
    facts each time, and what was chosen stays chosen."""
    viewer = make_napari_viewer()
    _dock, w = viewer.window.add_plugin_dock_widget("napari-emd-io", "Spectrum-image loader")
    w.ask_before_big_load = False
    w.set_path(real_file(SI4))
    rebins = tuple(w.facts.rebin_choices(16))
    w.sum_EDS_detectors.value = False
    w.detectors.value = ["SuperXG22", "SuperXG24"]
    w.exclude_frames.value = [2]
    w.rebin_energy.value = 4
    expected = (("SuperXG21", "SuperXG22", "SuperXG23", "SuperXG24"),
                ["SuperXG22", "SuperXG24"], (1, 2), [2], rebins, 4)
    assert _chosen(w) == expected
    w.reset_choices()
    assert _chosen(w) == expected
    viewer.add_image(np.zeros((4, 4)), name="something else")
    assert _chosen(w) == expected
    _wait_loaded(qtbot, w)
    assert _chosen(w) == expected
    assert _si_detectors(viewer.layers) == ["SuperXG22", "SuperXG24"]
    _wait_loaded(qtbot, w)  # and again: not just the HAADF
    assert _si_detectors(viewer.layers) == ["SuperXG22", "SuperXG24"]
    # another file: its own choices
    w.set_path(real_file(SI10))
    assert w.exclude_frames.choices == tuple(range(1, 11))


@pytest.mark.realdata
def test_docked_onto_an_open_file_keeps_its_choices(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    path = real_file(SI4)
    viewer.open(str(path), plugin="napari-emd-io")
    _dock, w = viewer.window.add_plugin_dock_widget("napari-emd-io", "Spectrum-image loader")
    qtbot.wait(50)  # let Qt deliver the parent change (a reset of the choices)
    assert w.facts is not None and w.facts.path == str(path)
    assert w.detectors.choices == ("SuperXG21", "SuperXG22", "SuperXG23", "SuperXG24")
    assert w.detectors.value == list(w.detectors.choices)
    assert w.exclude_frames.choices == (1, 2)
    assert w.rebin_energy.choices == tuple(w.facts.rebin_choices(16))
    w.ask_before_big_load = False
    w.sum_EDS_detectors.value = False
    added = _wait_loaded(qtbot, w, select_type="spectrum images")
    assert _si_detectors(added) == list(w.detectors.choices)


def test_a_load_that_makes_no_spectrum_image_says_why(make_napari_viewer, qtbot, tmp_path):
    """A stream that cannot be decoded (found while decoding, so an in-memory load): the
    load asked for the spectrum image warns with the reader's reason, and the spectrum
    image of an earlier load is removed rather than left to pass for this load's
    result."""
    from napari.utils.notifications import notification_manager

    from conftest import write_si_with_bad_stream

    info = write_si_with_bad_stream(tmp_path / "bad.emd")
    viewer, w = _loader(make_napari_viewer, qtbot)
    # the good detector alone still makes a spectrum image
    _wait_loaded(qtbot, w, path=str(info.path), detectors=[info.detectors[1]], lazy=False)
    assert len(_si_layers(viewer)) == 1 and "No spectrum image" not in w.status.value
    shown = []

    def keep(event):
        shown.append(str(getattr(event, "message", "")))

    def warnings_shown():
        return [m for m in shown if "No spectrum image" in m]

    notification_manager.notification_ready.connect(keep)
    try:
        _wait_loaded(qtbot, w, detectors=list(info.detectors))
        assert not _si_layers(viewer), "the earlier spectrum image is not this load's"
        assert "No spectrum image was made" in w.status.value
        assert "cannot be decoded" in w.status.value
        qtbot.waitUntil(lambda: bool(warnings_shown()), timeout=5_000)
        assert "cannot be decoded" in warnings_shown()[0]
        # images only: nothing was asked of the spectrum image, nothing to warn about
        n = len(warnings_shown())
        _wait_loaded(qtbot, w, select_type="images")
        assert "No spectrum image" not in w.status.value and len(warnings_shown()) == n
    finally:
        notification_manager.notification_ready.disconnect(keep)
