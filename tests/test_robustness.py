"""Regressions found in review: replaced files, odd units, scalars, shared metadata."""

from __future__ import annotations

import os
import warnings

import h5py
import numpy as np
import pytest

import napari_emd
from conftest import real_file
from napari_emd.errors import EMDWarning
from napari_emd.h5 import cached_paths
from napari_emd.units import clean_unit


def _ncem(path, value, shape=(3,)):
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        g = f.create_group("data/a")
        g.attrs["emd_group_type"] = 1
        g["data"] = np.full(shape, value)
        if shape:
            d = g.create_dataset("dim1", data=np.arange(shape[0], dtype=float))
            d.attrs["name"] = "x"
            d.attrs["units"] = "[n_m]"


def test_lazy_read_after_the_file_is_replaced_sees_the_new_file(tmp_path):
    """A re-export under the same name must not be served from a stale cached handle."""
    path = tmp_path / "a.emd"
    _ncem(path, 1.0)
    (d,) = napari_emd.file_reader(path, lazy=True)
    np.testing.assert_array_equal(d["data"].compute(), 1.0)
    new = tmp_path / "b.emd"
    _ncem(new, 2.0)
    os.replace(new, path)
    (d,) = napari_emd.file_reader(path, lazy=True)
    np.testing.assert_array_equal(d["data"].compute(), 2.0)


def test_replaced_velox_si_computes_from_the_new_streams(tmp_path):
    from napari_emd.synthetic import write_velox_si

    path = tmp_path / "si.emd"
    write_velox_si(path, ny=4, nx=5, frames=1, detectors=1, counts_per_pixel=5.0, seed=1)
    (si,) = napari_emd.file_reader(path, lazy=True, select_type="spectrum_image")
    si["data"].compute()
    other = tmp_path / "other.emd"
    write_velox_si(other, ny=4, nx=5, frames=1, detectors=1, counts_per_pixel=9.0, seed=2)
    os.replace(other, path)
    (lazy,) = napari_emd.file_reader(path, lazy=True, select_type="spectrum_image")
    (eager,) = napari_emd.file_reader(path, select_type="spectrum_image")
    np.testing.assert_array_equal(lazy["data"].compute(), eager["data"])


def test_eager_overflowing_si_dtype_leaves_no_open_handle(tmp_path):
    from napari_emd.synthetic import write_velox_si

    path = tmp_path / "si.emd"
    write_velox_si(path, ny=4, nx=4, frames=2, detectors=1, counts_per_pixel=600.0, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EMDWarning)
        napari_emd.file_reader(path, select_type="spectrum_image", SI_dtype="uint8")
    assert str(path) not in cached_paths()


@pytest.mark.parametrize(
    ("raw", "clean"), [("MeV", "MeV"), ("meV", "meV"), ("eV", "eV"), ("keV", "keV")]
)
def test_energy_units_keep_their_case(raw, clean):
    assert clean_unit(raw) == clean


def test_scalar_dataset_reads_lazily_too(tmp_path):
    path = tmp_path / "scalar.emd"
    _ncem(path, 3.5, shape=())
    eager = napari_emd.file_reader(path)
    lazy = napari_emd.file_reader(path, lazy=True)
    assert float(np.asarray(eager[0]["data"])) == 3.5
    assert float(np.asarray(lazy[0]["data"].compute())) == 3.5


def test_velox_datasets_do_not_share_original_metadata():
    r = napari_emd.file_reader(real_file("fei_example_dpc_titles.emd"))
    r[0]["original_metadata"].setdefault("Version", {})["edited"] = True
    assert "edited" not in r[1]["original_metadata"].get("Version", {})


def test_lazy_graph_of_a_replaced_file_fails_clearly(tmp_path):
    """Layers still open on a file that was saved over must not show the new file's data
    under the old shape and calibration: their chunks raise a clear error instead."""
    from napari_emd.errors import EMDError
    from napari_emd.synthetic import write_velox_si

    path = tmp_path / "a.emd"
    _ncem(path, 1.0, shape=(40,))
    (old,) = napari_emd.file_reader(path, lazy=True)
    new = tmp_path / "b.emd"
    _ncem(new, 7.0, shape=(30,))
    os.replace(new, path)
    with pytest.raises(EMDError, match="changed on disk"):
        old["data"].compute()

    si_path = tmp_path / "si.emd"
    write_velox_si(si_path, ny=4, nx=5, frames=1, detectors=1, counts_per_pixel=5.0, seed=1)
    (si,) = napari_emd.read_datasets(si_path, lazy=True, select_type="spectrum_image")
    other = tmp_path / "other.emd"
    write_velox_si(other, ny=4, nx=5, frames=1, detectors=1, counts_per_pixel=9.0, seed=2)
    os.replace(other, si_path)
    with pytest.raises(EMDError, match="changed on disk"):
        si.data.compute()
    with pytest.raises(EMDError, match="changed on disk"):
        np.asarray(si.display[3])


def test_saved_order_is_read_back(tmp_path):
    """Layers saved as c, a, b come back as c, a, b (not in name order)."""
    from napari_emd.writer import write_signals

    sigs = [
        {"data": np.full((2, 2), i), "axes": [], "metadata": {"General": {"title": t}}}
        for i, t in enumerate("cab")
    ]
    for s in sigs:
        s["axes"] = [
            {"name": "y", "size": 2, "scale": 1.0, "offset": 0.0},
            {"name": "x", "size": 2, "scale": 1.0, "offset": 0.0},
        ]
    path = tmp_path / "order.emd"
    write_signals(path, sigs)
    titles = [d["metadata"]["General"]["title"] for d in napari_emd.file_reader(path)]
    assert titles == ["c", "a", "b"]


@pytest.mark.parametrize("name", ["fei_emd_si.emd", "fei_SI_SuperX-HAADF_10frames_10x50.emd"])
def test_lazy_open_of_a_file_without_frame_table_reads_no_stream(name, monkeypatch):
    """Velox 4 files have no FrameLocationTable and grids that disagree (raster vs scan
    area); opening lazily must still not read the event stream."""
    from napari_emd.formats.velox import grid

    counted = []
    real = grid.count_pixels
    monkeypatch.setattr(grid, "count_pixels", lambda *a, **k: counted.append(a) or real(*a, **k))
    path = real_file(name)
    (lazy,) = napari_emd.read_datasets(path, lazy=True, select_type="spectrum_image")
    assert counted == []
    (eager,) = napari_emd.read_datasets(path, select_type="spectrum_image")
    assert lazy.shape == eager.shape
    np.testing.assert_array_equal(lazy.data.compute(), eager.data)


@pytest.mark.parametrize("name", ["fei_emd_si.emd", "fei_SI_SuperX-HAADF_10frames_10x50.emd"])
def test_eager_read_decodes_the_counted_stream_without_reading_it_again(
    name, monkeypatch, tmp_path
):
    """With the SI's scan metadata lost, grids that disagree make a read count the
    longest stream's pixels; an eager read then decodes that very buffer instead of
    reading the stream a second time (the spies wrap this package's own functions, not
    h5py). Lazy and eager give the same grid."""
    import h5py

    path = tmp_path / name
    path.write_bytes(real_file(name).read_bytes())
    with h5py.File(path, "r+") as f:
        for key in f["Data/SpectrumImage"]:
            f["Data/SpectrumImage"][key]["Metadata"][...] = 0
        for key in f["Data/SpectrumStream"]:
            f["Data/SpectrumStream"][key]["Metadata"][...] = 0
    from napari_emd.formats.velox import grid
    from napari_emd.formats.velox.stream import frames

    counted, whole_reads = [], []
    real_count, real_span = grid.count_pixels, frames.read_span

    def count(*a, **k):
        n, values = real_count(*a, **k)
        counted.append((a[0].name, values is not None))
        return n, values

    def span(ds, a, b):
        if a == 0 and b == int(np.prod(ds.shape)):
            whole_reads.append(ds.name)
        return real_span(ds, a, b)

    monkeypatch.setattr(grid, "count_pixels", count)
    monkeypatch.setattr(frames, "read_span", span)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EMDWarning)
        (si,) = napari_emd.read_datasets(path, select_type="spectrum_image")
    assert counted and all(kept for _, kept in counted)
    assert not {p for p, _ in counted} & set(whole_reads)
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EMDWarning)
        (ref,) = napari_emd.read_datasets(path, select_type="spectrum_image", lazy=True)
        assert ref.shape == si.shape
        np.testing.assert_array_equal(si.data, ref.data.compute())


def _velox_with_empty_image(tmp_path, shape):
    """A real Velox file with several images, one image's Data replaced by an empty
    array (an aborted acquisition). Returns the path and that image's group path."""
    return _velox_with_empty(tmp_path, "fei_example_dpc_titles.emd", "Image", shape)


def test_empty_velox_image_warns_once_in_napari(tmp_path):
    """The napari reader (no viewer needed) gives the library's warning, once, and no
    layer for the empty image."""
    from napari_emd.plugin.reader import read_layers

    path, where = _velox_with_empty_image(tmp_path, (0, 512, 1))
    with pytest.warns(EMDWarning) as record:
        layers = read_layers(str(path))
    assert len([w for w in record if where in str(w.message)]) == 1
    assert layers and all(0 not in np.shape(data) for data, _kw, _t in layers)


def _velox_with_empty(tmp_path, source, kind, shape):
    """A copy of real Velox file ``source`` whose first ``Data/<kind>`` member's Data is
    replaced by an empty array of ``shape`` (an aborted acquisition)."""
    import shutil

    path = tmp_path / f"empty {kind}.emd"
    shutil.copy(real_file(source), path)
    os.chmod(path, 0o644)
    with h5py.File(path, "r+") as f:
        group = f[f"Data/{kind}"]
        key = next(iter(group))
        dtype = group[key]["Data"].dtype
        del group[key]["Data"]
        group[key].create_dataset("Data", shape=shape, dtype=dtype)
    return path, f"Data/{kind}/{key}"


@pytest.mark.parametrize(("source", "kind", "shape"), [
    *[("fei_example_dpc_titles.emd", "Image", shape)
      for shape in [(0, 512, 1), (512, 512, 0), (0, 0, 0), (0, 512)]],
    ("Test SI 16x16 215 kx.emd", "Spectrum", (0, 1)),
    ("Test SI 16x16 215 kx.emd", "Spectrum", (4096, 0)),
    ("example_velox_EELS_EDS.emd", "EelsSpectrumImage", (0, 2048, 16)),
    ("example_velox_EELS_EDS.emd", "EelsSpectrumImage", (16, 0, 16)),
])
@pytest.mark.parametrize("lazy", [False, True])
def test_empty_velox_datasets_warn_and_are_skipped(tmp_path, source, kind, shape, lazy):
    """A zero-sized Velox image, spectrum or EELS spectrum image (an aborted acquisition)
    is skipped with a warning naming the file and the dataset (file_reader used to return
    a (0, 512) image silently, and a zero-frame one failed on its axes); the rest of the
    file is read, as napari does."""
    path, where = _velox_with_empty(tmp_path, source, kind, shape)
    full = napari_emd.file_reader(real_file(source), lazy=lazy)
    with pytest.warns(EMDWarning) as record:
        got = napari_emd.file_reader(path, lazy=lazy)
    ours = [str(w.message) for w in record if where in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in record]
    assert ours[0].startswith(f"{path}: {where}: ") and "holds no data" in ours[0]
    assert len(got) == len(full) - 1
    assert all(0 not in s["data"].shape for s in got)
