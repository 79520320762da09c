"""Spectrum-stream decoding (napari_emd.formats.velox.stream): every option on every real SI
file against the reference arrays, the plain reference decoder and RosettaSciIO; lazy == eager; the
energy-first display; damaged streams; a dask.distributed cluster of processes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import real_file
from napari_emd.errors import EMDError, EMDWarning
from napari_emd.formats.velox.siread import Frames, Grid, SIFile, Streams
from napari_emd.formats.velox.stream import (
    SEPARATOR,
    clear_caches,
    read_spectrum_images,
    read_spectrum_images_reference,
)
from napari_emd.options import ReadOptions

# (ny, nx, frames) of the real files' spectrum images (from their images / frame tables)
REAL_SI = {
    "fei_emd_si.emd": (16, 16, 5),
    "fei_SI_SuperX-HAADF_10frames_10x50.emd": (50, 10, 10),
    "fei_SI_EDS-HAADF-4detectors_2frames.emd": (16, 16, 2),
    "Test SI 16x16 215 kx.emd": (16, 16, 2),
    "example_velox_EELS_EDS.emd": (16, 20, 1),
}


def real_spec(name: str) -> SIFile:
    """An SIFile built straight from a real file (what formats/velox derives)."""
    path = real_file(name)
    ny, nx, nf = REAL_SI[name]
    streams, dets, tables = [], [], []
    bincount = 0
    with h5py.File(path, "r") as f:
        group = f["Data/SpectrumStream"]
        for k in sorted(group):
            g = group[k]
            streams.append(f"/Data/SpectrumStream/{k}/Data")
            tables.append(
                f"/Data/SpectrumStream/{k}/FrameLocationTable"
                if "FrameLocationTable" in g else None
            )
            meta = json.loads(g["Metadata"][:, 0].tobytes().rstrip(b"\0"))
            dets.append(meta["BinaryResult"]["Detector"])
            bincount = int(json.loads(g["AcquisitionSettings"][0])["bincount"])
    return SIFile(str(path), Streams(tuple(streams), tuple(dets), tuple(tables)),
                  Grid(ny, nx, nf, bincount))


def opts(**kw) -> ReadOptions:
    return ReadOptions.from_kwargs(**kw)


def option_sets(n_frames: int) -> list[dict]:
    sets = [
        {},
        {"sum_frames": False},
        {"sum_EDS_detectors": False},
        {"sum_frames": False, "sum_EDS_detectors": False},
        {"rebin_energy": 4},
        {"rebin_energy": 8, "sum_frames": False},
        {"SI_dtype": "uint32"},
        {"SI_dtype": "float32"},
        {"SI_dtype": "int16", "rebin_energy": 2},
    ]
    if n_frames > 1:
        sets += [
            {"first_frame": 1},
            {"last_frame": 1},
            {"first_frame": n_frames - 1, "sum_frames": False},
            {"first_frame": n_frames // 2, "last_frame": n_frames, "rebin_energy": 16},
        ]
    return sets


def planes_of(display, idx):
    return np.asarray(display[idx])


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_caches()
    yield
    clear_caches()


# --- real files ------------------------------------------------------------------------


@pytest.mark.realdata
def test_fei_emd_si_matches_reference_arrays():
    spec = real_spec("fei_emd_si.emd")
    ref = np.load(real_file("fei_emd_si.npy"))
    for lazy in (False, True):
        (res,) = read_spectrum_images(spec.read(opts(lazy=lazy)))
        assert res.detectors == spec.detectors
        assert res.data.dtype == ref.dtype == np.uint16
        np.testing.assert_array_equal(np.asarray(res.data), ref)
    ref2 = np.load(real_file("fei_emd_si_frame.npy"))
    for lazy in (False, True):
        (res,) = read_spectrum_images(spec.read(opts(first_frame=2, last_frame=4, lazy=lazy)))
        np.testing.assert_array_equal(np.asarray(res.data), ref2)


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL_SI))
def test_every_option_equals_reference_decoder(name):
    spec = real_spec(name)
    for kw in option_sets(spec.n_frames):
        o = opts(**kw)
        with warnings.catch_warnings():
            warnings.simplefilter("error", EMDWarning)  # real files decode without warnings
            got = read_spectrum_images(spec.read(o))
        ref = read_spectrum_images_reference(spec.read(o))
        assert len(got) == len(ref) == (1 if o.sum_EDS_detectors else len(spec.streams))
        if not o.sum_EDS_detectors:
            assert [r.detectors for r in got] == [(d,) for d in spec.detectors]
        dt = np.dtype(o.SI_dtype or "uint16")
        for g, r in zip(got, ref):
            assert isinstance(g.data, np.ndarray)
            assert g.data.dtype == dt, kw
            assert g.data.shape == r.shape, kw
            np.testing.assert_array_equal(g.data, r.astype(dt), err_msg=str(kw))
            # eager display is an energy-first view of the same memory
            assert g.display.shape == (*r.shape[:-3], r.shape[-1], *r.shape[-3:-1])
            assert np.shares_memory(g.display, g.data)


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL_SI))
def test_lazy_equals_eager(name):
    spec = real_spec(name)
    for kw in option_sets(spec.n_frames)[:6]:
        eager = read_spectrum_images(spec.read(opts(**kw)))
        lazy = read_spectrum_images(spec.read(opts(lazy=True, **kw)))
        for e, lz in zip(eager, lazy):
            assert type(lz.data).__module__.startswith("dask")
            assert lz.data.shape == e.data.shape and lz.data.dtype == e.data.dtype
            np.testing.assert_array_equal(lz.data.compute(), e.data, err_msg=str(kw))
            # energy-first display: a few planes (all of them when rebinned)
            nE = e.data.shape[-1]
            assert lz.display.shape == e.display.shape
            picks = range(nE) if nE <= 512 else [0, 150, 200, 201, 800, nE - 1]
            for c in picks:
                np.testing.assert_array_equal(
                    planes_of(lz.display, (..., c, slice(None), slice(None))),
                    e.display[..., c, :, :],
                    err_msg=f"{kw} plane {c}",
                )


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL_SI))
def test_equals_rsciio(name):
    emd = pytest.importorskip("rsciio.emd")
    spec = real_spec(name)
    cases = [{}, {"sum_frames": False},
             {"sum_EDS_detectors": False, "SI_dtype": "uint32", "rebin_energy": 2}]
    if spec.n_frames > 2:
        cases.append({"first_frame": 1, "last_frame": spec.n_frames - 1, "rebin_energy": 2})
    for kw in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = emd.file_reader(str(spec.path), **kw)
        theirs = [o["data"] for o in out if o["metadata"]["General"]["title"] == "EDS"
                  and o["data"].ndim >= 3]
        ours = [r.data for r in read_spectrum_images(spec.read(opts(**kw)))]
        assert len(theirs) == len(ours), kw
        if name == "example_velox_EELS_EDS.emd":
            # rsciio takes the (128, 128) raster from the first image it meets; the stream
            # holds 320 pixels = the 16 x 20 scan of the EELS SIs and maps (see the README)
            fixed = []
            for t in theirs:
                assert t.shape[-3:-1] == (128, 128)
                t = t.reshape(*t.shape[:-3], -1, t.shape[-1])[..., : 16 * 20, :]
                fixed.append(t.reshape(*t.shape[:-2], 16, 20, t.shape[-1]))
            theirs = fixed
        for o in ours:  # per-detector SIs may come in another order
            assert any(t.dtype == o.dtype and np.array_equal(t, o) for t in theirs), kw


@pytest.mark.realdata
def test_velox_eels_eds_grid_is_the_stream_s():
    """The stream of example_velox_EELS_EDS holds 320 pixels: 16 x 20 is the SI grid (the
    EELS SIs and element maps have that shape), not the 128 x 128 of the 'a' image."""
    spec = real_spec("example_velox_EELS_EDS.emd")
    with h5py.File(spec.path, "r") as f:
        for s in spec.streams:
            d = f[s][:, 0]
            pixels = int((d == SEPARATOR).sum()) + int(d[-1] != SEPARATOR)
            assert pixels == 16 * 20
    (res,) = read_spectrum_images(spec.read(opts()))
    assert res.data.shape == (16, 20, 4096)
    assert res.data.sum() > 0


# --- options ---------------------------------------------------------------------------


def _tiny_spec(tmp_path: Path, streams, tables=None, ny=2, nx=2, n_frames=2, bincount=8,
               name="tiny.emd") -> SIFile:
    path = tmp_path / name
    names, tnames = [], []
    with h5py.File(path, "w") as f:
        for i, s in enumerate(streams):
            g = f.create_group(f"Data/SpectrumStream/s{i}")
            g.create_dataset("Data", data=np.asarray(s, np.uint16)[:, None], chunks=True,
                             maxshape=(None, 1))
            names.append(f"/Data/SpectrumStream/s{i}/Data")
            t = None if tables is None else tables[i]
            if t is not None:
                g.create_dataset("FrameLocationTable", data=np.asarray(t, np.uint64)[:, None])
                tnames.append(f"/Data/SpectrumStream/s{i}/FrameLocationTable")
            else:
                tnames.append(None)
    return SIFile(str(path), Streams(tuple(names), tuple(f"D{i}" for i in range(len(streams))),
                                     tuple(tnames)), Grid(ny, nx, n_frames, bincount))


S = SEPARATOR


def _stream_2x2x2():
    # frame 0: pixels (0,0) [1,2] (0,1) [] (1,0) [3] (1,1) [3,3]; frame 1: (0,0) [7] ...
    return [1, 2, S, S, 3, S, 3, 3, S, 7, S, S, 0, S, 5, S]


def test_check_options_rejects_bad_values_before_decoding(tmp_path):
    spec = _tiny_spec(tmp_path, [_stream_2x2x2()])
    with pytest.raises(ValueError, match="first_frame"):
        spec.read(ReadOptions(first_frame=2))
    with pytest.raises(ValueError, match="last_frame"):
        spec.read(ReadOptions(first_frame=1, last_frame=1))
    with pytest.raises(ValueError, match="last_frame"):
        spec.read(ReadOptions(last_frame=3))
    with pytest.raises(ValueError, match="rebin_energy"):
        spec.read(ReadOptions(rebin_energy=3))
    with pytest.raises(ValueError, match="rebin_energy"):
        spec.read(ReadOptions(rebin_energy=0))
    with pytest.raises(ValueError, match="SI_dtype"):
        spec.read(ReadOptions(SI_dtype=np.dtype("U3")))
    with pytest.raises(ValueError):
        read_spectrum_images(spec.read(ReadOptions(first_frame=5, lazy=True)))
    frames = spec.read(ReadOptions(first_frame=1)).frames
    assert (frames.first, frames.last, frames.frames) == (1, 2, (1,))


def test_hand_built_stream_exact_counts(tmp_path):
    spec = _tiny_spec(tmp_path, [_stream_2x2x2()], tables=[[0, 9]])
    (r,) = read_spectrum_images(spec.read(opts(sum_frames=False)))
    want = np.zeros((2, 2, 2, 8), int)
    want[0, 0, 0, [1, 2]] = 1
    want[0, 1, 0, 3] = 1
    want[0, 1, 1, 3] = 2
    want[1, 0, 0, 7] = 1
    want[1, 1, 0, 0] = 1
    want[1, 1, 1, 5] = 1
    np.testing.assert_array_equal(r.data, want)
    (s,) = read_spectrum_images(spec.read(opts(rebin_energy=4)))
    np.testing.assert_array_equal(s.data, want.sum(0).reshape(2, 2, 2, 4).sum(-1))
    (lz,) = read_spectrum_images(spec.read(opts(sum_frames=False, lazy=True)))
    np.testing.assert_array_equal(lz.data.compute(), want)
    np.testing.assert_array_equal(lz.display.compute(), np.moveaxis(want, -1, 1))


@pytest.mark.parametrize(("shift", "moved"), [
    ((1, 0), {(0, 0, 0): 1, (0, 1, 5): 1}),  # frame 1's row 1 lands on row 0
    ((0, 1), {(1, 0, 5): 1}),  # its column 1 on column 0; (0, 1) is empty
    ((-1, -1), {(1, 1, 7): 1}),  # its pixel (0, 0) on (1, 1)
    ((2, 0), {}),  # off the grid
])
def test_hand_built_stream_aligned_counts(tmp_path, shift, moved):
    """Frame 1 moved by ``shift``: its events counted where the shift puts them, the
    others dropped, in every decoder (eager, lazy, energy planes, the reference)."""
    spec = _tiny_spec(tmp_path, [_stream_2x2x2()], tables=[[0, 9]])
    want = np.zeros((2, 2, 8), int)
    want[0, 0, [1, 2]] = 1
    want[1, 0, 3] = 1
    want[1, 1, 3] = 2
    for (y, x, c), n in moved.items():
        want[y, x, c] += n
    o = opts(align_frames=[[0, 0], list(shift)])
    np.testing.assert_array_equal(read_spectrum_images_reference(spec.read(o))[0], want)
    (e,) = read_spectrum_images(spec.read(o))
    np.testing.assert_array_equal(e.data, want)
    (lz,) = read_spectrum_images(spec.read(opts(lazy=True, align_frames=[[0, 0], list(shift)])))
    np.testing.assert_array_equal(lz.data.compute(), want)
    np.testing.assert_array_equal(lz.display.compute(), np.moveaxis(want, -1, 0))


def test_small_dtype_is_cast_like_astype_with_a_warning(tmp_path):
    # 300 events of channel 1 in pixel 0 of each frame: 600 summed
    frame = [1] * 300 + [S, S, S, S]
    spec = _tiny_spec(tmp_path, [frame + frame])
    ref = read_spectrum_images_reference(spec.read(opts()))[0]
    for lazy in (False, True):
        with pytest.warns(EMDWarning, match="600"):
            (r,) = read_spectrum_images(spec.read(opts(SI_dtype="uint8", lazy=lazy)))
            data = np.asarray(r.data)
        np.testing.assert_array_equal(data, ref.astype(np.uint8))
        assert data[0, 0, 1] == 600 % 256
    with pytest.warns(EMDWarning, match="600"):
        (r,) = read_spectrum_images(spec.read(opts(SI_dtype="int8")))
    np.testing.assert_array_equal(r.data, ref.astype(np.int8))
    (r,) = read_spectrum_images(spec.read(opts(SI_dtype="float16")))
    np.testing.assert_array_equal(r.data, ref.astype(np.float16))
    with warnings.catch_warnings():
        warnings.simplefilter("error", EMDWarning)
        (r,) = read_spectrum_images(spec.read(opts(SI_dtype="uint16")))
    assert r.data[0, 0, 1] == 600


# --- damaged streams -------------------------------------------------------------------


def test_channel_beyond_bincount_is_an_error(tmp_path):
    bad = _stream_2x2x2()
    bad[4] = 9  # bincount is 8
    spec = _tiny_spec(tmp_path, [bad], tables=[[0, 9]])
    with pytest.raises(EMDError, match="channel 9"):
        read_spectrum_images(spec.read(opts()))
    with pytest.raises(EMDError, match="channel 9"):
        read_spectrum_images(spec.read(opts(first_frame=0, last_frame=1)))
    (lz,) = read_spectrum_images(spec.read(opts(lazy=True)))  # opening does not decode
    with pytest.raises(EMDError, match="channel 9"):
        lz.data.compute()
    with pytest.raises(EMDError, match="channel 9"):
        lz.display[3].compute()


def test_bad_channel_names_its_detector_and_position_when_streams_are_joined(tmp_path):
    # two detectors' spans of frame 1 are joined for one scatter pass: the error must
    # still name the detector and the value's position in that detector's stream
    bad = _stream_2x2x2()
    bad[12] = 9  # frame 1, pixel (0,1) of the second detector
    spec = _tiny_spec(tmp_path, [_stream_2x2x2(), bad], tables=[[0, 9], [0, 9]])
    for kw in ({}, {"first_frame": 1, "last_frame": 2, "sum_frames": False}):
        with pytest.raises(EMDError, match=r"s1/Data holds channel 9 at value 12,"):
            read_spectrum_images(spec.read(opts(**kw)))


def test_bad_channel_position_is_absolute_in_a_partial_single_stream_read(tmp_path):
    # one detector, frame 1 only: the buffer starts inside the stream, and the error
    # still gives the value's position in the whole stream
    bad = _stream_2x2x2()
    bad[12] = 9
    spec = _tiny_spec(tmp_path, [bad], tables=[[0, 9]])
    with pytest.raises(EMDError, match=r"s0/Data holds channel 9 at value 12,"):
        read_spectrum_images(spec.read(opts(first_frame=1, last_frame=2, sum_frames=False)))


def test_truncated_stream_warns_and_zero_fills(tmp_path):
    full = _stream_2x2x2()
    spec = _tiny_spec(tmp_path, [full[:5]], tables=[[0, 9]])  # ends inside frame 0
    ref = read_spectrum_images_reference(spec.read(opts(sum_frames=False)))[0]
    with pytest.warns(EMDWarning, match="fewer"):
        (r,) = read_spectrum_images(spec.read(opts(sum_frames=False)))
    np.testing.assert_array_equal(r.data, ref)
    assert r.data[1].sum() == 0
    (lz,) = read_spectrum_images(spec.read(opts(sum_frames=False, lazy=True)))
    with pytest.warns(EMDWarning):
        np.testing.assert_array_equal(lz.data.compute(), ref)


def test_short_last_frame_is_normal(tmp_path):
    # a stopped acquisition: the last frame ends early (as in fei_emd_si.emd)
    spec = _tiny_spec(tmp_path, [_stream_2x2x2()[:12]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", EMDWarning)
        (r,) = read_spectrum_images(spec.read(opts(sum_frames=False)))
    np.testing.assert_array_equal(
        r.data, read_spectrum_images_reference(spec.read(opts(sum_frames=False)))[0])


def test_extra_pixels_warn_and_are_ignored(tmp_path):
    longer = [*_stream_2x2x2(), 1, S, 2, S, 3, S]
    spec = _tiny_spec(tmp_path, [longer], tables=[[0, 9]])
    ref = read_spectrum_images_reference(spec.read(opts(sum_frames=False)))[0]
    for lazy in (False, True):
        with pytest.warns(EMDWarning, match="more than"):
            (r,) = read_spectrum_images(spec.read(opts(sum_frames=False, lazy=lazy)))
            data = np.asarray(r.data)
        np.testing.assert_array_equal(data, ref)
        clear_caches()
    # one unclosed extra pixel (Velox starts the next frame) is silent
    spec1 = _tiny_spec(tmp_path, [[*_stream_2x2x2(), 4, 4]], name="one.emd")
    with warnings.catch_warnings():
        warnings.simplefilter("error", EMDWarning)
        (r,) = read_spectrum_images(spec1.read(opts()))
    np.testing.assert_array_equal(r.data, read_spectrum_images_reference(spec1.read(opts()))[0])


@pytest.mark.parametrize("table", [[0, 7], [0, 11], [0, 99], [3, 9], [0], [9, 0]])
def test_wrong_frame_table_warns_and_scans_the_stream(tmp_path, table):
    spec = _tiny_spec(tmp_path, [_stream_2x2x2()], tables=[table])
    ref = read_spectrum_images_reference(spec.read(opts(sum_frames=False)))[0]
    for kw in ({"sum_frames": False}, {"first_frame": 1, "sum_frames": False}):
        for lazy in (False, True):
            clear_caches()
            with pytest.warns(EMDWarning, match="FrameLocationTable"):
                (r,) = read_spectrum_images(spec.read(opts(lazy=lazy, **kw)))
                data = np.asarray(r.data)
            np.testing.assert_array_equal(data, ref[kw.get("first_frame", 0):])


def test_missing_stream_is_an_error(tmp_path):
    spec = _tiny_spec(tmp_path, [_stream_2x2x2()])
    bad = SIFile(spec.path, Streams(("/nope/Data",), ("X",), (None,)), Grid(2, 2, 2, 8))
    with pytest.raises(EMDError, match="missing"):
        read_spectrum_images(bad.read(opts()))
    with pytest.raises(EMDError, match="missing"):
        read_spectrum_images(bad.read(opts(lazy=True)))


# --- synthetic files: laziness, chunks, display ----------------------------------------


def test_lazy_open_reads_no_stream_and_chunks_are_rows(tmp_path):
    from napari_emd.formats.velox.stream import frames, planes
    from napari_emd.synthetic import write_velox_si

    info = write_velox_si(tmp_path / "s.emd", ny=40, nx=24, frames=3, detectors=2,
                          counts_per_pixel=3, keep_counts=True, seed=3)
    spec = info.file()
    clear_caches()
    (r,) = read_spectrum_images(spec.read(opts(lazy=True, sum_frames=False)))
    assert not frames._INDEXES and not planes._EVENTS  # nothing decoded yet
    assert r.data.shape == (3, 40, 24, 4096)
    assert r.display.shape == (3, 4096, 40, 24)
    assert r.display.chunks[1] == (1,) * 4096  # one task per energy plane
    # one frame: only that frame's lines (and the frame before, which checks where it
    # starts) are indexed: the frame table is used, the rest of the stream is not read
    np.testing.assert_array_equal(r.data[2].compute(), info.counts[:, 2].sum(0))
    assert len(frames._INDEXES) == 2
    for idx in frames._INDEXES.values():
        assert list(idx.have) == [False, True, True]
    # the display uses the event index; planes agree with the written counts
    want = np.moveaxis(info.counts.sum(0), -1, 1)
    for c in (0, 100, 180, 905, 4095):
        np.testing.assert_array_equal(r.display[2, c].compute(), want[2, c])


def test_graph_holds_no_open_handles(tmp_path):
    import pickle

    from napari_emd.synthetic import write_velox_si

    info = write_velox_si(tmp_path / "p.emd", ny=8, nx=8, frames=2, detectors=1)
    (r,) = read_spectrum_images(info.file().read(opts(lazy=True)))
    for arr in (r.data, r.display):
        blob = pickle.dumps(dict(arr.__dask_graph__()))
        assert b"h5py" not in blob
        assert str(tmp_path).encode() in blob


def test_synthetic_large_grid_rows_chunks_equal_reference(tmp_path, monkeypatch):
    from napari_emd.formats.velox.stream import lazy as lazy_module
    from napari_emd.synthetic import write_velox_si

    info = write_velox_si(tmp_path / "r.emd", ny=70, nx=33, frames=2, detectors=3,
                          counts_per_pixel=2, frame_table=False, final_separator=False,
                          seed=5)
    spec = info.file()
    monkeypatch.setattr(lazy_module, "DATA_CHUNK_BYTES", 33 * 4096 * 2 * 9)  # 9 rows
    for kw in ({}, {"sum_frames": False, "sum_EDS_detectors": False}):
        lazy = read_spectrum_images(spec.read(opts(lazy=True, **kw)))
        ref = read_spectrum_images_reference(spec.read(opts(**kw)))
        for lz, rf in zip(lazy, ref):
            assert lz.data.chunks[-3][0] == 9
            np.testing.assert_array_equal(lz.data.compute(scheduler="threads"), rf)


@pytest.mark.parametrize("table", [True, False])
def test_synthetic_every_option_equals_reference(tmp_path, table):
    """Every option on a multi-detector synthetic file (no real data needed): covers the
    joined multi-detector scatter of partial reads and the per-stream path of full ones."""
    from napari_emd.synthetic import write_velox_si

    info = write_velox_si(tmp_path / "o.emd", ny=9, nx=7, frames=3, detectors=3,
                          counts_per_pixel=6, frame_table=table, final_separator=table,
                          bincount=256, seed=11)
    spec = info.file()
    for kw in option_sets(spec.n_frames):
        if kw.get("rebin_energy") == 16:
            kw = {**kw, "rebin_energy": 4}
        o = opts(**kw)
        got = read_spectrum_images(spec.read(o))
        ref = read_spectrum_images_reference(spec.read(o))
        dt = np.dtype(o.SI_dtype or "uint16")
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_array_equal(g.data, r.astype(dt), err_msg=str(kw))


@pytest.mark.slow
def test_distributed_process_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    from napari_emd.synthetic import write_velox_si

    info = write_velox_si(tmp_path / "d.emd", ny=24, nx=20, frames=3, detectors=2,
                          keep_counts=True, seed=9)
    spec = info.file()
    (r,) = read_spectrum_images(spec.read(opts(lazy=True, sum_frames=False, rebin_energy=64)))
    want = info.counts.sum(0).reshape(3, 24, 20, 64, 64).sum(-1)
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        got = client.compute(r.data).result()
        disp = client.compute(r.display).result()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(disp, np.moveaxis(want, -1, 1))


@pytest.mark.napari
def test_napari_draws_energy_planes_from_the_lazy_display(make_napari_viewer, tmp_path):
    from napari_emd.synthetic import write_velox_si

    info = write_velox_si(tmp_path / "n.emd", ny=16, nx=12, frames=2, detectors=2,
                          keep_counts=True, seed=11)
    (r,) = read_spectrum_images(info.file().read(opts(lazy=True)))
    want = np.moveaxis(info.counts.sum((0, 1)), -1, 0)
    viewer = make_napari_viewer()
    layer = viewer.add_image(r.display, contrast_limits=(0, 5))
    for c in (905, 906, 2048):
        viewer.dims.set_current_step(0, c)
        layer.refresh()
        np.testing.assert_array_equal(np.asarray(layer._slice.image.raw), want[c])


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL_SI))
def test_flat_and_disk_indexes_agree(name):
    from napari_emd.formats.velox.stream import diskindex, planes

    spec = real_spec(name).read(opts())
    npix = spec.ny * spec.nx
    streams = tuple(range(len(spec.streams)))
    for first, last in ((0, spec.n_frames), (spec.n_frames - 1, spec.n_frames)):
        plan = Frames.every(first, last)
        flat = planes.FlatIndex([planes._flat_stream(spec, i, plan) for i in streams])
        disk = diskindex.build(spec, plan)
        for f in [None, *range(last - first)]:
            for lo, hi in ((0, 1), (150, 151), (200, 210), (900, 964), (0, spec.bincount)):
                np.testing.assert_array_equal(flat.plane(lo, hi, f, npix),
                                              disk.plane(lo, hi, f, streams, npix))


def test_display_with_flat_and_disk_index(tmp_path, monkeypatch):
    from napari_emd.formats.velox.stream import planes
    from napari_emd.synthetic import write_velox_si

    info = write_velox_si(tmp_path / "w.emd", ny=13, nx=9, frames=3, detectors=3,
                          keep_counts=True, seed=12)
    want = np.moveaxis(info.counts.sum(0), -1, 1)  # (frame, E, y, x)
    for flat_below in (10**12, 0):  # flat index, then the disk index
        clear_caches()
        monkeypatch.setattr(planes, "FLAT_INDEX_VALUES", flat_below)
        (r,) = read_spectrum_images(info.file().read(opts(lazy=True, sum_frames=False,
                                                      rebin_energy=16)))
        np.testing.assert_array_equal(
            r.display.compute(), want.reshape(3, 256, 16, 13, 9).sum(2))
        (s,) = read_spectrum_images(info.file().read(opts(lazy=True, first_frame=1)))
        np.testing.assert_array_equal(s.display[900:910].compute(),
                                      want[1:, 900:910].sum(0))
