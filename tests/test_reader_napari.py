"""The napari reader contribution: what it claims, what it returns, and a real viewer."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from conftest import DATA_DIR, real_file
from napari_emd import EMDError, read_datasets
from napari_emd.plugin.compat import overlay, world_units
from napari_emd.plugin.layer_meta import layer_info
from napari_emd.plugin.reader import napari_get_reader

REAL_FILES = sorted(
    p.name for p in DATA_DIR.glob("*") if p.suffix in (".emd", ".h5")
) if DATA_DIR.is_dir() else []


def test_not_hdf5_emd_is_refused_with_our_reason(tmp_path):
    # napari only asks us for an .emd when we are its reader for .emd (the only one, the
    # preferred one, or the one picked): returning None there shows napari's "refused the
    # file" with no reason, so an .emd that is not HDF5 gets a reader that says why
    p = tmp_path / "notes.emd"
    p.write_text("this is some other program's .emd file")
    reader = napari_get_reader(str(p))
    assert reader is not None
    with pytest.raises(EMDError, match=r"notes\.emd: not an HDF5 file"):
        reader(str(p))
    # .h5 belongs to many programs: a non-HDF5 one is left to them
    h5 = tmp_path / "notes.h5"
    h5.write_text("text")
    assert napari_get_reader(str(h5)) is None


def test_hdf5_that_is_not_emd_is_not_ours(tmp_path):
    p = tmp_path / "plain.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(3)
    assert napari_get_reader(str(p)) is None
    with pytest.raises(EMDError, match=r"plain\.h5"):
        read_datasets(p)


def test_other_extensions_are_not_ours(tmp_path):
    p = tmp_path / "image.tif"
    p.write_bytes(b"II*\x00")
    assert napari_get_reader(str(p)) is None
    assert napari_get_reader([]) is None


def test_truncated_emd_gives_clear_error(tmp_path):
    src = real_file("fei_emd_image.emd")
    bad = tmp_path / "truncated.emd"
    bad.write_bytes(src.read_bytes()[:4096])
    reader = napari_get_reader(str(bad))
    assert reader is not None, "a damaged .emd is ours: the user must see why it fails"
    with pytest.raises(EMDError, match=r"truncated\.emd"):
        reader(str(bad))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(EMDError, match="no such file"):
        read_datasets(tmp_path / "missing.emd")
    with pytest.raises(EMDError, match="folder"):
        read_datasets(tmp_path)


@pytest.mark.parametrize("name", REAL_FILES)
def test_every_real_file_opens_as_layers(name):
    path = str(real_file(name))
    reader = napari_get_reader(path)
    assert reader is not None, name
    layers = reader(path)
    assert layers, name
    if len(layers) == 1 and layers[0][0] is None:  # spectra/tables only: "nothing to add"
        assert not [d for d in read_datasets(path, lazy=True)
                    if d.kind not in ("spectrum", "table")], name
        return
    names = [kw["name"] for _, kw, _ in layers]
    assert len(set(names)) == len(names), names
    for data, kw, kind in layers:
        if kind != "image":
            continue
        assert len(kw["scale"]) == data.ndim == len(kw["units"]) == len(kw["axis_labels"])
        assert all(s > 0 for s in kw["scale"]), (name, kw["name"], kw["scale"])
        assert layer_info(kw).source == os.path.abspath(path)


@pytest.mark.parametrize("name", REAL_FILES)
def test_eager_read_leaves_no_open_handle(name, tmp_path):
    src = real_file(name)
    p = tmp_path / name
    p.write_bytes(src.read_bytes())
    read_datasets(p)
    # h5py refuses to truncate a file this process still has open
    with h5py.File(p, "w"):
        pass


@pytest.mark.napari
def test_viewer_opens_velox_image_with_units(make_napari_viewer):
    path = str(real_file("fei_emd_image.emd"))
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="napari-emd-io")
    assert [la.name for la in layers] == ["HAADF"]
    layer = layers[0]
    assert layer.data.shape == (512, 512)
    # 5.302 nm per pixel, in whatever readable length unit the reader chose
    pixel = layer.scale[0] * layer.units[0]
    assert pixel.to("nm").magnitude == pytest.approx(5.302, rel=1e-3)
    assert layer.units[0] == layer.units[1]
    overlay(viewer, "scale_bar").visible = True
    # the scale bar reads the layers' physical units (napari's world units, or the unit
    # napari-emd gives it on napari < 0.7)
    assert {str(u) for u in world_units(viewer)} == {str(layer.units[0])}


@pytest.mark.napari
def test_energy_focus_on_mixed_eds_and_eels_axes(make_napari_viewer):
    """EDS (keV) and EELS (eV) spectrum images have sliders of their own; napari >= 0.7
    expresses every energy in one unit (eV), older napari keeps each layer's: the EDS
    slider must land on the EDS peak in the world unit of its axis."""
    from napari_emd.plugin import view
    from napari_emd.plugin.view import focus_energy

    viewer = make_napari_viewer()
    layers = viewer.open(str(real_file("example_velox_EELS_EDS.emd")), plugin="napari-emd-io")
    eds = next(la for la in layers if la.name == "EDS")
    eds.visible = True  # hidden under the file's maps; napari slices visible layers only
    peak_kev = layer_info(eds).peak_energy
    assert focus_energy(viewer, eds)
    axis = view.energy_axis(viewer, eds)
    factor = (1 * eds.units[0]).to(world_units(viewer)[axis]).magnitude
    world = viewer.dims.point[axis]
    assert world == pytest.approx(peak_kev * factor, abs=factor * 0.01)
    # the plane shown is the EDS channel asked for: one that holds counts (this SI has
    # only stray ones, so it opened on a line of its elements, an empty plane)
    import numpy as np

    spectrum = np.asarray(eds.data.sum(axis=(1, 2, 3)))
    energies = eds.translate[0] + eds.scale[0] * np.arange(spectrum.size)
    channel = int(np.argmax(np.where(energies > 0.2, spectrum, 0)))
    assert focus_energy(viewer, eds, float(energies[channel]))
    expected = np.asarray(eds.data[channel]).reshape(eds._data_view.shape)
    assert expected.any(), "the plane holds counts"
    assert np.array_equal(np.asarray(eds._data_view), expected)
