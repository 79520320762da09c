"""Reading stream datasets by file offset (``napari_emd.rawchunks``): the same values as
h5py for every real spectrum stream and for every storage layout written here; no map
where the bytes are not stored plainly; a truncated file is an error naming it."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest

from conftest import SI_FILES, real_file
from napari_emd import rawchunks
from napari_emd.errors import EMDError

needs_iter = pytest.mark.skipif(not hasattr(h5py.h5d.DatasetID, "chunk_iter"),
                                reason="this h5py cannot list chunks (reads go through h5py)")


def _spans(n: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    out = [(0, n), (1, n - 1), (n // 3, n // 3 + 1), (0, 0), (n - 1, n)]
    out += [tuple(sorted(int(v) for v in rng.integers(0, n + 1, 2))) for _ in range(20)]
    return [(a, b) for a, b in out if 0 <= a <= b <= n]


def _same(ds) -> None:
    m = rawchunks.chunk_map(ds)
    assert m is not None, ds.name
    flat = ds[...].reshape(-1)
    for a, b in _spans(ds.shape[0]):
        np.testing.assert_array_equal(rawchunks.read(m, a, b), flat[a:b], err_msg=str((a, b)))


@needs_iter
@pytest.mark.parametrize("name", SI_FILES)
def test_every_real_stream_reads_the_same(name):
    with h5py.File(real_file(name), "r") as f:
        found: list = []
        f.visititems(lambda n, o: found.append(o) if isinstance(o, h5py.Dataset)
                     and "SpectrumStream" in n and n.endswith("/Data") else None)
        for ds in found:
            _same(ds)
        assert found


@needs_iter
@pytest.mark.parametrize("layout", ["contiguous", "chunked", "column", "interleaved",
                                    "unwritten", "bigendian"])
def test_layouts(tmp_path, layout):
    rng = np.random.default_rng(3)
    values = rng.integers(0, 65535, 100_003, dtype=np.uint16)
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        if layout == "contiguous":
            f.create_dataset("d", data=values)
        elif layout == "chunked":
            f.create_dataset("d", data=values, chunks=(4096,))
        elif layout == "column":  # Velox: (N, 1), chunks (8192, 1)
            f.create_dataset("d", data=values[:, None], chunks=(8192, 1))
        elif layout == "interleaved":  # chunks of two streams written in turn
            a = f.create_dataset("d", (0, 1), np.uint16, chunks=(1000, 1), maxshape=(None, 1))
            b = f.create_dataset("e", (0, 1), np.uint16, chunks=(1000, 1), maxshape=(None, 1))
            for i in range(0, values.size, 1000):
                for ds in (a, b):
                    part = values[i : i + 1000, None]
                    ds.resize(ds.shape[0] + part.shape[0], axis=0)
                    ds[-part.shape[0]:] = part
                    f.flush()
        elif layout == "unwritten":  # chunks never written read as the fill value
            ds = f.create_dataset("d", (values.size,), np.uint16, chunks=(1000,),
                                  fillvalue=7)
            ds[:30_000] = values[:30_000]
            ds[60_000:] = values[60_000:]
        else:
            f.create_dataset("d", data=values.astype(">u2"), chunks=(5000,))
    with h5py.File(path, "r") as f:
        _same(f["d"])
        if layout == "interleaved":
            m = rawchunks.chunk_map(f["d"])
            assert np.any(np.diff(m.offsets) != m.chunk_bytes)  # really interleaved


@needs_iter
def test_parallel_reads(tmp_path):
    values = np.arange(2_000_000, dtype=np.uint16)
    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=values[:, None], chunks=(8192, 1))
    with h5py.File(path, "r") as f:
        m = rawchunks.chunk_map(f["d"])
    spans = _spans(values.size, seed=5) * 4
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda ab: rawchunks.read(m, *ab), spans))
    for (a, b), g in zip(spans, got):
        np.testing.assert_array_equal(g, values[a:b])


def test_not_plainly_stored_gives_no_map(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("gzip", data=np.arange(10_000, dtype=np.uint16), chunks=(1000,),
                         compression="gzip")
        f.create_dataset("shuffle", data=np.arange(10_000, dtype=np.uint16),
                         chunks=(1000,), shuffle=True)
        f.create_dataset("two", data=np.zeros((100, 2), np.uint16))
        f.create_dataset("float", data=np.zeros(100, np.float32))
    with h5py.File(path, "r") as f:
        for name in ("gzip", "shuffle", "two", "float"):
            assert rawchunks.chunk_map(f[name]) is None, name


@needs_iter
def test_truncated_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=np.arange(200_000, dtype=np.uint16), chunks=(8192,))
    with h5py.File(path, "r") as f:
        m = rawchunks.chunk_map(f["d"])
    end = int(m.offsets.max())
    os.truncate(path, end + 100)
    with pytest.raises(EMDError, match="truncated") as err:
        rawchunks.read(m, 0, 200_000)
    assert str(path.resolve()) in str(err.value) or path.name in str(err.value)


@needs_iter
def test_velox_streams_are_read_by_offset(tmp_path, monkeypatch):
    """Big reads of a Velox stream go straight to the file (the chunks listed at the first
    one); small ones (a scan line for a hovered pixel) do not list them."""
    from napari_emd.formats.velox.stream import clear_caches, frames
    from napari_emd.options import ReadOptions
    from napari_emd.synthetic import write_velox_si

    info = write_velox_si(tmp_path / "s.emd", ny=8, nx=6, frames=2, detectors=2,
                          bincount=64, seed=2)
    spec = info.file().read(ReadOptions(lazy=True))
    with h5py.File(info.path, "r") as f:
        stream = f[spec.streams[0]][...].reshape(-1)
    clear_caches()
    index = frames.stream_index(spec, 0)
    buf, _, _ = index.span(0, 2)
    assert index.chunks is None and index.mapped is False  # small: through h5py
    np.testing.assert_array_equal(buf, stream[: buf.size])
    clear_caches()
    monkeypatch.setattr(frames, "RAW_READS_FROM", 0)
    index = frames.stream_index(spec, 0)
    buf, _, _ = index.span(0, 2)
    assert index.chunks is not None  # not through h5py and its lock
    np.testing.assert_array_equal(buf, stream[: buf.size])
