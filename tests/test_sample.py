"""Sample data: synthetic files written at run time by the package's own writers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import napari_emd
from napari_emd import detect_format
from napari_emd.plugin.layer_meta import layer_info
from napari_emd.plugin.sample import (
    ncem_stack_path,
    ncem_stack_sample,
    sample_dir,
    velox_si_path,
    velox_si_sample,
)


@pytest.fixture(autouse=True)
def _sample_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_EMD_SAMPLE_DIR", str(tmp_path / "samples"))


def test_samples_go_to_the_cache_folder(tmp_path):
    assert sample_dir() == tmp_path / "samples"
    p = velox_si_path()
    assert Path(p).parent == tmp_path / "samples"
    mtime = os.stat(p).st_mtime_ns
    assert velox_si_path() == p and os.stat(p).st_mtime_ns == mtime  # written once
    assert not [f for f in os.listdir(tmp_path / "samples") if f.endswith(".tmp")]


def test_no_data_files_are_shipped():
    pkg = Path(napari_emd.__file__).parent
    shipped = [p for p in pkg.rglob("*") if p.suffix.lower() in (".emd", ".h5", ".hdf5", ".npy")]
    assert shipped == []


def test_velox_si_sample():
    layers = velox_si_sample()
    names = [meta["name"] for _, meta, _ in layers]
    assert "HAADF" in names and "EDS" in names
    facts = napari_emd.si_facts(velox_si_path())
    assert facts.format == "velox" and facts.has_si and facts.readable
    assert (facts.ny, facts.nx, facts.n_frames) == (48, 64, 3)
    assert len(facts.detectors) == 4
    data, meta, kind = next(t for t in layers if t[1]["name"] == "EDS")
    assert kind == "image" and data.shape == (4096, 48, 64)
    assert meta["units"][0] == "keV"
    rec = layer_info(meta).record
    assert rec.kind == "spectrum_image" and rec.is_lazy
    assert set(rec.metadata["Sample"]["elements"]) >= {"Fe", "Cu"}
    assert len(layer_info(meta).spectra) == 4
    # element-like peaks: the strongest channel above 5 keV is Cu Kα or Fe Kα
    total = np.asarray(rec.data.sum(axis=(0, 1)))
    energy = rec.axes[-1].offset + rec.axes[-1].scale * np.arange(total.size)
    high = energy > 5.0
    peak = energy[high][np.argmax(total[high])]
    assert min(abs(peak - 8.048), abs(peak - 6.404)) < 0.05


def test_ncem_stack_sample():
    layers = ncem_stack_sample()
    assert detect_format(ncem_stack_path()) == "ncem"
    assert len(layers) == 1
    data, meta, kind = layers[0]
    assert kind == "image" and data.shape == (8, 96, 128)
    assert list(meta["units"]) == ["s", "nm", "nm"]
    np.testing.assert_allclose(meta["scale"], [0.5, 0.05, 0.05])
    assert float(np.asarray(data).max()) > float(np.asarray(data).min())


@pytest.mark.napari
def test_open_sample_in_napari(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-emd-io", "ncem_stack")
    assert [lyr.name for lyr in viewer.layers] == ["drifting lattice"]
    viewer.open_sample("napari-emd-io", "velox_si")
    assert "EDS" in [lyr.name for lyr in viewer.layers]
    # the stack's time and the SI's energy are sliders of their own: the SI has a size-1
    # axis on the time slider (and shows at every time)
    eds = viewer.layers["EDS"]
    assert eds.ndim == 4 and eds.data.shape[1] == 1
    # the stack is hidden under the SI: its time slider says whose it is
    labels = sorted(viewer.dims.axis_labels[a] for a in viewer.dims.not_displayed)
    assert labels[0] == "EDS energy" and labels[1].startswith("Time (hidden: synthetic_ncem")
    assert not isinstance(eds.data, np.ndarray)  # lazy, like a dropped file
