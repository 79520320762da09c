"""Positional reads and writes of a file descriptor, safe from many threads at once:
``os.preadv`` / ``os.pread`` / ``os.pwrite`` where the OS has them (Linux, macOS), else a
seek and a read or write under one lock (Windows, where a descriptor's position is shared
by the threads using it). Used by the disk cache's entries and by the raw chunk reads of
HDF5 streams (:mod:`.rawchunks`); both read without holding the GIL or the HDF5 lock."""

from __future__ import annotations

import errno
import os
import threading
from typing import Any

_SEEK_LOCK = threading.Lock()


def _seek_read_into(fd: int, view: memoryview, offset: int) -> int:
    """One read into ``view`` at ``offset`` by seek + readinto, under the lock."""
    with _SEEK_LOCK:
        os.lseek(fd, offset, os.SEEK_SET)
        with open(fd, "rb", buffering=0, closefd=False) as raw:
            return raw.readinto(view) or 0


def _seek_write(fd: int, view: memoryview, offset: int) -> int:
    """One write of ``view`` at ``offset`` by seek + write, under the lock."""
    with _SEEK_LOCK:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.write(fd, view)


def read_into(fd: int, view: memoryview, offset: int) -> int:
    """One positional read into ``view``; the bytes read (0 at the end of the file)."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    if hasattr(os, "pread"):
        data = os.pread(fd, len(view), offset)
        view[:len(data)] = data
        return len(data)
    return _seek_read_into(fd, view, offset)  # pragma: no cover - Windows


def read_exactly(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset``; the bytes read (fewer only at the end of the file)."""
    done = 0
    while done < len(view):
        n = read_into(fd, view[done:], offset + done)
        if n <= 0:
            break
        done += n
    return done


def pread(fd: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes at ``offset`` (fewer at the end of the file)."""
    buf = bytearray(size)
    return bytes(buf[:read_exactly(fd, memoryview(buf), offset)])


def write_all(fd: int, data: Any, offset: int) -> None:
    """Write all of ``data`` at ``offset``; OSError when the disk takes no more (full, or
    over the process's file size limit) rather than looping on short writes."""
    view = memoryview(data).cast("B")
    done = 0
    while done < view.nbytes:
        if hasattr(os, "pwrite"):
            n = os.pwrite(fd, view[done:], offset + done)
        else:  # pragma: no cover - Windows
            n = _seek_write(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.ENOSPC, "the disk took no more bytes")
        done += n
