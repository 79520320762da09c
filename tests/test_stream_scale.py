"""Spectrum images at scale (#22): streams indexed in bounded blocks, read frame by frame,
one pixel's spectrum from one scan line per frame, element maps from the energy planes,
and the eager read with ``rebin_energy`` never holding the full-resolution cube. Every
result is held to the numpy reference decoder (or the numpy line index)."""

from __future__ import annotations

import tracemalloc
import warnings

import h5py
import numpy as np
import pytest

import napari_emd
from napari_emd.errors import EMDWarning
from napari_emd.formats.velox.stream import (
    clear_caches,
    read_spectrum_images,
    read_spectrum_images_reference,
)
from napari_emd.formats.velox.stream import frames as frames_mod
from napari_emd.formats.velox.stream.frames import StreamIndex, index_blocks, index_lines
from napari_emd.formats.velox.stream.pixel import pixel_spectrum, pixel_values
from napari_emd.h5 import close_cached, open_h5
from napari_emd.numba_kernels import STREAM_KERNELS
from napari_emd.options import ReadOptions
from napari_emd.spectra import pixel_spectrum as record_pixel_spectrum
from napari_emd.spectra import window_map
from napari_emd.synthetic import SEPARATOR, write_velox_si


def _random_stream(rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    nx, n_lines = int(rng.integers(1, 6)), int(rng.integers(1, 8))
    values: list[int] = []
    for c in rng.poisson(rng.uniform(0, 3), int(rng.integers(0, nx * n_lines + 2 * nx + 2))):
        values += [*rng.integers(0, 100, c).tolist(), SEPARATOR]
    if values and rng.random() < 0.3:
        values.pop()  # an unclosed last pixel
    if rng.random() < 0.2:
        values += rng.integers(0, 100, 3).tolist()
    return np.array(values, np.uint16), nx, n_lines


@pytest.mark.parametrize("kernel", [False, True])
def test_index_blocks_equals_one_index_of_the_whole_stream(kernel):
    if kernel:
        STREAM_KERNELS.warm()
    rng = np.random.default_rng(3)
    for _ in range(200):
        buf, nx, n_lines = _random_stream(rng)
        want, seps, trailing = index_lines(buf, nx, n_lines)
        for block in (1, 2, 3, 7, 1000):
            got, pixels = index_blocks(lambda a, b, buf=buf: buf[a:b], buf.size, nx, n_lines,
                                       block)
            np.testing.assert_array_equal(got, want)
            assert pixels == seps + (trailing > 0)


def test_index_blocks_reads_at_most_about_a_block():
    buf = np.tile(np.array([5, 6, SEPARATOR], np.uint16), 3000)  # 3000 pixels
    sizes = []

    def read(a: int, b: int) -> np.ndarray:
        sizes.append(b - a)
        return buf[a:b]

    lines, pixels = index_blocks(read, buf.size, 10, 300, 100)
    assert pixels == 3000 and max(sizes) <= 100
    np.testing.assert_array_equal(lines, index_lines(buf, 10, 300)[0])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("scale")
    return write_velox_si(d / "s.emd", ny=12, nx=9, frames=4, detectors=2,
                          counts_per_pixel=3, bincount=64, seed=5, block_pixels=17)


def _damaged_copy(info, tmp_path, table):
    """A copy of ``info``'s file whose first stream's frame table is ``table`` (None:
    removed)."""
    import shutil

    path = tmp_path / f"t{len(list(tmp_path.iterdir()))}.emd"
    shutil.copy(info.path, path)
    with h5py.File(path, "r+") as f:
        name = info.frame_tables[0]
        del f[name]
        if table is not None:
            f.create_dataset(name, data=np.asarray(table, np.uint64)[:, None])
    return path


@pytest.mark.parametrize("case", ["table", "no-table", "wrong-table"])
def test_stream_index_in_small_blocks_equals_today(small, tmp_path, monkeypatch, case):
    """Spans and frame by frame reads equal the whole stream's numpy index, with the
    index built in blocks far smaller than the stream; a wrong table is warned about."""
    monkeypatch.setattr(frames_mod, "INDEX_BLOCK", 50)
    path = small.path
    if case != "table":
        with h5py.File(small.path) as f:
            table = f[small.frame_tables[0]][:, 0].astype(np.int64)
        path = _damaged_copy(small, tmp_path, None if case == "no-table" else
                             [0, int(table[1]) + 3, *table[2:]])
    from napari_emd.formats.velox.siread import SIFile, Streams

    src = small.file().source
    tables = (None, *src.frame_tables[1:]) if case == "no-table" else src.frame_tables
    spec = SIFile(str(path), Streams(src.paths, src.detectors, tables),
                  small.file().grid).read(ReadOptions())
    with h5py.File(path) as f:
        whole = f[small.streams[0]][:, 0]
    want = index_lines(whole, small.nx, small.frames * small.ny)[0]
    with open_h5(path) as f:
        for f0, f1 in [(0, 4), (1, 3), (2, 4), (3, 4)]:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                idx = StreamIndex(spec, 0, lambda: frames_mod.stream_dataset(
                    f, small.streams[0], str(path)))
                got = list(idx.frames(f0, f1))
                buf, a, lines = idx.span(f0, f1)
            warned = [w for w in caught if issubclass(w.category, EMDWarning)]
            # the wrong start of frame 1 shows when frame 0, 1 or 2 is read with it
            assert bool(warned) == (case == "wrong-table" and f0 <= 2), (f0, warned)
            ny = small.ny
            assert a == want[f0 * ny]
            np.testing.assert_array_equal(buf, whole[want[f0 * ny] : want[f1 * ny]])
            for fr, vals, start in got:
                assert start == want[fr * ny]
                np.testing.assert_array_equal(vals, whole[start : want[(fr + 1) * ny]])
            assert [g[0] for g in got] == list(range(f0, f1))
            done = slice(f0 * ny, f1 * ny + 1)
            np.testing.assert_array_equal(lines[done], want[done])


def test_pixel_values():
    line = np.array([1, 2, SEPARATOR, SEPARATOR, 7, SEPARATOR, 9], np.uint16)
    assert pixel_values(line, 0).tolist() == [1, 2]
    assert pixel_values(line, 1).tolist() == []
    assert pixel_values(line, 2).tolist() == [7]
    assert pixel_values(line, 3).tolist() == [9]  # the unclosed last pixel
    assert pixel_values(line, 5).tolist() == []


OPTIONS = [
    {},
    {"sum_frames": False},
    {"first_frame": 1, "last_frame": 3},
    {"exclude_frames": [2]},
    {"rebin_energy": 4},
    {"rebin_energy": 8, "SI_dtype": "uint8"},
    {"SI_dtype": "float32"},
    {"detectors": [1]},
    {"sum_EDS_detectors": False},
    {"align_frames": [[0, 0], [1, -2], [-1, 0], [0, 3]]},
    {"align_frames": [[0, 0], [2, 1], [0, 0], [-3, -1]], "sum_frames": False},
]


@pytest.mark.parametrize("kw", OPTIONS, ids=[str(k) for k in OPTIONS])
def test_pixel_spectrum_equals_the_reference(small, kw):
    clear_caches()
    spec = small.file().read(ReadOptions(**kw))
    want = read_spectrum_images_reference(spec)
    lazy = read_spectrum_images(small.file().read(ReadOptions(lazy=True, **kw)))
    assert len(lazy) == len(want)
    for res, ref in zip(lazy, want):
        ref = ref.astype(spec.dtype)
        for index in np.ndindex(*ref.shape[:-1]):
            got = res.pixel(index)
            assert got.dtype == spec.dtype
            np.testing.assert_array_equal(got, ref[index], err_msg=f"{kw} {index}")


def test_pixel_spectrum_indexes_like_numpy(small):
    spec = small.file().read(ReadOptions(lazy=True))
    want = read_spectrum_images_reference(small.file().read(ReadOptions()))[0]
    np.testing.assert_array_equal(pixel_spectrum(spec, (0, 1), (-1, -2)), want[-1, -2])
    for bad in [(small.ny, 0), (0, -small.nx - 1), (1, 2, 3)]:
        with pytest.raises(IndexError):
            pixel_spectrum(spec, (0, 1), bad)
    per = small.file().read(ReadOptions(lazy=True, sum_frames=False))
    want = read_spectrum_images_reference(small.file().read(ReadOptions(sum_frames=False)))
    np.testing.assert_array_equal(pixel_spectrum(per, (0, 1), (-1, 2, 3)), want[0][-1, 2, 3])
    with pytest.raises(IndexError):
        pixel_spectrum(per, (0, 1), (small.frames, 0, 0))


@pytest.mark.parametrize("kw", [{}, {"sum_frames": False, "rebin_energy": 2},
                                {"align_frames": [[0, 0], [1, 1], [0, 0], [0, -1]]}])
def test_records_use_the_pixel_and_plane_paths(small, kw):
    """The spectrum viewer's pixel spectrum and element map of a lazy record equal the
    eager cube's (through ``pixel_reader`` and the energy-first display)."""
    clear_caches()
    (lazy,) = [d for d in napari_emd.read_datasets(small.path, lazy=True, **kw)
               if d.kind == "spectrum_image"]
    (eager,) = [d for d in napari_emd.read_datasets(small.path, **kw)
                if d.kind == "spectrum_image"]
    assert lazy.pixel_reader is not None and eager.pixel_reader is None
    cube = np.asarray(eager.data)
    for index in [(0, 0), (5, 4), (11, 8)]:
        index = (1, *index) if cube.ndim == 4 else index
        np.testing.assert_array_equal(record_pixel_spectrum(lazy, index), cube[index])
        np.testing.assert_array_equal(record_pixel_spectrum(eager, index), cube[index])
    for i0, i1 in [(3, 9), (0, 1), (20, 32)]:
        got = window_map(lazy, i0, i1)
        assert "display" in got.name or "emd-si-display" in str(got.dask.keys())
        np.testing.assert_array_equal(np.asarray(got), cube[..., i0:i1].sum(-1))
        np.testing.assert_array_equal(window_map(eager, i0, i1), cube[..., i0:i1].sum(-1))


def test_eager_rebin_never_allocates_the_full_resolution_cube(tmp_path):
    """With ``rebin_energy=16`` the eager read's allocations stay far below the cube of
    every channel: the events are binned while they are counted."""
    info = write_velox_si(tmp_path / "r.emd", ny=64, nx=64, frames=2, detectors=2,
                          counts_per_pixel=2, bincount=4096, seed=1)
    full = info.ny * info.nx * info.bincount * 8  # the int64 full-resolution cube
    binned = full // 16
    napari_emd.read_datasets(info.path, rebin_energy=16)  # kernels and imports warm
    tracemalloc.start()
    try:
        (si,) = [d for d in napari_emd.read_datasets(info.path, rebin_energy=16,
                                                     SI_dtype="int64")
                 if d.kind == "spectrum_image"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert si.data.shape == (64, 64, 256) and si.data.nbytes == binned
    streams = sum(info.stream_lengths) * 2
    assert peak < binned + streams + 8 * 2**20 < full // 2, (peak, full)


def _fresh_index(info, **kw):
    """The shared line index of ``info``'s first stream, as a new process would make it."""
    clear_caches()
    spec = info.file().read(ReadOptions(lazy=True, **kw))
    return frames_mod.stream_index(spec, 0)


def test_finished_line_index_is_kept_on_disk(tmp_path, monkeypatch):
    """Once every frame of a stream is indexed, a reopen (a new process) takes the line
    index from the disk cache: a pixel spectrum then reads one line per frame. A corrupt
    entry is detected, removed and built again; with the cache off nothing is kept."""
    monkeypatch.setenv("NAPARI_EMD_CACHE", str(tmp_path / "cache"))
    info = write_velox_si(tmp_path / "c.emd", ny=10, nx=7, frames=3, detectors=1,
                          counts_per_pixel=2, bincount=32, seed=9)
    idx = _fresh_index(info)
    with idx.lock:
        idx._look()
    assert not idx.have.any()
    want = idx.ensure(0, 3).copy()
    entries = list((tmp_path / "cache").glob("*.nemd"))
    assert len(entries) == 1
    again = _fresh_index(info)
    opened = []
    opener = again.opener
    again.opener = lambda: opened.append(1) or opener()
    np.testing.assert_array_equal(again.ensure(0, 3), want)
    assert len(opened) == 1  # the stream's length and table: no frame was read
    # flip a byte of the payload (the lines): found out, removed, rebuilt
    raw = bytearray(entries[0].read_bytes())
    raw[-64] ^= 0xFF
    entries[0].write_bytes(bytes(raw))
    bad = _fresh_index(info)
    with bad.lock:
        bad._look()
    assert not bad.have.any()
    np.testing.assert_array_equal(bad.ensure(0, 3), want)
    monkeypatch.setenv("NAPARI_EMD_CACHE", "off")
    off = _fresh_index(info)
    np.testing.assert_array_equal(off.ensure(0, 3), want)
    clear_caches()


def test_a_damaged_stream_is_not_kept_and_warns_every_time(small, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_EMD_CACHE", str(tmp_path / "cache"))
    with h5py.File(small.path) as f:
        table = f[small.frame_tables[0]][:, 0].astype(np.int64)
    path = _damaged_copy(small, tmp_path, [0, int(table[1]) + 3, *table[2:]])
    for _ in range(2):
        clear_caches()
        (lazy,) = [d for d in napari_emd.read_datasets(path, lazy=True)
                   if d.kind == "spectrum_image"]
        with pytest.warns(EMDWarning, match="FrameLocationTable"):
            record_pixel_spectrum(lazy, (3, 3))
    # the other detector's stream is whole: only its index is kept
    assert len(list((tmp_path / "cache").glob("*.nemd"))) == 1
    clear_caches()


@pytest.mark.parametrize("kw", OPTIONS, ids=[str(k) for k in OPTIONS])
def test_eager_read_of_big_streams_in_frame_blocks_equals_the_reference(small, monkeypatch,
                                                                        kw):
    """A stream over ``SPAN_VALUES`` is read frame by frame and scattered in blocks of
    whole frames: the cube is the reference decoder's, for every option."""
    from napari_emd.formats.velox.stream import eager

    monkeypatch.setattr(eager, "SPAN_VALUES", 40)  # about one scan line: a frame a block
    spec = small.file().read(ReadOptions(**kw))
    want = read_spectrum_images_reference(spec)
    got = read_spectrum_images(spec)
    for res, ref in zip(got, want, strict=True):
        np.testing.assert_array_equal(res.data, ref.astype(spec.dtype), err_msg=str(kw))
    monkeypatch.setattr(eager, "SPAN_VALUES", 700)  # a few frames a block
    for res, ref in zip(read_spectrum_images(spec), want, strict=True):
        np.testing.assert_array_equal(res.data, ref.astype(spec.dtype), err_msg=str(kw))


def test_a_line_index_kept_for_an_older_file_is_never_used(tmp_path, monkeypatch):
    """The file rewritten at the same path (same grid, other counts): the kept index is of
    another file identity, so the new one is indexed and its pixels are right."""
    monkeypatch.setenv("NAPARI_EMD_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "same.emd"
    kw = dict(ny=10, nx=7, frames=3, detectors=1, bincount=64)
    old = write_velox_si(path, counts_per_pixel=2, seed=1, **kw)
    _fresh_index(old).ensure(0, 3)
    assert list((tmp_path / "cache").glob("*.nemd"))
    close_cached(str(path))
    new = write_velox_si(path, counts_per_pixel=5, seed=2, keep_counts=True, **kw)
    idx = _fresh_index(new)
    with idx.lock:
        idx._look()
    assert not idx.have.any()  # nothing taken from the old file's entry
    spec = new.file().read(ReadOptions(lazy=True))
    want = new.counts.sum((0, 1))
    for yx in [(0, 0), (4, 6), (9, 3)]:
        np.testing.assert_array_equal(pixel_spectrum(spec, (0,), yx), want[yx])
    clear_caches()
