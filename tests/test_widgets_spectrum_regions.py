"""Region spectra, net-count element maps and the Velox quantification settings of the
spectrum viewer, in a real napari viewer on synthetic and real Velox SIs."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import long_lazy_si, progress_bar, real_file, write_viewer_si
from napari_emd.analysis import line_intensities, region_spectrum
from napari_emd.formats.velox.quantsettings import eds_quant_settings
from napari_emd.plugin.layer_meta import layer_info
from napari_emd.plugin.widgets.spectrum import SpectrumViewer
from napari_emd.plugin.widgets.spectrum_regions import (
    COUNTS,
    DIFFERENCE,
    NORMALISED,
    REGIONS,
    SCAN,
)
from napari_emd.synthetic import prune_velox_si, write_velox_si

pytestmark = pytest.mark.napari

NY, NX = 12, 16


@pytest.fixture(scope="module")
def si_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("si") / "si.emd"
    write_viewer_si(path)
    return path


def _open(make_napari_viewer, qtbot, path, **options):
    from napari.layers import Layer

    from napari_emd.plugin.reader import reader_function

    viewer = make_napari_viewer()
    for data, meta, kind in reader_function(path, **options):
        viewer.add_layer(Layer.create(data, meta, kind))
    w = SpectrumViewer(viewer)
    qtbot.addWidget(w)
    si = next(lyr for lyr in viewer.layers if layer_info(lyr) and w.si_layers()
              and lyr is w.si_layers()[0])
    w.set_si_layer(si)
    return viewer, w, si


def _hex(rgba):
    r, g, b = (round(float(c) * 255) for c in rgba[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _settle(qtbot, w):
    qtbot.waitUntil(lambda: not (w.runner.busy or w.map_runner.busy
                                 or w.regions.runner.busy or w.regions.timer.isActive()),
                    timeout=60_000)
    qtbot.wait(20)


def _rect(si, y0, x0, y1, x1):
    """A rectangle in world coordinates over SI pixels [y0, y1) x [x0, x1)."""
    sc, tr = np.asarray(si.scale[-2:]), np.asarray(si.translate[-2:])
    corners = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], float) - 0.5
    return corners * sc + tr


def test_region_spectra_overlay_export_and_edit(make_napari_viewer, qtbot, si_file,
                                                tmp_path):
    try:  # the read-back oracle; the oldest-versions run has no RosettaSciIO
        from rsciio.msa import file_reader as msa_reader
    except ImportError:
        msa_reader = None

    viewer, w, si = _open(make_napari_viewer, qtbot, si_file)
    rec = w.record
    shapes = viewer.add_shapes([_rect(si, 2, 3, 6, 9)], shape_type="rectangle",
                               edge_color="#ff00ff", name="roi")
    labels = np.zeros((NY, NX), int)
    labels[8:11, 1:5] = 3
    lab = viewer.add_labels(labels, name="grains", scale=si.scale[-2:],
                            translate=si.translate[-2:])
    w.set_mode(REGIONS)
    _settle(qtbot, w)
    curves = w.plot.curves
    assert [c[0].split(" (")[0] for c in curves] == [SCAN, "roi #1", "grains 3"]
    assert curves[1][2] == "#ff00ff"  # the shape's edge colour
    assert curves[2][2] == _hex(lab.get_color(3))
    mask = np.zeros((NY, NX), bool)
    mask[2:6, 3:9] = True
    np.testing.assert_allclose(curves[1][1], region_spectrum(rec, mask)["data"])
    np.testing.assert_allclose(curves[0][1], region_spectrum(rec)["data"])
    assert w.plot.ax.get_legend() is not None

    # normalised and difference views
    w.scale_combo.setCurrentText(NORMALISED)
    assert sum(w.plot.curves[1][1]) == pytest.approx(1.0)
    w.scale_combo.setCurrentText(DIFFERENCE)
    assert len(w.plot.curves) == 2  # the scan's difference to itself is left out
    assert w.plot.ax.get_ylim()[0] < 0
    w.scale_combo.setCurrentText(COUNTS)

    # export: one CSV, one MSA per curve, read back by RosettaSciIO
    files = w.regions.export(tmp_path / "regions.csv")
    assert [f.suffix for f in files] == [".csv", ".msa", ".msa", ".msa"]
    table = np.loadtxt(files[0], delimiter=",", skiprows=2)
    assert table.shape == (rec.data.shape[-1], 4)
    np.testing.assert_allclose(table[:, 2], curves[1][1], rtol=1e-7)
    if msa_reader is not None:
        back = msa_reader(str(files[2]))[0]
        np.testing.assert_allclose(back["data"], curves[1][1], rtol=1e-9)
        ax = back["axes"][0]
        assert ax["scale"] == pytest.approx(rec.axes[-1].scale)
        assert ax["offset"] == pytest.approx(rec.axes[-1].offset)

    # editing a shape recomputes (debounced)
    shapes.data = [_rect(si, 0, 0, 3, 3)]
    _settle(qtbot, w)
    mask[:] = False
    mask[0:3, 0:3] = True
    np.testing.assert_allclose(w.plot.curves[1][1], region_spectrum(rec, mask)["data"])
    # a hidden layer's regions leave the plot
    lab.visible = False
    _settle(qtbot, w)
    assert len(w.plot.curves) == 2


def test_default_grey_shapes_get_distinct_colours(make_napari_viewer, qtbot, si_file):
    viewer, w, si = _open(make_napari_viewer, qtbot, si_file)
    shapes = viewer.add_shapes([_rect(si, 1, 1, 4, 4), _rect(si, 6, 6, 9, 12)],
                               shape_type="rectangle")
    w.set_mode(REGIONS)
    _settle(qtbot, w)
    colours = [c[2] for c in w.plot.curves[1:]]
    assert len(set(colours)) == 2
    # the outlines on the map took the same colours
    edge = [_hex(c) for c in shapes.edge_color]
    assert edge == colours


def test_net_count_maps_sigma_and_raw(make_napari_viewer, qtbot, si_file):
    viewer, w, si = _open(make_napari_viewer, qtbot, si_file)
    rec = w.record
    with qtbot.waitSignal(w.map_ready, timeout=60_000) as blocker:
        w.map_element("Fe", kind="net counts + σ map")
    fe = blocker.args[0]
    assert fe.name == f"{si.name} Fe Kα"
    want = line_intensities(rec, ["Fe_Ka"], compute=True)["Fe_Ka"]
    np.testing.assert_allclose(fe.data.reshape(np.shape(want.net)), want.net)
    d = layer_info(fe).derived
    assert d.line == "Fe_Ka" and d.quantity == "net counts" and len(d.background) == 2
    sigma = viewer.layers[f"{fe.name} σ"]
    assert not sigma.visible
    np.testing.assert_allclose(sigma.data.reshape(np.shape(want.sigma)), want.sigma)
    assert len(w.plot._spans) == 2  # the background windows are shaded on the plot
    colormap = fe.colormap.name
    # the raw window map replaces the layer, same name and colour
    with qtbot.waitSignal(w.map_ready, timeout=60_000) as blocker:
        w.map_element("Fe", kind="raw window")
    raw = blocker.args[0]
    assert raw.name == fe.name and raw.colormap.name == colormap
    assert layer_info(raw).derived.quantity == "counts"
    assert raw.data.sum() > np.asarray(want.net).sum()  # background included


def test_lazy_net_map_shows_progress_and_really_cancels(make_napari_viewer, qtbot,
                                                         tmp_path):
    """A lazy SI of 32 row blocks (2048 x 128 pixels, 4096 channels): "Map element"
    shows a napari progress bar counting the blocks; Cancel while it runs stops the
    worker between blocks, before the last, and adds no map layer."""
    path = long_lazy_si(tmp_path / "long.emd")
    viewer, w, _si = _open(make_napari_viewer, qtbot, path)
    assert w.record.is_lazy and len(w.record.data.chunks[0]) == 32
    _settle(qtbot, w)
    n = len(viewer.layers)
    w.map_element("Fe")

    def bar():
        return progress_bar("Net counts of Fe Kα")

    # the bar appears with the first block done, while the worker still runs
    qtbot.waitUntil(lambda: bar() is not None, timeout=60_000)
    shown = bar()
    assert shown.total == 32 and 1 <= shown.n < 32
    assert w.map_runner.threaded_busy and w.cancel_btn.isEnabled()
    w.cancel_btn.click()
    _settle(qtbot, w)
    assert len(viewer.layers) == n  # no map layer
    assert "Cancelled" in w.status.text()
    assert shown.n < 32  # stopped between blocks, before the last
    assert bar() is None  # the bar is gone
    assert not w.map_runner.busy and not w.cancel_btn.isEnabled()


def test_si_layer_change_and_pruned_file(make_napari_viewer, qtbot, tmp_path):
    path = tmp_path / "pruned.emd"
    write_velox_si(path, ny=8, nx=10, frames=1, detectors=1, counts_per_pixel=30.0,
                   keep_counts=True, seed=2)
    prune_velox_si(path)
    viewer, w, si = _open(make_napari_viewer, qtbot, path)
    viewer.add_shapes([_rect(si, 1, 1, 5, 5)], shape_type="rectangle", edge_color="red")
    w.set_mode(REGIONS)
    _settle(qtbot, w)
    assert len(w.plot.curves) == 2
    # a second file's SI: the regions follow the selected SI
    other = tmp_path / "other.emd"
    write_velox_si(other, ny=6, nx=6, frames=1, detectors=1, counts_per_pixel=20.0,
                   keep_counts=True, seed=3)
    from napari.layers import Layer

    from napari_emd.plugin.reader import reader_function

    for data, meta, kind in reader_function(other):
        viewer.add_layer(Layer.create(data, meta, kind))
    w.set_mode(REGIONS)
    w.regions.update()
    _settle(qtbot, w)
    assert w.si_layer is not si
    assert w.plot.curves[0][1].size == w.record.data.shape[-1]


@pytest.mark.parametrize("name,elements", [
    ("Test SI 16x16 215 kx.emd", ("C", "Ca", "Cu", "O")),
    ("example_velox_EELS_EDS.emd", ("Co", "Fe", "O")),
])
def test_velox_quantification_settings(name, elements, make_napari_viewer, qtbot):
    path = real_file(name)
    from napari_emd import read_datasets

    rec = next(d for d in read_datasets(path) if "EDS" in d.signal_type)
    settings = eds_quant_settings(rec.original_metadata)
    assert settings is not None and settings.elements == elements
    assert settings.cross_section_model == "BrownPowell"
    text = settings.summary()
    assert "Absorption correction: off" in text and "BrownPowell" in text
    viewer, w, si = _open(make_napari_viewer, qtbot, path)
    if w.record is None:
        pytest.skip(f"{name} has no spectrum image layer")
    assert not w.velox_settings.isHidden()
    assert w.velox_settings.settings == settings
    assert set(w.elements()) == set(elements)
    viewer.add_shapes([_rect(si, 0, 0, 4, 4)], shape_type="rectangle", edge_color="cyan")
    w.set_mode(REGIONS)
    _settle(qtbot, w)
    assert [c[0].split(" (")[0] for c in w.plot.curves] == [SCAN, "Shapes #1"]


def test_no_settings_in_a_synthetic_file(make_napari_viewer, qtbot, si_file):
    _viewer, w, _si = _open(make_napari_viewer, qtbot, si_file)
    assert w.velox_settings.isHidden() and w.velox_settings.settings is None


def test_map_element_uses_the_files_background_windows(make_napari_viewer, qtbot,
                                                       tmp_path):
    """A file storing background windows for Fe: "Map element" subtracts the background
    of those windows by default (status and plot say so), the placement rule once the
    check box is off."""
    path = tmp_path / "bg.emd"
    write_velox_si(path, ny=NY, nx=NX, frames=1, detectors=1, counts_per_pixel=200.0,
                   seed=6, background_windows={"Fe": [(5.55, 5.85), (7.25, 7.55)]})
    _viewer, w, _si = _open(make_napari_viewer, qtbot, path)
    box = w.velox_settings
    assert not box.isHidden() and box.use_windows.isVisibleTo(w) and box.use_windows.isChecked()
    with qtbot.waitSignal(w.map_ready, timeout=60_000) as blocker:
        w.map_element("Fe")
    backs = layer_info(blocker.args[0]).derived.background
    assert backs[0][0] == pytest.approx(5.55, abs=0.01)
    assert backs[1][1] == pytest.approx(7.55, abs=0.01)
    assert "background windows from the file" in w.status.text()
    want = line_intensities(w.record, ["Fe_Ka"],
                            background_windows=[(5.55, 5.85, 7.25, 7.55)])["Fe_Ka"]
    np.testing.assert_allclose(blocker.args[0].data, want.net)
    box.use_windows.setChecked(False)
    with qtbot.waitSignal(w.map_ready, timeout=60_000) as blocker:
        w.map_element("Fe")
    assert layer_info(blocker.args[0]).derived.background[0][0] > 5.9
    assert "from the file" not in w.status.text()
