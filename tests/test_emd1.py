"""EMD 1.0 (emdfile / py4DSTEM) reader: the real py4DSTEM file against the reference
reader, and emdfile-layout files written here (stacks, non-linear dims, pointlists,
metadata bundles)."""

from __future__ import annotations

import pickle
import warnings

import h5py
import numpy as np
import pytest

from conftest import real_file
from napari_emd import EMDError, detect_format, read_datasets
from napari_emd.formats import emd1, ncem, prismatic
from napari_emd.model import IMAGE_STACK, SIGNAL, TABLE
from napari_emd.units import clean_unit


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


@pytest.mark.realdata
@pytest.mark.parametrize("kw", [{}, {"stack_group": False}, {"lazy": True}])
def test_py4dstem_matches_rsciio(kw):
    rs = pytest.importorskip("rsciio.emd")
    path = real_file("py4DSTEM_size2x3x4x5.h5")
    assert detect_format(path) == "emd1"
    (ds,) = read_datasets(path, **kw)
    (r,) = _quiet(rs.file_reader, str(path), **kw)
    assert ds.title == r["metadata"]["General"]["title"] == "datacube"
    assert ds.is_lazy == bool(kw.get("lazy"))
    assert ds.dtype == np.float32 and ds.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(np.asarray(ds.data), np.asarray(r["data"]))
    for a, b in zip(ds.axes, r["axes"], strict=True):
        assert (a.name, a.size, a.navigate) == (b["name"], b["size"], b["navigate"])
        assert a.units == clean_unit(b["units"])
        assert a.offset == pytest.approx(b["offset"])
        assert a.scale == pytest.approx(b["scale"])
    assert [a.units for a in ds.axes] == ["nm", "nm", "1/Å", "1/Å"]
    assert [a.raw_units for a in ds.axes] == ["nm", "nm", "A^-1", "A^-1"]
    assert ds.kind == SIGNAL


@pytest.mark.realdata
def test_py4dstem_metadata_and_paths():
    path = real_file("py4DSTEM_size2x3x4x5.h5")
    (ds,) = read_datasets(path)
    om = ds.original_metadata
    assert om["EMD_version"] == "1.0"
    assert om["calibration"]["R_pixel_size"] == pytest.approx(0.126796875)
    assert om["calibration"]["Q_pixel_units"] == "A^-1"
    assert om["calibration"]["_target_paths"] == ["/datacube"]
    assert om["file"]["authoring_program"] == "emdfile"
    assert ds.full_metadata()["Signal"]["quantity"] == "pixel intensity"
    assert ds.path == "/datacube_root/datacube/data"
    (a,) = read_datasets(path, dataset_path="/datacube_root/datacube/data")
    (b,) = read_datasets(path, dataset_path=["datacube_root/datacube"])
    np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(EMDError, match="not an array"):
        read_datasets(path, dataset_path="/datacube_root/nothing")
    (lz,) = read_datasets(path, lazy=True)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(lz.data)).compute(), ds.data)


@pytest.mark.realdata
def test_detectors_keep_apart():
    with h5py.File(real_file("py4DSTEM_size2x3x4x5.h5"), "r") as f:
        assert emd1.detect(f)
        assert not ncem.detect(f)
        assert not prismatic.detect(f)
    with h5py.File(real_file("example_image.emd"), "r") as f:
        assert not emd1.detect(f)
    with h5py.File(real_file("Si100_3D.emd"), "r") as f:
        assert not emd1.detect(f)


def _write_emdfile_layout(path):
    """A file in emdfile's layout: a stack-like array with a ``_labels_`` dim and a
    non-linear dim, a child array, a pointlist, and metadata bundles."""
    rng = np.random.default_rng(2)
    stack = rng.random((4, 5, 2)).astype(np.float32)
    ry = np.array([0.0, 1.0, 1.5, 3.0, 10.0])
    points = np.zeros(3, dtype=[("qx", "f8"), ("qy", "f8"), ("intensity", "f4")])
    points["qx"] = [1, 2, 3]
    with h5py.File(path, "w") as f:
        f.attrs.update({"emd_group_type": "file", "version_major": 1, "version_minor": 0,
                        "authoring_program": "emdfile", "authoring_user": "Grace"})
        root = f.create_group("experiment")
        root.attrs.update({"emd_group_type": "root", "python_class": "Root"})
        md = root.create_group("metadatabundle/settings")
        root["metadatabundle"].attrs["emd_group_type"] = "metadatabundle"
        md.attrs.update({"emd_group_type": "metadata", "python_class": "Metadata"})
        d = md.create_dataset("voltage", data=300.0)
        d.attrs["type"] = "number"
        d = md.create_dataset("operator", data="Grace", dtype=h5py.string_dtype())
        d.attrs["type"] = "string"
        lst = md.create_group("detectors")
        lst.attrs.update({"type": "list_of_strings", "length": 2})
        for i, s in enumerate(["HAADF", "BF"]):
            lst.create_dataset(str(i), data=s, dtype=h5py.string_dtype())
        arr = root.create_group("stack")
        arr.attrs.update({"emd_group_type": "array", "python_class": "Array"})
        arr.create_dataset("data", data=stack).attrs["units"] = "counts"
        d = arr.create_dataset("dim0", data=[0.0, 0.5])
        d.attrs.update({"name": "rx", "units": "nm"})
        d = arr.create_dataset("dim1", data=ry)
        d.attrs.update({"name": "ry", "units": "A"})
        d = arr.create_dataset("dim2", data=[b"first", b"second"])
        d.attrs["name"] = "_labels_"
        child = arr.create_group("virtual")
        child.attrs.update({"emd_group_type": "array", "python_class": "RealSlice"})
        child.create_dataset("data", data=stack.sum(-1))
        for i, (nm, un) in enumerate([("rx", "nm"), ("ry", "nm")]):
            d = child.create_dataset(f"dim{i}", data=[0.0, 0.5])
            d.attrs.update({"name": nm, "units": un})
        pl = root.create_group("peaks")
        pl.attrs.update({"emd_group_type": "pointlist", "python_class": "PointList"})
        pl.create_dataset("data", data=points)
    return stack, ry, points


@pytest.mark.parametrize("lazy", [False, True])
def test_emdfile_layout(tmp_path, lazy):
    path = tmp_path / "tree.h5"
    stack, ry, points = _write_emdfile_layout(path)
    assert detect_format(path) == "emd1"
    datasets = read_datasets(path, lazy=lazy)
    assert [d.title for d in datasets] == ["peaks", "stack", "virtual"]
    peaks, st, virt = datasets
    assert peaks.kind == TABLE
    np.testing.assert_array_equal(np.asarray(peaks.data), points)
    np.testing.assert_array_equal(np.asarray(st.data), stack)  # stored order kept
    assert [a.name for a in st.axes] == ["rx", "ry", "labels"]
    assert st.axes[0].scale == 0.5 and st.axes[0].units == "nm"
    np.testing.assert_array_equal(st.axes[1].vector, ry)  # non-linear dim kept
    assert st.axes[1].units == "Å"
    assert st.original_metadata["dataset"]["dims"]["dim2"]["labels"] == ["first", "second"]
    assert st.original_metadata["settings"] == {
        "voltage": 300.0, "operator": "Grace", "detectors": ["HAADF", "BF"]}
    assert st.full_metadata()["Signal"]["quantity"] == "counts"
    assert st.full_metadata()["General"]["authors"] == "Grace"
    assert st.kind == SIGNAL
    np.testing.assert_allclose(np.asarray(virt.data), stack.sum(-1), rtol=1e-6)
    assert virt.kind == "image" and virt.axes[1].units == "nm"
    assert st.is_lazy == lazy


def test_emdfile_stack_labels_first(tmp_path):
    """Stack-like arrays written with the slices first (newer emdfile) put the labels
    axis first."""
    path = tmp_path / "stack_first.h5"
    data = np.arange(3 * 4 * 6, dtype=np.int32).reshape(3, 4, 6)
    with h5py.File(path, "w") as f:
        f.attrs.update({"emd_group_type": "file", "version_major": 1, "version_minor": 0})
        arr = f.create_group("root/images")
        f["root"].attrs["emd_group_type"] = "root"
        arr.attrs["emd_group_type"] = "array"
        arr.create_dataset("data", data=data)
        for i, (nm, un) in enumerate([("y", "nm"), ("x", "nm")]):
            d = arr.create_dataset(f"dim{i}", data=[0.0, 2.0])
            d.attrs.update({"name": nm, "units": un})
        arr.create_dataset("dim2", data=[b"a", b"b", b"c"]).attrs["name"] = "_labels_"
    (ds,) = read_datasets(path)
    assert [a.name for a in ds.axes] == ["labels", "y", "x"]
    assert [a.size for a in ds.axes] == [3, 4, 6]
    assert ds.axes[2].scale == 2.0
    assert ds.kind == IMAGE_STACK


def test_emd1_without_arrays(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update({"emd_group_type": "file", "version_major": 1, "version_minor": 0})
        f.create_group("root").attrs["emd_group_type"] = "root"
    with pytest.raises(EMDError, match=r"empty\.h5"):
        read_datasets(path)
