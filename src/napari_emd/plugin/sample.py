"""Sample data for ``File > Open Sample > napari-emd``.

Nothing third-party is shipped: both samples are written at run time by the package's own
writers (:func:`napari_emd.synthetic.write_velox_si` for the Velox spectrum image,
:func:`napari_emd.writer.file_writer` for the NCEM stack) into a cache folder, then read
back through the same reader napari uses for any file. The files are deterministic, so
they are written once and reused.

Cache folder: ``$NAPARI_EMD_SAMPLE_DIR``, else ``$XDG_CACHE_HOME/napari-emd/samples``
(``~/.cache/...``), else the system temporary folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..model import SPECTRUM_IMAGE
from .layer_meta import layer_info

# Bump when the content of a sample changes, so stale cached files are not reused.
SAMPLE_VERSION = 1
VELOX_ELEMENTS = ["C", "O", "Fe", "Cu"]  # the elements the synthetic SI's peaks belong to


def sample_dir() -> Path:
    """The folder sample files are written to (created when missing)."""
    env = os.environ.get("NAPARI_EMD_SAMPLE_DIR")
    candidates = []
    if env:
        candidates.append(Path(env))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates.append(Path(cache) / "napari-emd" / "samples")
    candidates.append(Path(tempfile.gettempdir()) / "napari-emd-samples")
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    raise OSError("no writable folder for napari-emd sample files")


def _cached(name: str, write: Callable[[str], None]) -> str:
    """Path of sample ``name``, written by ``write(path)`` unless already there. The file
    is written under a temporary name and renamed, so a half-written file is never used."""
    path = sample_dir() / name
    if not path.is_file():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            write(str(tmp))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    return str(path)


def _write_velox(path: str) -> None:
    from ..synthetic import write_velox_si

    write_velox_si(path, ny=48, nx=64, frames=3, detectors=4, counts_per_pixel=40.0, seed=7)


def velox_si_path() -> str:
    """Path of the synthetic Velox EDS spectrum image (64 × 48 pixels, 3 frames,
    4 detectors, HAADF), written on first use."""
    return _cached(f"synthetic_velox_si_v{SAMPLE_VERSION}.emd", _write_velox)


def _atoms(ny: int, nx: int, shift: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """A noisy image of a square lattice of gaussian atom columns."""
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    period = 9.0
    yy = yy - shift[0]
    xx = xx - shift[1]
    dy = (yy % period) - period / 2
    dx = (xx % period) - period / 2
    img = np.exp(-(dy**2 + dx**2) / (2 * 1.6**2))
    img += 0.15 * np.exp(-((yy - ny / 2) ** 2 + (xx - nx / 3) ** 2) / (2 * (ny / 4) ** 2))
    counts = rng.poisson(200 * img + 10).astype(np.float32)
    return counts


def _write_ncem(path: str) -> None:
    from ..writer import file_writer

    rng = np.random.default_rng(3)
    n, ny, nx = 8, 96, 128
    stack = np.stack([_atoms(ny, nx, (0.4 * i, 0.7 * i), rng) for i in range(n)])
    signal = {
        "data": stack,
        "axes": [
            {"name": "time", "units": "s", "size": n, "scale": 0.5, "offset": 0.0,
             "navigate": True},
            {"name": "y", "units": "nm", "size": ny, "scale": 0.05, "offset": 0.0,
             "navigate": False},
            {"name": "x", "units": "nm", "size": nx, "scale": 0.05, "offset": 0.0,
             "navigate": False},
        ],
        "metadata": {"General": {"title": "drifting lattice"}, "Signal": {"signal_type": ""}},
    }
    file_writer(path, signal)


def ncem_stack_path() -> str:
    """Path of the synthetic NCEM EMD 0.2 image stack (8 frames of 96 × 128 pixels of a
    drifting atom lattice, 0.05 nm pixels, 0.5 s per frame), written on first use."""
    return _cached(f"synthetic_ncem_stack_v{SAMPLE_VERSION}.emd", _write_ncem)


def _with_elements(layers: list[Any], elements: list[str]) -> list[Any]:
    """Give the spectrum-image records the element list the synthetic peaks belong to
    (Velox files store it as the EDS element selection; the synthetic writer does not)."""
    for _, meta, _ in layers:
        info = layer_info(meta)
        rec = info.record if info is not None else None
        if rec is None or rec.kind != SPECTRUM_IMAGE:
            continue
        sample = rec.metadata.setdefault("Sample", {})
        if not sample.get("elements"):
            sample["elements"] = list(elements)
    return layers


def velox_si_sample() -> list[Any]:
    """Sample data: a synthetic Velox EDS spectrum image (HAADF, 4 detectors, 3 frames,
    C/O/Fe/Cu peaks) as napari layer data tuples, the SI lazy with energy on a slider."""
    from .reader import current_viewer, read_layers

    return _with_elements(read_layers(velox_si_path(), current_viewer()), VELOX_ELEMENTS)


def ncem_stack_sample() -> list[Any]:
    """Sample data: a synthetic NCEM EMD 0.2 image stack as napari layer data tuples."""
    from .reader import current_viewer, read_layers

    return read_layers(ncem_stack_path(), current_viewer())
