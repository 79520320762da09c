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

So :func:`zeros_prefaulted` faults huge pages in, in order, on the worker threads while
the caller reads the streams, and in each thread's range switches the rest to 4 KiB pages
once huge pages come slow (the third slow one); those are left to the scatter's first
writes. Where huge pages stay cheap (bare metal) nothing switches; without transparent
huge pages nothing is touched ahead. Measured on this project's VM (one 512 MiB frame of
the 26 M-event file, fresh process, 2 threads): huge pages only 0.10-0.9 s depending on
what the host still backs; this scheme 0.14-0.19 s every time.
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
# ~4 ms more than small pages, switching while huge pages are still mostly cheap ~0.8 ms
# per 2 MiB left, so a few isolated slow ones are tolerated
SLOW_PAGES_TO_SWITCH = 3
# Below this size the faults are too few to be worth the workers' time
MIN_PREFAULT_BYTES = 64 * 2**20

_MADV_NOHUGEPAGE = 15


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


def _touch(flat: np.ndarray, lo: int, hi: int) -> None:
    """Fault in the huge pages of ``flat[lo:hi]`` in order (one write per 4 KiB), until
    they come slow; then ask 4 KiB pages for the rest and leave it to the writers."""
    step = max(1, PAGE // flat.itemsize)
    per_huge = HUGE // flat.itemsize
    base = flat.ctypes.data
    shift = (-base % HUGE) // flat.itemsize  # the index of the first 2 MiB boundary
    pos = lo
    slow = 0
    while pos < hi:
        end = min(hi, shift + ((pos - shift) // per_huge + 1) * per_huge)
        # this thread's CPU time: the fault counts, waiting for the GIL (held by a
        # stream read on the caller's thread) does not
        t = time.thread_time()
        flat[pos:end:step] = 0  # numpy drops the GIL for this loop
        if end - pos == per_huge and time.thread_time() - t > SLOW_HUGE_PAGE_S:
            slow += 1
            if slow >= SLOW_PAGES_TO_SWITCH:
                _no_huge_pages(base + end * flat.itemsize, base + hi * flat.itemsize)
                return
        pos = end


def zeros_prefaulted(
    shape: tuple[int, ...],
    dtype: np.dtype,
    threads: int,
    submit: Callable[..., Future[Any]],
) -> tuple[np.ndarray, list[Future[Any]]]:
    """``np.zeros(shape, dtype)`` and the futures of the workers faulting its huge pages
    in (none for small arrays, or without transparent huge pages).

    The caller goes on with other work (reading and indexing the streams) and waits for
    the futures before writing."""
    out = np.zeros(shape, dtype)
    flat = out.reshape(-1)
    if not HUGE_PAGES or flat.nbytes < MIN_PREFAULT_BYTES:
        return out, []
    threads = max(1, threads)
    per_huge = max(1, HUGE // flat.itemsize)
    shift = (-flat.ctypes.data % HUGE) // flat.itemsize
    # split at 2 MiB boundaries so each thread's huge pages are its own
    bounds = [0] + [
        shift + (flat.size * t // threads - shift) // per_huge * per_huge
        for t in range(1, threads)
    ] + [flat.size]
    return out, [submit(_touch, flat, bounds[t], bounds[t + 1]) for t in range(threads)]


def empty_small_pages(size: int, dtype: Any) -> np.ndarray:
    """``np.empty(size, dtype)`` (1-D) on 4 KiB pages: for read buffers and other
    temporaries that are written once, front to back, where a huge page only adds the
    risk of a slow one (see the module docstring) and no speed."""
    out = np.empty(size, dtype)
    if HUGE_PAGES and out.nbytes >= 4 * 2**20:  # numpy asks huge pages from 4 MiB
        _no_huge_pages(out.ctypes.data, out.ctypes.data + out.nbytes)
    return out

