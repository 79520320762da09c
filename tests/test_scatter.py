"""The eager scatter: row blocks on several threads, joined and per-stream passes, always
the reference decoder's cube."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from napari_emd.formats.velox.stream import eager as eager_module
from napari_emd.formats.velox.stream import (
    read_spectrum_images,
    read_spectrum_images_reference,
)
from napari_emd.options import ReadOptions
from napari_emd.synthetic import write_velox_si


@pytest.mark.parametrize(
    ("ny", "nx", "opts"),
    [
        # one frame of two: the detectors' spans are joined for one pass
        (96, 96, dict(sum_frames=False, first_frame=1, last_frame=2)),
        # every frame summed over the detectors: one stream at a time
        (30, 300, dict(sum_frames=True)),
        # one cube per detector
        (30, 300, dict(sum_frames=True, sum_EDS_detectors=False)),
    ],
)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_eager_scatter_equals_reference(tmp_path, monkeypatch, ny, nx, opts, threads):
    """Whatever the thread count (each thread takes blocks of output rows), the joined
    multi-detector pass and the stream-by-stream passes give the reference cubes."""
    info = write_velox_si(tmp_path / "m.emd", ny=ny, nx=nx, frames=2, detectors=2,
                          counts_per_pixel=3, seed=5)
    spec = info.spec()
    o = ReadOptions(**opts)
    monkeypatch.setattr(eager_module, "n_threads", lambda: threads)
    refs = read_spectrum_images_reference(spec, o)
    got = read_spectrum_images(spec, o)
    assert len(got) == len(refs)
    for g, ref in zip(got, refs, strict=True):
        np.testing.assert_array_equal(g.data, ref)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise is Linux's")
def test_big_eager_outputs_ask_for_small_pages():
    """Outputs of 64 MiB and more get 4 KiB pages (``nh`` in the mapping's VmFlags): the
    scatter then faults in only the pages it writes."""
    from napari_emd.libc import small_pages

    arr = np.zeros(80 * 2**20, np.uint8)
    assert small_pages(arr)
    addr = arr.ctypes.data + arr.nbytes // 2
    flags = None
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            if "-" in line.split()[0] and ":" not in line.split()[0]:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                inside = lo <= addr < hi
            elif inside and line.startswith("VmFlags:"):
                flags = line.split()[1:]
                break
    assert flags is not None and "nh" in flags


def test_a_cancelled_eager_read_stops(tmp_path):
    """The loader's Cancel sets an event; the decoder stops at the next block."""
    import threading

    from napari_emd.cancel import cancellation
    from napari_emd.errors import Cancelled

    info = write_velox_si(tmp_path / "c.emd", ny=40, nx=40, frames=2, detectors=2, seed=9)
    event = threading.Event()
    event.set()
    with cancellation(event), pytest.raises(Cancelled):
        read_spectrum_images(info.spec(), ReadOptions())
    (cube,) = read_spectrum_images(info.spec(), ReadOptions())  # no event: it reads
    assert cube.data.sum() > 0
