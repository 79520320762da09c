"""The NCEM EMD 0.2 writer (``napari_emd.file_writer``): layout, dtypes, chunking, dask,
safety, and interoperability with RosettaSciIO's and ncempy's readers (test-only oracles).
"""

from __future__ import annotations

import json
import os
import stat

import dask.array as da
import h5py
import numpy as np
import pytest

import napari_emd
from conftest import real_file
from napari_emd import EMDError, read_datasets
from napari_emd.units import unit_symbol
from napari_emd.writer import default_chunks, jsonable, write_signals
from napari_emd.writer.prepare import group_names


def _signal(data, title="test", units=("nm", "nm", "µm"), names=("z", "y", "x"),
            scales=(2.0, 0.5, 0.25), offsets=(1.0, 0.0, -3.0), navigate=None):
    n = data.ndim
    navigate = navigate if navigate is not None else [i < n - 2 for i in range(n)]
    axes = [
        {"name": names[-n:][i], "units": units[-n:][i], "index_in_array": i,
         "size": data.shape[i], "offset": offsets[-n:][i], "scale": scales[-n:][i],
         "navigate": navigate[i]}
        for i in range(n)
    ]
    return {"data": data, "axes": axes,
            "metadata": {"General": {"title": title}, "Signal": {"signal_type": ""}},
            "original_metadata": {}}


@pytest.fixture
def cube():
    return np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)


# --- layout --------------------------------------------------------------------------


def test_layout_follows_emd_02_spec(tmp_path, cube):
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(cube), instrument="Titan", run=3)
    with h5py.File(path, "r") as f:
        assert int(f.attrs["version_major"]) == 0
        assert int(f.attrs["version_minor"]) == 2
        assert f.attrs["instrument"] == "Titan"
        assert int(f.attrs["run"]) == 3
        for g in ("microscope", "sample", "user", "comments"):
            assert isinstance(f[g], h5py.Group)
        grp = f["data/test"]
        assert int(grp.attrs["emd_group_type"]) == 1
        assert grp.attrs["title"] == "test"
        # stored reversed: dim1 describes stored axis 0, which is x
        assert grp["data"].shape == (4, 3, 2)
        np.testing.assert_array_equal(grp["data"][()], cube.T)
        assert grp["dim1"].attrs["name"] == "x"
        assert grp["dim1"].attrs["units"] == "[µ_m]"
        np.testing.assert_allclose(grp["dim1"][()], -3.0 + 0.25 * np.arange(4))
        assert grp["dim3"].attrs["name"] == "z"
        assert grp["dim3"].attrs["units"] == "[n_m]"
        np.testing.assert_allclose(grp["dim3"][()], [1.0, 3.0])
        assert json.loads(grp.attrs["metadata"])["General"]["title"] == "test"


def test_reserved_root_attribute_refused(tmp_path, cube):
    with pytest.raises(ValueError, match="version_major"):
        napari_emd.file_writer(tmp_path / "a.emd", _signal(cube), version_major=1)
    assert not list(tmp_path.iterdir())


def test_dict_kwds_stored_as_json(tmp_path, cube):
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(cube), settings={"a": 1, "b": [1, 2]})
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["settings"]) == {"a": 1, "b": [1, 2]}


def test_metadata_non_json_values_skipped(tmp_path, cube):
    sig = _signal(cube)
    sig["metadata"]["General"]["handle"] = object()
    sig["metadata"]["General"]["n"] = np.int16(3)
    sig["metadata"]["Signal"]["quantity"] = "Intensity (counts)"
    sig["original_metadata"] = {"microscope": {"voltage": "300 kV", "name": "TEAM I"},
                                "tree": {"array": np.arange(3)}}
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, sig)
    with h5py.File(path, "r") as f:
        md = json.loads(f["data/test"].attrs["metadata"])
        assert "handle" not in md["General"]
        assert md["General"]["n"] == 3
        om = json.loads(f["data/test"].attrs["original_metadata"])
        assert om["tree"]["array"] == [0, 1, 2]
        assert f["microscope"].attrs["voltage"] == "300 kV"
        assert f["data/test/data"].attrs["name"] == "Intensity"
        assert f["data/test/data"].attrs["units"] == "counts"


def test_jsonable():
    import enum

    class Colour(enum.Enum):
        RED = "red"

    out = jsonable({"a": np.float32(1.5), "b": float("nan"), "c": Colour.RED,
                    "d": (1, object(), 2), "e": np.zeros(10**6), 5: "five"})
    assert out == {"a": 1.5, "b": None, "c": "red", "d": [1, 2], "5": "five"}
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize(
    ("unit", "symbol"),
    [("nm", "nm"), ("nanometer", "nm"), ("um", "µm"), ("angstrom", "Å"), ("1/nm", "1/nm"),
     ("keV", "keV"), ("eV", "eV"), ("s", "s"), ("pixel", ""), (None, ""), ("", "")],
)
def test_unit_symbol_strings(unit, symbol):
    assert unit_symbol(unit) == symbol


def test_unit_symbol_pint():
    import pint

    ureg = pint.UnitRegistry()
    cases = {"nanometer": "nm", "micrometer": "µm", "angstrom": "Å", "1/nanometer": "1/nm",
             "kiloelectron_volt": "keV", "electron_volt": "eV", "second": "s"}
    for name, sym in cases.items():
        assert unit_symbol(ureg.Unit(name)) == sym


# --- interoperability with RosettaSciIO and ncempy (test-only oracles) ---------------


def _axes_equal(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g["name"] == e["name"]
        assert (g.get("units") or "") == (e.get("units") or "")
        assert g["size"] == e["size"]
        assert g["scale"] == pytest.approx(e["scale"], rel=1e-12)
        assert g["offset"] == pytest.approx(e["offset"], abs=1e-12)


def test_rsciio_reads_what_we_write(tmp_path, cube):
    rsciio_emd = pytest.importorskip("rsciio.emd")
    sig = _signal(cube)
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, sig)
    (got,) = rsciio_emd.file_reader(str(path))
    np.testing.assert_array_equal(got["data"], cube)
    assert got["data"].dtype == cube.dtype
    _axes_equal(got["axes"], sig["axes"])
    assert got["metadata"]["General"]["title"] == "test"


def test_ncempy_reads_what_we_write(tmp_path, cube):
    ncemp = pytest.importorskip("ncempy.io.emd")
    sig = _signal(cube)
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, sig)
    with ncemp.fileEMD(str(path)) as f:
        assert len(f.list_emds) == 1
        data, dims = f.get_emdgroup(f.list_emds[0])
    # ncempy returns the stored (reversed) order with dims that match it
    np.testing.assert_array_equal(data, cube.T)
    for (vec, name, units), ax in zip(dims, reversed(sig["axes"]), strict=True):
        assert name == ax["name"]
        assert units.strip("[]").replace("_", "") == ax["units"]
        np.testing.assert_allclose(vec, ax["offset"] + ax["scale"] * np.arange(ax["size"]))


def test_we_read_what_we_write(tmp_path, cube):
    sig = _signal(cube)
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, sig)
    (got,) = napari_emd.file_reader(path)
    np.testing.assert_array_equal(got["data"], cube)
    _axes_equal(got["axes"], sig["axes"])


def test_files_written_by_rsciio_open_in_napari_emd(tmp_path, cube):
    rsciio_emd = pytest.importorskip("rsciio.emd")
    sig = _signal(cube)
    path = tmp_path / "rs.emd"
    rsciio_emd.file_writer(str(path), sig)
    (ds,) = read_datasets(path)
    np.testing.assert_array_equal(ds.data, cube)
    assert [a.name for a in ds.axes] == ["z", "y", "x"]
    assert [a.units for a in ds.axes] == ["nm", "nm", "µm"]
    assert [a.scale for a in ds.axes] == pytest.approx([2.0, 0.5, 0.25])


def test_files_written_by_ncempy_open_in_napari_emd(tmp_path, cube):
    ncemp = pytest.importorskip("ncempy.io.emd")
    path = tmp_path / "nc.emd"
    with ncemp.fileEMD(str(path), readonly=False) as f:
        dims = [(np.arange(4) * 0.25, "x", "[µ_m]"), (np.arange(3) * 0.5, "y", "[n_m]"),
                (1 + np.arange(2) * 2.0, "z", "[n_m]")]
        f.put_emdgroup("test", cube.T.copy(), dims)
    (ds,) = read_datasets(path)
    np.testing.assert_array_equal(ds.data, cube)
    assert [a.name for a in ds.axes] == ["z", "y", "x"]
    assert [a.units for a in ds.axes] == ["nm", "nm", "µm"]


def test_real_hyperspy_file_rewritten_reads_the_same(tmp_path):
    src = real_file("example_signal.emd")
    (orig,) = napari_emd.file_reader(src)
    path = tmp_path / "again.emd"
    napari_emd.file_writer(path, orig)
    (again,) = napari_emd.file_reader(path)
    np.testing.assert_array_equal(again["data"], orig["data"])
    assert again["data"].dtype == orig["data"].dtype
    _axes_equal(again["axes"], orig["axes"])
    rsciio_emd = pytest.importorskip("rsciio.emd")
    (ref,) = rsciio_emd.file_reader(str(path))
    np.testing.assert_array_equal(ref["data"], orig["data"])


def test_real_velox_image_rewritten(tmp_path):
    src = real_file("fei_emd_image.emd")
    signals = napari_emd.file_reader(src)
    image = next(s for s in signals if s["data"].ndim == 2)
    path = tmp_path / "haadf.emd"
    napari_emd.file_writer(path, image)
    rsciio_emd = pytest.importorskip("rsciio.emd")
    (ref,) = rsciio_emd.file_reader(str(path))
    np.testing.assert_array_equal(ref["data"], image["data"])
    _axes_equal(ref["axes"], image["axes"])


# --- dtypes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype",
    ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float16",
     "float32", "float64", "complex64", "complex128", "bool", ">i4", ">f8"],
)
def test_dtype_preserved(tmp_path, dtype):
    rng = np.random.default_rng(0)
    data = (rng.random((3, 5)) * 100).astype(dtype)
    if np.dtype(dtype).kind == "c":
        data = data + 1j * data[::-1]
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(data))
    with h5py.File(path, "r") as f:
        assert f["data/test/data"].dtype == np.dtype(dtype)
    (got,) = napari_emd.file_reader(path)
    assert got["data"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got["data"], data)


def test_unicode_strings_stored_as_text(tmp_path):
    data = np.array([["α", "beta"], ["c", ""]])
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(data))
    with h5py.File(path, "r") as f:
        dset = f["data/test/data"]
        assert h5py.check_string_dtype(dset.dtype).encoding == "utf-8"
        assert dset.attrs["numpy_dtype"] == data.dtype.str
        np.testing.assert_array_equal(dset.asstr()[()], data.T)


def test_object_text_stored_and_mixed_objects_refused(tmp_path):
    ok = np.array([["a", "bc"]], dtype=object)
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(ok))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["data/test/data"].asstr()[()], ok.T)
    bad = np.array([["a", 3]], dtype=object)
    with pytest.raises(EMDError, match="object arrays"):
        napari_emd.file_writer(tmp_path / "b.emd", _signal(bad))
    assert not (tmp_path / "b.emd").exists()


def test_datetime_refused(tmp_path):
    data = np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[D]")
    with pytest.raises(EMDError, match="datetime64"):
        napari_emd.file_writer(tmp_path / "a.emd", _signal(data, names=("t",), units=("",),
                                                           scales=(1,), offsets=(0,)))


def test_scalar_and_empty_data(tmp_path):
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, {"data": np.float64(3.5), "axes": [], "metadata": {}})
    with h5py.File(path, "r") as f:
        assert f["data/dataset/data"][()] == 3.5
    path = tmp_path / "b.emd"
    napari_emd.file_writer(path, _signal(np.zeros((0, 4), np.int16)))
    with h5py.File(path, "r") as f:
        assert f["data/test/data"].shape == (4, 0)


# --- axes ----------------------------------------------------------------------------


def test_non_uniform_axis_vector_stored_whole(tmp_path):
    energy = np.array([0.0, 1.0, 3.0, 7.0])
    sig = {"data": np.arange(4.0), "metadata": {"General": {"title": "s"}},
           "axes": [{"name": "E", "units": "eV", "index_in_array": 0, "axis": energy,
                     "navigate": False}]}
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, sig)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["data/s/dim1"][()], energy)
        assert f["data/s/dim1"].attrs["units"] == "[e_V]"


def test_length_one_axis_keeps_its_scale(tmp_path):
    rsciio_emd = pytest.importorskip("rsciio.emd")
    data = np.arange(10.0).reshape(2, 1, 5)
    sig = _signal(data, scales=(3.0, 0.7, 0.5))
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, sig)
    with h5py.File(path, "r") as f:
        np.testing.assert_allclose(f["data/test/dim2"][()], [0.0, 0.7])
    (got,) = rsciio_emd.file_reader(str(path))
    _axes_equal(got["axes"], sig["axes"])


def test_axes_validation(tmp_path, cube):
    sig = _signal(cube)
    sig["axes"] = sig["axes"][:2]
    with pytest.raises(ValueError, match="2 axes"):
        napari_emd.file_writer(tmp_path / "a.emd", sig)
    sig = _signal(cube)
    sig["axes"][0]["size"] = 7
    with pytest.raises(ValueError, match="size"):
        napari_emd.file_writer(tmp_path / "a.emd", sig)


def test_axes_in_any_list_order(tmp_path, cube):
    sig = _signal(cube)
    sig["axes"] = sig["axes"][::-1]
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, sig)
    with h5py.File(path, "r") as f:
        assert f["data/test/dim1"].attrs["name"] == "x"


def test_no_axes_given(tmp_path, cube):
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, {"data": cube, "metadata": {"General": {"title": "t"}}})
    (got,) = napari_emd.file_reader(path)
    np.testing.assert_array_equal(got["data"], cube)
    assert [a["scale"] for a in got["axes"]] == [1.0, 1.0, 1.0]


def test_several_signals_one_group_each(tmp_path, cube):
    path = tmp_path / "multi.emd"
    write_signals(path, [_signal(cube, title="a/b"), _signal(cube[0], title="a/b")])
    with h5py.File(path, "r") as f:
        # numbered, none the beginning of another (RosettaSciIO would stack them)
        assert sorted(f["data"]) == ["a_b (1)", "a_b (2)"]
        assert f["data/a_b (1)"].attrs["title"] == "a/b"
    got = napari_emd.file_reader(path)
    assert sorted(g["data"].ndim for g in got) == [2, 3]
    rsciio_emd = pytest.importorskip("rsciio.emd")
    assert sorted(s["data"].ndim for s in rsciio_emd.file_reader(str(path))) == [2, 3]


def test_group_names_never_start_one_another():
    assert group_names(["C", "Ca", "Cu", "O"]) == ["C (1)", "Ca", "Cu", "O"]
    assert group_names(["data", "mydata"]) == ["data (1)", "mydata"]
    names = group_names(["x", "x (1)", "xy", "x"])
    assert len(set(names)) == 4
    assert not any(a != b and f"data/{a}" in f"data/{b}/data" for a in names for b in names)


# --- chunks --------------------------------------------------------------------------


def test_default_chunks_keep_signals_whole():
    # spectrum image (y, x, E) with E the signal axis: whole spectra per chunk
    c = default_chunks((256, 256, 4096), 4, [2])
    assert c[2] == 4096
    assert np.prod(c) * 4 <= 1 << 20
    # image stack of big images: images tiled, one frame per chunk
    c = default_chunks((10, 4096, 4096), 4, [1, 2])
    assert c[0] == 1 and np.prod(c) * 4 <= 1 << 20
    # small data: one chunk
    assert default_chunks((3, 4), 8, [0, 1]) == (3, 4)


def test_grow_chunks_takes_whole_chunks_and_whole_axes():
    """The one block rule (lazy readers' dask chunks, the writer's blocks): whole base
    chunks, the last axes first, an axis whole when the budget reaches it."""
    from napari_emd.h5 import grow_chunks

    # (frames, y, x) stored one frame per chunk: whole frames, as many as fit 1 MiB
    assert grow_chunks((100, 256, 256), (1, 256, 256), 2, 1 << 20) == (8, 256, 256)
    # 1000 rows in chunks of 300: the whole axis when it fits, else whole chunks
    assert grow_chunks((1000, 10), (300, 10), 1, 1 << 20) == (1000, 10)
    assert grow_chunks((1000, 10), (300, 10), 1, 7000) == (600, 10)
    # leading axes first when asked (the reversed EMD 0.x arrays)
    assert grow_chunks((4, 8, 16), (1, 1, 1), 1, 32, order=range(3)) == (4, 8, 1)
    assert grow_chunks((0, 5), (1, 5), 8, 1 << 20) == (1, 5)


def test_chunks_argument(tmp_path):
    data = np.zeros((8, 16, 32), np.uint16)
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(data), chunks=(2, 4, 8))
    with h5py.File(path, "r") as f:
        assert f["data/test/data"].chunks == (8, 4, 2)
    napari_emd.file_writer(path, _signal(data), chunks=False)
    with h5py.File(path, "r") as f:
        assert f["data/test/data"].chunks is None
    napari_emd.file_writer(path, _signal(data), chunks=True)
    with h5py.File(path, "r") as f:
        assert f["data/test/data"].chunks is not None
    with pytest.raises(ValueError, match="chunks"):
        napari_emd.file_writer(path, _signal(data), chunks=(2, 4))


def test_default_chunks_from_navigate_flags(tmp_path):
    data = np.zeros((6, 7, 100), np.float32)
    sig = _signal(data, navigate=[True, True, False])
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, sig)
    with h5py.File(path, "r") as f:
        assert f["data/test/data"].chunks[0] == 100  # whole spectra


# --- dask ----------------------------------------------------------------------------


def test_dask_written_block_by_block_with_progress(tmp_path):
    data = np.arange(6 * 8 * 10, dtype=np.int32).reshape(6, 8, 10)
    lazy = da.from_array(data, chunks=(2, 3, 10))
    calls = []
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(lazy), progress=lambda d, t: calls.append((d, t)))
    n = int(np.prod(lazy.numblocks))
    assert calls[-1] == (n, n)
    done = [c[0] for c in calls]
    assert done == sorted(set(done)) and all(t == n for _, t in calls)
    (got,) = napari_emd.file_reader(path)
    np.testing.assert_array_equal(got["data"], data)


def test_progress_called_in_calling_thread(tmp_path):
    import threading

    lazy = da.ones((20, 20), chunks=5)
    threads = set()
    napari_emd.file_writer(tmp_path / "a.emd", _signal(lazy),
                           progress=lambda d, t: threads.add(threading.get_ident()))
    assert threads == {threading.get_ident()}


def test_lazy_read_then_write(tmp_path, cube):
    src = tmp_path / "src.emd"
    napari_emd.file_writer(src, _signal(cube))
    (lazy,) = napari_emd.file_reader(src, lazy=True)
    assert not isinstance(lazy["data"], np.ndarray)
    out = tmp_path / "out.emd"
    napari_emd.file_writer(out, lazy)
    (got,) = napari_emd.file_reader(out)
    np.testing.assert_array_equal(got["data"], cube)


def test_h5py_dataset_as_data(tmp_path, cube):
    src = tmp_path / "raw.h5"
    with h5py.File(src, "w") as f:
        f["x"] = cube
    with h5py.File(src, "r") as f:
        napari_emd.file_writer(tmp_path / "a.emd", _signal(f["x"]))
    (got,) = napari_emd.file_reader(tmp_path / "a.emd")
    np.testing.assert_array_equal(got["data"], cube)


# --- safety --------------------------------------------------------------------------


class Boom(RuntimeError):
    pass


def _failing_dask(shape=(8, 8, 8), bad_block=5):
    def block(x, block_info=None):
        if block_info[None]["chunk-location"] == np.unravel_index(bad_block, (4, 4, 4)):
            raise Boom("chunk failed")
        return x

    return da.map_blocks(block, da.zeros(shape, chunks=2, dtype=np.float32), dtype=np.float32)


def test_failure_mid_write_leaves_no_file(tmp_path):
    path = tmp_path / "a.emd"
    with pytest.raises(Boom):
        napari_emd.file_writer(path, _signal(_failing_dask()))
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_keeps_existing_file(tmp_path, cube):
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(cube))
    before = path.read_bytes()
    with pytest.raises(Boom):
        napari_emd.file_writer(path, _signal(_failing_dask()))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.emd"]


def test_hdf5_write_failure_is_an_emd_error(tmp_path, cube, monkeypatch):
    """HDF5 failing in a write (h5py's bare RuntimeError, e.g. a full disk) becomes an
    EMDError naming the file, and leaves no file; the caller's own RuntimeError (the
    tests above) passes through unchanged."""
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(cube))
    before = path.read_bytes()

    def failing_write(self, key, value):
        raise RuntimeError("Can't write data (file write failed: errno = 28)")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", failing_write)
    with pytest.raises(EMDError, match=r"writing failed.*write failed"):
        napari_emd.file_writer(path, _signal(da.zeros((8, 8, 8), chunks=2)))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.emd"]


def test_failure_in_progress_callback_cleans_up(tmp_path, cube):
    def stop(done, total):
        raise KeyboardInterrupt

    path = tmp_path / "a.emd"
    with pytest.raises(KeyboardInterrupt):
        napari_emd.file_writer(path, _signal(da.from_array(cube, chunks=1)), progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_and_keeps_permissions(tmp_path, cube):
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(cube))
    os.chmod(path, 0o640)
    napari_emd.file_writer(path, _signal(cube * 2))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    (got,) = napari_emd.file_reader(path)
    np.testing.assert_array_equal(got["data"], cube * 2)


def test_overwrite_file_open_for_lazy_reading(tmp_path, cube):
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(cube))
    (lazy,) = napari_emd.file_reader(path, lazy=True)
    np.asarray(lazy["data"][0])  # opens a cached handle
    napari_emd.file_writer(path, _signal(cube + 1))
    (fresh,) = napari_emd.file_reader(path, lazy=True)
    np.testing.assert_array_equal(np.asarray(fresh["data"]), cube + 1)


def test_bad_targets(tmp_path, cube):
    with pytest.raises(EMDError, match="does not exist"):
        napari_emd.file_writer(tmp_path / "nope" / "a.emd", _signal(cube))
    (tmp_path / "dir.emd").mkdir()
    with pytest.raises(EMDError, match="folder"):
        napari_emd.file_writer(tmp_path / "dir.emd", _signal(cube))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_read_only_existing_file_refused(tmp_path, cube):
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(cube))
    os.chmod(path, 0o444)
    with pytest.raises(EMDError, match="read-only"):
        napari_emd.file_writer(path, _signal(cube))


def test_not_enough_space_refused_before_writing(tmp_path):
    huge = da.zeros((2**22, 2**22), dtype=np.float64, chunks=(2**14, 2**14))  # 128 TiB
    with pytest.raises(EMDError, match="free disk space"):
        napari_emd.file_writer(tmp_path / "a.emd", _signal(huge))
    assert list(tmp_path.iterdir()) == []


def test_bad_signal(tmp_path):
    with pytest.raises(ValueError, match="data"):
        napari_emd.file_writer(tmp_path / "a.emd", {"axes": []})


def test_killed_writer_leaves_existing_file(tmp_path, cube):
    """A writer process killed mid-write (SIGKILL: no clean-up runs) leaves the existing
    file untouched; only its hidden temporary file remains."""
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(cube))
    before = path.read_bytes()
    script = (
        "import time, numpy as np, dask.array as da, napari_emd\n"
        "def slow(x):\n"
        "    time.sleep(0.2)\n"
        "    return x\n"
        "data = da.zeros((200, 64, 64), chunks=(1, 64, 64), dtype='f4').map_blocks(slow)\n"
        f"napari_emd.file_writer({str(path)!r}, {{'data': data, 'metadata': {{}}}})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.endswith(".part") for p in tmp_path.iterdir()):
            assert proc.poll() is None, "the writer ended before it was killed"
            assert time.monotonic() < deadline, "no temporary file appeared"
            time.sleep(0.05)
        time.sleep(0.5)  # let it write some blocks
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert path.read_bytes() == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "a.emd"]
    assert all(n.startswith(".a.emd.") and n.endswith(".part") for n in leftovers)


def test_overwrite_the_source_of_lazy_data(tmp_path, cube):
    """Saving lazily read data over the file it is read from: the old file is read while
    the temporary one is written, then replaced."""
    path = tmp_path / "a.emd"
    napari_emd.file_writer(path, _signal(cube))
    (lazy,) = napari_emd.file_reader(path, lazy=True)
    lazy["data"] = lazy["data"] * 2
    napari_emd.file_writer(path, lazy)
    (got,) = napari_emd.file_reader(path)
    np.testing.assert_array_equal(got["data"], cube * 2)
    assert [p.name for p in tmp_path.iterdir()] == ["a.emd"]


def test_chunks_apply_to_signals_of_their_dimensionality(tmp_path, cube):
    path = tmp_path / "multi.emd"
    write_signals(path, [_signal(cube, title="a"), _signal(cube[0], title="b")],
                  chunks=(1, 3, 2))
    with h5py.File(path, "r") as f:
        assert f["data/a/data"].chunks == (2, 3, 1)
        assert f["data/b/data"].chunks is not None


def test_resaving_does_not_nest_metadata(tmp_path, cube):
    """A signal read back from our file carries our group attributes; saving it again
    must not copy the previous JSON into the new one (it would grow with every save)."""
    path = tmp_path / "r0.emd"
    napari_emd.file_writer(path, _signal(cube))
    sizes = []
    for i in range(4):
        (sig,) = napari_emd.file_reader(path)
        path = tmp_path / f"r{i + 1}.emd"
        napari_emd.file_writer(path, sig)
        with h5py.File(path, "r") as f:
            attrs = f["data/test"].attrs
            sizes.append(len(attrs["metadata"]) + len(attrs["original_metadata"]))
            assert "original_metadata" not in json.loads(attrs["metadata"]).get("Signal", {})
    # only the comment history (one line per save) grows
    assert sizes[-1] - sizes[0] < 3 * 200


def test_metadata_tree_comes_back_and_json_attributes_stay_out_of_signal(tmp_path):
    """The HyperSpy tree we store as JSON is read back as metadata (not as strings under
    ``Signal``), and the original file's tree becomes original_metadata again."""
    path = tmp_path / "md.emd"
    sig = {
        "data": np.arange(6, dtype=np.int16).reshape(2, 3),
        "axes": [
            {"name": "y", "size": 2, "scale": 0.5, "offset": 0.0, "units": "nm"},
            {"name": "x", "size": 3, "scale": 0.5, "offset": 0.0, "units": "nm"},
        ],
        "metadata": {
            "General": {"title": "T"},
            "Acquisition_instrument": {"TEM": {"beam_energy": 300.0}},
        },
        "original_metadata": {"Instrument": {"Model": "Titan"}},
    }
    napari_emd.file_writer(path, sig)
    (back,) = napari_emd.file_reader(path)
    assert back["metadata"]["Acquisition_instrument"]["TEM"]["beam_energy"] == 300.0
    signal = back["metadata"]["Signal"]
    assert "original_metadata" not in signal and "napari_layer" not in signal
    assert back["original_metadata"]["Instrument"]["Model"] == "Titan"


def test_group_paths_keep_titles_as_group_names():
    """RosettaSciIO and ncempy title a group by its name: a title that would be found in
    another group's path goes one level down, its group still named by the title."""
    from napari_emd.writer.prepare import group_paths

    assert group_paths(["C", "Ca", "Cu", "O"]) == ["C (1)/C", "Ca", "Cu", "O"]
    assert group_paths(["a/b", "a/b"]) == ["a_b (1)/a_b", "a_b (2)/a_b"]
    for titles in (["x", "x (1)", "xy", "x"], ["d", "x data", "da", "data"],
                   ["EDS", "EDS spectrum", "C (1)", "C", "Ca"]):
        paths = group_paths(titles)
        assert [p.rsplit("/", 1)[-1] for p in paths] == [t.replace("/", "_") for t in titles]
        assert len(set(paths)) == len(paths)
        assert not any(a != b and f"data/{a}" in f"data/{b}/data" for a in paths for b in paths)
