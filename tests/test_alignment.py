"""Frame alignment and exclusion (issue 17, library part): shifts estimated on the image
stack of synthetic files with known drift, the aligned sum against the per-frame cube
shifted and summed by hand, the fast decoder (eager, lazy, energy planes) against the
reference decoder, excluded frames, invalid options, metadata, image stacks, real files."""

from __future__ import annotations

import dataclasses
import warnings

import h5py
import numpy as np
import pytest

import napari_emd
from conftest import real_file
from napari_emd.alignment import align_image, estimate_shifts
from napari_emd.errors import EMDError
from napari_emd.formats.velox import stream as stream_pkg
from napari_emd.formats.velox.siread import whole_pixels
from napari_emd.formats.velox.stream import (
    clear_caches,
    read_spectrum_images,
    read_spectrum_images_reference,
)
from napari_emd.options import ReadOptions
from napari_emd.synthetic import write_velox_si

DRIFT = np.array([[0, 0], [1, 2], [3, -1], [4, 3], [-2, 5]])


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_caches()
    yield
    clear_caches()


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """48 x 40, 5 frames, 2 detectors, 256 channels, known whole-pixel drift."""
    path = tmp_path_factory.mktemp("align") / "drift.emd"
    return write_velox_si(path, ny=48, nx=40, frames=5, detectors=2, counts_per_pixel=3,
                          bincount=256, seed=2, drift=DRIFT, keep_counts=True)


def shifted_sum(per_frame: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """The per-frame cube ``(F, y, x, E)`` moved back frame by frame and summed: what a
    user would do by hand after reading every frame."""
    total = np.zeros(per_frame.shape[1:], np.int64)
    for f, (dy, dx) in enumerate(shifts):
        total += align_image(np.moveaxis(per_frame[f], -1, 0), int(dy), int(dx)).transpose(
            1, 2, 0)
    return total


def si_of(datasets, title="EDS"):
    """The dataset titled ``title``, whatever its note on the frames (" (aligned)")."""
    return next(d for d in datasets if d.title.split(" (")[0] == title)


# --- estimating ------------------------------------------------------------------------


def test_estimated_shifts_within_half_a_pixel(drifted):
    est = napari_emd.estimate_frame_shifts(drifted.path)
    assert est.shape == (5, 2) and est.dtype == np.float64
    assert np.array_equal(est[0], [0, 0])
    assert np.abs(est - DRIFT).max() < 0.5
    # a range is measured relative to its own first frame
    part = napari_emd.estimate_frame_shifts(drifted.path, first_frame=2, last_frame=5)
    assert part.shape == (3, 2)
    assert np.abs(part - (DRIFT[2:] - DRIFT[2])).max() < 0.5
    # from the X-ray counts (about 6 per pixel and frame here), in energy bands
    counts = napari_emd.estimate_frame_shifts(drifted.path, source="counts")
    assert np.abs(counts - DRIFT).max() < 0.5
    one = napari_emd.estimate_frame_shifts(drifted.path, first_frame=3, last_frame=4)
    assert np.array_equal(one, np.zeros((1, 2)))


@pytest.mark.parametrize("sigma", [1.0, 2.0, 4.0, 8.0])
def test_estimate_shifts_sub_pixel_on_textures(sigma):
    """Sub-pixel shifts (Fourier-shifted crops of one larger random texture, fine to
    coarse, with and without noise) come out within 0.25 px (0.5 px with noise)."""
    rng = np.random.default_rng(int(sigma))
    n = 64
    fy, fx = np.fft.fftfreq(3 * n)[:, None], np.fft.fftfreq(3 * n)[None]
    spec = np.fft.fft2(rng.normal(size=(3 * n, 3 * n))) * np.exp(
        -2 * np.pi**2 * sigma**2 * (fy**2 + fx**2))
    truth = np.array([[0, 0], [0.3, -1.6], [2.5, 0.7], [-3.2, 4.45], [6.1, -2.3]])
    stack = np.stack([np.fft.ifft2(spec * np.exp(-2j * np.pi * (fy * dy + fx * dx))).real[
        n : 2 * n, n : 2 * n] for dy, dx in truth])
    assert np.abs(estimate_shifts([stack]) - truth).max() < 0.25
    noisy = stack + 0.3 * stack.std() * rng.normal(size=stack.shape)
    # noise on a coarse texture: smooth as coarsely as the features allow
    assert np.abs(estimate_shifts([noisy], smooth=max(1.0, sigma / 2)) - truth).max() < 0.5
    # two detectors (the second with inverted contrast) measured together
    assert np.abs(estimate_shifts([stack, -stack]) - truth).max() < 0.25


def test_counts_source_on_a_dense_file(tmp_path):
    drift = np.array([[0, 0], [2, -1], [-1, 3]])
    info = write_velox_si(tmp_path / "dense.emd", ny=64, nx=64, frames=3, detectors=1,
                          counts_per_pixel=40, bincount=64, seed=8, drift=drift)
    est = napari_emd.estimate_frame_shifts(info.path, source="counts")
    assert np.abs(est - drift).max() < 0.5
    with pytest.raises(ValueError, match="source"):
        napari_emd.estimate_frame_shifts(info.path, source="magic")


def test_no_image_stack_is_a_clear_error(tmp_path):
    info = write_velox_si(tmp_path / "nostack.emd", ny=16, nx=16, frames=3, detectors=1,
                          bincount=64, seed=1, drift=[[0, 0], [1, 0], [0, 1]])
    with h5py.File(info.path, "a") as f:  # one frame left: no stack
        data = f[info.haadf][:, :, :1]
        del f[info.haadf]
        f.create_dataset(info.haadf, data=data)
    for call in (lambda: napari_emd.estimate_frame_shifts(info.path),
                 lambda: napari_emd.file_reader(info.path, align_frames=True)):
        with pytest.raises(ValueError, match=r"no image stack.*source='counts'"):
            call()
    assert napari_emd.estimate_frame_shifts(info.path, source="counts").shape == (3, 2)


def test_estimate_needs_a_velox_si(tmp_path):
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(EMDError, match="not a Velox"):
        napari_emd.estimate_frame_shifts(tmp_path / "plain.h5")


# --- decoding --------------------------------------------------------------------------


def test_aligned_sum_is_the_per_frame_cube_shifted_and_summed(drifted):
    spec = drifted.file()
    (per_frame,) = read_spectrum_images(spec.read(ReadOptions(sum_frames=False)))
    want = shifted_sum(per_frame.data, DRIFT)
    for lazy in (False, True):
        (al,) = read_spectrum_images(spec.read(ReadOptions(align_frames=DRIFT, lazy=lazy)))
        got = np.asarray(al.data)
        np.testing.assert_array_equal(got, want)
        # where every frame covers the pixel, it holds all five frames of the same spot:
        # the counts written for frame 0's pixel, five times over on average
        cover = spec.read(ReadOptions(align_frames=DRIFT)).frames.coverage(48, 40)
        full = cover == 5
        assert full.sum() == (48 - 6) * (40 - 6)
        written = drifted.counts.sum(0)  # (frame, y, x, E), each frame as scanned
        np.testing.assert_array_equal(got[full], shifted_sum(written, DRIFT)[full])
    # the aligned sum is sharper: the particle signal (O K-alpha, channel 152 of these
    # 256 channels from -1 keV) correlates better with frame 0 than the plain sum's does
    (plain,) = read_spectrum_images(spec.read(ReadOptions()))
    fe = slice(147, 158)
    ref = per_frame.data[0][..., fe].sum(-1).astype(float)

    def corr(img):
        return np.corrcoef(img[full].ravel(), ref[full].ravel())[0, 1]

    assert corr(want[..., fe].sum(-1)) > corr(plain.data[..., fe].sum(-1).astype(float))


OPTION_SETS = [
    {},
    {"sum_frames": False},
    {"sum_EDS_detectors": False},
    {"sum_frames": False, "sum_EDS_detectors": False, "rebin_energy": 4},
    {"rebin_energy": 16, "SI_dtype": "uint32"},
    {"SI_dtype": "float32"},
    {"SI_dtype": "uint8"},
    {"exclude_frames": (2,)},
    {"exclude_frames": (0, 4), "sum_frames": False},
    {"first_frame": 1, "last_frame": 4},
    {"first_frame": 3, "last_frame": 4, "sum_frames": False},  # joined detector pass
    {"first_frame": 1, "exclude_frames": (3,), "rebin_energy": 2},
]


@pytest.mark.parametrize("kw", OPTION_SETS, ids=str)
def test_every_option_aligned_equals_reference_eager_lazy_and_display(drifted, kw):
    spec = drifted.file()
    first, last = kw.get("first_frame", 0), kw.get("last_frame", 5)
    o = ReadOptions(align_frames=DRIFT[first:last] - DRIFT[first], **kw)
    ref = read_spectrum_images_reference(spec.read(o))
    dt = np.dtype(o.SI_dtype or "uint16")
    for lazy in (False, True):
        clear_caches()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # uint8 overflows, and says so
            got = read_spectrum_images(spec.read(dataclasses.replace(o, lazy=lazy)))
            for g, r in zip(got, ref, strict=True):
                np.testing.assert_array_equal(np.asarray(g.data), r.astype(dt),
                                              err_msg=f"{kw} lazy={lazy}")
                np.testing.assert_array_equal(np.asarray(g.display),
                                              np.moveaxis(r, -1, -3).astype(dt))


def test_eager_equals_lazy_with_small_chunks_and_threads(drifted, monkeypatch):
    from napari_emd.formats.velox.stream import eager as eager_module
    from napari_emd.formats.velox.stream import lazy as lazy_module

    spec = drifted.file()
    monkeypatch.setattr(lazy_module, "DATA_CHUNK_BYTES", 40 * 256 * 2 * 7)  # 7 rows
    o = ReadOptions(align_frames=DRIFT, exclude_frames=(1,))
    ref = read_spectrum_images_reference(spec.read(o))[0]
    for threads in (1, 3):
        monkeypatch.setattr(eager_module, "n_threads", lambda t=threads: t)
        (e,) = read_spectrum_images(spec.read(o))
        np.testing.assert_array_equal(e.data, ref)
    (lz,) = read_spectrum_images(spec.read(dataclasses.replace(o, lazy=True)))
    assert lz.data.chunks[0][0] == 7
    np.testing.assert_array_equal(lz.data.compute(scheduler="threads"), ref)


def test_sorted_event_index_honours_alignment(drifted, monkeypatch):
    from napari_emd.formats.velox.stream import planes

    monkeypatch.setattr(planes, "FLAT_INDEX_VALUES", 0)  # the numba counting sort
    spec = drifted.file()
    for kw in ({}, {"sum_frames": False, "exclude_frames": (2,)}):
        clear_caches()
        o = ReadOptions(align_frames=DRIFT, lazy=True, **kw)
        ref = read_spectrum_images_reference(spec.read(o))[0]
        (lz,) = read_spectrum_images(spec.read(o))
        np.testing.assert_array_equal(lz.display.compute(), np.moveaxis(ref, -1, -3))


def test_excluded_frames_are_absent(drifted):
    spec = drifted.file()
    (per_frame,) = read_spectrum_images(spec.read(ReadOptions(sum_frames=False)))
    for lazy in (False, True):
        (ex,) = read_spectrum_images(spec.read(ReadOptions(exclude_frames=(1, 3), lazy=lazy)))
        np.testing.assert_array_equal(np.asarray(ex.data),
                                      per_frame.data[[0, 2, 4]].sum(0))
        (kept,) = read_spectrum_images(
            spec.read(ReadOptions(exclude_frames=[1, 3], sum_frames=False, lazy=lazy)))
        np.testing.assert_array_equal(np.asarray(kept.data), per_frame.data[[0, 2, 4]])


def test_per_frame_aligned_sums_to_the_aligned_sum(drifted):
    spec = drifted.file()
    (frames,) = read_spectrum_images(spec.read(ReadOptions(align_frames=DRIFT, sum_frames=False)))
    (total,) = read_spectrum_images(spec.read(ReadOptions(align_frames=DRIFT)))
    assert frames.data.shape == (5, 48, 40, 256)
    np.testing.assert_array_equal(frames.data.sum(0), total.data)


def test_shifts_are_rounded_to_whole_pixels(drifted):
    spec = drifted.file()
    fractional = DRIFT + np.array([[0, 0], [0.4, -0.3], [-0.45, 0.2], [0.1, 0.49],
                                   [0.2, -0.2]])
    np.testing.assert_array_equal(whole_pixels(fractional), DRIFT)
    np.testing.assert_array_equal(whole_pixels([[0.5, 1.5], [-0.5, -1.5]]),
                                  [[0, 2], [0, -2]])  # numpy.rint: halves to even
    (a,) = read_spectrum_images(spec.read(ReadOptions(align_frames=fractional)))
    (b,) = read_spectrum_images(spec.read(ReadOptions(align_frames=DRIFT)))
    np.testing.assert_array_equal(a.data, b.data)


def test_a_frame_moved_off_the_grid_adds_nothing(drifted):
    spec = drifted.file()
    far = np.array([[0, 0], [0, 40], [48, 0], [0, -40], [-60, 3]])
    (a,) = read_spectrum_images(spec.read(ReadOptions(align_frames=far)))
    (f0,) = read_spectrum_images(spec.read(ReadOptions(last_frame=1)))
    np.testing.assert_array_equal(a.data, f0.data)
    assert (spec.read(ReadOptions(align_frames=far)).frames.coverage(48, 40) == 1).all()


# --- options ---------------------------------------------------------------------------


def test_options_are_normalised_and_hashable():
    o = ReadOptions(align_frames=np.array([[0, 0], [1, 2.5]]), exclude_frames=[3, 1, 3])
    assert o.align_frames == ((0.0, 0.0), (1.0, 2.5))
    assert o.exclude_frames == (1, 3)
    hash(o)
    assert ReadOptions(exclude_frames=2).exclude_frames == (2,)
    assert ReadOptions(align_frames=np.bool_(True)).align_frames is True
    assert ReadOptions(align_frames=None).align_frames is False
    assert not ReadOptions().frame_hygiene and ReadOptions(exclude_frames=(0,)).frame_hygiene


@pytest.mark.parametrize("kw", [
    {"align_frames": np.zeros((4, 2))},
    {"align_frames": np.zeros((5, 3))},
    {"align_frames": np.zeros(10)},
    {"align_frames": [[0, 0]] * 4 + [[np.inf, 0]]},
    {"align_frames": "yes"},
    {"align_frames": 3},
    {"exclude_frames": (5,)},
    {"exclude_frames": (-1,)},
    {"exclude_frames": (1.5,)},
    {"exclude_frames": range(5)},
    {"first_frame": 2, "exclude_frames": (1,)},
    {"first_frame": 2, "align_frames": np.zeros((5, 2))},
    {"first_frame": 1, "last_frame": 3, "exclude_frames": (1, 2), "align_frames": True},
])
def test_invalid_options_raise_before_decoding(drifted, monkeypatch, kw):
    def boom(*a, **k):
        raise AssertionError("decoding started")

    monkeypatch.setattr(stream_pkg, "read_eager", boom)
    monkeypatch.setattr(stream_pkg, "lazy_cube", boom)
    from napari_emd.formats.velox import sistack

    monkeypatch.setattr(sistack, "shifts_of_open_file", boom)
    for lazy in (False, True):
        with pytest.raises(ValueError):
            napari_emd.file_reader(drifted.path, lazy=lazy, **kw)


# --- the datasets: metadata, coverage, image stacks ----------------------------------


def test_read_datasets_records_shifts_coverage_and_excluded_frames(drifted):
    for lazy in (False, True):
        ds = napari_emd.read_datasets(drifted.path, align_frames=True, exclude_frames=[3],
                                      lazy=lazy)
        si = si_of(ds)
        fa = si.metadata["Signal"]["Frame_alignment"]
        assert fa["frames"] == [0, 1, 2, 4] and fa["excluded_frames"] == [3]
        assert fa["shifts"] == DRIFT[[0, 1, 2, 4]].tolist()
        assert "whole pixel" in fa["rounding"] and "HAADF" in fa["source"]
        assert np.abs(np.array(fa["estimated_shifts"]) - DRIFT).max() < 0.5
        params = si.original_metadata["ImportedDataParameter"]
        assert params["Excluded_frames"] == [3]
        assert params["Frame_shifts"] == fa["shifts"]
        eds = si.metadata["Acquisition_instrument"]["TEM"]["Detector"]["EDS"]
        assert eds["number_of_frames"] == 4
        cover = si_of(ds, "EDS frame coverage")
        assert cover.kind == napari_emd.IMAGE and cover.shape == (48, 40)
        np.testing.assert_array_equal(cover.data, fa["coverage"])
        want = drifted.file().read(ReadOptions(align_frames=DRIFT,
                                                      exclude_frames=(3,))).frames.coverage(48, 40)
        np.testing.assert_array_equal(cover.data, want)
        assert cover.data.max() == 4 and cover.data.min() == 1
    # the whole read as file_reader dicts; only exclusion: no coverage image
    out = napari_emd.file_reader(drifted.path, exclude_frames=(0,))
    titles = [o["metadata"]["General"]["title"] for o in out]
    assert "EDS frame coverage" not in titles
    si = next(o for o in out if o["metadata"]["General"]["title"].split(" (")[0] == "EDS")
    assert si["metadata"]["General"]["title"] == "EDS (frame 1 left out)"
    assert si["metadata"]["Signal"]["Frame_alignment"]["frames"] == [1, 2, 3, 4]
    plain = napari_emd.read_datasets(drifted.path)
    assert "Frame_alignment" not in si_of(plain).metadata.get("Signal", {})
    assert "Excluded_frames" not in si_of(plain).original_metadata["ImportedDataParameter"]


def test_per_frame_axis_lists_the_frames_read(drifted):
    out = napari_emd.file_reader(drifted.path, sum_frames=False, exclude_frames=(1,),
                                 align_frames=DRIFT)
    si = next(o for o in out if o["metadata"]["General"]["title"].split(" (")[0] == "EDS")
    assert si["metadata"]["General"]["title"] == "EDS (aligned; frame 2 left out)"
    assert si["data"].shape[0] == 4
    t = si["axes"][0]
    assert t["name"] == "Time"
    step = t["axis"][1] / 2
    np.testing.assert_allclose(t["axis"], np.array([0, 2, 3, 4]) * step)


def test_image_stack_is_aligned_like_the_si(drifted):
    with h5py.File(drifted.path, "r") as f:
        raw = np.moveaxis(f[drifted.haadf][()], -1, 0)
    for lazy in (False, True):
        ds = napari_emd.read_datasets(drifted.path, align_frames=DRIFT, exclude_frames=(2,),
                                      load_SI_image_stack=True, lazy=lazy)
        stack = si_of(ds, "HAADF")
        assert stack.kind == napari_emd.IMAGE_STACK
        got = np.asarray(stack.data)
        assert got.shape == (4, 48, 40) and got.dtype == raw.dtype
        for j, f in enumerate((0, 1, 3, 4)):
            np.testing.assert_array_equal(got[j], align_image(raw[f], *DRIFT[f]))
        assert stack.metadata["Signal"]["Frame_alignment"]["frames"] == [0, 1, 3, 4]
        # the aligned stack has no drift left
        assert np.abs(estimate_shifts([got.astype(float)])).max() < 0.5
    # images only: the stack is still aligned, the SI not read
    ds = napari_emd.read_datasets(drifted.path, align_frames=True, select_type="image",
                                  load_SI_image_stack=True)
    assert [d.kind for d in ds] == [napari_emd.IMAGE_STACK]
    assert ds[0].shape == (5, 48, 40)
    # without load_SI_image_stack the single HAADF image is frame 0, as always
    ds = napari_emd.read_datasets(drifted.path, align_frames=DRIFT)
    np.testing.assert_array_equal(si_of(ds, "HAADF").data, raw[0])


def test_lazy_graphs_hold_paths_not_handles(drifted):
    import pickle

    ds = napari_emd.read_datasets(drifted.path, align_frames=DRIFT, lazy=True,
                                  load_SI_image_stack=True)
    for d in (si_of(ds), si_of(ds, "HAADF")):
        for arr in (d.data, d.display) if d.display is not None else (d.data,):
            blob = pickle.dumps(dict(arr.__dask_graph__()))
            assert b"h5py" not in blob and drifted.path.encode() in blob


def test_options_ignored_without_a_spectrum_image(data_dir):
    path = real_file("fei_emd_image.emd")
    with pytest.warns(napari_emd.EMDWarning, match="ignored"):
        out = napari_emd.file_reader(path, align_frames=True, exclude_frames=(1,))
    assert out


def test_synthetic_drift_is_deterministic_and_zero_drift_is_the_default(tmp_path):
    a = write_velox_si(tmp_path / "a.emd", ny=12, nx=10, frames=2, detectors=1,
                       bincount=64, seed=3)
    b = write_velox_si(tmp_path / "b.emd", ny=12, nx=10, frames=2, detectors=1,
                       bincount=64, seed=3, drift=np.zeros((2, 2), int))
    c = write_velox_si(tmp_path / "c.emd", ny=12, nx=10, frames=2, detectors=1,
                       bincount=64, seed=3, drift=[[0, 0], [1, 1]])
    d = write_velox_si(tmp_path / "d.emd", ny=12, nx=10, frames=2, detectors=1,
                       bincount=64, seed=3, drift=[[0, 0], [1, 1]])
    with h5py.File(a.path) as fa, h5py.File(b.path) as fb, h5py.File(c.path) as fc, \
            h5py.File(d.path) as fd:
        for s in (a.streams[0], a.haadf):
            np.testing.assert_array_equal(fa[s][()], fb[s][()])
        for s in (c.streams[0], c.haadf):
            np.testing.assert_array_equal(fc[s][()], fd[s][()])
    assert (c.streams, c.haadf) == (d.streams, d.haadf)
    with pytest.raises(ValueError, match="drift"):
        write_velox_si(tmp_path / "e.emd", frames=2, drift=[[0, 0]])
    with pytest.raises(ValueError, match="drift"):
        write_velox_si(tmp_path / "e.emd", frames=2, drift=[[0, 0], [0.5, 0]])


# --- real files --------------------------------------------------------------------------


REAL = {  # name: frames of the SI and its image stack
    "fei_SI_SuperX-HAADF_10frames_10x50.emd": 10,
    "fei_emd_si.emd": 5,
    "fei_SI_EDS-HAADF-4detectors_2frames.emd": 2,
    "Test SI 16x16 215 kx.emd": 2,
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_estimate_and_align(name):
    path = str(real_file(name))
    est = napari_emd.estimate_frame_shifts(path)
    assert est.shape == (REAL[name], 2) and np.array_equal(est[0], [0, 0])
    assert np.abs(est).max() < 2  # these acquisitions barely drifted
    with warnings.catch_warnings():
        warnings.simplefilter("error", napari_emd.EMDWarning)
        eager = si_of(napari_emd.read_datasets(path, align_frames=True))
        lazy = si_of(napari_emd.read_datasets(path, align_frames=True, lazy=True))
        plain = si_of(napari_emd.read_datasets(path))
    np.testing.assert_array_equal(lazy.data.compute(), eager.data)
    assert eager.data.sum() <= plain.data.sum()
    shifts = whole_pixels(est)
    if not shifts.any():
        np.testing.assert_array_equal(eager.data, plain.data)


@pytest.mark.realdata
def test_real_file_without_image_stack():
    path = str(real_file("example_velox_EELS_EDS.emd"))  # one frame: nothing to align
    assert np.array_equal(napari_emd.estimate_frame_shifts(path), np.zeros((1, 2)))
    path = str(real_file("fei_SI_SuperX-HAADF_10frames_10x50.emd"))
    with pytest.raises(ValueError, match="no image stack named 'BF'"):
        napari_emd.estimate_frame_shifts(path, images="BF")
    counts = napari_emd.estimate_frame_shifts(path, source="counts")
    assert counts.shape == (10, 2)
