"""Make docs/images/alignment.png: an Fe K-alpha map of a drifting synthetic Velox SI,
summed as stored and summed with ``align_frames=True``, with the frame coverage.

Usage: ``python scripts/alignment_figure.py [out.png]`` (writes the synthetic file into a
temporary folder).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import napari_emd
from napari_emd.model import SPECTRUM_IMAGE
from napari_emd.synthetic import write_velox_si

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 10
# a steady drift of 1.1 px down and 0.7 px left per frame, with a jump at frame 6
DRIFT = np.rint(np.arange(FRAMES)[:, None] * np.array([1.1, -0.7])).astype(int)
DRIFT[6:] += [2, 3]


def fe_map(ds: napari_emd.Dataset) -> np.ndarray:
    """Counts in a 160 eV window around Fe K-alpha (6.404 keV), from the energy axis."""
    e = ds.axes[-1]
    lo = round((6.404 - 0.08 - e.offset) / e.scale)
    hi = round((6.404 + 0.08 - e.offset) / e.scale)
    return np.asarray(ds.data[..., lo:hi].sum(-1), np.float64)


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        info = write_velox_si(Path(tmp) / "drift.emd", ny=128, nx=128, frames=FRAMES,
                              detectors=4, counts_per_pixel=3, seed=21, drift=DRIFT)
        est = napari_emd.estimate_frame_shifts(info.path)
        plain = next(d for d in napari_emd.read_datasets(info.path) if d.kind == SPECTRUM_IMAGE)
        read = napari_emd.read_datasets(info.path, align_frames=True)
        aligned = next(d for d in read if d.kind == SPECTRUM_IMAGE)
        cover = next(d for d in read if d.title == "EDS frame coverage").data
    print("drift written:\n", DRIFT.T, "\nestimated:\n", est.round(2).T)
    before, after = fe_map(plain), fe_map(aligned)
    normalised = np.divide(after * FRAMES, cover, out=np.zeros_like(after), where=cover > 0)
    vmax = np.percentile(after, 99.5)
    fig, axes = plt.subplots(1, 3, figsize=(11, 4), constrained_layout=True)
    for ax, img, title, kw in (
        (axes[0], before, "summed as stored", {"vmax": vmax}),
        (axes[1], normalised, "align_frames=True\n(divided by coverage / 10 frames)",
         {"vmax": vmax}),
        (axes[2], cover, "EDS frame coverage (frames per pixel)", {"vmin": 0}),
    ):
        im = ax.imshow(img, cmap="magma" if ax is not axes[2] else "viridis", **kw)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("Fe K\u03b1 map (6.32-6.48 keV) of a synthetic 128 x 128 SI, 10 frames "
                 f"drifting by up to {np.abs(DRIFT).max()} px", fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print("wrote", out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "images" /
         "alignment.png")
