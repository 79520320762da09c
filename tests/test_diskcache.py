"""The per-user disk cache (napari_emd.diskcache) on real files and real processes: what
is kept, what is never used, what happens when the disk refuses, and two processes at
once."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from napari_emd import diskcache

KIND, KEY = "test-index", "detectors=all"
ENTRY_OVERHEAD = 4096 + len(diskcache.TRAILER) + 4  # header page + trailer


def _payload(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def _filler(data: np.ndarray, calls: list | None = None):
    """A producer writing ``data`` in two halves, the second first (offsets matter)."""

    def fill(w: diskcache.Writer) -> None:
        if calls is not None:
            calls.append(1)
        half = data.size // 2
        w.pwrite(half, data[half:])
        w.pwrite(0, data[:half])

    return fill


def _publish(src: Path, data: np.ndarray, key: str = KEY, calls: list | None = None,
             meta: dict | None = None) -> diskcache.Entry | None:
    return diskcache.publish(KIND, key, diskcache.identify(src), meta or {"n": data.size},
                             data.size, _filler(data, calls))


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_EMD_CACHE", str(root))
    monkeypatch.delenv("NAPARI_EMD_CACHE_SIZE", raising=False)
    return root


@pytest.fixture
def source(tmp_path) -> Path:
    """A source file (stands for an .emd file) larger than the sampled span."""
    p = tmp_path / "source.emd"
    p.write_bytes(_payload(600_000, seed=99).tobytes())
    return p


# -- round trip ---------------------------------------------------------------------------


def test_round_trip_keeps_payload_and_meta(cache, source):
    data = _payload(100_000)
    entry = _publish(source, data, meta={"channels": 4096, "unit": "keV"})
    assert entry is not None and entry.path is not None and entry.path.parent == cache
    assert np.array_equal(entry.read(0, data.size), data)
    out = np.zeros(1000, np.uint8)
    entry.read(5000, 1000, out=out)
    assert np.array_equal(out, data[5000:6000])
    again = diskcache.lookup(KIND, KEY, diskcache.identify(source))
    assert again is not None and again.meta == {"channels": 4096, "unit": "keV"}
    assert np.array_equal(again.read(0, data.size), data)
    assert diskcache.lookup(KIND, "another key", diskcache.identify(source)) is None
    info = diskcache.info()
    assert (info.root, info.entries, info.writable) == (cache, 1, True)
    assert info.total_bytes == entry.path.stat().st_size == data.size + ENTRY_OVERHEAD
    with pytest.raises(ValueError, match="outside the payload"):
        entry.read(data.size - 10, 11)


def test_identity_follows_symlinks_and_parses_sizes(tmp_path, source, monkeypatch):
    link = tmp_path / "link.emd"
    link.symlink_to(source)
    assert diskcache.identify(link) == diskcache.identify(source)
    small = tmp_path / "small.emd"
    small.write_bytes(b"tiny")
    assert diskcache.identify(small).size == 4
    assert diskcache.parse_size("20G") == 20 * 2**30
    assert diskcache.parse_size("512MiB") == diskcache.parse_size("512mb") == 512 * 2**20
    assert diskcache.parse_size("1.5T") == int(1.5 * 2**40)
    assert diskcache.parse_size("100000") == 100000
    monkeypatch.setenv("NAPARI_EMD_CACHE_SIZE", "lots")
    assert diskcache.max_bytes() == diskcache.DEFAULT_MAX
    monkeypatch.setenv("NAPARI_EMD_CACHE_SIZE", "2k")
    assert diskcache.max_bytes() == 2048


# -- a changed source file ----------------------------------------------------------------


@pytest.mark.parametrize("change", ["size", "mtime", "content, mtime restored"])
def test_entry_of_a_changed_source_is_never_used(cache, source, change):
    data = _payload(10_000)
    before = diskcache.identify(source)
    assert _publish(source, data) is not None
    st = source.stat()
    if change == "size":
        with open(source, "ab") as f:
            f.write(b"\0")
    elif change == "mtime":
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    else:
        with open(source, "r+b") as f:  # same size, bytes changed where they are sampled
            f.write(b"changed!")
            f.seek(300_000)
            f.write(b"changed!")
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (source.stat().st_size, source.stat().st_mtime_ns) == (st.st_size,
                                                                      st.st_mtime_ns)
    after = diskcache.identify(source)
    assert after != before
    assert diskcache.lookup(KIND, KEY, after) is None
    calls: list = []
    rebuilt = _publish(source, _payload(10_000, seed=1), calls=calls)
    assert calls == [1] and np.array_equal(rebuilt.read(0, 10_000), _payload(10_000, 1))


# -- damaged entries ----------------------------------------------------------------------


def _truncate(path: Path, by: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - by)


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


DAMAGE = {
    "truncated payload": lambda p: _truncate(p, 5000),
    "truncated to a header": lambda p: _truncate(p, p.stat().st_size - 10),
    "empty": lambda p: _truncate(p, p.stat().st_size),
    "header byte flipped": lambda p: _flip(p, 40),
    "magic flipped": lambda p: _flip(p, 0),
    "unfinished (no trailer)": lambda p: _overwrite_tail(p),
    "trailer checksum flipped": lambda p: _flip(p, p.stat().st_size - 2),
}


def _overwrite_tail(path: Path) -> None:
    """The entry is its full size, but its trailer was never written (a crash after the
    payload, on a file system that grew the file first)."""
    with open(path, "r+b") as f:
        f.seek(-(len(diskcache.TRAILER) + 4), os.SEEK_END)
        f.write(b"\0" * (len(diskcache.TRAILER) + 4))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entry_is_ignored_removed_and_rebuilt(cache, source, damage):
    data = _payload(20_000)
    entry = _publish(source, data)
    path = entry.path
    entry.close()
    DAMAGE[damage](path)
    assert diskcache.lookup(KIND, KEY, diskcache.identify(source)) is None
    assert not path.exists()
    calls: list = []
    rebuilt = _publish(source, data, calls=calls)
    assert calls == [1] and rebuilt.path == path
    assert np.array_equal(rebuilt.read(0, data.size), data)


def test_entry_of_another_version_is_ignored_removed_and_rebuilt(cache, source,
                                                                 monkeypatch):
    data = _payload(5000)
    version = diskcache.VERSION
    monkeypatch.setattr(diskcache, "VERSION", version + 1)
    old = _publish(source, data)
    assert old.path.exists()
    monkeypatch.setattr(diskcache, "VERSION", version)
    assert diskcache.lookup(KIND, KEY, diskcache.identify(source)) is None
    assert not old.path.exists()
    assert np.array_equal(old.read(0, data.size), data)  # a holder still reads it
    calls: list = []
    assert _publish(source, data, calls=calls).path == old.path and calls == [1]


def test_cancelled_build_leaves_nothing(cache, source):
    def fill(w):
        w.pwrite(0, _payload(1000))
        raise KeyboardInterrupt  # as a cancel would

    with pytest.raises(KeyboardInterrupt):
        diskcache.publish(KIND, KEY, diskcache.identify(source), {}, 5000, fill)
    assert _files(cache) == []


# -- bounds and eviction ------------------------------------------------------------------


def test_total_is_bounded_and_least_recently_used_go_first(cache, source, monkeypatch):
    size = 8192
    entry_bytes = size + ENTRY_OVERHEAD
    monkeypatch.setenv("NAPARI_EMD_CACHE_SIZE", str(3 * entry_bytes + 100))
    ident = diskcache.identify(source)
    paths = {}
    for i, key in enumerate("abc"):
        e = _publish(source, _payload(size, i), key=key)
        paths[key] = e.path
        e.close()
        old = time.time() - 1000 + 10 * i  # built in this order, long ago
        os.utime(e.path, (old, old))
    assert diskcache.lookup(KIND, "a", ident) is not None  # a used again: now newest
    _publish(source, _payload(size, 3), key="d")
    assert diskcache.lookup(KIND, "b", ident) is None and not paths["b"].exists()
    info = diskcache.info()
    assert info.entries == 3 and info.total_bytes <= diskcache.max_bytes()
    _publish(source, _payload(size, 4), key="e")
    assert not paths["c"].exists() and paths["a"].exists()
    assert diskcache.info().total_bytes <= diskcache.max_bytes()
    assert diskcache.evict(0) == 3 and diskcache.info().entries == 0


def test_entry_bigger_than_the_limit_goes_to_scratch(cache, source, monkeypatch):
    monkeypatch.setenv("NAPARI_EMD_CACHE_SIZE", "16K")
    data = _payload(64_000)
    small = _publish(source, _payload(100), key="small")
    entry = _publish(source, data)
    assert entry.path is None and entry.meta == {"n": data.size}
    assert np.array_equal(entry.read(0, data.size), data)
    assert diskcache.lookup(KIND, KEY, diskcache.identify(source)) is None
    assert _files(cache) == [small.path.name]  # the small entry was not evicted for it


def test_stale_temporary_files_are_removed_after_a_day(cache, source):
    cache.mkdir()
    stale, fresh = cache / ".tmp-crashed.nemd", cache / ".tmp-building.nemd"
    for p in (stale, fresh):
        p.write_bytes(b"\0" * 5000)
    two_days = time.time() - 2 * 86400
    os.utime(stale, (two_days, two_days))
    entry = _publish(source, _payload(100))
    assert not stale.exists() and fresh.exists()
    assert diskcache.info().entries == 1  # a build under way is not an entry
    assert sorted(_files(cache)) == sorted([fresh.name, entry.path.name])
    entry_bytes = entry.path.stat().st_size
    assert diskcache.clear_counted() == (2, 5000 + entry_bytes)
    assert _files(cache) == []
    assert np.array_equal(entry.read(0, 100), _payload(100))  # still open: still read


# -- when the cache cannot be used --------------------------------------------------------


@pytest.mark.parametrize("value", ["off", "0", ""])
def test_cache_off_works_from_scratch(monkeypatch, source, value):
    monkeypatch.setenv("NAPARI_EMD_CACHE", value)
    data = _payload(30_000)
    entry = _publish(source, data)
    assert entry.path is None and np.array_equal(entry.read(0, data.size), data)
    assert diskcache.lookup(KIND, KEY, diskcache.identify(source)) is None
    assert diskcache.info().root is None and diskcache.info().entries == 0
    assert not diskcache.info().writable
    assert diskcache.clear_counted() == (0, 0) and diskcache.evict(0) == 0


def test_cache_under_a_regular_file_works_from_scratch(tmp_path, monkeypatch, source):
    """A cache path that cannot be a directory (ENOTDIR: even root cannot create it)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("NAPARI_EMD_CACHE", str(blocker / "cache"))
    data = _payload(30_000)
    entry = _publish(source, data)
    assert entry.path is None and np.array_equal(entry.read(0, data.size), data)
    assert diskcache.lookup(KIND, KEY, diskcache.identify(source)) is None
    assert diskcache.info().entries == 0 and diskcache.clear_counted() == (0, 0)
    assert not diskcache.info().writable


def test_entry_name_taken_by_a_directory_works_from_scratch(cache, source):
    """The rename into place fails (a directory has the entry's name): scratch, and the
    temporary file is removed."""
    entry = _publish(source, _payload(100))
    path = entry.path
    entry.close()
    path.unlink()
    path.mkdir()
    data = _payload(3000)
    again = _publish(source, data)
    assert again.path is None and np.array_equal(again.read(0, data.size), data)
    assert _files(cache) == [path.name] and path.is_dir()


def test_replace_refused_keeps_the_existing_entry(cache, source, monkeypatch):
    """Windows refuses to replace a file another process has open; Linux does not, so the
    refusal is made here: the whole entry already in place is kept, with no error."""
    data = _payload(4000)
    first = _publish(source, data)

    def refuse(src, dst):
        raise PermissionError(13, "the file is open in another process", str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    calls: list = []
    second = _publish(source, data, calls=calls)
    assert calls == [1] and second.path == first.path
    assert np.array_equal(second.read(0, data.size), data)
    assert _files(cache) == [first.path.name]  # the new build's temporary file is gone


def test_without_positional_io_as_on_windows(cache, source, monkeypatch):
    """Windows has no os.pread/preadv/pwrite: entries are written and read by seek under
    a lock, also by many threads reading one entry at once."""
    for name in ("preadv", "pread", "pwrite"):
        monkeypatch.delattr(os, name, raising=False)
    data = _payload(300_000)
    entry = _publish(source, data)
    assert entry.path is not None
    entry = diskcache.lookup(KIND, KEY, diskcache.identify(source))
    errors = []

    def reader(i):
        for j in range(50):
            off = (i * 7919 + j * 104729) % (data.size - 5000)
            if not np.array_equal(entry.read(off, 5000), data[off:off + 5000]):
                errors.append((i, j))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    monkeypatch.setenv("NAPARI_EMD_CACHE", "off")
    scratch = _publish(source, data)
    assert scratch.path is None and np.array_equal(scratch.read(0, data.size), data)


# -- mounts: read-only and full -----------------------------------------------------------


@pytest.fixture
def mount_tmpfs(tmp_path):
    """Mount a tmpfs with the given options (root and permission needed, else skip)."""
    mounted = []

    def mount(options: str) -> Path:
        if os.name != "posix" or os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root on Linux")
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_read_only_cache_reads_its_entries_and_builds_in_scratch(mount_tmpfs,
                                                                 monkeypatch, source):
    root = mount_tmpfs("size=4m")
    monkeypatch.setenv("NAPARI_EMD_CACHE", str(root))
    data = _payload(50_000)
    _publish(source, data).close()
    bad = _publish(source, data, key="to be damaged")
    bad.close()
    _flip(bad.path, 40)
    subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
    ident = diskcache.identify(source)
    kept = diskcache.lookup(KIND, KEY, ident)  # read, not touched: no error
    assert kept is not None and np.array_equal(kept.read(0, data.size), data)
    assert diskcache.lookup(KIND, "to be damaged", ident) is None  # cannot be removed
    assert bad.path.exists()
    new = _publish(source, data, key="new")
    assert new.path is None and np.array_equal(new.read(0, data.size), data)
    assert diskcache.clear_counted() == (0, 0) and diskcache.info().entries == 2
    assert not diskcache.info().writable
    assert not diskcache.writable(root / "not" / "made")


def test_full_disk_falls_back_to_scratch_and_leaves_no_partial_entry(mount_tmpfs,
                                                                     monkeypatch, source):
    root = mount_tmpfs("size=1m")
    monkeypatch.setenv("NAPARI_EMD_CACHE", str(root))
    fits = _publish(source, _payload(300_000), key="fits")
    assert fits.path is not None
    data = _payload(2_000_000)  # more than the disk has left
    entry = _publish(source, data)
    assert entry.path is None and np.array_equal(entry.read(0, data.size), data)
    assert _files(root) == [fits.path.name]
    assert np.array_equal(fits.read(0, 300_000), _payload(300_000))


_FSIZE_CHILD = """
import os, resource, signal, sys
import numpy as np
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
from napari_emd import diskcache
ident = diskcache.identify(sys.argv[1])
out = []
for key, size in (("small", 50_000), ("big", 1_000_000)):
    data = np.arange(size, dtype=np.uint32).view(np.uint8)[:size]
    e = diskcache.publish("k", key, ident, {}, size, lambda w: w.pwrite(0, data))
    if e is None:
        out.append("none")
    else:
        ok = bool((e.read(0, size) == data).all())
        out.append(("cache" if e.path is not None else "scratch") + (" ok" if ok else " bad"))
print(",".join(out))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_file_size_limit_works_without_the_cache(cache, source):
    """Over the process's file size limit every write fails (EFBIG), the scratch file's
    too: the big entry is built nowhere (None, the caller works without), no error, no
    partial entry left; the small one is cached."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    res = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(source)], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "cache ok,none"
    assert len(_files(cache)) == 1 and not _files(cache)[0].startswith(".tmp-")


# -- two processes ------------------------------------------------------------------------


def _publish_in_child(src, size, seed, barrier, results):
    data = _payload(size, seed)

    def fill(w):
        barrier.wait(timeout=300)  # both processes are building now
        for off in range(0, size, 65536):
            w.pwrite(off, data[off:off + 65536])

    e = diskcache.publish(KIND, KEY, diskcache.identify(src), {"n": size}, size, fill)
    got = e.read(0, size)
    results.put((e.path is not None, bool(np.array_equal(got, data))))


def test_two_processes_building_one_entry_at_once(cache, source):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    size = 3_000_000
    procs = [ctx.Process(target=_publish_in_child, args=(source, size, 5, barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=600)
    assert [p.exitcode for p in procs] == [0, 0]
    assert got == [(True, True), (True, True)]
    assert len(_files(cache)) == 1 and not _files(cache)[0].startswith(".tmp-")
    entry = diskcache.lookup(KIND, KEY, diskcache.identify(source))
    assert np.array_equal(entry.read(0, size), _payload(size, 5))


def _replace_then_evict(src, size, results):
    ident = diskcache.identify(src)
    e = diskcache.publish(KIND, KEY, ident, {"v": 2}, size, _filler(_payload(size, 2)))
    results.put(("replaced", e.meta))
    results.put(("evicted", diskcache.evict(0)))


def test_a_held_entry_reads_on_while_another_process_replaces_and_evicts(cache, source):
    size = 200_000
    held = _publish(source, _payload(size, 1), meta={"v": 1})
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    p = ctx.Process(target=_replace_then_evict, args=(source, size, results))
    p.start()
    got = [results.get(timeout=600) for _ in range(2)]
    p.join(timeout=600)
    assert p.exitcode == 0 and got == [("replaced", {"v": 2}), ("evicted", 1)]
    assert _files(cache) == []
    assert held.meta == {"v": 1}
    assert np.array_equal(held.read(0, size), _payload(size, 1))
    assert diskcache.lookup(KIND, KEY, diskcache.identify(source)) is None


def test_an_entry_closes_its_descriptor_once(source):
    """close() then garbage collection must not close the descriptor number again: by
    then another thread may have opened a file under it (seen as EBADF in a parallel
    index build)."""
    import gc

    entry = _publish(source, _payload(1000))
    entry.close()
    other = os.open(source, os.O_RDONLY)  # the number is free: likely reused here
    try:
        del entry
        gc.collect()
        os.fstat(other)  # still open
    finally:
        os.close(other)
