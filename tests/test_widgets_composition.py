"""The "EDS profile and composition" dock on a real Velox spectrum image: the numbers it
shows are the library's (region spectrum -> net intensities -> Cliff–Lorimer; the line
profile), computed off the GUI thread, with editable k-factors."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import real_file
from napari_emd.analysis import (
    cliff_lorimer,
    line_intensities,
    line_profile,
    region_spectrum,
)

SI = "Test SI 16x16 215 kx.emd"


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open(str(real_file(SI)), plugin="napari-emd-io")
    _, w = viewer.window.add_plugin_dock_widget("napari-emd-io", "EDS profile and composition")
    return viewer, w


def _wait(qtbot, w):
    qtbot.waitUntil(lambda: not w.runner.busy, timeout=60_000)


def test_composition_of_scan_and_regions_is_the_librarys(dock, qtbot):
    from napari_emd.plugin.widgets.composition import element_lines

    viewer, w = dock
    assert w.si_layer is not None and w.elements()  # elements from the file (C, Ca, Cu, O)
    rec = w.record
    ny, nx = rec.data.shape[-3], rec.data.shape[-2]
    si = w.si_layer
    sc, tr = np.asarray(si.scale)[-2:], np.asarray(si.translate)[-2:]
    box = np.array([[0, 0], [0, nx // 2], [ny - 1, nx // 2], [ny - 1, 0]], float) * sc + tr
    viewer.add_shapes([box], shape_type="rectangle", name="left", units=tuple(si.units[-2:]))
    w.set_kfactors({"Cu": 2.0})
    w.run_composition()
    _wait(qtbot, w)
    assert set(w.result) == {"whole scan", "left #1"}
    keys = element_lines(w.elements(), rec)
    kf = {el: (2.0 if el == "Cu" else 1.0) for el in keys}
    # the whole scan: the library's chain on the same lines and k-factors
    found = line_intensities(region_spectrum(rec), list(keys.values()), compute=True)
    # negative net counts (not detected) count as zero
    inten = {el: max(float(np.asarray(found[k].net)), 0.0) for el, k in keys.items()}
    sig = {el: float(np.asarray(found[k].sigma)) for el, k in keys.items()}
    pct, err = cliff_lorimer(inten, kf, sigmas=sig)
    for el in keys:
        got, got_err = w.result["whole scan"][el]
        assert got == pytest.approx(float(pct[el])) and got_err == pytest.approx(float(err[el]))
    for region in w.result.values():
        assert sum(v for v, _ in region.values()) == pytest.approx(100.0)
        assert all(v >= 0 for v, _ in region.values())
    # the table shows k in its first row and "value ± sigma" per region
    assert w.table.item(0, w.elements().index("Cu")).text() == "2"
    assert "±" in w.table.item(1, 0).text()
    # a k-factor typed in the table is used by the next run
    col = w.elements().index("O")
    w.table.item(0, col).setText("3")
    assert w.kfactors["O"] == 3.0
    w.table.item(0, col).setText("-1")  # refused, with a note
    assert w.kfactors["O"] == 3.0 and "positive" in w.note.text()


def test_profile_along_a_line_is_the_librarys(dock, qtbot):
    from napari_emd.plugin.widgets.composition import element_lines, shape_path

    viewer, w = dock
    rec, si = w.record, w.si_layer
    ny, nx = rec.data.shape[-3], rec.data.shape[-2]
    sc, tr = np.asarray(si.scale)[-2:], np.asarray(si.translate)[-2:]
    pts = np.array([[1.0, 1.0], [ny - 2.0, nx - 2.0]])
    cut = viewer.add_shapes([pts * sc + tr], shape_type="line", name="cut",
                            units=tuple(si.units[-2:]))
    path = shape_path(cut, si)  # the shape's vertices on the scan's pixel grid
    np.testing.assert_allclose(path, pts, atol=1e-9)
    w.width_box.setValue(3)
    w.run_profile()
    _wait(qtbot, w)
    keys = element_lines(w.elements(), rec)
    ref = line_profile(rec, path, width=3, lines=list(keys.values()))
    assert w.profile is not None and w.profile.units == ref.units
    np.testing.assert_allclose(w.profile.distance, ref.distance)
    for name in ref.values:
        np.testing.assert_allclose(w.profile.values[name], ref.values[name])
    ax = w.figure.axes[0]
    assert ax.get_xlabel() == f"distance ({ref.units})" and len(ax.lines) == len(ref.values)


def test_no_line_shape_says_what_to_do(dock):
    _, w = dock
    w.run_profile()
    assert "Draw a line or path" in w.note.text()
