"""The eager scatter: row blocks on several threads, joined and per-stream passes, always
the reference decoder's cube."""

from __future__ import annotations

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
