"""NCEM EMD 0.2 reader (HyperSpy-, ncempy- and DE5-written files), checked against the
reference reader (rsciio) on the real files and on files written here."""

from __future__ import annotations

import pickle
import warnings

import h5py
import numpy as np
import pytest

from conftest import real_file
from napari_emd import EMDError, EMDWarning, detect_format, file_reader, read_datasets
from napari_emd.model import IMAGE, SIGNAL, SPECTRUM, TABLE
from napari_emd.units import clean_unit

NCEM_FILES = [
    "example_image.emd",
    "example_signal.emd",
    "example_spectrum.emd",
    "example_metadata.emd",
    "example_axis_len_1.emd",
    "example_bytes_string_metadata.emd",
    "example_object_dtype_data.emd",
]


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def _rs_unit(u: object) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clean_unit(u)


def compare_to_rsciio(path, compare_titles: bool = True, **kw) -> list:
    """Read ``path`` with both readers and assert they agree on data and axes."""
    rs = pytest.importorskip("rsciio.emd")
    ours = _quiet(read_datasets, path, **kw)
    ref = _quiet(rs.file_reader, str(path), **kw)
    assert len(ours) == len(ref)
    for o, r in zip(ours, ref):
        rdata = np.asarray(r["data"])
        if compare_titles:
            assert o.title == r["metadata"]["General"]["title"]
        assert o.shape == rdata.shape
        assert o.dtype == rdata.dtype
        np.testing.assert_array_equal(np.asarray(o.data), rdata)
        assert len(o.axes) == len(r["axes"])
        for a, b in zip(o.axes, r["axes"]):
            assert a.name == (b["name"] or "")
            assert a.size == b["size"]
            assert a.navigate == b["navigate"]
            assert a.units == _rs_unit(b["units"])
            assert a.linear_offset == pytest.approx(float(b["offset"]), rel=1e-5, abs=1e-12)
            assert a.linear_scale == pytest.approx(float(b["scale"]), rel=1e-5)
    return ours


@pytest.mark.realdata
@pytest.mark.parametrize("name", NCEM_FILES)
def test_real_files_match_rsciio(name):
    path = real_file(name)
    assert detect_format(path) == "ncem"
    compare_to_rsciio(path)


@pytest.mark.realdata
@pytest.mark.parametrize("name", NCEM_FILES)
def test_lazy_equals_eager_and_pickles(name):
    path = real_file(name)
    eager = _quiet(read_datasets, path)
    lazy = _quiet(read_datasets, path, lazy=True)
    for e, lz in zip(eager, lazy):
        assert isinstance(e.data, np.ndarray)
        assert lz.is_lazy
        # the graph holds the path, not an open handle: it pickles
        restored = pickle.loads(pickle.dumps(lz.data))
        np.testing.assert_array_equal(np.asarray(restored.compute()), e.data)
        assert [a.to_dict(i) for i, a in enumerate(lz.axes)] == [
            a.to_dict(i) for i, a in enumerate(e.axes)
        ]


@pytest.mark.realdata
def test_readme_shapes_and_kinds():
    expect = {
        "example_image.emd": ("__unnamed__", np.int32, (3, 3), IMAGE),
        "example_signal.emd": ("__unnamed__", np.int32, (3, 3, 3), SIGNAL),
        "example_spectrum.emd": ("__unnamed__", np.int32, (3,), SPECTRUM),
        "example_metadata.emd": ("This is a test!", np.int32, (3, 3), IMAGE),
        "example_axis_len_1.emd": ("data_group", np.float64, (5, 1, 5), SIGNAL),
        "example_bytes_string_metadata.emd": ("data_group", np.int64, (10,), SPECTRUM),
        "example_object_dtype_data.emd": ("data_group", object, (1, 2), TABLE),
    }
    for name, (title, dtype, shape, kind) in expect.items():
        (ds,) = _quiet(read_datasets, real_file(name))
        assert (ds.title, ds.dtype, ds.shape, ds.kind) == (title, np.dtype(dtype), shape, kind)


@pytest.mark.realdata
def test_hyperspy_metadata_recovered():
    (ds,) = read_datasets(real_file("example_metadata.emd"))
    md = ds.full_metadata()
    assert md["General"]["title"] == "This is a test!"
    assert md["General"]["authors"] == "John Doe"
    assert md["General"]["notes"] == "Test"
    # HyperSpy writes metadata.Signal as the group's attributes
    assert md["Signal"]["a"] == 1 and md["Signal"]["b"] == 2
    assert "record_by" not in md["Signal"] and "binned" not in md["Signal"]
    assert md["Acquisition_instrument"]["TEM"] == {"microscope": "Titan", "beam_energy": 300.0}
    assert md["Sample"] == {"material": "TiO2", "preparation": "FIB"}
    om = ds.original_metadata
    assert om["EMD_version"] == "0.2"
    assert om["user"]["email"] == "johndoe@web.de"
    assert om["microscope"] == {"name": "Titan", "voltage": "300kV"}
    assert om["comments"] == {"comment": "Test"}
    assert om["dataset"]["path"] == "/signals/This is a test!/data"
    assert om["dataset"]["attributes"]["record_by"] == "image"
    # the dict view carries it too
    (d,) = file_reader(real_file("example_metadata.emd"))
    assert d["metadata"]["General"]["original_filename"] == "example_metadata.emd"


@pytest.mark.realdata
def test_bytes_attributes_and_unknown_unit():
    path = real_file("example_bytes_string_metadata.emd")
    with pytest.warns(EMDWarning, match="test_units"):
        (ds,) = read_datasets(path)
    ax = ds.axes[0]
    assert ax.name == "test_name"
    assert ax.units == ""  # not a unit napari understands...
    assert ax.raw_units == "test_units"  # ...but kept
    assert ds.original_metadata["dataset"]["dims"]["dim1"]["units"] == "test_units"


@pytest.mark.realdata
def test_object_data_is_a_table_of_str():
    (ds,) = _quiet(read_datasets, real_file("example_object_dtype_data.emd"))
    assert ds.kind == TABLE
    assert ds.data.tolist() == [["a, 2, test1", "a, 2, test1"]]
    (lz,) = _quiet(read_datasets, real_file("example_object_dtype_data.emd"), lazy=True)
    assert np.asarray(lz.data.compute()).tolist() == ds.data.tolist()


@pytest.mark.realdata
def test_dataset_path_str_and_list():
    path = real_file("example_metadata.emd")
    (a,) = read_datasets(path, dataset_path="/signals/This is a test!/data")
    (b,) = read_datasets(path, dataset_path=["signals/This is a test!"])  # group, no slash
    np.testing.assert_array_equal(a.data, b.data)
    compare_to_rsciio(path, dataset_path="/signals/This is a test!/data")
    with pytest.raises(EMDError, match="not in the file"):
        read_datasets(path, dataset_path="/signals/nope/data")


# --- files written here -------------------------------------------------------------


def _write_ncempy_layout(path, *, bytes_attrs: bool = False) -> dict:
    """An ncempy-style EMD 0.2 file: integer versions, ``/data/<name>``, full-length
    dims (dim1 = first stored axis), one non-linear axis, a length-1 axis."""
    enc = (lambda s: np.bytes_(s.encode())) if bytes_attrs else (lambda s: s)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 1000, size=(6, 4), dtype=np.uint16)  # stored (x, y)
    cube = rng.random((5, 1, 3)).astype(np.float32)  # stored (x, 1, E)
    energy = np.array([1.0, 2.0, 4.0])  # non-linear
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        for name, attrs in (
            ("microscope", {"voltage": 200000}),
            ("user", {"name": enc("Jane")}),
            ("comments", {"2020-01-01": enc("written by a test")}),
        ):
            g = f.create_group(name)
            g.attrs.update(attrs)
        data = f.create_group("data")
        g = data.create_group("image")
        g.attrs["emd_group_type"] = 1
        g.create_dataset("data", data=img)
        for i, (vec, nm, un) in enumerate(
            [(np.arange(6) * 0.5 + 1.0, "x", "n_m"), (np.arange(4) * 0.5, "y", "[n_m]")], 1
        ):
            d = g.create_dataset(f"dim{i}", data=vec)
            d.attrs["name"], d.attrs["units"] = enc(nm), enc(un)
        g = data.create_group("cube")
        g.attrs["emd_group_type"] = 1
        g.create_dataset("data", data=cube)
        for i, (vec, nm, un) in enumerate(
            [(np.arange(5) * 2.0, "x", "[A]"), (np.array([7.0]), "y", "[A]"),
             (energy, "E", "[e_V]")], 1
        ):
            d = g.create_dataset(f"dim{i}", data=vec)
            d.attrs["name"], d.attrs["units"] = enc(nm), enc(un)
    return {"image": img, "cube": cube, "energy": energy}


@pytest.mark.parametrize("bytes_attrs", [False, True])
def test_ncempy_layout(tmp_path, bytes_attrs):
    path = tmp_path / "ncempy.emd"
    ref = _write_ncempy_layout(path, bytes_attrs=bytes_attrs)
    assert detect_format(path) == "ncem"
    cube, image = _quiet(read_datasets, path)  # HDF5 name order
    assert image.title == "image" and image.kind == IMAGE
    np.testing.assert_array_equal(image.data, ref["image"].T)
    assert [a.name for a in image.axes] == ["y", "x"]
    assert [a.units for a in image.axes] == ["nm", "nm"]
    assert image.axes[1].offset == 1.0 and image.axes[1].scale == 0.5
    assert image.axes[1].vector is None  # a linear full-length vector is linear
    # non-linear energy axis kept as a vector, length-1 axis kept
    assert cube.shape == (3, 1, 5)
    assert [a.name for a in cube.axes] == ["E", "y", "x"]
    np.testing.assert_array_equal(cube.axes[0].vector, ref["energy"])
    assert cube.axes[0].units == "eV"
    assert cube.axes[1].size == 1 and cube.axes[1].offset == 0.0
    assert cube.axes[2].units == "Å" and cube.axes[2].scale == 2.0
    md = image.full_metadata()
    assert md["General"]["authors"] == "Jane"
    assert md["Acquisition_instrument"]["TEM"]["beam_energy"] == 200.0
    assert "written by a test" in md["General"]["notes"]
    # lazy == eager
    for e, lz in zip((cube, image), _quiet(read_datasets, path, lazy=True)):
        np.testing.assert_array_equal(lz.data.compute(), e.data)
    # the reference reader agrees on data and on the linear axes
    rs = pytest.importorskip("rsciio.emd")
    ref_dicts = _quiet(rs.file_reader, str(path))
    for o, r in zip((cube, image), ref_dicts):
        np.testing.assert_array_equal(o.data, r["data"])
    compare_axes = [(a.name, a.size, a.offset, a.scale) for a in image.axes]
    assert compare_axes == [
        (b["name"], b["size"], b["offset"], b["scale"]) for b in ref_dicts[1]["axes"]
    ]


def test_ncempy_written_file(tmp_path):
    emd = pytest.importorskip("ncempy.io.emd")
    path = tmp_path / "by_ncempy.emd"
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    dims = (
        (np.arange(2) * 1.5, "t", "[s]"),
        (np.linspace(0, 1, 3), "y", "[n_m]"),
        (np.array([0.0, 1.0, 3.0, 7.0]), "x", "[n_m]"),
    )
    f = emd.fileEMD(str(path), readonly=False)
    f.put_emdgroup("stack", data, dims)
    del f
    (ds,) = _quiet(read_datasets, path)
    np.testing.assert_array_equal(ds.data, data.T)
    assert [a.name for a in ds.axes] == ["x", "y", "t"]
    np.testing.assert_array_equal(ds.axes[0].vector, [0.0, 1.0, 3.0, 7.0])
    assert ds.axes[1].scale == pytest.approx(0.5) and ds.axes[1].vector is None
    assert ds.axes[2].units == "s"
    rs = pytest.importorskip("rsciio.emd")
    (r,) = _quiet(rs.file_reader, str(path))
    np.testing.assert_array_equal(ds.data, r["data"])


def test_de5_like_file(tmp_path):
    """Direct Electron DE5 files are EMD 0.2 (``/data/<name>``); no real one is public,
    so one is written here in that layout and compared with the reference reader."""
    path = tmp_path / "movie.de5"
    frames = np.arange(3 * 8 * 6, dtype=np.uint16).reshape(6, 8, 3)  # stored (x, y, frame)
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        g = f.create_group("microscope")
        g.attrs["voltage"] = np.bytes_(b"300 kV")
        g = f.create_group("data").create_group("frames")
        g.attrs["emd_group_type"] = 1
        g.create_dataset("data", data=frames, chunks=(6, 8, 1))
        for i, (vec, nm, un) in enumerate(
            [(np.arange(6) * 0.1, "x", "[n_m]"), (np.arange(8) * 0.1, "y", "[n_m]"),
             (np.arange(3) * 0.025, "frame", "[s]")], 1
        ):
            d = g.create_dataset(f"dim{i}", data=vec)
            d.attrs["name"] = np.bytes_(nm.encode())
            d.attrs["units"] = np.bytes_(un.encode())
    assert detect_format(path) == "ncem"
    (ds,) = compare_to_rsciio(path)
    assert ds.shape == (3, 8, 6)
    assert ds.kind == "image_stack"
    assert ds.full_metadata()["Acquisition_instrument"]["TEM"]["beam_energy"] == 300.0
    (lz,) = read_datasets(path, lazy=True)
    np.testing.assert_array_equal(lz.data[1].compute(), frames[:, :, 1].T)


def test_hyperspy_writer_round_trip(tmp_path):
    """A file written by the reference writer (HyperSpy layout, ``[n_m]`` units)."""
    rs = pytest.importorskip("rsciio.emd")
    path = tmp_path / "hs.emd"
    data = np.arange(2 * 3 * 5, dtype=np.float64).reshape(2, 3, 5)
    signal = {
        "data": data,
        "axes": [
            {"name": "t", "units": "s", "size": 2, "offset": 0.0, "scale": 0.5,
             "navigate": True},
            {"name": "y", "units": "nm", "size": 3, "offset": 1.0, "scale": 0.2,
             "navigate": False},
            {"name": "x", "units": "nm", "size": 5, "offset": -1.0, "scale": 0.2,
             "navigate": False},
        ],
        "metadata": {"General": {"title": "written"}, "Signal": {"signal_type": "EELS"}},
        "original_metadata": {"user": {"name": "Ada"}},
    }
    rs.file_writer(str(path), signal)
    (ds,) = compare_to_rsciio(path)
    assert ds.title == "written"
    assert ds.signal_type == "EELS"
    assert [a.units for a in ds.axes] == ["s", "nm", "nm"]
    assert ds.kind == "image_stack"
    assert ds.full_metadata()["General"]["authors"] == "Ada"


def test_numbered_groups_stack(tmp_path):
    """``group0000``, ``group0001``... stack into one dataset unless stack_group=False."""
    path = tmp_path / "series.emd"
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 5
        for i in range(3):
            g = f.create_group(f"data/scan{i:04d}")
            g.attrs["emd_group_type"] = 1
            g.create_dataset("data", data=np.full((4, 2), i, dtype=np.int16))
            g.create_dataset("dim1", data=[0.0, 1.0])
            g.create_dataset("dim2", data=[0.0, 1.0])
    (ds,) = read_datasets(path)
    assert ds.title == "scan" and ds.shape == (3, 2, 4)
    assert ds.axes[0].navigate and ds.axes[0].size == 3
    np.testing.assert_array_equal(ds.data[:, 0, 0], [0, 1, 2])
    (lz,) = read_datasets(path, lazy=True)
    np.testing.assert_array_equal(lz.data.compute(), ds.data)
    parts = read_datasets(path, stack_group=False)
    assert [p.title for p in parts] == ["scan0000", "scan0001", "scan0002"]
    assert all(p.shape == (2, 4) for p in parts)


def test_non_emd_hdf5_is_not_detected(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(3))
        f.create_group("g").attrs["something"] = 1
    with h5py.File(path, "r") as f:
        from napari_emd.formats import emd1, ncem, prismatic

        assert not ncem.detect(f)
        assert not prismatic.detect(f)
        assert not emd1.detect(f)
    assert detect_format(path) is None
    with pytest.raises(EMDError) as err:
        read_datasets(path)
    assert "plain.h5" in str(err.value)


@pytest.mark.realdata
@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated_file_gives_emd_error(tmp_path, fraction):
    src = real_file("example_signal.emd").read_bytes()
    path = tmp_path / "truncated.emd"
    path.write_bytes(src[: int(len(src) * fraction)])
    with pytest.raises(EMDError) as err:
        _quiet(read_datasets, path)
    assert "truncated.emd" in str(err.value)


def test_emd_group_without_data(tmp_path):
    """rsciio's writer tags ``/signals`` itself as a data group; such empty groups are
    skipped, and a file with no data at all is an error naming it."""
    path = tmp_path / "empty.emd"
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = "0"
        f.attrs["version_minor"] = "2"
        f.create_group("signals").attrs["emd_group_type"] = 1
    with pytest.raises(EMDError, match=r"empty\.emd"):
        read_datasets(path)


def test_lazy_chunks_follow_the_display(tmp_path):
    """Reversed arrays are chunked full along the on-screen (last) axes, in whole HDF5
    chunks, and thin along the sliders: one napari slice reads about one block."""
    path = tmp_path / "chunked.emd"
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        g = f.create_group("data/cube")
        g.attrs["emd_group_type"] = 1
        g.create_dataset("data", data=np.arange(128 * 128 * 32 * 32, dtype=np.float32)
                         .reshape(128, 128, 32, 32), chunks=(128, 128, 2, 2))
    (lz,) = read_datasets(path, lazy=True)
    assert lz.shape == (32, 32, 128, 128)
    assert lz.data.chunksize[2:] == (128, 128)
    assert all(c % 2 == 0 for c in lz.data.chunksize[:2])
    assert lz.data.numblocks[0] * lz.data.numblocks[1] > 1
    (eager,) = read_datasets(path)
    np.testing.assert_array_equal(lz.data[3, 5].compute(), eager.data[3, 5])


def test_spectrum_image_missing_and_odd_dims(tmp_path):
    """A 3-D array with an energy last axis is a spectrum image; a missing dim is an
    index axis; a non-linear dim of the wrong length falls back to its mean step."""
    path = tmp_path / "si.emd"
    si = np.arange(40 * 3 * 2, dtype=np.uint16).reshape(40, 3, 2)  # stored (E, x, y)
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        g = f.create_group("data/si")
        g.attrs["emd_group_type"] = 1
        g.create_dataset("data", data=si)
        d = g.create_dataset("dim1", data=[0.0, 0.01])
        d.attrs["name"], d.attrs["units"] = "Energy", "[k_e_V]"
        d = g.create_dataset("dim2", data=[0.0, 1.0, 3.0, 4.0])  # 4 values for 3 points
        d.attrs["name"], d.attrs["units"] = "x", "[n_m]"
    with pytest.warns(EMDWarning, match="non-uniform"):
        (ds,) = read_datasets(path)
    assert ds.shape == (2, 3, 40) and ds.kind == "spectrum_image"
    assert [a.name for a in ds.axes] == ["", "x", "Energy"]
    assert ds.axes[0].scale == 1.0 and ds.axes[0].units == ""
    assert ds.axes[1].scale == pytest.approx(4 / 3) and ds.axes[1].vector is None
    assert ds.axes[2].units == "keV" and ds.axes[2].scale == pytest.approx(0.01)


def test_untagged_data_groups(tmp_path):
    """An EMD 0.2 file whose data groups lack ``emd_group_type`` is still read from its
    ``data`` + ``dimN`` groups."""
    path = tmp_path / "untagged.de5"
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        g = f.create_group("data/frame_0001")
        g.create_dataset("data", data=np.ones((4, 3), np.float32))
        g.create_dataset("dim1", data=[0.0, 0.5]).attrs["units"] = "[n_m]"
        g.create_dataset("dim2", data=[0.0, 0.5]).attrs["units"] = "[n_m]"
    assert detect_format(path) == "ncem"
    (ds,) = read_datasets(path)
    assert ds.title == "frame_0001" and ds.shape == (3, 4)
    assert [a.units for a in ds.axes] == ["nm", "nm"]


def test_odd_attributes_do_not_crash(tmp_path):
    """Unparsable versions, NaN dims, a zero-step dim and an emd_group_type that is not 1
    are survived: the file is still recognised from its data group and read."""
    path = tmp_path / "odd.emd"
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = "zero"
        f.create_group("notdata").attrs["emd_group_type"] = "abc"
        g = f.create_group("data/odd")
        g.attrs["emd_group_type"] = np.bytes_(b"1")
        g.create_dataset("data", data=np.zeros((2, 3, 4), np.int8))
        g.create_dataset("dim1", data=[np.nan, 1.0])
        g.create_dataset("dim2", data=[5.0, 5.0, 5.0])
        d = g.create_dataset("dim3", data=[0.0, 1.0])
        d.attrs["units"] = b"\xff\xfe"
    assert detect_format(path) == "ncem"
    (ds,) = _quiet(read_datasets, path)
    assert ds.shape == (4, 3, 2)
    assert [(a.offset, a.scale) for a in ds.axes] == [(0.0, 1.0), (5.0, 1.0), (0.0, 1.0)]
    assert all(a.vector is None for a in ds.axes)
    assert all(a.units == "" for a in ds.axes)


def test_dim_vector_of_the_wrong_length_warns_naming_file_and_dataset(tmp_path):
    path = tmp_path / "dims.emd"
    with h5py.File(path, "w") as f:
        f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
        g = f.create_group("data/stack")
        g.attrs["emd_group_type"] = 1
        g["data"] = np.zeros((5, 4), "f4")  # stored (x, y): dim1 has 5 points
        g["dim1"] = np.arange(7, dtype=float) * 0.5
        g["dim2"] = np.arange(4, dtype=float)
    with pytest.warns(EMDWarning, match=r"dims\.emd: /data/stack/dim1: the dim vector has 7 "
                                        r"values for an axis of 5 points"):
        (ds,) = read_datasets(path)
    assert ds.axes[-1].scale == pytest.approx(0.5)
