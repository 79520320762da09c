"""The process's worker threads: one pool shared by every decoder that splits work.

The Velox stream scatter, the energy-plane index build, the eager page fault-ahead and
the blob decoder all run numba kernels that release the GIL on a few threads. Starting
threads for every read costs time and leaves idle threads behind, so they share one pool
of :func:`pool_size` threads, started on first use and kept for the process.

The rule that keeps it free of deadlocks: **a task on the pool never waits on another
task of the pool** (it never submits to it, nor waits on a future or a lock that a
thread waiting on the pool holds). Only callers outside the pool (the reading thread, a
dask worker thread) submit and wait, so callers on many threads at once only queue.

A forked child has none of the parent's threads: it forgets the pool and starts its own.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def n_threads() -> int:
    """Parts one read splits its work into (the eager scatter, the blob decoder): the
    cores, at most 4 (the kernels release the GIL; each part holds its own buffers)."""
    return max(1, min(4, os.cpu_count() or 1))


def pool_size() -> int:
    """Threads of the pool: the cores, at most 16. A read that splits its work into
    :func:`n_threads` parts uses that many of them; work made of many independent tasks
    (the energy-plane index build: one task per stream and frame) uses every core of a
    workstation, each thread holding one task's buffers (one frame of one stream)."""
    return max(1, min(16, os.cpu_count() or 1))


def pool() -> ThreadPoolExecutor:
    """The process's worker pool (started on first use, kept between reads). Its tasks
    must never wait on other tasks of it (see the module docstring)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(pool_size(), thread_name_prefix="napari-emd")
        return _POOL


def _forget_pool() -> None:  # a forked child has none of the parent's threads
    global _POOL, _POOL_LOCK
    _POOL = None
    _POOL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
