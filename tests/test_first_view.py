"""What a microscopist sees first: every real file opened in a real napari viewer (under
Xvfb), checked as a person would look at it — sliders, placement, contrast, colours,
the energy shown, and what files without images open as."""

from __future__ import annotations

import glob
import os
import warnings

import numpy as np
import pytest

from conftest import DATA_DIR, real_file
from napari_emd.errors import EMDWarning
from napari_emd.plugin import look, view
from napari_emd.plugin.compat import dock_widgets, grid_of, overlay, world_units
from napari_emd.plugin.layer_meta import is_si_layer, layer_info

pytestmark = [pytest.mark.napari, pytest.mark.realdata]
PLUGIN = "napari-emd-io"
REAL = sorted(os.path.basename(p) for p in glob.glob(str(DATA_DIR / "*.emd"))
              + glob.glob(str(DATA_DIR / "*.h5")))


@pytest.fixture(autouse=True)
def _close_companions(make_napari_viewer):
    """Close the reciprocal-space windows the reader opened, before napari's fixture
    checks for leaked viewers."""
    yield
    for companion in list(view.COMPANIONS):
        companion.close()


def _all_layers(viewer, layers):
    """The layers a file opened: in the viewer, and in its reciprocal-space window."""
    companion = view.install(viewer).companion
    return [*layers, *(companion.layers if companion is not None else [])]


def _open(make_napari_viewer, qtbot, name):
    viewer = make_napari_viewer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EMDWarning)
        layers = viewer.open(str(real_file(name)), plugin=PLUGIN)
    presenter = view.install(viewer)
    qtbot.waitUntil(lambda: not presenter.workers, timeout=30_000)
    return viewer, layers


def _unit(u) -> str:
    return format(u, "~") if hasattr(u, "dimensionality") else str(u)


def _dimensionality(u):
    return getattr(u, "dimensionality", str(u))


@pytest.mark.parametrize("name", REAL)
def test_sliders_never_mix_quantities_and_stay_short(make_napari_viewer, qtbot, name):
    """Every slider holds one quantity (one unit dimensionality, one kind of energy) and
    has at most twice as many steps as the longest axis of the file's layers."""
    viewer, layers = _open(make_napari_viewer, qtbot, name)
    if not layers:
        return
    longest = max(max(ly.data.shape) for ly in layers)
    for axis in viewer.dims.not_displayed:
        steps = viewer.dims.nsteps[axis]
        assert steps <= 2 * longest, (name, viewer.dims.axis_labels[axis], steps)
        kinds = set()
        for ly in layers:
            i = axis - (viewer.dims.ndim - ly.ndim)
            info = layer_info(ly)
            if i < 0 or info is None or info.record_axes[i] is None:
                continue  # the layer has no axis on this slider (a size-1 filler)
            kinds.add((info.world_keys[i].split("#")[0], str(_dimensionality(ly.units[i]))))
        assert len(kinds) <= 1, (name, kinds)


def test_eels_and_eds_energies_get_their_own_sliders(make_napari_viewer, qtbot):
    viewer, layers = _open(make_napari_viewer, qtbot, "example_velox_EELS_EDS.emd")
    eds = next(ly for ly in layers if ly.name == "EDS")
    eels = [ly for ly in layers if ly.name.startswith("EELS")]
    assert len(eels) == 3
    e_eds = view.energy_axis(viewer, eds)
    e_eels = {view.energy_axis(viewer, ly) for ly in eels}
    assert len(e_eels) == 1 and e_eds not in e_eels
    assert viewer.dims.axis_labels[e_eds] == "EDS energy"
    assert viewer.dims.axis_labels[e_eels.pop()] == "EELS energy loss"
    assert _unit(eds.units[eds.ndim - viewer.dims.ndim + e_eds]) == "keV"
    assert None not in world_units(viewer)  # one unit per world axis: the scale bar keeps it
    # this EDS SI holds only the zero-energy noise peak and stray single counts: it opens
    # on a line of the file's elements (Co, Fe, O; none counted: the first), not on a
    # stray count at 16.6 keV
    kev = view.energy_of_world(viewer, eds, float(viewer.dims.point[e_eds]))
    assert kev == pytest.approx(6.93, abs=0.011)  # Co Kα


def test_eds_peak_needs_counts_or_falls_back_to_the_elements():
    energy = -0.2 + 0.01 * np.arange(2048)
    noise = np.where(np.abs(energy) < 0.1, 1000.0, 0.0)  # the zero-energy noise peak
    stray = noise.copy()
    stray[1500] = 1  # one X-ray at 14.8 keV
    # no element counted: the first one's line
    assert look.eds_peak(energy, stray, ["Fe", "O"]) == pytest.approx(6.40, abs=0.01)
    assert look.eds_peak(energy, stray, ["O", "Fe"]) == pytest.approx(0.525, abs=0.01)
    stray[round((6.40 + 0.2) / 0.01)] = 3  # three X-rays near Fe Kα: Fe wins
    assert look.eds_peak(energy, stray, ["O", "Fe"]) == pytest.approx(6.40, abs=0.01)
    assert look.eds_peak(energy, stray) == pytest.approx(6.40, abs=0.01)  # no elements
    peak = noise.copy()
    peak[800:806] = 40  # a real line at 7.8-7.85 keV outweighs the elements
    assert 7.79 <= look.eds_peak(energy, peak, ["Fe"]) <= 7.86
    assert look.eds_peak(energy, noise * 0) is None
    # a line spread over channels outweighs one channel of a few more stray counts
    spread = noise.copy()
    spread[1000] = 8  # 9.8 keV: eight X-rays in one channel
    spread[640:650] = 5  # 6.2-6.3 keV: fifty X-rays within a resolution
    assert 6.19 <= look.eds_peak(energy, spread) <= 6.31


def test_prismatic_dpc_components_split_and_units_kept(make_napari_viewer, qtbot):
    """Radians, DPC components and Å never share a slider; the DPC x/y components are
    layers of their own; napari keeps the units (all real space)."""
    viewer, layers = _open(make_napari_viewer, qtbot, "Si100_2D_3D_DPC_potential_2slices.emd")
    names = {ly.name for ly in layers}
    assert {"DPC_CoM x", "DPC_CoM y"} <= names
    units = world_units(viewer)
    assert all(u is not None and _unit(u) != "pixel" for u in units[-2:])


def test_si_opens_on_its_strongest_peak_with_contrast_for_it(make_napari_viewer, qtbot):
    viewer, layers = _open(make_napari_viewer, qtbot, "Test SI 16x16 215 kx.emd")
    si = next(ly for ly in layers if is_si_layer(ly))
    axis = view.energy_axis(viewer, si)
    kev = view.energy_of_world(viewer, si, float(viewer.dims.point[axis]))
    assert kev == pytest.approx(layer_info(si).peak_energy, abs=0.011)
    assert kev > 0.2  # not the zero-energy noise peak
    # the contrast is that plane's (percentiles), not a guess
    index = tuple(int(i) for i in np.rint(si.world_to_data(viewer.dims.point))[:-2])
    plane = np.asarray(si.data[index])
    _lo, hi = si.contrast_limits
    assert hi <= plane.max() and hi >= np.percentile(plane, 99)
    # the energy is readable in keV on the canvas
    text = overlay(viewer, "text").text
    assert "EDS energy" in text and "keV" in text and f"{kev:.3f}" in text


def test_lazy_si_contrast_set_from_the_computed_plane(make_napari_viewer, qtbot, monkeypatch):
    from napari_emd.plugin import layers as layers_module

    monkeypatch.setattr(layers_module, "EAGER_LIMIT", 0)  # as for a big file
    viewer, layers = _open(make_napari_viewer, qtbot, "fei_SI_SuperX-HAADF_10frames_10x50.emd")
    si = next(ly for ly in layers if is_si_layer(ly))
    assert not isinstance(si.data, np.ndarray)
    index = tuple(int(i) for i in np.rint(si.world_to_data(viewer.dims.point))[:-2])
    plane = np.asarray(si.data[index])
    assert tuple(si.contrast_limits) == look.robust_limits(plane)  # set by the worker


def test_layers_of_one_scan_overlay_where_the_scan_area_says(make_napari_viewer, qtbot):
    """The HAADF, the element maps and the SI of one acquisition sit on the same pixels:
    the scan area (left 0.414, top 0.430 of a 460.7 nm field) puts them at -39.6, -32.4 nm."""
    _viewer, layers = _open(make_napari_viewer, qtbot, "Test SI 16x16 215 kx.emd")
    yx = {ly.name: (tuple(np.round(ly.translate[-2:], 4)), tuple(np.round(ly.scale[-2:], 6)))
          for ly in layers}
    assert len(set(yx.values())) == 1, yx
    (t, _), = set(yx.values())
    assert t == pytest.approx((-32.393, -39.592), abs=1e-3)


def test_robust_contrast_of_an_image_with_hot_pixels(make_napari_viewer, qtbot):
    _viewer, (haadf,) = _open(make_napari_viewer, qtbot, "fei_emd_image.emd")
    data = np.asarray(haadf.data)
    lo, hi = haadf.contrast_limits
    assert hi == pytest.approx(np.percentile(data, 99.5), rel=1e-3)  # not the 29,036 max
    assert lo == pytest.approx(np.percentile(data, 0.5), rel=1e-3)


def test_element_maps_in_colours_over_the_haadf_and_the_si_hidden(make_napari_viewer, qtbot):
    viewer, layers = _open(make_napari_viewer, qtbot, "Test SI 16x16 215 kx.emd")
    by = {ly.name: ly for ly in layers}
    maps = [by[n] for n in ("C", "Ca", "O", "Cu")]
    assert len({m.colormap.name for m in maps}) == 4
    assert all(m.blending == "additive" and m.visible for m in maps)
    assert by["HAADF"].colormap.name == "gray"
    assert list(viewer.layers).index(by["HAADF"]) < min(list(viewer.layers).index(m)
                                                        for m in maps)
    assert not by["EDS"].visible
    np.asarray(by["C"].data)  # values 0-1 with outliers at 30 and 71
    assert by["C"].contrast_limits[1] < 30


@pytest.mark.parametrize("name", ["FFTComplexEven.emd", "FFTComplexOdd.emd"])
def test_half_fft_is_a_centred_log_power_image(make_napari_viewer, qtbot, name):
    viewer, layers = _open(make_napari_viewer, qtbot, name)
    fft = next(ly for ly in _all_layers(viewer, layers) if "FFT" in ly.name)
    data = np.asarray(fft.data)
    h, w = data.shape
    assert (h, w) == ((70, 70) if "Even" in name else (64, 63))
    assert np.unravel_index(np.argmax(data), data.shape) == (h // 2, w // 2)
    assert np.allclose(data, np.roll(data[::-1, ::-1], (1 - h % 2, 1 - w % 2), (0, 1)))
    assert fft.translate[-1] == pytest.approx(-(w // 2) * fft.scale[-1])


def test_spectrum_only_file_opens_the_spectrum_viewer(make_napari_viewer, qtbot):
    viewer, layers = _open(make_napari_viewer, qtbot, "fei_emd_spectrum.emd")
    assert layers == [] and len(viewer.layers) == 0  # no placeholder layer
    docks = dock_widgets(viewer.window)
    widget = next(w for n, w in docks.items() if "Spectrum viewer" in n)
    spectrum = np.load(real_file("fei_emd_spectrum.npy"))
    np.testing.assert_array_equal(widget.spectrum, spectrum)


def test_table_only_file_shows_its_table(make_napari_viewer, qtbot):
    viewer, _layers = _open(make_napari_viewer, qtbot, "example_object_dtype_data.emd")
    assert len(viewer.layers) == 0
    tables = [w for n, w in dock_widgets(viewer.window).items()
              if "example_object_dtype_data" in n]
    assert tables
    table = tables[0].table
    assert table.rowCount() * table.columnCount() == 2 and table.item(0, 0).text()


def test_real_and_reciprocal_space_together_are_named_once(make_napari_viewer, qtbot):
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(lambda n: seen.append(n.message))
    _viewer, _layers = _open(make_napari_viewer, qtbot, "FFTComplexEven.emd")
    ours = [m for m in seen if "reciprocal" in m]
    assert len(ours) == 1
    assert "HAADF" in ours[0] and "Half FFT" in ours[0]


def test_zero_size_dataset_warns_and_adds_no_layer(make_napari_viewer, tmp_path):
    import h5py

    path = tmp_path / "empty.emd"
    with h5py.File(path, "w") as f:
        f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
        g = f.create_group("data/empty")
        g.attrs["emd_group_type"] = 1
        g.create_dataset("data", shape=(0, 4), dtype="f4")
        g2 = f.create_group("data/ok")
        g2.attrs["emd_group_type"] = 1
        g2["data"] = np.ones((3, 4), "f4")
    viewer = make_napari_viewer()
    with pytest.warns(EMDWarning, match=r"empty\.emd.*nothing to show"):
        layers = viewer.open(str(path), plugin=PLUGIN)
    assert [ly.name for ly in layers] == ["ok"]


def test_independent_images_side_by_side_maps_overlaid(make_napari_viewer, qtbot):
    """Several independent images (a DPC set) open in napari's grid, like Velox's panels;
    a file with element maps stays one overlaid view, and so does a spectrum image with
    its HAADF (maps and regions are drawn over the scan); a generic 3-D signal is not
    split."""
    viewer, layers = _open(make_napari_viewer, qtbot, "fei_example_dpc_titles.emd")
    assert grid_of(viewer).enabled and len(layers) >= 9
    viewer, _ = _open(make_napari_viewer, qtbot, "Test SI 16x16 215 kx.emd")
    assert not grid_of(viewer).enabled
    viewer, layers = _open(make_napari_viewer, qtbot, "fei_SI_SuperX-HAADF_10frames_10x50.emd")
    assert not grid_of(viewer).enabled and sum(ly.visible for ly in layers) >= 2
    viewer, layers = _open(make_napari_viewer, qtbot, "example_signal.emd")
    assert [ly.data.shape for ly in layers] == [(3, 3, 3)]


def _shown_plane(viewer, layer):
    coords = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)[: layer.ndim - 2]
    index = tuple(int(np.clip(np.rint(c), 0, n - 1)) for c, n in zip(coords, layer.data.shape))
    return np.asarray(layer.data[index])


@pytest.mark.parametrize(("name", "title"), [
    ("Si100_3D.emd", "virtual_detector"),  # bin 18 of 37 is empty (22 bins are)
    ("Si100_1x1x3-zStart5.43.emd", "virtual_detector"),  # bin 103 peaks at 1e-4
    ("Si100_2D_3D_DPC_potential_2slices.emd", "ppotential"),  # slice 2 of 4 is empty
    ("Si100_2D_3D_DPC_potential_2slices.emd", "virtual_detector"),
    ("py4DSTEM_size2x3x4x5.h5", "datacube"),
])
def test_stacks_open_on_a_plane_with_signal_and_its_contrast(make_napari_viewer, qtbot,
                                                              name, title):
    """A stack opens on a plane that shows something (at least 1 % of the strongest
    plane's range of values), with contrast limits inside that plane's range, not the
    whole stack's (which left a plane of 1e-4 black among planes of 0.3)."""
    viewer, layers = _open(make_napari_viewer, qtbot, name)
    layer = next(ly for ly in layers if ly.name == title)
    data = np.asarray(layer.data)
    plane = _shown_plane(viewer, layer)
    strongest = look.plane_strengths(data, data.ndim - 2).max()
    assert np.ptp(plane) >= look.WEAK_PLANE_FRACTION * strongest > 0
    lo, hi = layer.contrast_limits
    assert plane.min() <= lo < hi <= plane.max()
    # the limits leave most of the plane's pixels neither black nor white
    assert ((plane > lo) & (plane < hi)).mean() > 0.5


def test_plane_with_signal_rules():
    s = np.array([0.01, 0.0, 0.0, 0.05, 0.0])
    assert look.plane_with_signal(s, (2,)) == (3,)  # the nearest plane with signal
    assert look.plane_with_signal(s, (0,)) is None  # 0.01 is 20 % of the strongest: stays
    assert look.plane_with_signal(np.zeros(4), (1,)) is None  # nothing anywhere: stays
    grid = np.zeros((3, 5))
    grid[1, 0] = grid[0, 3] = 1.0
    assert look.plane_with_signal(grid, (1, 3)) in ((1, 0), (0, 3))  # one slider moved
    assert look.plane_with_signal(np.array([1.0, 0, 1.0]), (1,)) == (2,)  # tie: deeper


@pytest.mark.parametrize("name", ["example_signal.emd", "example_axis_len_1.emd"])
def test_unnamed_axes_get_distinct_labels(make_napari_viewer, qtbot, name):
    """HyperSpy files with unnamed axes: the sliders are "axis 0", "axis 1"..., the
    screen axes y and x, never three labels "axis"."""
    viewer, _layers = _open(make_napari_viewer, qtbot, name)
    labels = list(viewer.dims.axis_labels)
    assert len(set(labels)) == len(labels), labels
    assert labels[-2:] == ["y", "x"]
    assert labels[0] == "axis 0"


@pytest.mark.parametrize(("name", "bar"), [("fei_emd_image.emd", True),
                                           ("Si100_3D.emd", True),
                                           ("example_image.emd", False)])
def test_calibrated_file_shows_its_scale_bar(make_napari_viewer, qtbot, name, bar):
    """viewer.open (as File > Open) switches the scale bar on for a calibrated file,
    not for one in pixels; it stays off when the user hid it after the first file."""
    viewer, _layers = _open(make_napari_viewer, qtbot, name)
    assert overlay(viewer, "scale_bar").visible is bar
    if bar:
        overlay(viewer, "scale_bar").visible = False
        viewer.open(str(real_file(name)), plugin=PLUGIN)
        assert not overlay(viewer, "scale_bar").visible


def test_sparse_si_opens_hidden_under_its_haadf(make_napari_viewer, qtbot):
    """fei_emd_si.emd holds 3 X-rays in 256 pixels at the energy it opens on: shown, it
    is a black canvas with a few yellow squares over the HAADF. It opens hidden (one
    click away), the HAADF shows, and a notification says why; a dense SI stays shown."""
    viewer, layers = _open(make_napari_viewer, qtbot, "fei_emd_si.emd")
    by = {ly.name: ly for ly in layers}
    assert by["HAADF"].visible and not by["EDS"].visible
    plane = _shown_plane(viewer, by["EDS"])
    assert look.sparse_plane(plane)
    viewer, layers = _open(make_napari_viewer, qtbot, "fei_SI_EDS-HAADF-4detectors_2frames.emd")
    si = next(ly for ly in layers if is_si_layer(ly))
    assert si.visible and not look.sparse_plane(_shown_plane(viewer, si))


@pytest.mark.parametrize("name", ["FFTComplexEven.emd", "FFTComplexOdd.emd"])
def test_fft_beside_an_image_opens_in_its_own_window(make_napari_viewer, qtbot, name):
    """HAADF + half FFT: the FFT (1/µm) in the same world made the view fit the FFT's
    extent (the HAADF 0.6 % of the canvas) and napari dropped every unit. The HAADF now
    has the viewer to itself, its µm scale bar and a view fitted to it; the FFT opens
    shown in a window of its own, in 1/µm."""
    viewer, _layers = _open(make_napari_viewer, qtbot, name)
    assert [ly.name for ly in viewer.layers] == ["HAADF"]
    assert _unit(world_units(viewer)[-1]) == "µm"
    haadf = viewer.layers["HAADF"]
    np.testing.assert_allclose(viewer.layers.extent.world, haadf.extent.world)
    companion = view.install(viewer).companion
    (fft,) = companion.layers
    assert fft.visible and "FFT" in fft.name
    assert _unit(world_units(companion)[-1]).replace(" ", "") == "1/µm"
    assert overlay(companion, "scale_bar").visible
