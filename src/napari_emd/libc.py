"""The C library's functions napari-emd calls through ctypes (Linux only; ``None``
elsewhere): ``fallocate`` for the writer's disk reservation, ``madvise`` for the eager
decoder's output pages."""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

import numpy as np

_MADV_NOHUGEPAGE = 15
PAGE = 4096  # bytes in a small (base) page


@functools.cache
def libc() -> Any:
    """The process's C library (``None`` where it cannot be loaded or is not Linux's)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


@functools.cache
def function(name: str, argtypes: tuple, restype: Any) -> Any:
    """A typed C library function, or ``None``."""
    lib = libc()
    fn = getattr(lib, name, None) if lib is not None else None
    if fn is not None:
        fn.argtypes, fn.restype = list(argtypes), restype
    return fn


def small_pages(arr: np.ndarray) -> bool:
    """Ask 4 KiB pages for the untouched array ``arr`` (``madvise(MADV_NOHUGEPAGE)``):
    a sparse writer then faults in only the pages it writes, instead of whole 2 MiB huge
    pages. False where the kernel cannot."""
    fn = function("madvise", (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int), ctypes.c_int)
    lo = -(-arr.ctypes.data // PAGE) * PAGE
    hi = (arr.ctypes.data + arr.nbytes) // PAGE * PAGE
    return fn is not None and hi > lo and fn(lo, hi - lo, _MADV_NOHUGEPAGE) == 0
