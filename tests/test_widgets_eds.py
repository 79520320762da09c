"""The EDS analysis dock (profiles along line/path shapes, the Cliff–Lorimer composition
table, k-factors kept with the saved session), driven in a real napari viewer on a
synthetic Velox SI (iron-oxide particles in copper) and on a real Velox SI.

Oracle: the napari-free library on the same file (line_intensities, line_profile,
cliff_lorimer), which tests/test_analysis.py checks against planted peaks and exSpy."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import long_lazy_si, progress_bar, real_file
from napari_emd import file_reader
from napari_emd.analysis import cliff_lorimer, line_intensities, line_profile
from napari_emd.plugin.widgets.composition import UNCALIBRATED
from napari_emd.plugin.widgets.eds import STATE_KEY, EDSAnalysis, parse_lines
from napari_emd.synthetic import write_velox_si

pytestmark = pytest.mark.napari

NY, NX = 20, 24
PLUGIN = "napari-emd-io"


@pytest.fixture(scope="module")
def si_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("eds") / "si.emd"
    write_velox_si(path, ny=NY, nx=NX, frames=1, detectors=2, counts_per_pixel=400.0,
                   seed=7)
    return path


def _open(make_napari_viewer, qtbot, path):
    from napari.layers import Layer

    from napari_emd.plugin.reader import reader_function

    viewer = make_napari_viewer()
    for data, meta, kind in reader_function(path):
        viewer.add_layer(Layer.create(data, meta, kind))
    dock = EDSAnalysis(viewer)
    qtbot.addWidget(dock)
    return viewer, dock


def _settle(qtbot, dock):
    qtbot.waitUntil(lambda: not dock.runner.busy, timeout=60_000)
    qtbot.wait(20)


def _si(path):
    return next(d for d in file_reader(str(path)) if d["data"].ndim == 3)


def test_parse_lines():
    assert parse_lines("Fe, Cu_Ka, O Ka") == ["Fe_Ka", "Cu_Ka", "O_Ka"]
    assert parse_lines("Au", 0.1, 12.0) == ["Au_La"]
    with pytest.raises(ValueError, match="Xx"):
        parse_lines("Fe, Xx")
    with pytest.raises(ValueError, match="no line 'Kz'"):
        parse_lines("Fe_Kz")


def test_profile_along_a_line_shape(make_napari_viewer, qtbot, si_file):
    viewer, dock = _open(make_napari_viewer, qtbot, si_file)
    si = dock.si_layer
    assert si is not None
    dock.set_lines("Fe, Cu")
    _settle(qtbot, dock)
    sc = np.asarray(si.scale)[-2:]
    tr = np.asarray(si.translate)[-2:]
    pix = np.array([[10.0, 2.0], [10.0, 20.0]])
    viewer.add_shapes([pix * sc + tr], shape_type="line", name="cut")
    dock.profile.refresh_layers()
    dock.profile.width_spin.setValue(3)
    prof = dock.profile.result
    assert prof is not None and set(prof.values) == {"Fe_Ka", "Cu_Ka"}
    # the library on the same file and line
    ref = line_profile(line_intensities(_si(si_file), ["Fe_Ka", "Cu_Ka"]), pix, width=3)
    for ln in ("Fe_Ka", "Cu_Ka"):
        np.testing.assert_allclose(prof.values[ln], ref.values[ln], rtol=1e-9)
        np.testing.assert_allclose(prof.sigma[ln], ref.sigma[ln], rtol=1e-9)
    assert prof.units == "nm"
    assert prof.distance[-1] == pytest.approx(18 * float(_si(si_file)["axes"][1]["scale"]))
    # one curve per line in the element's map colour, with a legend
    curves = dock.profile.ax.get_lines()
    assert [c.get_label() for c in curves] == ["Fe Kα", "Cu Kα"]
    assert curves[0].get_color() != curves[1].get_color()
    # editing the shape updates the profile
    viewer.layers["cut"].data = [np.array([[4.0, 2.0], [4.0, 10.0]]) * sc + tr]
    assert dock.profile.result.distance.size == 9
    # the width is kept in the SI layer's metadata (saved with the session)
    assert si.metadata[STATE_KEY]["profile_width"] == 3


def test_element_map_colour_is_the_curve_colour(make_napari_viewer, qtbot, si_file):
    from napari_emd.plugin.widgets.profile import _rgb
    from napari_emd.plugin.widgets.spectrum import SpectrumViewer

    viewer, dock = _open(make_napari_viewer, qtbot, si_file)
    spec = SpectrumViewer(viewer)
    qtbot.addWidget(spec)
    spec.set_si_layer(dock.si_layer)
    spec.map_element("Cu")
    qtbot.waitUntil(lambda: not spec.map_runner.busy, timeout=30_000)
    cu_map = next(lyr for lyr in viewer.layers if lyr.name.endswith("Cu Kα"))
    dock.set_lines("Fe, Cu")
    _settle(qtbot, dock)
    viewer.add_shapes([np.array([[1.0, 1.0], [8.0, 9.0]])], shape_type="path", name="p")
    dock.profile.refresh_layers()
    cu = next(c for c in dock.profile.ax.get_lines() if c.get_label() == "Cu Kα")
    np.testing.assert_allclose(np.asarray(cu.get_color())[:3], _rgb(cu_map.colormap))


def test_composition_table_whole_scan_and_regions(make_napari_viewer, qtbot, si_file,
                                                  tmp_path):
    viewer, dock = _open(make_napari_viewer, qtbot, si_file)
    si = dock.si_layer
    dock.set_lines("Fe, Cu, O")
    _settle(qtbot, dock)
    comp = dock.composition
    assert comp.k_note.text() == UNCALIBRATED  # no k-factor invented
    sc = np.asarray(si.scale)[-2:]
    tr = np.asarray(si.translate)[-2:]
    viewer.add_shapes([np.array([[2, 2], [2, 10], [8, 10], [8, 2]]) * sc + tr],
                      shape_type="rectangle", name="box")
    lab = np.zeros((NY, NX), np.uint8)
    lab[12:18, 4:12] = 3
    viewer.add_labels(lab, name="grains", scale=sc, translate=tr)
    comp.set_kfactors({"Fe": 1.3, "Cu_Ka": 1.6, "O": 2.1})
    assert comp.k_note.text() == ""
    names = [r["region"] for r in comp.rows]
    assert names == ["whole scan", "box: rectangle 0", "grains: label 3"]
    # the library's numbers for the label region
    res = line_intensities(_si(si_file), ["Fe_Ka", "Cu_Ka", "O_Ka"])
    m = lab == 3
    # a negative net sum (not detected) counts as zero in the table
    inten = {ln: max(float(r.net[m].sum()), 0.0) for ln, r in res.items()}
    sig = {ln: np.sqrt((r.sigma[m] ** 2).sum()) for ln, r in res.items()}
    pct, err = cliff_lorimer(inten, {"Fe": 1.3, "Cu": 1.6, "O": 2.1}, sigmas=sig)
    row = comp.rows[2]
    assert row["pixels"] == int(m.sum())
    for ln in inten:
        el = ln.split("_")[0]
        assert row["percent"][ln] == pytest.approx(pct[el], rel=1e-9)
        assert row["sigma"][ln] == pytest.approx(err[el], rel=1e-9)
    assert sum(comp.rows[0]["percent"].values()) == pytest.approx(100.0)
    # the table shows value ± sigma; weight % on request
    assert "±" in comp.table.item(0, 2).text()
    assert comp.table.horizontalHeaderItem(2).text() == "Fe Kα at%"
    comp.weight_check.setChecked(True)
    assert comp.table.horizontalHeaderItem(2).text() == "Fe Kα wt%"
    wt = cliff_lorimer(inten, {"Fe": 1.3, "Cu": 1.6, "O": 2.1}, weight_percent=True)
    assert comp.rows[2]["percent"]["Fe_Ka"] == pytest.approx(wt["Fe"], rel=1e-9)
    # a region edit updates the table
    before = comp.rows[1]["pixels"]
    viewer.layers["box"].data = [np.array([[0, 0], [0, 4], [4, 4], [4, 0]]) * sc + tr]
    # the spectrum viewer's region convention (pixel centres inside the outline)
    from napari_emd.spectra import shapes_mask

    assert comp.rows[1]["pixels"] == int(shapes_mask(viewer.layers["box"], si, NY, NX).sum())
    assert comp.rows[1]["pixels"] != before
    # copy and CSV
    comp.copy()
    from qtpy.QtWidgets import QApplication

    text = QApplication.clipboard().text()
    assert text.splitlines()[0].startswith("region\tpixels\tFe Kα wt%")
    comp.export_csv(tmp_path / "c.csv")
    rows = list(csv.reader((tmp_path / "c.csv").read_text("utf-8").splitlines()))
    assert "Fe_Ka=1.3" in rows[0][0] and rows[1][:3] == ["region", "pixels", "Fe_Ka wt%"]
    assert len(rows) == 2 + 3


def test_kfactors_are_saved_with_the_session(make_napari_viewer, qtbot, si_file, tmp_path):
    viewer, dock = _open(make_napari_viewer, qtbot, si_file)
    dock.set_lines("Fe, Cu")
    dock.composition.set_kfactors({"Fe": 1.25, "Cu": 1.75})
    dock.composition.weight_check.setChecked(True)
    dock.profile.width_spin.setValue(5)
    _settle(qtbot, dock)
    path = tmp_path / "session.emd"
    assert viewer.layers.save(str(path), plugin=PLUGIN) == [str(path)]

    _, dock2 = _open(make_napari_viewer, qtbot, path)
    assert dock2.si_layer is not None
    assert dock2.lines() == ["Fe_Ka", "Cu_Ka"]
    assert dock2.composition.kfactors() == {"Fe_Ka": 1.25, "Cu_Ka": 1.75}
    assert dock2.composition.weight_check.isChecked()
    assert dock2.profile.width_spin.value() == 5
    _settle(qtbot, dock2)
    assert dock2.composition.rows[0]["percent"]["Fe_Ka"] == pytest.approx(
        dock.composition.rows[0]["percent"]["Fe_Ka"], rel=1e-9)


def test_real_velox_si(make_napari_viewer, qtbot):
    path = real_file("Test SI 16x16 215 kx.emd")
    _, dock = _open(make_napari_viewer, qtbot, path)
    # the file's elements (C, Ca, Cu, O) give the lines; its own settings are shown
    assert dock.lines() == ["C_Ka", "Ca_Ka", "Cu_Ka", "O_Ka"]
    assert "BrownPowell" in dock.composition.velox_note.text()
    _settle(qtbot, dock)
    rows = dock.composition.rows
    assert rows and rows[0]["region"] == "whole scan" and rows[0]["pixels"] == 256
    assert sum(rows[0]["percent"].values()) == pytest.approx(100.0)
    assert all(s > 0 for s in rows[0]["sigma"].values())


def test_profile_distance_with_non_square_pixels(make_napari_viewer, qtbot, tmp_path):
    """Pixels 0.75 nm tall, 1 nm wide: a line over 16 rows and 9 columns is 15 nm long
    (12 nm by 9 nm) on the profile's distance axis and in its caption."""
    path = tmp_path / "tall.emd"
    write_velox_si(path, ny=20, nx=12, frames=1, detectors=1, counts_per_pixel=50.0,
                   pixel_size_m=1e-9, pixel_height_m=0.75e-9)
    viewer, dock = _open(make_napari_viewer, qtbot, path)
    si = dock.si_layer
    dock.set_lines("Fe, Cu")
    _settle(qtbot, dock)
    sc = np.asarray(si.scale)[-2:]
    tr = np.asarray(si.translate)[-2:]
    assert sc[0] != pytest.approx(sc[1])
    viewer.add_shapes([np.array([[1.0, 1.0], [17.0, 10.0]]) * sc + tr], shape_type="line",
                      name="diagonal")
    dock.profile.refresh_layers()
    prof = dock.profile.result
    assert prof is not None and prof.units == "nm"
    assert prof.distance[-1] == pytest.approx(15.0)
    assert "15 nm long" in dock.profile.info.text()


def test_background_windows_from_the_file(make_napari_viewer, qtbot, tmp_path):
    """A Velox file storing background windows for Fe: the dock's net counts (profile
    and composition) use them for Fe Kα by default and say so; the rule places Cu's;
    unticking "Background windows from the file" goes back to the rule for both."""
    from napari_emd.formats.velox.quantsettings import eds_quant_settings

    path = tmp_path / "bg.emd"
    windows = [(5.55, 5.85), (7.25, 7.55)]
    write_velox_si(path, ny=NY, nx=NX, frames=1, detectors=1, counts_per_pixel=300.0,
                   seed=4, background_windows={"Fe": windows})
    _viewer, dock = _open(make_napari_viewer, qtbot, path)
    dock.set_lines("Fe, Cu")
    _settle(qtbot, dock)
    assert dock.file_bg.isVisibleTo(dock) and dock.file_bg.isChecked()
    assert "5.550–5.850, 7.250–7.550 keV" in dock.file_bg.toolTip()
    assert "background windows from the file for Fe_Ka" in dock.status.text()
    si = _si(path)
    settings = eds_quant_settings(si["original_metadata"])
    want = line_intensities(si, ["Fe_Ka", "Cu_Ka"],
                            background_windows=[settings.line_background("Fe_Ka"),
                                                [np.nan] * 4])
    rule = line_intensities(si, ["Fe_Ka", "Cu_Ka"])
    maps = dock.maps()
    np.testing.assert_allclose(maps["Fe_Ka"][0], want["Fe_Ka"].net)
    np.testing.assert_allclose(maps["Cu_Ka"][0], rule["Cu_Ka"].net)
    assert not np.allclose(maps["Fe_Ka"][0], rule["Fe_Ka"].net)
    whole = dock.composition.rows[0]
    assert whole["region"] == "whole scan"
    dock.file_bg.setChecked(False)
    _settle(qtbot, dock)
    np.testing.assert_allclose(dock.maps()["Fe_Ka"][0], rule["Fe_Ka"].net)
    assert "from the file" not in dock.status.text()
    assert dock.si_layer.metadata[STATE_KEY]["file_background"] is False


def test_windows_velox_did_not_use_are_off_by_default(make_napari_viewer, qtbot, tmp_path):
    """Windows stored with Velox's "use manual background windows" off: offered, but
    unticked (Velox's own quantification did not use them), and the tooltip says so."""
    path = tmp_path / "off.emd"
    write_velox_si(path, ny=NY, nx=NX, frames=1, detectors=1, counts_per_pixel=300.0,
                   seed=4, background_windows={"Fe": [(5.55, 5.85), (7.25, 7.55)]},
                   manual_background=False)
    _viewer, dock = _open(make_napari_viewer, qtbot, path)
    dock.set_lines("Fe, Cu")
    _settle(qtbot, dock)
    assert dock.file_bg.isVisibleTo(dock) and not dock.file_bg.isChecked()
    assert "did not use them" in dock.file_bg.toolTip()
    rule = line_intensities(_si(path), ["Fe_Ka"])
    np.testing.assert_allclose(dock.maps()["Fe_Ka"][0], rule["Fe_Ka"].net)
    assert "from the file" not in dock.status.text()


def test_no_file_windows_no_check_box(make_napari_viewer, qtbot, si_file):
    _viewer, dock = _open(make_napari_viewer, qtbot, si_file)
    dock.set_lines("Fe, Cu")
    _settle(qtbot, dock)
    assert not dock.file_bg.isVisibleTo(dock)


def test_lazy_net_maps_show_progress_and_cancel(make_napari_viewer, qtbot, tmp_path):
    """A lazy SI of 32 row blocks: the dock's net maps show a napari progress bar counting
    the blocks, and its Cancel stops the worker between blocks (no maps, "Cancelled.")."""
    path = long_lazy_si(tmp_path / "long.emd")
    _viewer, dock = _open(make_napari_viewer, qtbot, path)
    assert dock.record.is_lazy

    def bar():
        return progress_bar("Net counts of Fe_Ka, Cu_Ka")

    dock.set_lines("Fe, Cu")
    qtbot.waitUntil(lambda: bar() is not None, timeout=60_000)
    shown = bar()
    assert shown.total == 32 and 1 <= shown.n < 32
    assert dock.runner.threaded_busy and dock.cancel_btn.isEnabled()
    dock.cancel_btn.click()
    _settle(qtbot, dock)
    assert dock.maps() is None and dock.status.text() == "Cancelled."
    assert shown.n < 32 and bar() is None
    assert not dock.cancel_btn.isEnabled()
