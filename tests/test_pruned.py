"""Pruned Velox files (no event streams, only the SpectrumImage blob): every real Velox SI
file, pruned in a copy, reads eager and lazy to the stream decoding of the original, or
to exactly what the blob holds where the two differ (docs/velox.md); the options the
summed cube cannot honour raise ``ValueError`` by name; damaged blobs are an ``EMDError``
naming the file; synthetic pruned files exercise the numba kernels and the lazy paths;
napari opens a pruned file with a spectrum-image layer."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import SI_FILES, real_file
from napari_emd import EMDError, EMDWarning, file_reader, read_datasets, si_facts
from napari_emd.formats.velox.blob import (
    blob_index,
    clear_blob_indexes,
    decode_reference,
    read_layout,
)
from napari_emd.formats.velox.blob import cube as blob_cube
from napari_emd.formats.velox.siread import Blob, Frames, Grid, SIFile
from napari_emd.h5 import close_cached
from napari_emd.model import IMAGE, SPECTRUM, SPECTRUM_IMAGE
from napari_emd.options import ReadOptions
from napari_emd.synthetic import prune_velox_si, write_velox_si

TAIL = "fei_SI_SuperX-HAADF_10frames_10x50.emd"
SHIFTED = "fei_emd_si.emd"


def _pruned(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name.replace(" ", "_")
    shutil.copyfile(real_file(name), dst)
    with h5py.File(dst, "r+") as f:
        del f["Data/SpectrumStream"]
    return dst


def _eds_si(path, **kw):
    (ds,) = [d for d in read_datasets(path, select_type="spectrum_image", **kw)
             if d.signal_type == "EDS_TEM"]
    return ds


def _blob_path(path) -> str:
    with h5py.File(path, "r") as f:
        (group,) = f["Data/SpectrumImage"].values()
        return group["Data"].name


def _original_blob(name: str) -> np.ndarray:
    with h5py.File(real_file(name), "r") as f:
        (group,) = f["Data/SpectrumImage"].values()
        return decode_reference(group["Data"][()])


# --- acceptance: every real SI file ---------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize("name", SI_FILES)
def test_pruned_copy_reads_like_the_streams(name, tmp_path):
    """Same shape, calibration and counts as the stream decoding of the original, eager,
    lazy and in the energy-first view; where the blob holds something else (two files,
    established in test_blob.py) exactly the blob's cube, with the difference stated."""
    path = _pruned(name, tmp_path)
    ref = _eds_si(real_file(name))
    eager = _eds_si(path)
    lazy = _eds_si(path, lazy=True)
    for ds in (eager, lazy):
        assert ds.kind == SPECTRUM_IMAGE and ds.title == "EDS" and ds.shape == ref.shape
        assert ds.dtype == np.uint16
        assert [(a.name, a.size, a.scale, a.offset, a.units, a.navigate) for a in ds.axes] \
            == [(a.name, a.size, a.scale, a.offset, a.units, a.navigate) for a in ref.axes]
        assert [a.name for a in ds.display_axes] == ["Energy", "y", "x"]
    data = eager.data
    np.testing.assert_array_equal(np.asarray(lazy.data.compute()), data)
    np.testing.assert_array_equal(np.asarray(lazy.display.compute()), np.moveaxis(data, -1, 0))
    np.testing.assert_array_equal(np.asarray(eager.display), np.moveaxis(data, -1, 0))
    truth = ref.data.astype(np.int64)
    if name == TAIL:  # Velox counted the 72 events after the last separator in (0, 0)
        diff = data.astype(np.int64) - truth
        assert set(zip(*diff.nonzero()[:2])) == {(0, 0)}
        assert diff[0, 0].sum() == 72 and (diff >= 0).all()
    elif name == SHIFTED:  # same events, pixels placed as Velox registered them
        assert data.sum() == truth.sum() == 6564
        np.testing.assert_array_equal(data.sum(axis=(0, 1)), truth.sum(axis=(0, 1)))
        assert not np.array_equal(data, truth)
    else:
        np.testing.assert_array_equal(data, truth)
    np.testing.assert_array_equal(data, _original_blob(name))
    imported = eager.original_metadata["ImportedDataParameter"]
    assert imported["Source"] == ("Velox SpectrumImage cube of a pruned file, summed over "
                                  "all frames and detectors")
    assert "pixel (0, 0)" in imported["Differences_from_stream_decoding"]
    assert imported["Scan_grid_source"] == "SpectrumImage blob header"
    assert imported["Number_of_channels"] == 4096 and imported["Detectors_summed"]
    assert eager.path == _blob_path(path)
    dicts = file_reader(path, select_type="spectrum_image")
    assert any(d["data"].shape == ref.shape for d in dicts)


@pytest.mark.realdata
def test_pruned_file_datasets_and_metadata(tmp_path):
    path = _pruned("fei_SI_EDS-HAADF-4detectors_2frames.emd", tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EMDWarning)  # nothing to warn about
        ds = read_datasets(path)
    assert sorted(d.kind for d in ds) == sorted([IMAGE, SPECTRUM_IMAGE] + [SPECTRUM] * 4)
    si = next(d for d in ds if d.kind == SPECTRUM_IMAGE)
    ref = _eds_si(real_file("fei_SI_EDS-HAADF-4detectors_2frames.emd"))
    eds = si.metadata["Acquisition_instrument"]["TEM"]["Detector"]["EDS"]
    assert eds["number_of_frames"] == 2
    assert si.metadata["Acquisition_instrument"]["TEM"]["beam_energy"] == 200.0
    assert si.original_metadata["ImportedDataParameter"]["Number_of_frames"] == 2
    assert si.original_metadata["ImportedDataParameter"]["Detectors"] == [
        "SuperXG21", "SuperXG22", "SuperXG23", "SuperXG24"]
    ref_eds = ref.metadata["Acquisition_instrument"]["TEM"]["Detector"]["EDS"]
    assert eds["azimuth_angle"] == ref_eds["azimuth_angle"]


@pytest.mark.realdata
def test_facts_of_a_pruned_file(tmp_path):
    path = _pruned("fei_SI_SuperX-HAADF_10frames_10x50.emd", tmp_path)
    facts = si_facts(path)
    ref = si_facts(real_file("fei_SI_SuperX-HAADF_10frames_10x50.emd"))
    assert facts.has_si and facts.readable and facts.source == "pruned cube"
    assert (facts.ny, facts.nx, facts.channels) == (ref.ny, ref.nx, ref.channels) == (50, 10,
                                                                                       4096)
    assert (facts.energy_offset, facts.energy_scale, facts.energy_units) == \
        (ref.energy_offset, ref.energy_scale, "keV")
    assert facts.pixel_size == pytest.approx(ref.pixel_size) and facts.pixel_units == "nm"
    assert facts.n_frames == 1 and facts.detectors == () and not facts.frame_table
    assert facts.grid_source == "SpectrumImage blob header"
    for word in ("all 10 frames", "first_frame", "sum_frames", "sum_EDS_detectors",
                 "rebin_energy"):
        assert word in facts.reason


# --- options ------------------------------------------------------------------------------


@pytest.mark.realdata
def test_options_the_sum_cannot_honour(tmp_path):
    path = _pruned("fei_SI_EDS-HAADF-4detectors_2frames.emd", tmp_path)
    for kw, word in (({"sum_frames": False}, "sum_frames=False"),
                     ({"first_frame": 1}, "first_frame=1"),
                     ({"last_frame": 1}, "last_frame=1"),
                     ({"sum_EDS_detectors": False}, "sum_EDS_detectors=False"),
                     ({"align_frames": True}, "align_frames"),
                     ({"exclude_frames": (1,)}, "exclude_frames"),
                     ({"rebin_energy": 3}, "rebin_energy=3")):
        with pytest.raises(ValueError, match=word) as err:
            file_reader(path, **kw)
        assert str(path) in str(err.value)
    # the whole range, said either way, is the sum
    full = _eds_si(path, first_frame=0, last_frame=2).data
    np.testing.assert_array_equal(full, _eds_si(path).data)
    # options that do not touch the SI are not refused
    assert read_datasets(path, select_type="image", sum_frames=False)


@pytest.mark.realdata
@pytest.mark.parametrize("lazy", [False, True])
def test_rebin_and_dtype(tmp_path, lazy):
    path = _pruned("fei_SI_EDS-HAADF-4detectors_2frames.emd", tmp_path)
    ref = _eds_si(real_file("fei_SI_EDS-HAADF-4detectors_2frames.emd"), rebin_energy=8,
                  SI_dtype="uint32")
    ds = _eds_si(path, rebin_energy=8, SI_dtype="uint32", lazy=lazy)
    assert ds.dtype == np.uint32 and ds.shape == (16, 16, 512)
    assert (ds.axes[-1].scale, ds.axes[-1].offset) == (ref.axes[-1].scale, ref.axes[-1].offset)
    np.testing.assert_array_equal(np.asarray(ds.data), ref.data)
    np.testing.assert_array_equal(np.asarray(ds.display), np.moveaxis(ref.data, -1, 0))
    # counts that do not fit SI_dtype wrap like astype, with a warning naming the largest
    with pytest.warns(EMDWarning, match="counts up to"):
        small = np.asarray(_eds_si(path, SI_dtype="uint8", lazy=lazy).data)
    np.testing.assert_array_equal(small, _eds_si(path).data.astype(np.uint8))


# --- damaged blobs ------------------------------------------------------------------------


def _damage(path: Path, how: str) -> None:
    name = _blob_path(path)
    with h5py.File(path, "r+") as f:
        raw = bytearray(f[name][()].tobytes())
        if how == "truncated":
            raw = raw[:-100]
        elif how == "tag":
            raw[17] = 0x05
        elif how == "beyond":  # the first non-empty record gets one more count
            start = 16 + int.from_bytes(raw[8:16], "little")
            p = start
            while raw[p] == 0 and raw[p + 1] == 0:
                p += 2
            length = raw[p] | raw[p + 1] << 8
            raw[p : p + 2] = (length + 2).to_bytes(2, "little")
            raw[p + 2 + length : p + 2 + length] = b"\x01\x00"
        elif how == "height":  # one row more than the records hold
            hl = int.from_bytes(raw[8:16], "little")
            raw[16 + hl - 3] += 1
        del f[name]
        f.create_dataset(name, data=np.frombuffer(bytes(raw), np.uint8)[:, None])


@pytest.mark.realdata
@pytest.mark.parametrize("how", ["truncated", "tag", "beyond", "height"])
def test_damaged_blob_is_an_emd_error(tmp_path, how):
    path = _pruned("Test SI 16x16 215 kx.emd", tmp_path)
    _damage(path, how)
    with pytest.raises(EMDError, match=r"Test_SI_16x16_215_kx\.emd.*blob"):
        file_reader(path)
    try:  # lazily: at open (header) or when a chunk is computed (records)
        ds = _eds_si(path, lazy=True)
    except EMDError as err:
        assert "blob" in str(err)
    else:
        with pytest.raises(EMDError, match="blob"):
            ds.data.compute()
        with pytest.raises(EMDError, match="blob"):
            ds.display[5].compute()
    # everything else of the file still reads, and the facts say why there is no SI
    assert read_datasets(path, select_type="image")
    if how in ("tag", "height"):
        facts = si_facts(path)
        assert facts.has_si and not facts.readable and "blob" in facts.reason


@pytest.mark.realdata
@pytest.mark.parametrize("lazy", [False, True])
def test_fuzzed_blob_through_file_reader(tmp_path, lazy):
    """Mutated blobs in a pruned file: file_reader gives an EMDError naming the file, or
    the cube the reference decoder gives for those bytes; never another exception."""
    path = _pruned("example_velox_EELS_EDS.emd", tmp_path)
    name = _blob_path(path)
    with h5py.File(path, "r") as f:
        raw = f[name][()].tobytes()
    rng = np.random.default_rng(2024)
    outcomes = set()
    for i in range(24):
        b = bytearray(raw)
        if i % 3 == 0:
            b = b[: int(rng.integers(0, len(raw)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                b[int(rng.integers(0, len(raw)))] = int(rng.integers(0, 256))
        close_cached(str(path))  # a lazy read keeps the file open
        with h5py.File(path, "r+") as f:
            del f[name]
            f.create_dataset(name, data=np.frombuffer(bytes(b) or b"\0", np.uint8)[:, None])
        clear_blob_indexes()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", EMDWarning)
                ds = _eds_si(path, lazy=lazy)
                data = np.asarray(ds.data)
        except EMDError as err:
            assert path.name in str(err)
            outcomes.add("error")
            continue
        np.testing.assert_array_equal(data, decode_reference(bytes(b)))
        outcomes.add("read")
    assert "error" in outcomes


@pytest.mark.realdata
def test_pruned_file_without_blob_warns(tmp_path):
    path = _pruned("fei_SI_EDS-HAADF-4detectors_2frames.emd", tmp_path)
    with h5py.File(path, "r+") as f:
        del f[_blob_path(path)]
    with pytest.warns(EMDWarning, match="pruned"):
        ds = read_datasets(path)
    assert sorted(d.kind for d in ds) == [IMAGE] + [SPECTRUM] * 4
    facts = si_facts(path)
    assert facts.has_si and not facts.readable and "no SpectrumImage blob" in facts.reason


@pytest.mark.realdata
def test_file_replaced_after_lazy_open(tmp_path):
    path = _pruned("Test SI 16x16 215 kx.emd", tmp_path)
    ds = _eds_si(path, lazy=True)
    shutil.copyfile(_pruned("example_velox_EELS_EDS.emd", tmp_path), path)
    with pytest.raises(EMDError, match="changed on disk"):
        ds.data.compute()


# --- synthetic pruned files: the kernels, chunking, reading spans -------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A 40 x 30 x 512-channel SI (4 detectors, 3 frames), pruned; and its summed cube."""
    path = tmp_path_factory.mktemp("pruned") / "synthetic.emd"
    write_velox_si(path, ny=40, nx=30, frames=3, detectors=4, bincount=512,
                   counts_per_pixel=20, seed=7)
    cube = prune_velox_si(path)
    return path, cube


@pytest.mark.parametrize("keep", [True, False])
def test_synthetic_pruned_by_kernels_and_chunks(synthetic, monkeypatch, keep):
    """Kernels forced, several row chunks, the blob kept in memory or read by spans (and
    the walk in several blocks)."""
    path, cube = synthetic
    assert cube.sum() > 0 and cube.shape == (40, 30, 512)
    monkeypatch.setattr(blob_cube, "SMALL_RECORDS", 0)
    monkeypatch.setattr(blob_cube, "SMALL_BYTES", 0)
    monkeypatch.setattr(blob_cube, "DATA_CHUNK_BYTES", 30 * 512 * 2 * 7)  # 7 rows
    if not keep:
        monkeypatch.setattr(blob_cube, "KEEP_BYTES", 0)
        monkeypatch.setattr(blob_cube, "WALK_BLOCK", 4096)
    clear_blob_indexes()
    np.testing.assert_array_equal(_eds_si(path).data, cube)
    lazy = _eds_si(path, lazy=True)
    assert lazy.data.chunks[0] == (7, 7, 7, 7, 7, 5)
    np.testing.assert_array_equal(lazy.data.compute(), cube)
    np.testing.assert_array_equal(lazy.display[100:140].compute(),
                                  np.moveaxis(cube, -1, 0)[100:140])
    rebinned = _eds_si(path, lazy=True, rebin_energy=4)
    np.testing.assert_array_equal(
        rebinned.display.compute(),
        np.moveaxis(cube.reshape(40, 30, 128, 4).sum(-1, dtype=np.uint16), -1, 0))
    with h5py.File(path, "r") as f:
        layout = read_layout(f[_blob_path(path)])
    si = SIFile(str(path), Blob(_blob_path(path), layout),
                Grid(layout.height, layout.width, 1, layout.channels))
    index = blob_index(si.read(ReadOptions(), Frames.every(0, 1)))
    assert (index.buf is not None) == keep
    clear_blob_indexes()


def test_lazy_open_reads_only_the_header(synthetic, monkeypatch):
    """Opening lazily parses the header and builds no index; the first chunk does."""
    path, cube = synthetic
    clear_blob_indexes()
    calls = []
    real = blob_cube.walk
    monkeypatch.setattr(blob_cube, "walk", lambda *a: calls.append(1) or real(*a))
    ds = _eds_si(path, lazy=True)
    assert calls == [] and not blob_cube._INDEXES
    np.testing.assert_array_equal(ds.data[:3].compute(), cube[:3])
    np.testing.assert_array_equal(ds.display[7].compute(), cube[:, :, 7])
    assert calls == [1]  # one index for every chunk
    assert os.path.getsize(path) > 0
    clear_blob_indexes()


# --- napari -------------------------------------------------------------------------------


@pytest.mark.napari
@pytest.mark.realdata
def test_viewer_opens_a_pruned_file(make_napari_viewer, tmp_path):
    path = _pruned("Test SI 16x16 215 kx.emd", tmp_path)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-emd-io")
    eds = next(la for la in layers if la.name == "EDS")
    assert eds.data.shape == (4096, 16, 16)  # energy first, as for a stream SI
    ref = _eds_si(real_file("Test SI 16x16 215 kx.emd"))
    np.testing.assert_array_equal(np.asarray(eds.data[1000]), ref.data[:, :, 1000])
    assert str(eds.units[0]) in ("kiloelectron_volt", "keV")
    assert {la.name for la in layers} >= {"EDS", "C", "Ca", "O", "Cu"}
