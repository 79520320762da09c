"""Crash-safe files: every write goes to a hidden temporary file in the target folder,
which replaces the target only when complete. An exception, a full disk or a killed
process never leaves a partial file under the target name nor damages an existing file.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from typing import Any

import h5py

from ..errors import EMDError
from ..h5 import close_cached
from ..libc import function
from ..units import format_bytes


class HDF5WriteError(RuntimeError):
    """HDF5 failed while writing the temporary file (a full disk, a failed flush): raised
    by :func:`hdf5_writes` in place of h5py's bare ``RuntimeError``, so the writer turns
    it into an :class:`EMDError` while a ``RuntimeError`` of the caller's own (a dask
    chunk that fails to compute) passes through unchanged."""


@contextlib.contextmanager
def hdf5_writes() -> Iterator[None]:
    """Around HDF5 calls that write the temporary file (and nothing else: no computing of
    the caller's data): their ``RuntimeError`` becomes :class:`HDF5WriteError`."""
    try:
        yield
    except HDF5WriteError:
        raise
    except RuntimeError as err:
        raise HDF5WriteError(str(err)) from err


def reserve_space(path: str, tmp: str, size: int) -> None:
    """Allocate ``size`` bytes for ``tmp`` (Linux ``fallocate``; elsewhere, or on file
    systems without it, nothing is reserved). HDF5 cuts the file to its real size when it
    is closed. A full disk raises :class:`EMDError` before any data is written."""
    fallocate = _fallocate()
    if fallocate is None:
        return
    fd = os.open(tmp, os.O_RDWR)
    try:
        if fallocate(fd, 0, 0, size) != 0:
            errno = ctypes.get_errno()
            if errno == 28:  # ENOSPC
                free = shutil.disk_usage(os.path.dirname(tmp)).free
                raise EMDError(path, f"not enough free disk space: the file needs about "
                                     f"{format_bytes(size)}, {format_bytes(free)} are free")
            # EOPNOTSUPP and friends: this file system cannot reserve; write without
    finally:
        os.close(fd)


def _fallocate() -> Any:
    """libc's ``fallocate`` (no slow emulation, unlike ``os.posix_fallocate``), or None."""
    return function("fallocate", (ctypes.c_int, ctypes.c_int, ctypes.c_longlong,
                                  ctypes.c_longlong), ctypes.c_int)


def abandon(f: h5py.File, tmp: str) -> None:
    """Close a file whose writing failed without letting HDF5 retry its flush on a full
    disk: the temporary file is emptied first (freeing its space), so the final flush
    succeeds and no half-flushed handle is left for interpreter exit to trip on."""
    with contextlib.suppress(OSError):
        os.truncate(tmp, 0)
    with contextlib.suppress(Exception):
        f.close()


def check_target(path: str, nbytes: int) -> None:
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise EMDError(path, f"the folder {folder} does not exist")
    if os.path.isdir(path):
        raise EMDError(path, "is a folder; give a file name ending in .emd")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise EMDError(path, "the existing file is read-only; it is left unchanged")
    if not os.access(folder, os.W_OK):
        raise EMDError(path, f"no permission to write in {folder}")
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise EMDError(path, f"not enough free disk space: the data needs {format_bytes(nbytes)}, "
                             f"{format_bytes(free)} are free")


@contextlib.contextmanager
def atomic_replace(path: str) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``
    (keeping an existing file's permissions), on any failure it is deleted."""
    folder, base = os.path.split(path)
    tmp = os.path.join(folder, f".{base}.{secrets.token_hex(4)}.part")
    # os.open with 0o666 honours the umask, as a normally created file would
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if os.path.exists(path):
            with contextlib.suppress(OSError):
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        # a cached lazy-read handle of the old file must not outlive it (and on Windows
        # would block the replace)
        close_cached(path)
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _fsync_dir(folder: str) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

