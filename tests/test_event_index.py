"""The disk-cached energy-plane index (``stream/diskindex.py``): planes equal the
reference decoder for every option, the cache is reused across processes, and stale,
corrupt, cancelled, unwritable and switched-off caches never give a wrong picture."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from napari_emd import api, diskcache
from napari_emd.cancel import cancellation
from napari_emd.errors import Cancelled
from napari_emd.formats.velox.stream import (
    clear_caches,
    read_spectrum_images,
    read_spectrum_images_reference,
)
from napari_emd.formats.velox.stream import planes as planes_module
from napari_emd.options import ReadOptions
from napari_emd.synthetic import write_velox_si

DRIFT = np.array([[0, 0], [1, 2], [3, -1], [4, 3]])


@pytest.fixture(autouse=True)
def _disk_path(monkeypatch):
    """Every spectrum image takes the disk index, however small, and its streams are
    read straight from the file (as big ones are)."""
    from napari_emd.formats.velox.stream import frames

    monkeypatch.setattr(planes_module, "FLAT_INDEX_VALUES", 0)
    monkeypatch.setattr(frames, "RAW_READS_FROM", 0)
    clear_caches()
    yield
    clear_caches()


@pytest.fixture(scope="module")
def si(tmp_path_factory):
    path = tmp_path_factory.mktemp("idx") / "si.emd"
    return write_velox_si(path, ny=24, nx=20, frames=4, detectors=3, counts_per_pixel=3,
                          bincount=128, seed=7, drift=DRIFT)


def _entries(root: str | None = None) -> list[Path]:
    """The plane-index entries of the cache (not the stream line indexes kept beside)."""
    root = root or os.environ["NAPARI_EMD_CACHE"]
    return sorted(p for p in Path(root).glob("velox-si-planes-*" + diskcache.SUFFIX)
                  if not p.name.startswith(".tmp-"))


def _check(spec, **kw) -> None:
    got = read_spectrum_images(spec.read(ReadOptions(lazy=True, **kw)))
    ref = read_spectrum_images_reference(spec.read(ReadOptions(**kw)))
    dt = np.dtype(kw.get("SI_dtype") or "uint16")
    for g, r in zip(got, ref, strict=True):
        d = g.display.compute()
        assert d.dtype == dt
        np.testing.assert_array_equal(d, np.moveaxis(r, -1, -3).astype(dt), err_msg=str(kw))


OPTIONS = [
    {},
    {"sum_frames": False},
    {"rebin_energy": 4},
    {"rebin_energy": 8, "sum_frames": False, "SI_dtype": "float32"},
    {"SI_dtype": "uint8"},
    {"sum_EDS_detectors": False},
    {"detectors": (0, 2)},
    {"detectors": (1,), "sum_frames": False},
    {"align_frames": DRIFT},
    {"align_frames": DRIFT, "sum_frames": False, "exclude_frames": (2,)},
    {"exclude_frames": (0, 3)},
    {"first_frame": 1, "last_frame": 3},
]


@pytest.mark.parametrize("kw", OPTIONS, ids=[str(k) for k in OPTIONS])
def test_every_option_equals_the_reference(si, kw):
    kw = {k: (tuple(map(tuple, v)) if isinstance(v, np.ndarray) else v)
          for k, v in kw.items()}
    _check(si.file(), **kw)
    assert _entries()  # the disk index was used


def test_a_window_spanning_many_blocks(si, monkeypatch):
    from napari_emd.formats.velox.stream import diskindex

    monkeypatch.setattr(diskindex, "BLOCK_BYTES", 64)  # many blocks, decoded in parallel
    spec = si.file()
    index = planes_module.disk_index(spec.read(ReadOptions(lazy=True)), spec.read().frames,
                                     first=diskindex.PlaneAsk(10, 90))
    assert index.first is not None  # counted by the build's first pass
    ref = read_spectrum_images_reference(spec.read(ReadOptions()))[0]
    for lo, hi, frame in ((0, 128, None), (10, 90, None), (10, 90, None), (5, 6, None)):
        got = index.plane(lo, hi, frame, (0, 1, 2), spec.npix)
        np.testing.assert_array_equal(got.reshape(spec.ny, spec.nx),
                                      ref[..., lo:hi].sum(-1))


def test_reopened_in_another_process_without_rebuilding(si):
    _check(si.file())
    assert len(_entries()) == 1
    code = f"""
import numpy as np
from napari_emd import api, diskcache
from napari_emd.formats.velox.stream import planes
planes.FLAT_INDEX_VALUES = 0
def refuse(*a, **k):
    raise AssertionError("rebuilt")
diskcache.publish = refuse
ds = [d for d in api.read_datasets({str(si.path)!r}, lazy=True) if d.display is not None]
assert api.display_pending(ds[0]) is None
print(int(np.asarray(ds[0].display[:, :, :].sum().compute())))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    ref = read_spectrum_images_reference(si.file().read(ReadOptions()))[0]
    assert int(out.stdout.split()[-1]) == int(ref.sum())


def test_display_pending_builds_with_progress(si):
    ds = next(d for d in api.read_datasets(si.path, lazy=True) if d.display is not None)
    build = api.display_pending(ds)
    assert build is not None and not _entries()
    seen = []
    build(lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1]
    assert api.display_pending(ds) is None
    clear_caches()
    assert api.display_pending(ds) is None  # in the disk cache


def test_cancel_leaves_no_entry(si):
    ds = next(d for d in api.read_datasets(si.path, lazy=True) if d.display is not None)
    build = api.display_pending(ds)
    stop = threading.Event()

    def cancel_at_half(done: int, total: int) -> None:
        if done >= total // 2:
            stop.set()

    with cancellation(stop), pytest.raises(Cancelled):
        build(cancel_at_half)
    assert not _entries()
    assert not list(Path(os.environ["NAPARI_EMD_CACHE"]).iterdir()) or \
        all(not p.name.startswith(".tmp-") for p in Path(os.environ["NAPARI_EMD_CACHE"])
            .iterdir())
    assert api.display_pending(ds) is not None  # still to build
    _check(si.file())


def test_stale_entry_is_not_used(tmp_path):
    path = tmp_path / "s.emd"
    a = write_velox_si(path, ny=10, nx=8, frames=2, detectors=2, bincount=64, seed=1)
    _check(a.file())
    clear_caches()
    b = write_velox_si(tmp_path / "new.emd", ny=10, nx=8, frames=2, detectors=2,
                       bincount=64, seed=2, counts_per_pixel=5)
    want = read_spectrum_images_reference(b.file().read(ReadOptions()))[0]
    os.replace(b.path, path)  # saved over: same path, another file
    (got,) = read_spectrum_images(
        dataclasses.replace(b.file(), path=str(path)).read(ReadOptions(lazy=True)))
    np.testing.assert_array_equal(got.display.compute(), np.moveaxis(want, -1, -3))
    assert len(_entries()) == 2  # a second entry, for the new file


@pytest.mark.parametrize("where", ["data", "tables"])
def test_corrupt_entry_is_discarded_and_rebuilt(si, where):
    _check(si.file())
    (entry,) = _entries()
    raw = bytearray(entry.read_bytes())
    # the payload starts at a 4 KiB boundary after the header; its data 4 KiB later
    pos = 4096 + (100 if where == "tables" else 4096 + 2000)
    raw[pos] ^= 0x5A
    entry.write_bytes(bytes(raw))
    clear_caches()
    _check(si.file())
    (rebuilt,) = _entries()
    assert rebuilt.read_bytes()[pos] != raw[pos]


@pytest.mark.parametrize("setting", ["off", "unwritable"])
def test_without_a_cache_planes_are_right(si, monkeypatch, tmp_path, setting):
    if setting == "off":
        monkeypatch.setenv("NAPARI_EMD_CACHE", "off")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        if os.access(ro, os.W_OK):  # root writes anyway: a file where the folder would be
            ro.chmod(0o700)
            ro.rmdir()
            ro.write_text("not a folder")
        monkeypatch.setenv("NAPARI_EMD_CACHE", str(ro / "cache"))
    _check(si.file(), sum_frames=False)


def test_streaming_planes_when_no_disk_at_all(si, monkeypatch):
    monkeypatch.setattr(diskcache, "publish", lambda *a, **k: None)
    _check(si.file(), align_frames=tuple(map(tuple, DRIFT)), rebin_energy=4)
    _check(si.file(), sum_frames=False, detectors=(2,))


@pytest.mark.napari
def test_viewer_builds_the_index_in_a_worker_then_shows(make_napari_viewer, qtbot, si):
    from napari_emd.plugin.layer_meta import layer_info

    viewer = make_napari_viewer()
    viewer.open(str(si.path), plugin="napari-emd-io")
    (layer,) = [ly for ly in viewer.layers if layer_info(ly).is_spectrum_image]
    assert layer_info(layer).indexing and not layer.visible  # hidden, not frozen
    qtbot.waitUntil(lambda: not layer_info(layer).indexing, timeout=120_000)
    assert layer.visible and _entries()
    ref = read_spectrum_images_reference(si.file().read(ReadOptions()))[0]
    c = int(viewer.dims.current_step[0])
    layer.refresh()
    np.testing.assert_array_equal(np.asarray(layer._slice.image.raw), ref[..., c])
    viewer.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_memory_stays_a_frame_not_the_events(tmp_path):
    """The build holds a frame per worker, not the events: 26 M events add about 22 MiB
    of peak RSS (the in-memory sorted index: 168 MiB), measured from a reset peak."""
    info = write_velox_si(tmp_path / "m.emd", ny=256, nx=256, frames=10, detectors=4,
                          counts_per_pixel=10, seed=4)
    code = f"""
import numpy as np
from napari_emd import api
from napari_emd.numba_kernels import INDEX_KERNELS, STREAM_KERNELS
def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
INDEX_KERNELS.warm(); STREAM_KERNELS.warm()
ds = next(d for d in api.read_datasets({str(info.path)!r}, lazy=True) if d.display is not None)
import dask.array as da
da.zeros(4).sum().compute()  # the scheduler's own start-up is not the index's
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # peak RSS from here
base = peak()
plane = ds.display[900].compute()
print((peak() - base) // 1024, int(plane.sum()))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    grown_mib, total = map(int, out.stdout.split()[-2:])
    assert total > 0 and _entries()
    assert grown_mib < 60, f"peak RSS grew by {grown_mib} MiB"


@pytest.mark.parametrize("frames_per_group", [2, 3, 4])
@pytest.mark.parametrize("kw", [{}, {"sum_frames": False}, {"rebin_energy": 4},
                                {"align_frames": DRIFT, "exclude_frames": (1,)},
                                {"detectors": (0, 2), "sum_frames": False}],
                         ids=["sum", "frames", "rebin", "aligned", "group"])
def test_grouped_frames_equal_the_reference(si, monkeypatch, kw, frames_per_group):
    """A plan with more (channel, stream, frame) triples than MAX_SEGMENTS groups its
    frames into segments (here 2, 3 and all 4 frames a group, the last group shorter
    with 3): the tables stay bounded, every plane still equals the reference decoder
    (a frame's own plane by a pass over that frame)."""
    from napari_emd.formats.velox.stream import diskindex

    spec = si.file()
    triples = 128 * 3  # channels x streams, per frame
    monkeypatch.setattr(diskindex, "MAX_SEGMENTS", triples * 4 // frames_per_group)
    kw = {k: (tuple(map(tuple, v)) if isinstance(v, np.ndarray) else v)
          for k, v in kw.items()}
    read = spec.read(ReadOptions(lazy=True, **kw))
    plain = spec.read(ReadOptions(lazy=True))
    assert diskindex.group_size(plain, plain.frames) == frames_per_group
    assert diskindex.group_size(read, read.frames) > 1
    _check(spec, **kw)
    assert _entries()
