"""The napari writer contributions: layers -> .emd -> layers with a real napari viewer,
and the written files read by RosettaSciIO and ncempy (test-only oracles)."""

from __future__ import annotations

import json
import warnings

import dask.array as da
import h5py
import numpy as np
import pytest

import napari_emd
from conftest import real_file
from napari_emd import EMDError
from napari_emd.errors import EMDWarning
from napari_emd.plugin.layer_meta import layer_info, si_record
from napari_emd.plugin.writer import layer_signal, write_image, write_layers
from napari_emd.writer import jsonable

PLUGIN = "napari-emd-io"


def _units(layer):
    return [f"{u:~P}" for u in layer.units]


def _add_sample_layers(viewer):
    rng = np.random.default_rng(1)
    img = viewer.add_image(
        rng.random((3, 6, 8)).astype(np.float32),
        name="HAADF stack",
        scale=(2.0, 0.25, 0.25),
        translate=(1.0, 10.0, -5.0),
        units=("s", "nanometer", "nm"),
        axis_labels=("time", "y", "x"),
        colormap="viridis",
        contrast_limits=(0.2, 0.8),
        gamma=0.7,
        opacity=0.9,
        metadata={"sample": "Au on C", "operator": {"name": "A"}, "bad": object()},
    )
    lab = viewer.add_labels(
        rng.integers(0, 5, (6, 8)).astype(np.uint16),
        name="grains",
        scale=(0.25, 0.25),
        translate=(10.0, -5.0),
        units="nm",
        axis_labels=("y", "x"),
    )
    return img, lab


def test_round_trip_image_and_labels(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    img, lab = _add_sample_layers(viewer)
    path = tmp_path / "both.emd"
    written = viewer.layers.save(str(path), plugin=PLUGIN)
    assert written == [str(path)]
    with h5py.File(path, "r") as f:
        assert sorted(f["data"]) == ["HAADF stack", "grains"]

    viewer2 = make_napari_viewer()
    viewer2.open(str(path), plugin=PLUGIN)
    assert [ly.name for ly in viewer2.layers] == ["HAADF stack", "grains"]
    new_img, new_lab = viewer2.layers["HAADF stack"], viewer2.layers["grains"]

    assert new_img._type_string == "image"
    np.testing.assert_array_equal(np.asarray(new_img.data), img.data)
    assert np.asarray(new_img.data).dtype == img.data.dtype
    np.testing.assert_allclose(new_img.scale, img.scale)
    np.testing.assert_allclose(new_img.translate, img.translate)
    assert _units(new_img) == ["s", "nm", "nm"]
    assert tuple(new_img.axis_labels) == ("time", "y", "x")
    assert new_img.colormap.name == "viridis"
    np.testing.assert_allclose(new_img.contrast_limits, (0.2, 0.8))
    assert new_img.gamma == pytest.approx(0.7)
    assert new_img.opacity == pytest.approx(0.9)
    assert new_img.metadata["sample"] == "Au on C"
    assert new_img.metadata["operator"] == {"name": "A"}

    assert new_lab._type_string == "labels"
    np.testing.assert_array_equal(np.asarray(new_lab.data), lab.data)
    assert np.asarray(new_lab.data).dtype == np.uint16
    np.testing.assert_allclose(new_lab.scale, lab.scale)
    np.testing.assert_allclose(new_lab.translate, lab.translate)
    assert _units(new_lab) == ["nm", "nm"]
    assert tuple(new_lab.axis_labels) == ("y", "x")


def test_napari_layer_attribute(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _add_sample_layers(viewer)
    path = tmp_path / "both.emd"
    viewer.layers.save(str(path), plugin=PLUGIN)
    with h5py.File(path, "r") as f:
        state = json.loads(f["data/HAADF stack"].attrs["napari_layer"])
        lab_state = json.loads(f["data/grains"].attrs["napari_layer"])
        assert f["data/HAADF stack/dim2"].attrs["units"] == "[n_m]"  # not nanometer
        assert f["data/HAADF stack/dim3"].attrs["units"] == "[s]"
    assert state["layer_type"] == "image"
    assert state["colormap"] == "viridis"
    assert state["contrast_limits"] == [0.2, 0.8]
    assert state["units"] == ["s", "nm", "nm"]
    assert state["axis_labels"] == ["time", "y", "x"]
    assert state["metadata"] == {"sample": "Au on C", "operator": {"name": "A"}}
    assert lab_state["layer_type"] == "labels"


def test_single_image_layer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.arange(12, dtype=np.int16).reshape(3, 4), name="one",
                             scale=(0.1, 0.1), units="angstrom")
    path = tmp_path / "one.emd"
    viewer.layers.save(str(path), selected=True, plugin=PLUGIN)
    (sig,) = napari_emd.file_reader(path)
    np.testing.assert_array_equal(sig["data"], layer.data)
    assert [a["units"] for a in sig["axes"]] == ["Å", "Å"]
    assert [a["scale"] for a in sig["axes"]] == pytest.approx([0.1, 0.1])


def test_other_readers_open_napari_files(make_napari_viewer, tmp_path):
    rsciio_emd = pytest.importorskip("rsciio.emd")
    ncemp = pytest.importorskip("ncempy.io.emd")
    viewer = make_napari_viewer()
    img, lab = _add_sample_layers(viewer)
    path = tmp_path / "both.emd"
    viewer.layers.save(str(path), plugin=PLUGIN)
    ref = {s["metadata"]["General"]["title"]: s for s in rsciio_emd.file_reader(str(path))}
    got = ref["HAADF stack"]
    np.testing.assert_array_equal(got["data"], img.data)
    assert [a["name"] for a in got["axes"]] == ["time", "y", "x"]
    assert [a["units"] for a in got["axes"]] == ["s", "nm", "nm"]
    assert [a["scale"] for a in got["axes"]] == pytest.approx(list(img.scale))
    assert [a["offset"] for a in got["axes"]] == pytest.approx(list(img.translate))
    np.testing.assert_array_equal(ref["grains"]["data"], lab.data)
    with ncemp.fileEMD(str(path)) as f:
        groups = {g.name.rsplit("/", 1)[1]: g for g in f.list_emds}
        data, dims = f.get_emdgroup(groups["HAADF stack"])
    np.testing.assert_array_equal(data, img.data.T)
    assert [d[1] for d in dims] == ["x", "y", "time"]


def test_file_from_emd_reader_saved_again(make_napari_viewer, tmp_path):
    """A layer opened from an EMD file carries napari-emd's info with a non-JSON record:
    it is skipped, the HyperSpy metadata kept, and the file re-opens the same."""
    src = real_file("fei_emd_image.emd")
    viewer = make_napari_viewer()
    viewer.open(str(src), plugin=PLUGIN)
    layer = next(ly for ly in viewer.layers if ly._type_string == "image")
    assert layer_info(layer).record is not None
    path = tmp_path / "again.emd"
    with warnings.catch_warnings():
        warnings.simplefilter("error", EMDWarning)
        viewer.layers.selection = {layer}
        viewer.layers.save(str(path), selected=True, plugin=PLUGIN)
    with h5py.File(path, "r") as f:
        grp = f["data"][layer.name]
        state = json.loads(grp.attrs["napari_layer"])
        md = json.loads(grp.attrs["metadata"])
        assert "record" not in state["metadata"]["emd"]
        assert md["General"]["title"] == layer.name
        src_md = layer_info(layer).record.full_metadata()
        assert md["Acquisition_instrument"] == jsonable(src_md["Acquisition_instrument"])
        assert md["General"]["original_filename"] == "fei_emd_image.emd"
    viewer2 = make_napari_viewer()
    viewer2.open(str(path), plugin=PLUGIN)
    (new,) = [ly for ly in viewer2.layers if ly._type_string == "image"]
    np.testing.assert_array_equal(np.asarray(new.data), np.asarray(layer.data))
    np.testing.assert_allclose(new.scale, layer.scale)
    assert _units(new) == _units(layer)


def test_lazy_layer_saved_chunk_by_chunk(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    # (dask's own default_rng is newer than the dask floor)
    values = np.random.default_rng(2).random((16, 64, 64)).astype(np.float32)
    lazy = da.from_array(values, chunks=(4, 64, 64))
    layer = viewer.add_image(lazy, name="lazy", contrast_limits=(0, 1), scale=(1, 0.5, 0.5),
                             units=("eV", "nm", "nm"))
    path = tmp_path / "lazy.emd"
    viewer.layers.save(str(path), selected=True, plugin=PLUGIN)
    (sig,) = napari_emd.file_reader(path)
    np.testing.assert_array_equal(sig["data"], layer.data.compute())
    assert [a["units"] for a in sig["axes"]] == ["eV", "nm", "nm"]


def test_overwrite_follows_napari_save(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 4), np.uint8), name="first")
    path = tmp_path / "x.emd"
    viewer.layers.save(str(path), selected=True, plugin=PLUGIN)
    viewer.layers[0].data = np.ones((4, 4), np.uint8)
    viewer.layers.save(str(path), selected=True, plugin=PLUGIN)
    (sig,) = napari_emd.file_reader(path)
    np.testing.assert_array_equal(sig["data"], np.ones((4, 4), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["x.emd"]


def test_rgb_image(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    rgb = np.random.default_rng(3).integers(0, 255, (5, 6, 3)).astype(np.uint8)
    layer = viewer.add_image(rgb, name="photo", rgb=True, scale=(0.5, 0.5), units="µm")
    assert layer.rgb
    path = tmp_path / "rgb.emd"
    viewer.layers.save(str(path), selected=True, plugin=PLUGIN)
    viewer2 = make_napari_viewer()
    viewer2.open(str(path), plugin=PLUGIN)
    new = viewer2.layers["photo"]
    assert new.rgb
    np.testing.assert_array_equal(np.asarray(new.data), rgb)
    np.testing.assert_allclose(new.scale, layer.scale)


def test_unsupported_layer_refused(tmp_path):
    surface = (np.zeros((3, 2)), np.array([[0, 1, 2]]))
    with pytest.raises(EMDError, match="layer 'mesh' is a surface layer"):
        layer_signal(surface, {"name": "mesh"}, "surface")
    with pytest.raises(EMDError, match="cannot store"):
        write_layers(str(tmp_path / "p.emd"), [(np.zeros((3, 2)), {"name": "p"}, "points"),
                                               (surface, {"name": "m"}, "surface")])
    assert list(tmp_path.iterdir()) == []


def test_extension_added_and_transform_warning(tmp_path):
    meta = {"name": "rot", "scale": [1.0, 1.0], "rotate": [[0.0, -1.0], [1.0, 0.0]]}
    with pytest.warns(EMDWarning, match="rotate"):
        (out,) = write_image(str(tmp_path / "noext"), np.zeros((2, 2)), meta)
    assert out.endswith("noext.emd")


def test_failure_leaves_existing_file(tmp_path):
    path = tmp_path / "keep.emd"
    write_image(str(path), np.zeros((4, 4), np.uint8), {"name": "a"})
    before = path.read_bytes()

    def boom(x):
        raise RuntimeError("disk gone")

    bad = da.zeros((8, 8), chunks=4).map_blocks(boom, dtype=float)
    with pytest.raises(RuntimeError, match="disk gone"):
        write_image(str(path), bad, {"name": "a"})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.emd"]


def test_save_dialog_offers_emd(make_napari_viewer):
    from napari.plugins._npe2 import file_extensions_string_for_layers

    viewer = make_napari_viewer()
    img = viewer.add_image(np.zeros((4, 4)))
    lab = viewer.add_labels(np.zeros((4, 4), np.uint8))
    for layers in ([img], [lab], [img, lab]):
        text, _writers = file_extensions_string_for_layers(layers)
        assert "NCEM EMD (*.emd)" in text


def test_lazy_velox_si_layer_saved(tmp_path, monkeypatch):
    """The lazy layers of a Velox spectrum image (as napari gets them for a big file)
    are written block by block and read back equal to the eager data."""
    from napari_emd.plugin import layers as layers_module
    from napari_emd.plugin.reader import reader_function

    src = str(real_file("fei_emd_si.emd"))
    eager = {m["name"]: (np.asarray(d), m) for d, m, t in reader_function(src) if t == "image"}
    monkeypatch.setattr(layers_module, "EAGER_LIMIT", 0)  # keep every layer lazy, as for big files
    lazy = [ld for ld in reader_function(src) if ld[2] == "image"]
    assert any(hasattr(d, "dask") for d, _, _ in lazy)
    path = tmp_path / "si.emd"
    write_layers(str(path), lazy)
    signals = {s["metadata"]["General"]["title"]: s for s in napari_emd.file_reader(path)}
    for name, (data, meta) in eager.items():
        rec = si_record(meta)
        if rec is not None:  # the spectrum image itself is stored, (y, x, E)
            np.testing.assert_array_equal(signals[name]["data"], np.asarray(rec.data))
            assert [a["units"] for a in signals[name]["axes"]] == ["nm", "nm", "keV"]
            continue
        np.testing.assert_array_equal(signals[name]["data"], data)
        assert [a["units"] for a in signals[name]["axes"]] == [
            u if u != "pixel" else "" for u in meta["units"]]


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 4, 5)])
def test_round_trip_2d_and_4d(make_napari_viewer, tmp_path, shape):
    viewer = make_napari_viewer()
    data = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    n = len(shape)
    layer = viewer.add_image(data, name=f"{n}d", scale=[0.5] * n, translate=[1.0] * n,
                             units=["nm"] * n, colormap="magma")
    path = tmp_path / "nd.emd"
    viewer.layers.save(str(path), selected=True, plugin=PLUGIN)
    viewer2 = make_napari_viewer()
    viewer2.open(str(path), plugin=PLUGIN)
    (new,) = viewer2.layers
    np.testing.assert_array_equal(np.asarray(new.data), data)
    np.testing.assert_allclose(new.scale, layer.scale)
    np.testing.assert_allclose(new.translate, layer.translate)
    assert tuple(new.axis_labels) == tuple(layer.axis_labels)
    assert new.colormap.name == "magma"


def test_rsciio_and_ncempy_files_open_in_napari(make_napari_viewer, tmp_path):
    rsciio_emd = pytest.importorskip("rsciio.emd")
    ncemp = pytest.importorskip("ncempy.io.emd")
    data = np.arange(3 * 4 * 5, dtype=np.int32).reshape(3, 4, 5)
    axes = [{"name": n, "units": "nm", "index_in_array": i, "size": s, "offset": 0.0,
             "scale": 0.5, "navigate": i == 0} for i, (n, s) in enumerate(zip("zyx", data.shape))]
    rsciio_emd.file_writer(str(tmp_path / "rs.emd"), {
        "data": data, "axes": axes, "original_metadata": {},
        "metadata": {"General": {"title": "rs"}, "Signal": {"signal_type": ""}}})
    with ncemp.fileEMD(str(tmp_path / "nc.emd"), readonly=False) as f:
        dims = [(np.arange(s) * 0.5, n, "[n_m]") for n, s in zip("xyz", data.T.shape)]
        f.put_emdgroup("nc", data.T.copy(), dims)
    viewer = make_napari_viewer()
    for name in ("rs.emd", "nc.emd"):
        (layer,) = viewer.open(str(tmp_path / name), plugin=PLUGIN)
        np.testing.assert_array_equal(np.asarray(layer.data), data)
        np.testing.assert_allclose(layer.scale, [0.5, 0.5, 0.5])
        assert _units(layer) == ["nm", "nm", "nm"]
        assert tuple(layer.axis_labels) == ("z", "y", "x")


def test_saving_over_a_lazily_read_file_warns_and_the_old_layer_fails_clearly(
    make_napari_viewer, tmp_path, monkeypatch
):
    import napari_emd.plugin.layers as layers_mod

    src = real_file("fei_emd_image.emd")
    path = tmp_path / "img.emd"
    path.write_bytes(src.read_bytes())
    monkeypatch.setattr(layers_mod, "EAGER_LIMIT", 0)  # keep the layer lazy
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-emd-io")
    assert not isinstance(layer.data, np.ndarray)
    with pytest.warns(EMDWarning, match="read lazily"):
        viewer.layers.save(str(path), plugin="napari-emd-io")
    with pytest.raises(EMDError, match="changed on disk"):
        np.asarray(layer.data[:2, :2])
    (again,) = viewer.open(str(path), plugin="napari-emd-io")
    np.testing.assert_array_equal(np.asarray(again.data), np.load(src.with_suffix(".npy")))
