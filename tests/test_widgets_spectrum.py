"""The spectrum viewer, driven in a real napari viewer on a synthetic Velox SI."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import real_file, write_viewer_si
from napari_emd import xray_lines
from napari_emd.plugin.compat import camera, grid_of
from napari_emd.plugin.layer_meta import layer_info
from napari_emd.plugin.widgets.spectrum import (
    CLICK,
    FILE_PREFIX,
    MAP,
    MOUSE,
    REGION,
    SpectrumViewer,
    line_label,
)
from napari_emd.spectra import energy_axis, si_pixel
from napari_emd.synthetic import write_velox_si

pytestmark = pytest.mark.napari

NY, NX = 12, 16


@pytest.fixture(scope="module")
def si_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("si") / "si.emd"
    return path, write_viewer_si(path)


def _open(make_napari_viewer, qtbot, path, **options):
    viewer = make_napari_viewer()
    from napari.layers import Layer

    from napari_emd.plugin.reader import reader_function

    for data, meta, kind in reader_function(path, **options):
        viewer.add_layer(Layer.create(data, meta, kind))
    w = SpectrumViewer(viewer)
    qtbot.addWidget(w)
    si = next(lyr for lyr in viewer.layers if lyr.name.startswith("EDS"))
    viewer.layers.selection.active = si
    w.set_si_layer(si)
    return viewer, w, si


def _settle(qtbot, w):
    qtbot.waitUntil(lambda: not w.runner.busy and not w.map_runner.busy, timeout=30_000)
    qtbot.wait(20)


def _world(layer, index_yx, energy_index=0, lead=()):
    """World position of SI pixel (y, x): the record's display axes are (..., E, y, x);
    the layer may have size-1 filler axes for other sliders (record axis None)."""
    shown = [*lead, energy_index, *index_yx]
    rec_axes = layer_info(layer).record_axes or tuple(range(layer.ndim))
    idx = np.array([0 if r is None else shown[r] for r in rec_axes], dtype=float)
    return tuple(np.asarray(layer.translate) + np.asarray(layer.scale) * idx)


def test_line_labels_and_table():
    assert line_label("Fe", "Ka") == "Fe Kα"
    assert line_label("Au", "Lb1") == "Au Lβ1"
    fe = xray_lines.lines("Fe")
    assert fe["Ka"][0] == pytest.approx(6.404, abs=0.005)
    assert xray_lines.lines("Cu")["Ka"][0] == pytest.approx(8.048, abs=0.005)
    assert xray_lines.lines("Si")["Ka"][0] == pytest.approx(1.740, abs=0.005)
    assert xray_lines.lines("Au")["Ma"][0] == pytest.approx(2.12, abs=0.01)
    assert xray_lines.map_line("Au") == ("La", pytest.approx(9.713, abs=0.01))
    assert xray_lines.elements()[0] == "Li" and xray_lines.elements()[-1] == "U"
    # every line of the table is below 40 keV and lines grow with Z
    kas = [xray_lines.lines(e)["Ka"][0] for e in xray_lines.elements()
           if "Ka" in xray_lines.lines(e)]
    assert all(np.diff(kas) > 0)
    name, lo, hi = xray_lines.element_window("O")
    assert name == "Ka" and lo < 0.525 < hi


def test_energy_axis_units():
    ax = {"size": 4, "scale": 10.0, "offset": -1000.0, "units": "eV"}
    e = energy_axis(ax, "EDS_TEM")
    assert e.units == "keV" and e.values[0] == pytest.approx(-1.0)
    e2 = energy_axis({"size": 3, "scale": 0.1, "offset": 0.5, "units": "keV"}, "EELS")
    assert e2.units == "eV" and e2.values[1] == pytest.approx(600.0)
    assert e.channel_range(-0.995, -0.975) == (1, 3)


def test_hover_shows_the_pixel_spectrum(make_napari_viewer, qtbot, si_file):
    path, info = si_file
    viewer, w, si = _open(make_napari_viewer, qtbot, path)
    rec = layer_info(si).record
    assert rec.is_lazy
    assert w.mode == MOUSE
    viewer.cursor.position = _world(si, (3, 5), energy_index=100)
    _settle(qtbot, w)
    assert w.spectrum_title.endswith("pixel y=3, x=5")
    expected = info.counts.sum(axis=(0, 1))[3, 5]  # detectors and frames summed
    np.testing.assert_array_equal(w.spectrum, expected)
    np.testing.assert_array_equal(w.spectrum, np.asarray(rec.data[3, 5, :]))
    # real energy axis, keV for EDS
    assert w.energy.units == "keV"
    assert w.energy.values[0] == pytest.approx(info.offset_ev / 1000)
    assert w.energy.values[1] - w.energy.values[0] == pytest.approx(info.dispersion_ev / 1000)
    x, y = w.plot.line.get_data()
    np.testing.assert_allclose(x, w.energy.values)
    np.testing.assert_array_equal(y, expected)
    # moving off the map keeps the last spectrum
    viewer.cursor.position = _world(si, (NY + 5, 0))
    _settle(qtbot, w)
    assert w.spectrum_title.endswith("pixel y=3, x=5")


def test_click_pins_a_pixel(make_napari_viewer, qtbot, si_file):
    path, info = si_file
    viewer, w, si = _open(make_napari_viewer, qtbot, path)
    w.set_mode(CLICK)
    rec = layer_info(si).record
    # the HAADF and the SI open overlaid (maps and regions are drawn over the scan)
    assert not grid_of(viewer).enabled
    # a real mouse press on the canvas, at the centre of pixel (y=7, x=2)
    viewer.window._qt_window.show()
    qtbot.waitExposed(viewer.window._qt_window)
    viewer.reset_view()
    qtbot.wait(50)
    canvas = viewer.window._qt_viewer.canvas
    scene = canvas._scene_canvas

    def canvas_pos(yx):
        wy, wx = _world(si, yx)[-2:]
        cy, cx = camera(viewer).center[-2:]
        zoom = camera(viewer).zoom
        width, height = scene.size
        return (width / 2 + (wx - cx) * zoom, height / 2 + (wy - cy) * zoom)

    pos = canvas_pos((7, 2))
    # a drag pans the view and pins nothing
    far = (pos[0] + 40, pos[1] + 25)
    scene.events.mouse_press(pos=pos, button=1, modifiers=())
    scene.events.mouse_move(pos=far, button=1, modifiers=(), press_event=None)
    scene.events.mouse_release(pos=far, button=1, modifiers=())
    _settle(qtbot, w)
    assert w.clicked is None
    pos = canvas_pos((7, 2))
    scene.events.mouse_press(pos=pos, button=1, modifiers=())
    scene.events.mouse_release(pos=pos, button=1, modifiers=())
    _settle(qtbot, w)
    assert w.clicked == (7, 2)
    np.testing.assert_array_equal(w.spectrum, info.counts.sum(axis=(0, 1))[7, 2])
    # hovering elsewhere does not replace a pinned spectrum
    viewer.cursor.position = _world(si, (1, 1))
    _settle(qtbot, w)
    assert w.clicked == (7, 2) and w.spectrum_title.endswith("y=7, x=2")
    assert si_pixel(si, rec, _world(si, (7, 2))) == (7, 2)


def test_map_sum_region_and_labels(make_napari_viewer, qtbot, si_file):
    path, info = si_file
    viewer, w, si = _open(make_napari_viewer, qtbot, path)
    cube = info.counts.sum(axis=(0, 1))
    w.set_mode(MAP)
    _settle(qtbot, w)
    np.testing.assert_array_equal(w.spectrum, cube.sum(axis=(0, 1)))

    # a rectangle over y 2..5, x 3..8 (pixel centres inside), drawn in world coordinates
    sc = np.asarray(si.scale)[-2:]
    tr = np.asarray(si.translate)[-2:]
    corners = np.array([[1.6, 2.6], [1.6, 8.4], [5.4, 8.4], [5.4, 2.6]]) * sc + tr
    shapes = viewer.add_shapes([corners], shape_type="rectangle", name="roi")
    w.region_combo.setCurrentText("roi")
    w.set_mode(REGION)
    _settle(qtbot, w)
    np.testing.assert_array_equal(w.spectrum, cube[2:6, 3:9].sum(axis=(0, 1)))
    # editing the shape updates the spectrum
    shapes.data = [np.array([[-0.4, -0.4], [-0.4, 0.4], [0.4, 0.4], [0.4, -0.4]]) * sc + tr]
    _settle(qtbot, w)
    np.testing.assert_array_equal(w.spectrum, cube[0, 0])

    labels = np.zeros((NY, NX), dtype=np.int32)
    labels[4:7, 10:12] = 1
    labels[0, 0] = 2
    lab = viewer.add_labels(labels, name="grains", scale=si.scale[-2:],
                            translate=si.translate[-2:])
    lab.selected_label = 1
    w.region_combo.setCurrentText("grains")
    _settle(qtbot, w)
    np.testing.assert_array_equal(w.spectrum, cube[4:7, 10:12].sum(axis=(0, 1)))


def test_energy_window_and_element_maps(make_napari_viewer, qtbot, si_file):
    path, info = si_file
    viewer, w, si = _open(make_napari_viewer, qtbot, path)
    rec = layer_info(si).record
    cube = info.counts.sum(axis=(0, 1))
    energy = w.energy
    n_before = len(viewer.layers)
    with qtbot.waitSignal(w.map_ready, timeout=30_000) as blocker:
        w.map_window(6.2, 6.6)
    layer = blocker.args[0]
    assert layer.name == "EDS window"
    i0, i1 = energy.channel_range(6.2, 6.6)
    assert energy.values[i0] >= 6.2 and energy.values[i1 - 1] <= 6.6
    np.testing.assert_array_equal(layer.data, cube[..., i0:i1].sum(axis=-1))
    np.testing.assert_allclose(layer.scale, si.scale[-2:])
    np.testing.assert_allclose(layer.translate, si.translate[-2:])
    assert layer_info(layer).derived.window[0] == pytest.approx(energy.values[i0])
    assert rec.is_lazy  # the map never loaded the cube into the record
    # dragging another window updates the same layer
    with qtbot.waitSignal(w.map_ready, timeout=30_000):
        w.plot.span.onselect(7.9, 8.2)
    assert len(viewer.layers) == n_before + 1
    j0, j1 = energy.channel_range(7.9, 8.2)
    np.testing.assert_array_equal(viewer.layers["EDS window"].data,
                                  cube[..., j0:j1].sum(axis=-1))
    assert w.win_lo.value() == pytest.approx(7.9)

    # one-click element map: a window around Fe Kα
    with qtbot.waitSignal(w.map_ready, timeout=30_000) as blocker:
        w.map_element("Fe")
    fe = blocker.args[0]
    assert fe.name == "EDS Fe Kα"
    lo, hi = layer_info(fe).derived.window
    assert lo < 6.404 < hi and hi - lo < 0.5
    # Fe sits in the particles: the Fe map correlates with the Fe-window counts
    assert fe.data.sum() > 0


def test_file_spectra_markers_log_and_csv(make_napari_viewer, qtbot, si_file, tmp_path):
    path, _ = si_file
    _viewer, w, si = _open(make_napari_viewer, qtbot, path)
    spectra = layer_info(si).spectra
    assert spectra
    title = spectra[0]["title"]
    w.set_mode(FILE_PREFIX + title)
    _settle(qtbot, w)
    np.testing.assert_array_equal(w.spectrum, np.asarray(spectra[0]["data"], float).ravel())
    assert w.energy.units == "keV"

    # element markers, pre-filled from the file's element selection
    rec = layer_info(si).record
    file_elements = (rec.metadata.get("Sample") or {}).get("elements") or []
    if file_elements:
        assert set(w.elements()) == set(xray_lines.parse_elements(file_elements))
    w.set_elements("Fe, Cu")
    texts = [a.get_text() for a in w.plot._markers if hasattr(a, "get_text")]
    assert "Fe Kα" in texts and "Cu Kα" in texts
    assert w.element_combo.count() == 2

    w.plot.log_check.setChecked(True)
    assert w.plot.ax.get_yscale() == "log"
    w.plot.log_check.setChecked(False)
    assert w.plot.ax.get_yscale() == "linear"

    out = tmp_path / "spectrum.csv"
    w.export_csv(out)
    text = out.read_text()
    assert title in text and "energy (keV),counts" in text
    table = np.loadtxt(out, delimiter=",")
    np.testing.assert_allclose(table[:, 0], w.energy.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(table[:, 1], w.spectrum)


def test_frames_kept_pixel_spectrum_of_the_current_frame(make_napari_viewer, qtbot, si_file):
    path, info = si_file
    viewer, w, si = _open(make_napari_viewer, qtbot, path, sum_frames=False)
    assert si.ndim == 4
    viewer.cursor.position = _world(si, (2, 9), lead=(1,))
    _settle(qtbot, w)
    np.testing.assert_array_equal(w.spectrum, info.counts.sum(axis=0)[1, 2, 9])
    # the frame slider shows the same pixel in the other frame
    viewer.dims.set_current_step(0, 1)
    _settle(qtbot, w)
    assert w._hover == (1, 2, 9)
    viewer.dims.set_current_step(0, 0)
    _settle(qtbot, w)
    assert w._hover == (0, 2, 9)
    np.testing.assert_array_equal(w.spectrum, info.counts.sum(axis=0)[0, 2, 9])
    with qtbot.waitSignal(w.map_ready, timeout=30_000) as blocker:
        w.map_window(0.4, 0.6)
    layer = blocker.args[0]
    i0, i1 = w.energy.channel_range(0.4, 0.6)
    # (frame, [size-1 filler on the energy slider: the map shows at every energy], y, x)
    assert layer.data.shape == (2, 1, NY, NX)
    np.testing.assert_array_equal(layer.data[:, 0], info.counts.sum(axis=0)[..., i0:i1].sum(-1))


def test_manifest_docks_the_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-emd-io", "Spectrum viewer")
    assert isinstance(widget, SpectrumViewer)
    assert "spectrum image" in widget.status.text()


def test_eels_spectrum_image_in_ev(make_napari_viewer, qtbot):
    path = real_file("example_velox_EELS_EDS.emd")
    viewer, w, _ = _open(make_napari_viewer, qtbot, path)
    eels = viewer.layers["EELS 480 to 826.4 eV"]
    viewer.layers.selection.active = eels
    assert w.si_layer is eels
    rec = layer_info(eels).record
    viewer.cursor.position = _world(eels, (4, 7))
    _settle(qtbot, w)
    assert w.energy.units == "eV"
    assert w.energy.values[0] == pytest.approx(480.0, abs=1.0)
    np.testing.assert_array_equal(w.spectrum, np.asarray(rec.data[4, 7, :], dtype=float))
    assert w.plot._markers == []  # X-ray lines are for EDS only
    with qtbot.waitSignal(w.map_ready, timeout=30_000) as blocker:
        w.map_window(700.0, 730.0)  # the Fe L2,3 edge region
    i0, i1 = w.energy.channel_range(700.0, 730.0)
    np.testing.assert_array_equal(
        blocker.args[0].data, np.asarray(rec.data[..., i0:i1], dtype=float).sum(-1)
    )
    # the EDS layer of the same file is in keV again
    w.set_si_layer(viewer.layers["EDS"])
    viewer.cursor.position = _world(viewer.layers["EDS"], (1, 1))
    _settle(qtbot, w)
    assert w.energy.units == "keV"


def test_rebinned_si_keeps_its_own_energy_axis_after_file_spectra(
    make_napari_viewer, qtbot, si_file
):
    """The file's spectra have 4096 channels, a rebinned SI 2048: a pixel spectrum shown
    after the whole-scan overview (or a file spectrum) must use the SI's axis."""
    path, _ = si_file
    viewer, w, si = _open(make_napari_viewer, qtbot, path, rebin_energy=2)
    _settle(qtbot, w)
    rec = layer_info(si).record
    si_axis = energy_axis(rec.axes[-1], rec.signal_type)
    assert si_axis.values.size == 2048
    # before the mouse arrives the plot shows the file's spectra (4096 channels)
    assert w.shown_energy is not None and w.shown_energy.values.size == 4096
    viewer.cursor.position = _world(si, (2, 3), energy_index=10)
    _settle(qtbot, w)
    assert w.spectrum_title.endswith("pixel y=2, x=3")
    x, y = w.plot.line.get_data()
    np.testing.assert_allclose(x, si_axis.values)
    np.testing.assert_array_equal(y, np.asarray(rec.data[2, 3, :]))


def test_renamed_si_layer_stays_connected(make_napari_viewer, qtbot, si_file):
    path, info = si_file
    viewer, w, si = _open(make_napari_viewer, qtbot, path)
    si.name = "renamed SI"
    qtbot.wait(20)
    assert w.si_layer is si
    assert w.layer_combo.currentText() == "renamed SI"
    viewer.cursor.position = _world(si, (1, 2), energy_index=10)
    _settle(qtbot, w)
    np.testing.assert_array_equal(w.spectrum, info.counts.sum(axis=(0, 1))[1, 2])


def test_single_channel_rebin_does_not_break_the_viewer(make_napari_viewer, qtbot, si_file):
    """Rebinning all channels into one is offered by the loader (a total-counts map)."""
    path, _ = si_file
    _viewer, w, si = _open(make_napari_viewer, qtbot, path, rebin_energy=4096)
    assert w.si_layer is si
    assert w.energy is not None and w.energy.values.size == 1


def test_results_for_a_removed_layer_are_dropped(make_napari_viewer, qtbot, si_file):
    path, _ = si_file
    viewer, w, si = _open(make_napari_viewer, qtbot, path)
    names_before = {lyr.name for lyr in viewer.layers}
    w.map_window(5.0, 7.0)
    viewer.layers.remove(si)
    _settle(qtbot, w)
    assert w.si_layer is None
    assert {lyr.name for lyr in viewer.layers} == names_before - {si.name}


def test_follows_the_selected_layer_through_napari_s_proxy(make_napari_viewer, qtbot, tmp_path):
    """napari gives dock widgets a public-only proxy of the viewer; the viewer must still
    follow the selected SI layer when several are open."""
    viewer = make_napari_viewer()
    for i in range(2):
        path = tmp_path / f"si{i}.emd"
        write_velox_si(path, ny=8, nx=9, frames=1, detectors=1, seed=i)
        viewer.open(str(path), plugin="napari-emd-io")
    _dock, w = viewer.window.add_plugin_dock_widget("napari-emd-io", "Spectrum viewer")
    sis = [ly for ly in viewer.layers if ly.name.startswith("EDS")]
    assert len(sis) == 2
    for si in (sis[1], sis[0], sis[1]):
        viewer.layers.selection.active = si
        assert w.si_layer is si
        assert w.layer_combo.currentText() == si.name


def test_slider_energy_marked_on_the_plot_and_a_click_moves_the_slider(
    make_napari_viewer, qtbot, si_file
):
    from napari_emd.plugin import view

    path, _ = si_file
    viewer, w, si = _open(make_napari_viewer, qtbot, path)
    _settle(qtbot, w)
    axis = view.energy_axis(viewer, si)
    viewer.dims.set_point(axis, 6.4)
    assert w.plot.marker.get_visible()
    assert w.plot.marker.get_xdata()[0] == pytest.approx(6.4, abs=0.011)
    w.plot._selected(8.04, 8.04)  # a click without dragging
    assert float(viewer.dims.point[axis]) == pytest.approx(8.04, abs=0.011)
    assert w.plot.marker.get_xdata()[0] == pytest.approx(8.04, abs=0.011)


def test_whole_scan_scale_ignores_the_zero_energy_noise_peak(make_napari_viewer, qtbot):
    path = real_file("Test SI 16x16 215 kx.emd")
    _viewer, w, _si = _open(make_napari_viewer, qtbot, path)
    w.set_mode(MAP)
    _settle(qtbot, w)
    energy = w.shown_energy.values
    noise = w.spectrum[energy <= 0.2].max()
    peaks = w.spectrum[energy > 0.2].max()
    assert noise > 3 * peaks  # the strobe peak dwarfs every X-ray peak ...
    top = w.plot.ax.get_ylim()[1]
    assert peaks <= top < 1.2 * peaks  # ... but the scale is the X-rays'


def test_bad_windows_and_unknown_elements_are_refused_clearly(make_napari_viewer, qtbot):
    path = real_file("example_velox_EELS_EDS.emd")
    viewer, w, _ = _open(make_napari_viewer, qtbot, path)
    w.set_si_layer(viewer.layers["EELS -21.5 to 324.8 eV"])
    with pytest.raises(ValueError, match=r"700–730 eV is outside .*-21\.5–324\.8 eV"):
        w.map_window(700.0, 730.0)
    with pytest.raises(ValueError, match="Xx"):
        w.set_elements("Fe, Xx")
    w.elements_edit.setText("Fe, Qq")
    w._elements_typed()
    assert "Qq" in w.status.text()



def test_click_in_a_grid_cell_pins_that_pixel(make_napari_viewer, qtbot, si_file):
    """With napari's grid switched on (each cell its own camera), a click in the SI's
    cell pins the pixel under the mouse in that cell."""
    path, info = si_file
    viewer, w, si = _open(make_napari_viewer, qtbot, path)
    w.set_mode(CLICK)
    viewer.window._qt_window.show()
    qtbot.waitExposed(viewer.window._qt_window)
    grid_of(viewer).enabled = True
    canvas = viewer.window._qt_viewer.canvas

    def centre_of_pixel():  # (y=7, x=2) on the canvas, through the cell's camera
        node = canvas.layer_to_visual[si].node  # its pixel (y, x) spans [x, x+1] x [y, y+1]
        x, y, _, w_ = node.get_transform(map_from="visual", map_to="canvas").map(
            [2.5, 7.5, 0.0, 1.0])
        return (round(x / w_, 3), round(y / w_, 3))

    # the cells' view boxes get their size and cameras over a few paints: wait until
    # the pixel stays put on the canvas
    qtbot.wait(100)
    viewer.reset_view()
    seen = [centre_of_pixel()]

    def settled() -> bool:
        qtbot.wait(150)
        seen.append(centre_of_pixel())
        return seen[-1] == seen[-2]

    qtbot.waitUntil(settled, timeout=5000)
    pos = seen[-1]
    canvas._scene_canvas.events.mouse_press(pos=pos, button=1, modifiers=())
    canvas._scene_canvas.events.mouse_release(pos=pos, button=1, modifiers=())
    _settle(qtbot, w)
    assert w.clicked == (7, 2)
    np.testing.assert_array_equal(w.spectrum, info.counts.sum(axis=(0, 1))[7, 2])
