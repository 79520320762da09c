"""Shared fixtures: where the real EMD files are, and skipping when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("NAPARI_EMD_TEST_DATA", ROOT.parent / "shared" / "emd-data"))
#: The real Velox files with an EDS spectrum image (event streams and SpectrumImage blob)
SI_FILES = [
    "fei_emd_si.emd",
    "fei_SI_SuperX-HAADF_10frames_10x50.emd",
    "fei_SI_EDS-HAADF-4detectors_2frames.emd",
    "Test SI 16x16 215 kx.emd",
    "example_velox_EELS_EDS.emd",
]


def real_file(name: str) -> Path:
    """Path of a real test file, skipping the test (with the reason) when it is absent."""
    p = DATA_DIR / name
    if not p.is_file():
        pytest.skip(f"real test file {name!r} not found in {DATA_DIR} "
                    "(set NAPARI_EMD_TEST_DATA to the emd-data folder)")
    return p


@pytest.fixture
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"real test data folder {DATA_DIR} is absent "
                    "(set NAPARI_EMD_TEST_DATA to the emd-data folder)")
    return DATA_DIR


def write_si_with_bad_stream(path):
    """A two-detector synthetic Velox SI (8 x 8, 2 frames, 64 channels) whose first
    detector's stream holds a channel beyond the spectrum (9000) for every event: it
    cannot be decoded, the second detector's can."""
    import h5py

    from napari_emd.synthetic import write_velox_si

    info = write_velox_si(path, ny=8, nx=8, frames=2, detectors=2, bincount=64, seed=1)
    with h5py.File(info.path, "r+") as f:
        data = f[info.streams[0]]
        values = data[()]
        values[values != 65535] = 9000  # beyond the 64 channels
        data[...] = values
    return info


@pytest.fixture(autouse=True)
def _emd_cache_dir(tmp_path_factory, monkeypatch):
    """Every test's disk cache (built indexes) in a temporary folder of its own, never the
    user's (and processes a test starts inherit it)."""
    monkeypatch.setenv("NAPARI_EMD_CACHE", str(tmp_path_factory.mktemp("emd-cache")))


def progress_bar(prefix: str):
    """The open napari progress bar whose description starts with ``prefix``, if any."""
    from napari.utils import progress

    return next((p for p in list(progress._all_instances)
                 if str(p.desc).startswith(prefix)), None)


def long_lazy_si(path):
    """A lazy-read synthetic SI of 32 row blocks (2048 x 128 pixels, 4096 channels, one
    X-ray per pixel): long enough that a cancel lands while its maps are computed."""
    from napari_emd.synthetic import write_velox_si

    write_velox_si(path, ny=2048, nx=128, frames=1, detectors=1, counts_per_pixel=1.0,
                   seed=3)
    return path


def write_viewer_si(path):
    """The synthetic SI the spectrum-viewer tests share (12 x 16 pixels, 2 frames, 2
    detectors, 60 X-rays per pixel, frame and detector, counts kept)."""
    from napari_emd.synthetic import write_velox_si

    return write_velox_si(path, ny=12, nx=16, frames=2, detectors=2, counts_per_pixel=60.0,
                          keep_counts=True, seed=5)
