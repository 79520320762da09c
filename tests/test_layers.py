"""Dataset records -> napari layer tuples (no file, no viewer needed)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_emd.model import (
    IMAGE,
    SPECTRUM,
    SPECTRUM_IMAGE,
    Axis,
    Dataset,
    unique_titles,
)
from napari_emd.plugin.layer_meta import is_si_layer, layer_info
from napari_emd.plugin.layers import EAGER_LIMIT, file_info
from napari_emd.plugin.reader import datasets_to_layers


def _img(title="HAADF", data=None):
    data = np.arange(12, dtype=np.uint16).reshape(3, 4) if data is None else data
    return Dataset(
        title=title,
        data=data,
        axes=[Axis("y", data.shape[0], 0.5, 1.0, "nm"), Axis("x", data.shape[1], 0.5, 2.0, "nm")],
        kind=IMAGE,
        path="/Data/Image/1",
        filename="/tmp/f.emd",
    )


def _spectrum():
    return Dataset(
        title="EDS",
        data=np.arange(8, dtype=np.uint32),
        axes=[Axis("Energy", 8, 0.01, -0.2, "keV")],
        kind=SPECTRUM,
        signal_type="EDS_TEM",
        filename="/tmp/f.emd",
    )


def test_image_layer_calibrated():
    (data, kw, kind), = datasets_to_layers([_img()])
    assert kind == "image"
    assert data.dtype == np.uint16
    assert kw["name"] == "HAADF"
    assert kw["scale"] == [0.5, 0.5]
    assert kw["translate"] == [1.0, 2.0]
    assert kw["units"] == ["nm", "nm"]
    assert kw["axis_labels"] == ["y", "x"]
    assert layer_info(kw).source == "/tmp/f.emd"
    assert layer_info(kw).dataset_path == "/Data/Image/1"
    assert kw["contrast_limits"] == pytest.approx(tuple(np.percentile(np.arange(12), (0.5, 99.5))))


def test_spectra_ride_in_metadata():
    layers = datasets_to_layers([_img(), _spectrum()])
    assert len(layers) == 1
    spectra = layer_info(layers[0][1]).spectra
    assert spectra[0]["title"] == "EDS"
    np.testing.assert_array_equal(spectra[0]["data"], np.arange(8))
    assert spectra[0]["axes"][0]["units"] == "keV"


def test_spectra_only_file_gives_no_layer_but_its_file_info():
    """No placeholder layer: the reader shows such a file's spectra in the spectrum
    viewer (tests/test_first_view.py), from the file's info."""
    assert datasets_to_layers([_spectrum()], "/tmp/spec.emd") == []
    info = file_info([_spectrum()], "/tmp/spec.emd")
    assert info.title == "spec" and info.spectra[0]["title"] == "EDS"


def test_complex_becomes_magnitude_and_phase():
    z = (np.arange(6) + 1j * np.arange(6)).astype(np.complex64).reshape(2, 3)
    layers = datasets_to_layers([_img("Half FFT", z)])
    names = [kw["name"] for _, kw, _ in layers]
    assert names == ["Half FFT magnitude", "Half FFT phase"]
    np.testing.assert_allclose(layers[0][0], np.abs(z))
    np.testing.assert_allclose(layers[1][0], np.angle(z))
    assert layers[1][1]["colormap"] == "twilight"
    assert [layer_info(kw).part for _, kw, _ in layers] == ["magnitude", "phase"]


def test_parts_of_a_complex_spectrum_image_are_not_spectrum_image_layers():
    """The part of a complex dataset is recorded where every reader looks for it: the
    magnitude and phase of a complex SI are not offered to the spectrum viewer as SIs
    (the old layer code wrote the part under one key and the widgets read another)."""
    z = (np.ones((2, 3, 8)) + 1j).astype(np.complex64)
    axes = [Axis("y", 2), Axis("x", 3), Axis("Energy", 8, 0.1, 0.0, "keV")]
    ds = Dataset("SI", z, axes, kind=SPECTRUM_IMAGE, filename="/tmp/f.emd")
    real = Dataset("SI2", np.ones((2, 3, 8), np.uint16), axes, kind=SPECTRUM_IMAGE,
                   filename="/tmp/f.emd")
    layers = datasets_to_layers([ds, real])
    assert [kw["name"] for _, kw, _ in layers] == ["SI magnitude", "SI phase", "SI2"]
    assert [is_si_layer(kw) for _, kw, _ in layers] == [False, False, True]


def test_spectrum_image_energy_on_slider_and_lazy_stays_lazy():
    shape = (4, 5, 6000)
    big = da.zeros(shape, dtype=np.uint16, chunks=(2, 5, 6000))
    ds = Dataset(
        title="EDS",
        data=big,
        axes=[
            Axis("y", 4, 2.0, 0, "nm", navigate=True),
            Axis("x", 5, 2.0, 0, "nm", navigate=True),
            Axis("Energy", 6000, 0.01, 0, "keV"),
        ],
        kind=SPECTRUM_IMAGE,
        signal_type="EDS_TEM",
    )
    (data, kw, _), = datasets_to_layers([ds])
    assert data.shape == (6000, 4, 5)
    assert kw["axis_labels"] == ["EDS energy", "y", "x"]
    assert kw["units"] == ["keV", "nm", "nm"]
    # a spectrum image stays lazy, however small: its planes come on demand
    assert isinstance(data, da.Array)
    huge = da.zeros((512, 512, 4096), dtype=np.uint16, chunks=(64, 512, 4096))
    assert huge.nbytes > EAGER_LIMIT
    ds.data = huge
    ds.axes[0].size = ds.axes[1].size = 512
    (data, kw, _), = datasets_to_layers([ds])
    assert isinstance(data, da.Array)
    assert data.shape == (4096, 512, 512)


def test_unique_titles():
    ds = [_img("HAADF"), _img("HAADF"), _img("HAADF (2)")]
    unique_titles(ds)
    assert len({d.title for d in ds}) == 3


def _explode(block):
    raise AssertionError("the spectrum image was computed while opening")


def test_spectrum_image_layer_reads_no_data_and_starts_at_the_peak():
    """Opening must not decode the SI: contrast and the starting energy come from the
    file's single spectra."""
    shape = (600, 600, 4096)  # bigger than EAGER_LIMIT
    si = da.zeros(shape, dtype=np.uint16, chunks=(100, 600, 4096)).map_blocks(
        _explode, dtype=np.uint16
    )
    spectrum = np.zeros(4096)
    spectrum[805] = 3600.0 * 360000  # Cu Kα at 8.05 keV (offset 0, 10 eV channels)
    spectrum[20] = 1e12  # below 0.2 keV: the zero peak is not a line
    spec_ds = Dataset(
        title="EDS spectrum", data=spectrum, axes=[Axis("Energy", 4096, 0.01, 0.0, "keV")],
        kind=SPECTRUM, signal_type="EDS_TEM",
    )
    ds = Dataset(
        title="EDS",
        data=si,
        axes=[
            Axis("y", 600, 1.0, 0, "nm", navigate=True),
            Axis("x", 600, 1.0, 0, "nm", navigate=True),
            Axis("Energy", 4096, 0.01, 0.0, "keV"),
        ],
        kind=SPECTRUM_IMAGE,
        signal_type="EDS_TEM",
    )
    (data, kw, _), = datasets_to_layers([ds, spec_ds])
    assert isinstance(data, da.Array)
    assert layer_info(kw).peak_energy == pytest.approx(8.05)
    # the contrast waits for the plane napari computes (the viewer sets it then)
    assert kw["contrast_limits"] == (0.0, 1.0)


@pytest.mark.parametrize(
    "unit", ["Å", "1/Å", "1/nm", "1/µm", "µm", "nm", "pm", "rad", "mrad", "keV", "eV", "s", "ms"]
)
def test_napari_parses_every_unit_the_readers_produce(unit):
    from napari.layers import Image

    from napari_emd.units import clean_unit

    assert clean_unit(unit) == unit
    layer = Image(np.zeros((2, 2)), units=[unit, unit])
    assert str(layer.units[0]) not in ("", "pixel")
