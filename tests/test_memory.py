"""How the eager output's pages get faulted in (``napari_emd._memory.HugePageProbe`` and
the scatter that drives it): the output stays exact on every path, and the switch to
4 KiB pages really reaches the kernel."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from napari_emd import _memory, _stream
from napari_emd._memory import FaultAhead, HugePageProbe, empty_small_pages
from napari_emd._options import ReadOptions
from napari_emd._stream import read_spectrum_images, read_spectrum_images_reference
from napari_emd.testing import write_velox_si

needs_thp = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _memory.HUGE_PAGES,
    reason="needs Linux with transparent huge pages",
)


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


@pytest.mark.parametrize("nbytes", [0, 4096 * 3 + 2, 9 * 2**20 + 6])
@pytest.mark.parametrize("huge", [True, False])
@pytest.mark.parametrize("slow", [0.0, 1.0])
@pytest.mark.parametrize("dtype", ["uint16", "float64"])
def test_probe_leaves_zeros_on_every_path(monkeypatch, nbytes, huge, slow, dtype):
    """Probing a fresh array in steps, with huge pages kept, switched after a few, or
    not used: it stays all zeros and every page stays writable."""
    monkeypatch.setattr(_memory, "HUGE_PAGES", huge and _memory.HUGE_PAGES)
    monkeypatch.setattr(_memory, "SLOW_HUGE_PAGE_S", slow)
    dt = np.dtype(dtype)
    out = np.zeros(nbytes // dt.itemsize, dt)
    half = out.nbytes // 2
    for lo, hi in ((0, half), (half, out.nbytes)):
        probe = HugePageProbe(out, lo, hi)
        for upto in range(lo, hi + 3 * 2**20, 3 * 2**20 // 2):
            probe.advance(upto)
        assert probe.next >= hi or not probe.active
    assert not out.any()
    out[...] = 1
    assert int(out.sum()) == out.size


@needs_thp
def test_slow_huge_pages_switch_the_rest_to_small_pages(monkeypatch):
    """With every huge page counted as slow, the rest of the range after the switch is
    marked no-huge-page in the kernel's mapping ("nh" in /proc/self/smaps) and left to
    the writer; the range before it is not."""
    monkeypatch.setattr(_memory, "SLOW_HUGE_PAGE_S", 0.0)
    out = np.zeros(96 * 2**20, np.uint8)
    probe = HugePageProbe(out, 0, out.nbytes)
    probe.advance(out.nbytes)
    assert not probe.active and probe.slow == _memory.SLOW_PAGES_TO_SWITCH
    assert probe.next <= (_memory.SLOW_PAGES_TO_SWITCH + 1) * _memory.HUGE
    assert "nh" in _vm_flags(out.ctypes.data + out.nbytes - 4 * 2**20)
    assert "nh" not in _vm_flags(out.ctypes.data)
    assert not out.any()


@needs_thp
def test_cheap_huge_pages_are_all_probed(monkeypatch):
    """Where no huge page counts as slow, the probe faults in every one of its range,
    and nothing is switched."""
    monkeypatch.setattr(_memory, "SLOW_HUGE_PAGE_S", 1.0)
    out = np.zeros(20 * 2**20, np.uint8)
    probe = HugePageProbe(out, 2**20, out.nbytes)
    probe.advance(out.nbytes)
    assert probe.active and probe.slow == 0 and probe.next == out.nbytes
    assert "nh" not in _vm_flags(out.ctypes.data + out.nbytes // 2)


def _toucher(kind):
    if kind == "numba":
        from napari_emd import _stream_kernels

        return _stream_kernels.touch_every
    return None


@pytest.mark.parametrize("touch", ["numpy", "numba"])
@pytest.mark.parametrize("huge", [True, False])
@pytest.mark.parametrize("slow", [0.0, 1.0])
@pytest.mark.parametrize("unit", [1000, 8192, 3 * 8192 + 6])
def test_fault_ahead_covers_the_ranges_and_leaves_zeros(monkeypatch, huge, slow, unit, touch):
    """Left to run to the end, the worker has probed every huge page of both ranges
    (cheap ones) or switched them all to small pages and touched its way through them
    (slow ones, or no huge pages at all); the array is still all zeros."""
    monkeypatch.setattr(_memory, "HUGE_PAGES", huge and _memory.HUGE_PAGES)
    monkeypatch.setattr(_memory, "SLOW_HUGE_PAGE_S", slow)
    out = np.zeros(40 * 2**20 + 12, np.uint8)
    ranges = [(0, 20 * 2**20 + 8), (20 * 2**20 + 8, out.nbytes)]
    with ThreadPoolExecutor(1) as ex:
        ahead = FaultAhead(out, ranges, unit, ex.submit, touch=_toucher(touch))
        ahead._future.result()  # ran out of work
        probes = ahead.stop()
    assert [(p.lo, p.hi) for p in probes] == ranges
    for p in probes:
        if p.active:
            assert huge and _memory.HUGE_PAGES and slow and p.next == p.hi
        else:
            assert p.touched == p.hi
    if huge and _memory.HUGE_PAGES and not slow:
        assert sum(p.slow for p in probes) == _memory.SLOW_PAGES_TO_SWITCH
        assert "nh" in _vm_flags(out.ctypes.data + out.nbytes - 4 * 2**20)
    assert not out.any()


@pytest.mark.parametrize("touch", ["numpy", "numba"])
def test_fault_ahead_stops_when_asked(monkeypatch, touch):
    """``stop`` returns only once the worker has finished its step, and the writers
    get the probes where it left them."""
    monkeypatch.setattr(_memory, "SLOW_HUGE_PAGE_S", 0.0)
    out = np.zeros(256 * 2**20, np.uint8)
    with ThreadPoolExecutor(1) as ex:
        ahead = FaultAhead(out, [(0, out.nbytes)], 8192, ex.submit, touch=_toucher(touch))
        probes = ahead.stop()
        assert ahead._future.done()
    assert probes[0].touched <= out.nbytes
    assert not out.any()


def test_touch_kernel_stops_mid_range_when_flagged():
    """The kernel sees a flag set by another thread while it runs (the compiler must not
    read it once before the loop): a 1 GiB walk one page at a time (0.1-2 s of faults)
    stops before its end, at a page it had reached."""
    from napari_emd import _stream_kernels

    buf = np.zeros(2**30, np.uint8)  # virtual: only touched pages get memory
    flag = np.zeros(1, np.uint8)
    got = []
    worker = threading.Thread(
        target=lambda: got.append(_stream_kernels.touch_every(buf, 0, buf.size, 4096, flag)))
    worker.start()
    time.sleep(0.02)
    flag[0] = 1
    worker.join(30)
    assert not worker.is_alive()
    assert 0 < got[0] < buf.size and got[0] % 4096 == 0


@pytest.mark.parametrize(
    ("ny", "nx", "opts"),
    [
        # one frame of two: the detectors' spans are joined for one pass (rows of
        # 768 KiB, so a block holds three of them)
        (96, 96, dict(sum_frames=False, first_frame=1, last_frame=2)),
        # every frame summed over the detectors: one stream at a time, only the first
        # pass writes into a fresh output (rows of 2.4 MiB, a block each)
        (30, 300, dict(sum_frames=True)),
        # one cube per detector, each fresh
        (30, 300, dict(sum_frames=True, sum_EDS_detectors=False)),
    ],
)
def test_eager_reads_equal_with_and_without_probing(tmp_path, monkeypatch, ny, nx, opts):
    """Outputs above the probing size, read with huge pages kept, switched to small
    pages, and with probing off: the same cubes as the reference decoder."""
    info = write_velox_si(tmp_path / "m.emd", ny=ny, nx=nx, frames=2, detectors=2,
                          counts_per_pixel=3, seed=5)
    spec = info.spec()
    o = ReadOptions(**opts)
    refs = read_spectrum_images_reference(spec, o)
    assert refs[0].astype(np.uint16).nbytes > _memory.MIN_PROBE_BYTES
    for probing, slow in ((True, 0.0), (True, 1.0), (False, 1.0)):
        monkeypatch.setattr(_stream, "PROBE_PAGES", probing)
        monkeypatch.setattr(_memory, "SLOW_HUGE_PAGE_S", slow)
        got = read_spectrum_images(spec, o)
        assert len(got) == len(refs)
        for g, ref in zip(got, refs, strict=True):
            np.testing.assert_array_equal(g.data, ref)


@pytest.mark.parametrize("slow", [0.0, 1.0])
def test_a_thread_done_early_takes_the_others_blocks(tmp_path, monkeypatch, slow):
    """A scatter thread that runs out of its own blocks takes the other threads' from
    the back of their queues: here the other threads start only once the first is done,
    so it does all the work, and the cube is still exact (their pagers, never advanced,
    leave their pages to the writes)."""
    info = write_velox_si(tmp_path / "m.emd", ny=96, nx=96, frames=2, detectors=2,
                          counts_per_pixel=3, seed=7)
    spec = info.spec()
    o = ReadOptions(sum_frames=False, first_frame=1, last_frame=2)
    (ref,) = read_spectrum_images_reference(spec, o)
    monkeypatch.setattr(_memory, "SLOW_HUGE_PAGE_S", slow)
    real = _stream._scatter_blocks
    first_done = threading.Event()
    seen: dict[str, list[int]] = {}

    def gated(queues, me, pager, *args):
        if me:
            assert first_done.wait(60)
        else:
            seen["before"] = [len(q) for q in queues]
        try:
            return real(queues, me, pager, *args)
        finally:
            if not me:
                seen["after"] = [len(q) for q in queues]
                first_done.set()

    monkeypatch.setattr(_stream, "_scatter_blocks", gated)
    if _stream._n_threads() < 2:
        monkeypatch.setattr(_stream, "_n_threads", lambda: 2)
    (got,) = read_spectrum_images(spec, o)
    assert len(seen["before"]) >= 2 and all(n > 0 for n in seen["before"])
    assert seen["after"] == [0] * len(seen["before"])
    np.testing.assert_array_equal(got.data, ref)


@needs_thp
def test_read_buffers_take_small_pages():
    """Stream read buffers from 4 MiB up are marked no-huge-page, smaller ones are left
    alone (numpy asks no huge pages for them)."""
    big = empty_small_pages(5 * 2**20, np.uint16)
    assert big.shape == (5 * 2**20,) and big.dtype == np.uint16
    assert "nh" in _vm_flags(big.ctypes.data + big.nbytes // 2)
    small = empty_small_pages(1000, np.uint16)
    assert small.shape == (1000,)
