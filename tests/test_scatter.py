"""The eager scatter: row blocks on several threads, joined and per-stream passes, always
the reference decoder's cube."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from napari_emd.formats.velox.stream import eager as eager_module
from napari_emd.formats.velox.stream import (
    read_spectrum_images,
    read_spectrum_images_reference,
)
from napari_emd.options import ReadOptions
from napari_emd.synthetic import write_velox_si


@pytest.mark.parametrize(
    ("ny", "nx", "opts"),
    [
        # one frame of two: the detectors' spans are joined for one pass
        (96, 96, dict(sum_frames=False, first_frame=1, last_frame=2)),
        # every frame summed over the detectors: one stream at a time
        (30, 300, dict(sum_frames=True)),
        # one cube per detector
        (30, 300, dict(sum_frames=True, sum_EDS_detectors=False)),
    ],
)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_eager_scatter_equals_reference(tmp_path, monkeypatch, ny, nx, opts, threads):
    """Whatever the thread count (each thread takes blocks of output rows), the joined
    multi-detector pass and the stream-by-stream passes give the reference cubes."""
    info = write_velox_si(tmp_path / "m.emd", ny=ny, nx=nx, frames=2, detectors=2,
                          counts_per_pixel=3, seed=5)
    spec = info.file()
    o = ReadOptions(**opts)
    monkeypatch.setattr(eager_module, "n_threads", lambda: threads)
    refs = read_spectrum_images_reference(spec.read(o))
    got = read_spectrum_images(spec.read(o))
    assert len(got) == len(refs)
    for g, ref in zip(got, refs, strict=True):
        np.testing.assert_array_equal(g.data, ref)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise is Linux's")
def test_big_eager_outputs_ask_for_small_pages():
    """Outputs of 64 MiB and more get 4 KiB pages (``nh`` in the mapping's VmFlags): the
    scatter then faults in only the pages it writes."""
    from napari_emd.libc import small_pages

    arr = np.zeros(80 * 2**20, np.uint8)
    assert small_pages(arr)
    addr = arr.ctypes.data + arr.nbytes // 2
    flags = None
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            if "-" in line.split()[0] and ":" not in line.split()[0]:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                inside = lo <= addr < hi
            elif inside and line.startswith("VmFlags:"):
                flags = line.split()[1:]
                break
    assert flags is not None and "nh" in flags


def test_a_cancelled_eager_read_stops(tmp_path):
    """The loader's Cancel sets an event; the decoder stops at the next block."""
    import threading

    from napari_emd.cancel import cancellation
    from napari_emd.errors import Cancelled

    info = write_velox_si(tmp_path / "c.emd", ny=40, nx=40, frames=2, detectors=2, seed=9)
    event = threading.Event()
    event.set()
    with cancellation(event), pytest.raises(Cancelled):
        read_spectrum_images(info.file().read(ReadOptions()))
    (cube,) = read_spectrum_images(info.file().read(ReadOptions()))  # no event: it reads
    assert cube.data.sum() > 0


def _rss_kib() -> int:
    """The process's resident KiB (/proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_touch_pages_faults_in_one_page_per_stride_and_stops():
    """The fault-ahead kernel maps one page per pixel spectrum (``stride`` bytes) and
    writes nothing but zeros; a set stop flag stops it before it starts."""
    from napari_emd.libc import small_pages
    from napari_emd.numba_kernels import STREAM_KERNELS

    touch = STREAM_KERNELS.warm().touch_pages
    pixel = 8192  # 4096 uint16 channels: two pages, the first one is touched
    arr = np.zeros(20000 * pixel, np.uint8)
    small_pages(arr)
    stop = np.ones(1, np.uint8)
    assert touch(arr, pixel, stop) == 0
    before = _rss_kib()
    stop[0] = 0
    assert touch(arr, pixel, stop) == arr.size
    grown = _rss_kib() - before
    assert 19990 * 4 <= grown < 20000 * 4 * 1.1  # one 4 KiB page per pixel, not two
    assert not arr.any()


def test_fault_ahead_only_for_dense_counts_and_stopped_when_the_block_ends(monkeypatch):
    """Pages are touched ahead only when (nearly) every pixel's first page gets a count
    anyway (no memory added); the touching has stopped once the block is left."""
    from napari_emd.formats.velox.stream import pages
    from napari_emd.numba_kernels import STREAM_KERNELS

    kernels = STREAM_KERNELS.module

    out3 = np.zeros((64, 64, 4096), np.uint16)
    assert not pages.worth_it(out3, 64 * 64)  # one X-ray per pixel: sparse
    assert pages.worth_it(out3, 4 * 64 * 64)
    assert not pages.worth_it(out3[:, :, :100], 10**9)  # not contiguous

    calls = []
    real = kernels().touch_pages

    def spy(mem, stride, stop):
        calls.append((mem.size, stride))
        reached = real(mem, stride, stop)
        calls.append(int(stop[0]))
        return reached

    monkeypatch.setattr(kernels(), "touch_pages", spy)
    with pages.fault_ahead(out3, 64 * 64):
        pass
    assert calls == []
    with pages.fault_ahead(out3, 8 * 64 * 64):
        pass
    assert calls[0] == (out3.nbytes, 8192) and len(calls) == 2  # it ran, and returned
    assert not out3.any()


def test_one_dense_frame_is_faulted_ahead_and_equals_the_reference(tmp_path, monkeypatch):
    """The one-frame eager read touches the output ahead while it reads the spans, and
    still gives the reference decoder's cube."""
    from napari_emd.numba_kernels import STREAM_KERNELS

    kernels = STREAM_KERNELS.module

    info = write_velox_si(tmp_path / "d.emd", ny=64, nx=64, frames=3, detectors=2,
                          counts_per_pixel=3, seed=7)
    spec = info.file()
    o = ReadOptions(sum_frames=False, first_frame=1, last_frame=2)
    touched = []
    real = kernels().touch_pages
    monkeypatch.setattr(kernels(), "touch_pages",
                        lambda mem, stride, stop: touched.append(stride) or
                        real(mem, stride, stop))
    (got,) = read_spectrum_images(spec.read(o))
    (ref,) = read_spectrum_images_reference(spec.read(o))
    assert touched  # 6 X-rays per pixel: dense enough
    np.testing.assert_array_equal(got.data, ref)
