"""The synthetic Velox writer (napari_emd.synthetic.write_velox_si): the layout mirrors real
Velox files, decoding gives back exactly the counts written, and RosettaSciIO, openreadout
and napari-emd's own Velox reader all read the files."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest

from napari_emd.formats.velox.stream import SEPARATOR, read_spectrum_images
from napari_emd.options import ReadOptions
from napari_emd.synthetic import write_velox_si


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("syn") / "small.emd"
    return write_velox_si(path, ny=20, nx=14, frames=3, detectors=4, counts_per_pixel=4,
                          keep_counts=True, seed=2, block_pixels=97)


def test_layout_mirrors_velox(small):
    with h5py.File(small.path, "r") as f:
        assert json.loads(f["Version"][0]) == {"version": "6", "format": "Velox"}
        (img,) = f["Data/Image"].values()
        assert img["Data"].shape == (20, 14, 3) and img["Data"].dtype == np.uint16
        assert img["Metadata"].shape == (60000, 3) and img["Metadata"].dtype == np.uint8
        meta = json.loads(img["Metadata"][:, 0].tobytes().rstrip(b"\0"))
        assert meta["BinaryResult"]["PixelSize"]["width"] == "1e-09"
        assert meta["Scan"]["ScanSize"] == {"width": "14", "height": "20"}
        streams = f["Data/SpectrumStream"]
        assert len(streams) == 4
        names = set()
        for g in streams.values():
            d = g["Data"]
            assert d.dtype == np.uint16 and d.ndim == 2 and d.shape[1] == 1
            assert d.chunks == (8192, 1)
            settings = json.loads(g["AcquisitionSettings"][0])
            assert settings["bincount"] == "4096"
            table = g["FrameLocationTable"][:, 0]
            assert table.dtype == np.uint64 and table.size == 3
            values = d[:, 0]
            seps = np.flatnonzero(values == SEPARATOR)
            assert seps.size == 3 * 20 * 14
            # each frame starts right after the last separator of the frame before
            np.testing.assert_array_equal(table[1:], seps[np.array([1, 2]) * 280 - 1] + 1)
            md = json.loads(g["Metadata"][:, 0].tobytes().rstrip(b"\0"))
            names.add(md["BinaryResult"]["Detector"])
            det = next(v for v in md["Detectors"].values()
                       if v["DetectorName"] == md["BinaryResult"]["Detector"])
            assert float(det["Dispersion"]) == 10.0
        assert names == {"SuperXG21", "SuperXG22", "SuperXG23", "SuperXG24"}
        assert len(f["Data/Spectrum"]) == 4
        assert "Operations/StemInputOperation" in f
        assert "Presentation/Displays/ImageDisplay" in f
    assert small.events == int(small.counts.sum())


def test_round_trip_every_option(small):
    spec = small.file()
    c = small.counts  # (detector, frame, y, x, channel)
    cases = [
        ({}, c.sum((0, 1))),
        ({"sum_frames": False}, c.sum(0)),
        ({"first_frame": 1, "last_frame": 3}, c[:, 1:3].sum((0, 1))),
        ({"rebin_energy": 8}, c.sum((0, 1)).reshape(20, 14, 512, 8).sum(-1)),
    ]
    for kw, want in cases:
        for lazy in (False, True):
            (r,) = read_spectrum_images(spec.read(ReadOptions(lazy=lazy, **kw)))
            np.testing.assert_array_equal(np.asarray(r.data), want, err_msg=str(kw))
    per_det = read_spectrum_images(spec.read(ReadOptions(sum_EDS_detectors=False,
                                                     sum_frames=False)))
    for d, r in enumerate(per_det):
        assert r.detectors == (small.detectors[d],)
        np.testing.assert_array_equal(r.data, c[d])


def test_spectra_are_the_sum_of_the_events(small):
    with h5py.File(small.path, "r") as f:
        got = {}
        for g in f["Data/Spectrum"].values():
            md = json.loads(g["Metadata"][:, 0].tobytes().rstrip(b"\0"))
            got[md["BinaryResult"]["Detector"]] = g["Data"][:, 0]
    for d, name in enumerate(small.detectors):
        np.testing.assert_array_equal(got[name], small.counts[d].sum((0, 1, 2)))


def test_looks_like_eds(small):
    # the strongest channels are the element lines: Cu K-alpha (8.048 keV) and Fe K-alpha
    spectrum = small.counts.sum((0, 1, 2, 3))
    energy = small.offset_ev / 1000 + small.dispersion_ev / 1000 * (np.arange(4096) + 0.5)
    def window(e):
        return spectrum[np.abs(energy - e) < 0.08].mean()

    for line in (8.048, 6.404, 0.525, 0.277):  # Cu, Fe, O, C K-alpha
        assert window(line) > 3 * window(line - 0.4), line
    assert window(3.0) > 0  # bremsstrahlung background


@pytest.mark.parametrize("frame_table,final_separator", [(False, True), (True, False),
                                                         (False, False)])
def test_variants_round_trip(tmp_path, frame_table, final_separator):
    info = write_velox_si(tmp_path / "v.emd", ny=9, nx=11, frames=2, detectors=2,
                          frame_table=frame_table, final_separator=final_separator,
                          keep_counts=True, seed=4)
    with h5py.File(info.path, "r") as f:
        for s in info.streams:
            g = f[s.rsplit("/", 1)[0]]
            assert ("FrameLocationTable" in g) == frame_table
            seps = int((f[s][:, 0] == SEPARATOR).sum())
            assert seps == 2 * 9 * 11 - (0 if final_separator else 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (r,) = read_spectrum_images(info.file().read(ReadOptions(sum_frames=False)))
    np.testing.assert_array_equal(r.data, info.counts.sum(0))


def test_same_seed_same_file(tmp_path):
    a = write_velox_si(tmp_path / "a.emd", ny=6, nx=5, frames=2, detectors=1, seed=7)
    b = write_velox_si(tmp_path / "b.emd", ny=6, nx=5, frames=2, detectors=1, seed=7)
    c = write_velox_si(tmp_path / "c.emd", ny=6, nx=5, frames=2, detectors=1, seed=8)
    with h5py.File(a.path) as fa, h5py.File(b.path) as fb, h5py.File(c.path) as fc:
        sa, sb = fa[a.streams[0]][()], fb[b.streams[0]][()]
        np.testing.assert_array_equal(sa, sb)
        assert not np.array_equal(sa.shape, fc[c.streams[0]].shape) or not np.array_equal(
            sa, fc[c.streams[0]][()])


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        write_velox_si(tmp_path / "x.emd", ny=0)
    with pytest.raises(ValueError):
        write_velox_si(tmp_path / "x.emd", bincount=70000)


def test_rsciio_reads_the_synthetic_file(small):
    emd = pytest.importorskip("rsciio.emd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = emd.file_reader(small.path, sum_frames=False)
    titles = [o["metadata"]["General"]["title"] for o in out]
    assert "HAADF" in titles
    (si,) = [o for o in out if o["data"].ndim == 4]
    np.testing.assert_array_equal(si["data"], small.counts.sum(0))
    energy = si["axes"][-1]
    assert energy["units"] == "keV" and energy["scale"] == pytest.approx(0.01)
    assert energy["offset"] == pytest.approx(-1.0)
    assert si["axes"][1]["units"] == "nm" and si["axes"][1]["scale"] == pytest.approx(1.0)


def test_openreadout_reads_the_synthetic_file(small):
    openreadout = pytest.importorskip("openreadout")
    with openreadout.File(small.path) as f:
        images = f.images
        si = next(i for i, im in enumerate(images) if im["size_c"] > 1)
        assert images[si]["size_c"] == 4096
        want = small.counts.sum((0, 1))
        for c in (0, 905, 2048):
            np.testing.assert_array_equal(f.read_plane(image=si, c=c), want[..., c])


def test_napari_emd_velox_reader_reads_the_synthetic_file(small):
    import napari_emd

    datasets = napari_emd.read_datasets(small.path)
    by_title = {d.title: d for d in datasets}
    assert "HAADF" in by_title and "EDS" in by_title, list(by_title)
    eds = by_title["EDS"]
    np.testing.assert_array_equal(np.asarray(eds.data), small.counts.sum((0, 1)))
    energy = eds.axes[-1]
    assert energy.units == "keV" and energy.scale == pytest.approx(0.01)
    lazy = {d.title: d for d in napari_emd.read_datasets(small.path, lazy=True)}["EDS"]
    np.testing.assert_array_equal(np.asarray(lazy.display[905]),
                                  small.counts.sum((0, 1))[..., 905])
