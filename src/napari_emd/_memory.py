"""Fresh output memory for the eager decoder, and how its pages get faulted in.

An eager spectrum image is a dense array of hundreds of MiB that the scatter fills
sparsely. The first write to each page is a page fault, and on virtual machines the cost
of that fault depends on where the kernel takes the page from:

* 2 MiB transparent huge pages (numpy asks for them on large arrays) are cheap when the
  guest kernel still holds the memory behind them (~0.2 ms per 2 MiB here), but free
  blocks of 2 MiB and more are what a balloon / free-page-reporting VM hands back to its
  host, and faulting such a block in makes the host provide it first (~5 ms per 2 MiB).
  The kernel hands out the blocks it still holds first, so once huge pages come slow,
  they stay slow.
* 4 KiB pages come from the guest's small free blocks, which are never handed back:
  ~1 ms per 2 MiB, steady. Only the pages the scatter writes are faulted in at all, and
  often that is half of them (an EDS pixel's 4096 channels span two pages, and few
  X-rays land above 20 keV).

So a worker faults the output in while the caller reads the file (:class:`FaultAhead`),
and the scatter threads fault the rest themselves, each in its own rows, front to back
(:class:`HugePageProbe`): a huge page just before the thread's writes reach it, timed on
the thread's CPU clock, so that the thread then writes into memory that is mapped and
still in cache. Once huge pages come slow (the second slow one) the rest of
the thread's range is switched to 4 KiB pages, which its first writes fault in. Where
huge pages stay cheap (bare metal) nothing switches; without transparent huge pages
only small pages are touched ahead. Measured on this project's VM (one 512 MiB frame of
the 26 M-event file, whole read in a fresh process): 0.065-0.10 s, against 0.13-0.16 s
for huge pages faulted far ahead of the scatter by two workers.
"""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np

HUGE = 2 * 2**20
PAGE = 4096
# A huge page that took longer than this to fault in was provided by the host: the
# 4 KiB pages for the same 2 MiB take about 1 ms
SLOW_HUGE_PAGE_S = 1.5e-3
# Slow huge pages seen before the rest of a thread's range switches: a slow page costs
# ~4 ms more than small pages, switching while huge pages are still mostly cheap ~0.6 ms
# per 2 MiB left; single slow pages among cheap ones do occur, two rarely
SLOW_PAGES_TO_SWITCH = 2
# Below this size the faults are too few to be worth probing
MIN_PROBE_BYTES = 64 * 2**20

_MADV_NOHUGEPAGE = 15
_MADV_POPULATE_WRITE = 23


def _load_madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _thp_possible() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


_MADVISE = _load_madvise()
# True where the kernel may give transparent huge pages and we can ask for small ones
HUGE_PAGES = _MADVISE is not None and _thp_possible()


def _no_huge_pages(addr: int, end: int) -> None:
    """Ask for 4 KiB pages for the not yet touched bytes ``addr:end`` (page-aligned
    inwards). A refusal only leaves the kernel's default."""
    lo = -(-addr // PAGE) * PAGE
    hi = end // PAGE * PAGE
    if _MADVISE is not None and hi > lo:
        _MADVISE(lo, hi - lo, _MADV_NOHUGEPAGE)


def populate(addr: int, nbytes: int) -> bool:
    """Fault the pages of bytes ``addr:addr + nbytes`` in, writable, without writing to
    them (``MADV_POPULATE_WRITE``, Linux 5.14+), so it is safe while another thread
    writes there. False where the kernel cannot."""
    lo = addr // PAGE * PAGE
    hi = -(-(addr + nbytes) // PAGE) * PAGE
    return _MADVISE is not None and hi > lo and _MADVISE(lo, hi - lo, _MADV_POPULATE_WRITE) == 0


_MEMSET = ctypes.memset  # a foreign call: the GIL is released while the page faults in


class HugePageProbe:
    """One writer's byte range ``[lo, hi)`` of an array whose pages the writer faults in
    as it goes, front to back.

    Before the writer reaches a byte, :meth:`advance` faults in the huge page holding it
    with a one-byte zero write (the array's bytes there are still zero, and no other
    writer touches this range) and times it on the thread's CPU clock. Where huge pages
    come cheap the writer then fills a page that is already mapped and still in cache;
    at the ``SLOW_PAGES_TO_SWITCH``-th slow one the rest of the range is asked for 4 KiB
    pages, which the writer's own first writes fault in: only the pages that get
    written, often half of them."""

    def __init__(self, arr: np.ndarray, lo: int, hi: int) -> None:
        self.base = arr.ctypes.data
        self.bytes = arr.reshape(-1).view(np.uint8)
        self.lo = lo
        self.hi = min(hi, arr.nbytes)
        self.next = lo  # the first byte not probed yet
        self.touched = lo  # below this, FaultAhead touched the small pages it expects used
        self.slow = 0
        self.active = HUGE_PAGES and self.hi - self.lo >= HUGE

    def advance(self, upto: int) -> None:
        """Fault in (or give up on) the huge pages over bytes ``[next, upto)``."""
        upto = min(upto, self.hi)
        while self.active and self.next < upto:
            addr = self.base + self.next
            boundary = (addr // HUGE + 1) * HUGE
            t = time.thread_time()
            _MEMSET(addr, 0, 1)
            if time.thread_time() - t > SLOW_HUGE_PAGE_S:
                self.slow += 1
                if self.slow >= SLOW_PAGES_TO_SWITCH:
                    self.switch(boundary - self.base)
            self.next = min(boundary - self.base, self.hi)

    def switch(self, at: int | None = None) -> None:
        """Ask 4 KiB pages for bytes ``[at, hi)`` (default: the next huge page on)."""
        if self.active:
            at = self.next if at is None else at
            _no_huge_pages(self.base + at, self.base + self.hi)
            self.active = False


# A function touch(buf_u8, start, end, stride, flag) -> int writing a zero byte at start,
# start + stride, ... below end until flag[0] is set, returning where it stopped, with the
# GIL released (the numba kernel _stream_kernels.touch_every)
Toucher = Callable[[np.ndarray, int, int, int, np.ndarray], int]


def _touch_numpy(buf: np.ndarray, start: int, end: int, stride: int, flag: np.ndarray) -> int:
    if start < end:
        buf[start:end:stride] = 0
    return max(start, end)


class FaultAhead:
    """Faults a fresh array's pages in on a worker thread while the caller does other
    work (reads the file), in the writers' ranges and order, until :meth:`stop`.

    It faults the ranges' huge pages in, in turn, two at a time, timed like
    :class:`HugePageProbe` does, so the writers find them mapped; once
    ``SLOW_PAGES_TO_SWITCH`` of them came slow all ranges switch to 4 KiB pages, and it
    touches the first page of every ``unit`` bytes (a pixel's spectrum: the low
    channels, where the X-rays are) instead. The writers take over the probes after
    :meth:`stop`; nothing here writes anything but zeros into zeros, and nothing runs
    once ``stop`` has returned. Before all that, it maps the pages of ``first`` (the
    buffer the caller reads into) without writing them.

    ``touch`` (a :data:`Toucher`) does the touching without the GIL and checks the stop
    flag as it goes: the caller's thread is mostly busy in Python meanwhile, and a worker
    that needs the GIL back after every step gets it only every switch interval (5 ms)."""

    def __init__(
        self,
        arr: np.ndarray,
        ranges: list[tuple[int, int]],
        unit: int,
        submit: Callable[..., Future[Any]],
        first: np.ndarray | None = None,
        touch: Toucher | None = None,
    ) -> None:
        self.probes = [HugePageProbe(arr, lo, hi) for lo, hi in ranges]
        self.first = first
        self.stride = max(unit, PAGE)
        self.touch = touch or _touch_numpy
        self.flag = np.zeros(1, np.uint8)  # set once: stop (read by the kernel too)
        self._future = submit(self._run)

    def _huge_pages(self, p: HugePageProbe, pages: int) -> None:
        """Fault in the next ``pages`` huge pages of ``p`` and count the slow ones."""
        end = min(p.hi, (p.base + p.next) // HUGE * HUGE + pages * HUGE - p.base)
        t = time.thread_time()
        reached = self.touch(p.bytes, p.next, end, HUGE, self.flag)
        dt = time.thread_time() - t
        done = -(-(reached - p.next) // HUGE)  # pages touched
        if done and dt / done > SLOW_HUGE_PAGE_S:
            p.slow += done
        p.next = min(p.hi, ((p.base + p.next) // HUGE + done) * HUGE - p.base)

    def _run(self) -> None:
        if self.first is not None and self.first.nbytes:
            # the buffer the caller is filling: only mapped (no write), so it may race
            # the caller's writes
            populate(self.first.ctypes.data, self.first.nbytes)
        step = max(HUGE, 512 * self.stride)
        busy = True
        while busy and not self.flag[0]:
            busy = False
            for p in self.probes:
                if self.flag[0]:
                    return
                if p.active:
                    self._huge_pages(p, 2)
                    if sum(q.slow for q in self.probes) >= SLOW_PAGES_TO_SWITCH:
                        for q in self.probes:
                            q.switch()
                    busy |= p.next < p.hi
                    continue
                start = max(p.touched, p.next)
                end = min(p.hi, start + step)
                first = -(-start // self.stride) * self.stride
                p.touched = max(start, min(end, self.touch(p.bytes, first, end, self.stride,
                                                           self.flag)))
                busy |= p.touched < p.hi

    def stop(self) -> list[HugePageProbe]:
        """Stop the worker (its touching stops at once) and hand the probes over."""
        self.flag[0] = 1
        if not self._future.cancel():  # not started yet (a busy pool): it never will
            self._future.result()
        return self.probes


def empty_small_pages(size: int, dtype: Any) -> np.ndarray:
    """``np.empty(size, dtype)`` (1-D) on 4 KiB pages: for read buffers and other
    temporaries that are written once, front to back, where a huge page only adds the
    risk of a slow one (see the module docstring) and no speed."""
    out = np.empty(size, dtype)
    if HUGE_PAGES and out.nbytes >= 4 * 2**20:  # numpy asks huge pages from 4 MiB
        _no_huge_pages(out.ctypes.data, out.ctypes.data + out.nbytes)
    return out

