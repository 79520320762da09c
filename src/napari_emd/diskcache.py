"""The per-user disk cache of indexes built from a file (e.g. a spectrum image's event
index), so that reopening a big file is instant.

Where: ``$NAPARI_EMD_CACHE`` (empty, ``off`` or ``0`` turns the cache off), else
platformdirs' user cache dir for ``napari-emd``. How big: at most ``max_bytes()``
(``$NAPARI_EMD_CACHE_SIZE``, e.g. ``20G``; 20 GiB by default); the least recently used
entries go first.

An entry is one file: a header (what built it: kind, key, the source file's
:class:`FileIdentity`, the payload size, the producer's small ``meta``), the payload, and
a trailer. An entry is used only when every one of these checks out, so a source file
changed since, a truncated or half-written entry, or one of another format version is
never used (it is removed and built again). Entries are written to a temporary file and
renamed into place, so two processes building the same entry at once both end with a
whole one. When the cache cannot be written (read-only, full disk, off), the producer is
handed a private scratch file instead, or ``None``: never an error.

The payload's own integrity (bytes flipped inside it) is the producer's to check, with
checksums of the parts it reads (:func:`crc32`).

Works on Linux, macOS and Windows: positional reads and writes where the system has them,
else seek + read/write under a lock; where a rename over an entry open elsewhere is
refused (Windows), the whole entry already in place is kept. docs/cache.md has the rules
and the ``napari-emd cache info|clear`` commands."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import posio

#: Bumped whenever the entry layout changes: entries of another version are not used.
VERSION = 1
MAGIC = b"NEMDCACH"
TRAILER = b"NEMDDONE"
_HEAD = struct.Struct("<8sII")  # magic, version, header JSON length
_ALIGN = 4096
SUFFIX = ".nemd"
TMP_PREFIX = ".tmp-"  # an entry being built (or left by a build that crashed)
STALE_TMP_SECONDS = 86400  # a build's temporary file this old is removed
DEFAULT_MAX = 20 * 2**30
_SAMPLE = 1 << 16  # bytes hashed at each sampled offset of a source file
_SAMPLES = 8


def crc32(data: Any) -> int:
    """CRC-32 of a bytes-like object or contiguous numpy array."""
    return zlib.crc32(memoryview(np.ascontiguousarray(data)).cast("B")) & 0xFFFFFFFF


@dataclass(frozen=True)
class FileIdentity:
    """What tells a source file apart from any other version of it: its resolved path,
    size, modification time and a digest of bytes sampled across it (a cheap content
    check: a file rewritten within the mtime resolution with the same size still differs
    somewhere it is sampled, in practice in its HDF5 header or data)."""

    path: str
    size: int
    mtime_ns: int
    digest: str


def identify(path: str | os.PathLike) -> FileIdentity:
    """The :class:`FileIdentity` of ``path`` (reads ``_SAMPLES`` x 64 KiB of it)."""
    real = os.path.realpath(os.fspath(path))
    st = os.stat(real)
    h = hashlib.blake2b(digest_size=16)
    h.update(str(st.st_size).encode())
    with open(real, "rb") as f:
        span = max(st.st_size - _SAMPLE, 0)
        for i in range(_SAMPLES):
            f.seek(span * i // max(_SAMPLES - 1, 1))
            h.update(f.read(_SAMPLE))
    return FileIdentity(real, st.st_size, st.st_mtime_ns, h.hexdigest())


def cache_root() -> Path | None:
    """The cache directory (not created here), or None when the cache is turned off."""
    env = os.environ.get("NAPARI_EMD_CACHE")
    if env is not None:
        if env.strip().lower() in ("", "0", "off", "none", "false"):
            return None
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-emd", appauthor=False))


def parse_size(text: str) -> int:
    """Bytes of ``"20G"``, ``"512M"``, ``"1.5T"``, ``"100000"`` (binary units)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(t[-1:], 1)
    number = t[:-1] if t[-1:] in "KMGT" else t
    return int(float(number) * mult)


def max_bytes() -> int:
    """The most bytes the cache keeps (``$NAPARI_EMD_CACHE_SIZE``, else 20 GiB)."""
    env = os.environ.get("NAPARI_EMD_CACHE_SIZE")
    if env:
        with contextlib.suppress(ValueError, IndexError):
            return max(parse_size(env), 0)
    return DEFAULT_MAX


def _entry_name(kind: str, key: str, ident: FileIdentity) -> str:
    h = hashlib.sha256(json.dumps([kind, key, asdict(ident)], sort_keys=True).encode())
    return f"{kind}-{h.hexdigest()[:32]}{SUFFIX}"


def _header(kind: str, key: str, ident: FileIdentity, meta: dict,
            payload_size: int) -> bytes:
    text = json.dumps({"kind": kind, "key": key, "identity": asdict(ident),
                       "payload_size": payload_size, "meta": meta}, sort_keys=True).encode()
    head = _HEAD.pack(MAGIC, VERSION, len(text)) + text
    return head + struct.pack("<I", crc32(head))


def _payload_offset(header_len: int) -> int:
    return -(-header_len // _ALIGN) * _ALIGN


class Entry:
    """A validated cache entry (or a private scratch file), open for reading: the payload
    is read with :meth:`read` at offsets from its start. Keep it, not its path: the file
    may be replaced or evicted by another process, the open descriptor still reads it."""

    def __init__(self, fd: int, path: Path | None, payload_offset: int, payload_size: int,
                 meta: dict) -> None:
        self.fd = fd
        self.path = path  # None for a scratch file (already unlinked)
        self.payload_offset = payload_offset
        self.payload_size = payload_size
        self.meta = meta

    def read(self, offset: int, size: int, out: np.ndarray | None = None) -> np.ndarray:
        """Payload bytes ``offset:offset + size`` as uint8 (into ``out`` when given)."""
        if offset < 0 or size < 0 or offset + size > self.payload_size:
            raise ValueError(f"read {offset}+{size} outside the payload "
                             f"({self.payload_size} bytes)")
        if out is not None and not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous")
        buf = np.empty(size, np.uint8) if out is None else out.reshape(-1).view(np.uint8)
        view = memoryview(buf)[:size]
        if posio.read_exactly(self.fd, view, self.payload_offset + offset) != size:
            raise OSError(f"cache entry {self.path or '(scratch file)'} ended early")
        return buf[:size]

    def discard(self) -> None:
        """Remove this entry from the cache (its payload was found corrupt)."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def close(self) -> None:
        """Close the descriptor, once: a second close (e.g. ``__del__`` after ``close``)
        would close whatever file another thread has opened under the same number."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.close()


class Writer:
    """What a producer writes its payload through (offsets from the payload start)."""

    def __init__(self, fd: int, payload_offset: int, payload_size: int) -> None:
        self.fd = fd
        self.payload_offset = payload_offset
        self.payload_size = payload_size

    def pwrite(self, offset: int, data: Any) -> None:
        view = memoryview(np.ascontiguousarray(data)).cast("B")
        if offset < 0 or offset + view.nbytes > self.payload_size:
            raise ValueError("write outside the payload")
        posio.write_all(self.fd, view, self.payload_offset + offset)


def _validate(fd: int, kind: str, key: str, ident: FileIdentity) -> tuple[int, int, dict]:
    """(payload offset, payload size, meta) of the entry open as ``fd``; ValueError when
    anything in it does not check out."""
    size = os.fstat(fd).st_size
    head = posio.pread(fd, _HEAD.size, 0)
    if len(head) < _HEAD.size:
        raise ValueError("short header")
    magic, version, n = _HEAD.unpack(head)
    if magic != MAGIC or version != VERSION or n > 1 << 24:
        raise ValueError("not an entry of this version")
    text = posio.pread(fd, n + 4, _HEAD.size)
    if len(text) != n + 4 or struct.unpack("<I", text[n:])[0] != crc32(head + text[:n]):
        raise ValueError("header checksum")
    info = json.loads(text[:n])
    if info["kind"] != kind or info["key"] != key or info["identity"] != asdict(ident):
        raise ValueError("another entry")
    off, psize = _payload_offset(_HEAD.size + n + 4), int(info["payload_size"])
    if size != off + psize + len(TRAILER) + 4:
        raise ValueError("truncated")
    tail = posio.pread(fd, len(TRAILER) + 4, off + psize)
    if tail != TRAILER + struct.pack("<I", crc32(head + text[:n])):
        raise ValueError("unfinished")
    return off, psize, info["meta"]


def _remove_if_same(path: Path, fd: int) -> None:
    """Unlink ``path`` if it still names the file open as ``fd``: another process may
    have renamed a whole new entry into place since ``fd`` was opened."""
    with contextlib.suppress(OSError):
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            os.unlink(path)


def lookup(kind: str, key: str, ident: FileIdentity) -> Entry | None:
    """The valid entry ``kind``/``key`` built from the file ``ident`` describes, or None.
    An entry that fails a check is removed (it will be built again)."""
    root = cache_root()
    if root is None:
        return None
    path = root / _entry_name(kind, key, ident)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    try:
        off, psize, meta = _validate(fd, kind, key, ident)
    except (ValueError, KeyError, TypeError, OSError, json.JSONDecodeError):
        _remove_if_same(path, fd)
        os.close(fd)
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # most recently used
    return Entry(fd, path, off, psize, meta)


def _scratch(header: bytes, meta: dict, payload_size: int,
             fill: Callable[[Writer], None]) -> Entry | None:
    """A private file in the system temp dir holding the payload, gone when the entry
    closes (unlinked at once on POSIX, delete-on-close on Windows), or None."""
    try:
        with tempfile.TemporaryFile(prefix="napari-emd-", suffix=SUFFIX) as f:
            fd = os.dup(f.fileno())
    except OSError:
        return None
    off = _payload_offset(len(header))
    try:
        fill(Writer(fd, off, payload_size))
    except OSError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return Entry(fd, None, off, payload_size, meta)


def publish(kind: str, key: str, ident: FileIdentity, meta: dict, payload_size: int,
            fill: Callable[[Writer], None]) -> Entry | None:
    """Build the entry ``kind``/``key`` of the file ``ident``: ``fill(writer)`` writes the
    ``payload_size`` bytes of payload. Returns it open for reading. When the cache is off,
    unwritable or full, or the entry is bigger than the cache may hold, the payload goes
    to a private scratch file instead (deleted when the entry closes); None when even that
    cannot be written (the caller works without). Exceptions of ``fill`` other than
    OSError (e.g. a cancel) propagate, leaving nothing behind."""
    header = _header(kind, key, ident, meta, payload_size)
    root = cache_root()
    off = _payload_offset(len(header))
    total = off + payload_size + len(TRAILER) + 4
    if root is None or total > max_bytes():
        return _scratch(header, meta, payload_size, fill)
    final = root / _entry_name(kind, key, ident)
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        evict(max_bytes() - total, root)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=SUFFIX, dir=root)
        try:
            posio.write_all(fd, header, 0)
            fill(Writer(fd, off, payload_size))
            posio.write_all(fd, TRAILER + header[-4:], off + payload_size)
            os.ftruncate(fd, total)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, final)
            tmp = None
        except OSError:
            # Windows refuses to replace a file open elsewhere: another process reads the
            # entry this one built again, so keep that one (when it is whole).
            entry = lookup(kind, key, ident)
            if entry is not None:
                return entry
            raise
    except OSError:
        pass  # unwritable or full: the scratch file below, never an error
    finally:
        if tmp is not None:  # a partial or unused build: removed before the fallback
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    entry = lookup(kind, key, ident) if tmp is None else None
    return entry if entry is not None else _scratch(header, meta, payload_size, fill)


@dataclass(frozen=True)
class CacheInfo:
    """What ``napari-emd cache info`` prints."""

    root: Path | None
    entries: int
    total_bytes: int
    max_bytes: int
    #: False when new entries cannot be written there (read-only, not a folder): every
    #: index then goes to a scratch file.
    writable: bool = True


def _entries(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    try:
        names = list(root.iterdir())
    except OSError:
        return
    for p in names:
        if p.suffix == SUFFIX:
            with contextlib.suppress(OSError):
                yield p, p.stat()


def evict(keep: int, root: Path | None = None) -> int:
    """Remove the least recently used entries until at most ``keep`` bytes remain (and
    temporary files left by crashed builds over a day old); returns how many went."""
    root = cache_root() if root is None else root
    if root is None:
        return 0
    now = time.time()
    found = sorted(_entries(root), key=lambda e: e[1].st_mtime)
    total = sum(st.st_size for p, st in found if not p.name.startswith(TMP_PREFIX))
    removed = 0
    for p, st in found:
        stale_tmp = p.name.startswith(TMP_PREFIX) and now - st.st_mtime > STALE_TMP_SECONDS
        if stale_tmp or (not p.name.startswith(TMP_PREFIX) and total > keep):
            with contextlib.suppress(OSError):
                p.unlink()
                removed += 1
                if not stale_tmp:
                    total -= st.st_size
    return removed


def writable(root: Path) -> bool:
    """Whether entries can be created in ``root`` (or, when it does not exist yet, in the
    folder it would be created in): False under a regular file, on a read-only file
    system, or without write permission."""
    p = root
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def info() -> CacheInfo:
    """Where the cache is, how many entries and bytes it holds, its limit, and whether
    new entries can be written there."""
    root = cache_root()
    if root is None:
        return CacheInfo(None, 0, 0, max_bytes(), False)
    found = [st for p, st in _entries(root) if not p.name.startswith(TMP_PREFIX)]
    return CacheInfo(root, len(found), sum(st.st_size for st in found), max_bytes(),
                     writable(root))


def clear_counted() -> tuple[int, int]:
    """Remove every entry (and leftover temporary file): (how many went, bytes freed).
    An entry another process holds open is gone from the cache at once; its bytes are
    freed when that process closes it (on Windows it stays until then)."""
    root = cache_root()
    if root is None:
        return 0, 0
    removed = freed = 0
    for p, st in list(_entries(root)):
        with contextlib.suppress(OSError):
            p.unlink()
            removed += 1
            freed += st.st_size
    return removed, freed


def clear() -> int:
    """Remove every entry (and leftover temporary file); returns how many went."""
    return clear_counted()[0]
