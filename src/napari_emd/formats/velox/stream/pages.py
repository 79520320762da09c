"""The eager output's memory pages: what the decoder alone asks of them.

:func:`new_output` allocates the zeroed output and, from :data:`SMALL_PAGES_FROM` bytes,
asks for 4 KiB pages (``madvise(MADV_NOHUGEPAGE)``): the scatter fills a dense cube
sparsely, and with huge pages every 2 MiB page a count lands in would be faulted in
whole. :func:`fault_ahead` faults pages in while the decoder reads the streams.

A fresh output array is mapped by the kernel page by page as it is first written, and
every first write costs a page fault. In a single frame the counts are few (a handful
per pixel), so those faults are most of what the scatter spends. While the decoder
reads the frames' spans from the file (one thread, mostly waiting on HDF5), another
core is idle: :func:`fault_ahead` has a pool thread touch, in row order, the pages the
scatter is about to write, so the scatter finds them mapped.

It touches the first page of each pixel's spectrum (its low channels, where the X-ray
lines are), and only when the counts are dense enough that the scatter writes those
pages anyway (:data:`DENSE_ENOUGH` X-rays per output pixel), so it adds no memory. It
is stopped and joined when the ``with`` block ends, before the scatter's first write:
it only ever writes zeros into an array that nobody else writes yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ....libc import PAGE, small_pages
from ....numba_kernels import STREAM_KERNELS
from ....threads import pool

# Outputs this big get 4 KiB pages: the scatter writes a small part of a sparse cube
SMALL_PAGES_FROM = 64 * 2**20
# X-rays per output pixel from which (nearly) every pixel's first page gets a count
DENSE_ENOUGH = 4.0


def new_output(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A zeroed output array, with 4 KiB pages when it is big."""
    out = np.zeros(shape, dtype)
    if out.nbytes >= SMALL_PAGES_FROM:
        small_pages(out)
    return out


def worth_it(out3: np.ndarray, events: int) -> bool:
    """Whether the scatter will write (nearly) every pixel's first page of ``out3``
    (rows, nx, E) with ``events`` X-rays to count."""
    pixels = out3.shape[0] * out3.shape[1]
    return pixels > 0 and out3.flags.c_contiguous and events >= DENSE_ENOUGH * pixels


@contextmanager
def fault_ahead(out3: np.ndarray, events: int) -> Iterator[None]:
    """Fault ``out3``'s pages in on a pool thread for the duration of the block (when
    :func:`worth_it`); the thread has stopped when the block is left."""
    if not worth_it(out3, events):
        yield
        return
    mem = out3.reshape(-1).view(np.uint8)
    stride = max(PAGE, out3.shape[2] * out3.itemsize)
    stop = np.zeros(1, np.uint8)
    job = pool().submit(STREAM_KERNELS.module().touch_pages, mem, stride, stop)
    try:
        yield
    finally:
        stop[0] = 1
        job.result()
