"""The eager output's page pre-faulting (``napari_emd._memory``): always zeros, on every
path, and the switch to 4 KiB pages really reaches the kernel."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from napari_emd import _memory, _stream
from napari_emd._memory import empty_small_pages, zeros_prefaulted


def _vm_flags(addr: int) -> list[str]:
    """The VmFlags of the mapping holding ``addr``, from /proc/self/smaps."""
    flags: list[str] = []
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= addr < hi
            elif inside and head == "VmFlags:":
                flags = line.split()[1:]
    return flags


@pytest.mark.parametrize("nbytes", [0, 4096 * 3 + 2, 80 * 2**20 + 6])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("huge", [True, False])
@pytest.mark.parametrize("slow", [0.0, 1.0])
@pytest.mark.parametrize("dtype", ["uint16", "uint32", "float64"])
def test_zeros_on_every_path(monkeypatch, nbytes, threads, huge, slow, dtype):
    """Zeros whether huge pages are faulted in, switched after a few, or not used."""
    monkeypatch.setattr(_memory, "HUGE_PAGES", huge and _memory.HUGE_PAGES)
    monkeypatch.setattr(_memory, "SLOW_HUGE_PAGE_S", slow)
    dt = np.dtype(dtype)
    shape = (max(0, nbytes // dt.itemsize // 6), 2, 3)
    with ThreadPoolExecutor(threads) as ex:
        out, futs = zeros_prefaulted(shape, dt, threads, ex.submit)
        for fu in futs:
            fu.result()
    assert out.shape == shape and out.dtype == dt
    assert not out.any()
    out[...] = 1  # every page writable
    assert int(out.sum()) == out.size


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _memory.HUGE_PAGES,
                    reason="needs Linux with transparent huge pages")
def test_slow_huge_pages_switch_the_rest_to_small_pages(monkeypatch):
    """With every huge page counted as slow, each thread's range after its first few
    2 MiB steps is marked no-huge-page in the kernel's mapping ("nh" in
    /proc/self/smaps), and left untouched for the writers."""
    monkeypatch.setattr(_memory, "SLOW_HUGE_PAGE_S", 0.0)
    with ThreadPoolExecutor(2) as ex:
        out, futs = zeros_prefaulted((96 * 2**20,), np.dtype(np.uint8), 2, ex.submit)
        for fu in futs:
            fu.result()
    assert not out.any()
    assert "nh" in _vm_flags(out.ctypes.data + out.nbytes - 4 * 2**20)
    assert "nh" in _vm_flags(out.ctypes.data + out.nbytes // 2 - 4 * 2**20)


def test_eager_read_equal_with_and_without_prefaulting(tmp_path, monkeypatch):
    """An output above the pre-fault size (here 72 MiB), read with huge pages faulted in
    ahead, switched to small pages, and with pre-faulting off: the same cube as the
    reference decoder."""
    from napari_emd._options import ReadOptions
    from napari_emd._stream import read_spectrum_images, read_spectrum_images_reference
    from napari_emd.testing import write_velox_si

    info = write_velox_si(tmp_path / "m.emd", ny=96, nx=96, frames=2, detectors=2,
                          counts_per_pixel=3, seed=5)
    spec = info.spec()
    o = ReadOptions(sum_frames=False, first_frame=1, last_frame=2)
    (ref,) = read_spectrum_images_reference(spec, o)
    assert ref.astype(np.uint16).nbytes > _memory.MIN_PREFAULT_BYTES
    for pretouch, slow in ((True, 0.0), (True, 1.0), (False, 1.0)):
        monkeypatch.setattr(_stream, "PRETOUCH", pretouch)
        monkeypatch.setattr(_memory, "SLOW_HUGE_PAGE_S", slow)
        (got,) = read_spectrum_images(spec, o)
        np.testing.assert_array_equal(got.data, ref)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _memory.HUGE_PAGES,
                    reason="needs Linux with transparent huge pages")
def test_read_buffers_take_small_pages():
    """Stream read buffers from 4 MiB up are marked no-huge-page, smaller ones are left
    alone (numpy asks no huge pages for them)."""
    big = empty_small_pages(5 * 2**20, np.uint16)
    assert big.shape == (5 * 2**20,) and big.dtype == np.uint16
    assert "nh" in _vm_flags(big.ctypes.data + big.nbytes // 2)
    small = empty_small_pages(1000, np.uint16)
    assert small.shape == (1000,)
