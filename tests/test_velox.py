"""Velox (ThermoFisher) reader: every real Velox file against the reference reader
(rsciio) and the README's reference arrays, lazy == eager, the reader options, and damaged
copies written here."""

from __future__ import annotations

import pickle
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import DATA_DIR, SI_FILES, real_file
from napari_emd import EMDError, EMDWarning, detect_format, read_datasets
from napari_emd.formats import velox
from napari_emd.model import IMAGE, IMAGE_STACK, SPECTRUM, SPECTRUM_IMAGE

VELOX_FILES = [
    "fei_emd_image.emd",
    "fei_emd_spectrum.emd",
    "fei_emd_si.emd",
    "fei_SI_SuperX-HAADF_10frames_10x50.emd",
    "fei_SI_EDS-HAADF-4detectors_2frames.emd",
    "Test SI 16x16 215 kx.emd",
    "example_velox_EELS_EDS.emd",
    "fei_example_dpc_titles.emd",
    "fei_example_complex_fft.emd",
    "FFTComplexEven.emd",
    "FFTComplexOdd.emd",
    "fei_example_tem_stack.emd",
    "1532 Camera Ceta.emd",
]
EELS_EDS = "example_velox_EELS_EDS.emd"


def _read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_datasets(path, **kw)


def _by_title(datasets) -> dict:
    return {d.title: d for d in datasets}


def _ureg():
    import pint

    return pint.UnitRegistry()


UREG = None


def _convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` (rsciio's spelling, e.g. '1 / µm') expressed in
    ``to_unit``."""
    global UREG
    if UREG is None:
        UREG = _ureg()
    if not from_unit and not to_unit:
        return value
    return UREG.Quantity(value, from_unit.replace(" ", "")).to(to_unit).magnitude


def _rsciio(path, **kw) -> list[dict]:
    rs = pytest.importorskip("rsciio.emd")
    if any(n in str(path) for n in SI_FILES):
        pytest.importorskip("sparse", reason="rsciio needs 'sparse' for Velox SIs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import logging

        logging.getLogger("rsciio").setLevel(logging.ERROR)
        return rs.file_reader(str(path), **kw)


def _category(kind: str) -> str:
    return {IMAGE: "image", IMAGE_STACK: "image", SPECTRUM: "spectrum"}.get(kind, "si")


def _ref_category(r: dict) -> str:
    st = r["metadata"]["Signal"].get("signal_type", "")
    if st == "EDS_TEM" and np.ndim(r["data"]) == 1:
        return "spectrum"
    if st in ("EDS_TEM", "EELS"):
        return "si"
    return "image"


def _pair(ours, ref) -> list[tuple]:
    """Match our datasets to rsciio's: images in file order, spectra by detector, EELS by
    energy offset, the EDS SI by title."""
    pairs = []
    mine = {"image": [], "spectrum": [], "si": []}
    theirs = {"image": [], "spectrum": [], "si": []}
    for d in ours:
        mine[_category(d.kind)].append(d)
    for r in ref:
        theirs[_ref_category(r)].append(r)
    assert len(mine["image"]) == len(theirs["image"])
    pairs += list(zip(mine["image"], theirs["image"]))
    by_det = {d.original_metadata["BinaryResult"]["Detector"]: d for d in mine["spectrum"]}
    assert len(by_det) == len(theirs["spectrum"])
    for r in theirs["spectrum"]:
        pairs.append((by_det[r["original_metadata"]["BinaryResult"]["Detector"]], r))
    eels = {round(d.axes[-1].offset, 3): d for d in mine["si"] if d.signal_type == "EELS"}
    eds = [d for d in mine["si"] if d.signal_type == "EDS_TEM"]
    ref_eds = []
    for r in theirs["si"]:
        if r["metadata"]["Signal"]["signal_type"] == "EELS":
            pairs.append((eels[round(float(r["axes"][-1]["offset"]), 3)], r))
        else:
            ref_eds.append(r)
    assert len(eds) == len(ref_eds)
    if len(eds) > 1:  # one per detector: match by detector name
        det = {d.original_metadata["BinaryResult"]["Detector"]: d for d in eds}
        pairs += [(det[r["original_metadata"]["BinaryResult"]["Detector"]], r)
                  for r in ref_eds]
    else:
        pairs += list(zip(eds, ref_eds))
    return pairs


def _compare_axes(o, r, *, skip_spatial: bool = False) -> None:
    assert len(o.axes) == len(r["axes"])
    for a, b in zip(o.axes, r["axes"]):
        assert a.size == b["size"], (o.title, a.name)
        assert a.navigate == b["navigate"], (o.title, a.name)
        if skip_spatial and a.name in ("x", "y"):
            continue
        if a.name in ("x", "y") and float(b["offset"]) == 0.0 and a.offset != 0.0:
            # Velox writes offset 0 for the HAADF (DPC, ...) image of a scan whose maps
            # and SI it places off centre; rsciio keeps that 0, we place every image of
            # the scan by its scan area (tests/test_first_view.py checks the overlay)
            continue
        units = b.get("units") or ""
        assert a.scale == pytest.approx(_convert(float(b["scale"]), units, a.units), rel=1e-6)
        assert a.offset == pytest.approx(
            _convert(float(b["offset"]), units, a.units), rel=1e-6, abs=1e-9
        )


# --- every file against the reference ---------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize("name", VELOX_FILES)
def test_against_rsciio(name):
    """Titles, dtypes, shapes, calibrations (after unit conversion) and data agree with
    rsciio, except where rsciio is wrong or less informative (each case said below)."""
    path = real_file(name)
    ours = _read(path)
    ref = _rsciio(path)
    for o, r in _pair(ours, ref):
        rdata = np.asarray(r["data"])
        if name == EELS_EDS and o.title == "EDS":
            # rsciio takes the 128x128 survey image's grid; see test_eels_eds_grid
            assert rdata.shape == (128, 128, 4096)
            assert o.shape == (16, 20, 4096)
            assert int(np.asarray(o.data).sum()) == int(rdata.sum())
            continue
        if o.kind == SPECTRUM and len([d for d in ours if d.kind == SPECTRUM]) > 1:
            # several single spectra: rsciio calls them all 'EDS'; we add the detector
            assert o.title == f"EDS spectrum - {o.original_metadata['BinaryResult']['Detector']}"
        elif o.signal_type == "EELS" and len([d for d in ours if d.signal_type == "EELS"]) > 1:
            assert o.title.startswith("EELS ") and o.title.endswith(" eV")
        else:
            assert o.title == r["metadata"]["General"]["title"]
        assert o.dtype == rdata.dtype, o.title
        assert o.shape == rdata.shape, o.title
        np.testing.assert_array_equal(np.asarray(o.data), rdata, err_msg=o.title)
        # EELS maps: rsciio leaves them uncalibrated although they are on the SI's grid
        eels_map = o.title.endswith("-EELS")
        if eels_map:
            assert r["axes"][0]["scale"] == 1.0
            assert o.axes[0].units == "µm"
        _compare_axes(o, r, skip_spatial=eels_map)


OPTION_CASES = [
    ("fei_emd_si.emd", {"sum_frames": False}),
    ("fei_emd_si.emd", {"first_frame": 1, "last_frame": 3, "rebin_energy": 2}),
    ("fei_emd_si.emd", {"load_SI_image_stack": True, "SI_dtype": "float32"}),
    ("fei_SI_SuperX-HAADF_10frames_10x50.emd", {"sum_frames": False, "last_frame": 4}),
    ("fei_SI_EDS-HAADF-4detectors_2frames.emd", {"sum_EDS_detectors": False}),
    ("fei_SI_EDS-HAADF-4detectors_2frames.emd", {"sum_frames": False, "rebin_energy": 8}),
    ("Test SI 16x16 215 kx.emd", {"load_SI_image_stack": True, "first_frame": 1}),
    ("Test SI 16x16 215 kx.emd", {"select_type": "spectrum_image", "SI_dtype": "int32"}),
]


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "kw"), OPTION_CASES)
def test_options_against_rsciio(name, kw):
    """The SI options give the same arrays as rsciio (frame ranges, frames kept, detectors
    apart, rebinning, dtype, image stacks)."""
    path = real_file(name)
    ours = _read(path, **kw)
    ref = _rsciio(path, **kw)
    for o, r in _pair(ours, ref):
        rdata = np.asarray(r["data"])
        assert (o.shape, o.dtype) == (rdata.shape, rdata.dtype), o.title
        np.testing.assert_array_equal(np.asarray(o.data), rdata, err_msg=o.title)
        assert [a.size for a in o.axes] == [a["size"] for a in r["axes"]]
        assert [a.navigate for a in o.axes] == [a["navigate"] for a in r["axes"]]


@pytest.mark.realdata
def test_readme_values():
    """The values the README lists (not already covered by the rsciio comparison)."""
    image = _read(real_file("fei_emd_image.emd"))
    assert [d.title for d in image] == ["HAADF"]
    np.testing.assert_array_equal(image[0].data, np.load(DATA_DIR / "fei_emd_image.npy"))
    assert image[0].axes[1].scale == pytest.approx(0.005302, rel=1e-3)
    assert image[0].axes[1].units == "µm"

    spec = _read(real_file("fei_emd_spectrum.emd"))
    assert [(d.title, d.kind, d.signal_type) for d in spec] == [("EDS", SPECTRUM, "EDS_TEM")]
    np.testing.assert_array_equal(spec[0].data, np.load(DATA_DIR / "fei_emd_spectrum.npy"))
    assert (spec[0].axes[0].scale, spec[0].axes[0].units) == (pytest.approx(0.01), "keV")

    tem = _read(real_file("fei_example_tem_stack.emd"))
    (ceta,) = tem
    assert (ceta.title, ceta.dtype, ceta.shape, ceta.kind) == (
        "Ceta", np.dtype("int16"), (2, 3, 3), IMAGE_STACK)
    assert (ceta.axes[0].name, ceta.axes[0].scale, ceta.axes[0].units) == ("Time", 0.8, "s")
    assert ceta.axes[1].scale == pytest.approx(8.173, rel=1e-3)
    assert ceta.axes[1].units == "pm"

    dpc = _read(real_file("fei_example_dpc_titles.emd"))
    assert sorted(d.title for d in dpc) == sorted(
        ["DF4-A", "DF4-B", "DF4-C", "DF4-D", "A-C", "B-D", "DPC", "iDPC", "Filtered iDPC"])
    assert _by_title(dpc)["DPC"].dtype == np.complex64

    fft = _read(real_file("fei_example_complex_fft.emd"))
    assert (fft[0].title, fft[0].dtype, fft[0].shape) == ("Half FFT", np.complex64, (3, 4))
    assert fft[0].axes[0].units == "1/µm"
    assert fft[0].axes[0].scale == pytest.approx(98.02, rel=1e-4)

    ceta = _read(real_file("1532 Camera Ceta.emd"))[0]
    assert (ceta.title, ceta.shape, ceta.axes[0].units) == ("Ceta", (64, 64), "nm")
    assert not np.asarray(ceta.data).any()
    # no AcquisitionStartDatetime: the date comes from the camera's time stamp
    assert ceta.metadata["General"]["date"].startswith("20")

    test_si = _by_title(_read(real_file("Test SI 16x16 215 kx.emd")))
    for el in ("C", "Ca", "O", "Cu"):
        assert test_si[el].dtype == np.float32 and test_si[el].shape == (16, 16)
        assert test_si[el].axes[0].scale == pytest.approx(3.599, rel=1e-3)
    assert test_si["EDS"].shape == (16, 16, 4096)
    assert test_si["EDS"].axes[-1].scale == pytest.approx(0.01)


@pytest.mark.realdata
def test_fei_emd_si_reference_arrays():
    path = real_file("fei_emd_si.emd")
    si = _by_title(_read(path))["EDS"]
    np.testing.assert_array_equal(si.data, np.load(DATA_DIR / "fei_emd_si.npy"))
    part = _by_title(_read(path, first_frame=2, last_frame=4))["EDS"]
    np.testing.assert_array_equal(part.data, np.load(DATA_DIR / "fei_emd_si_frame.npy"))


@pytest.mark.realdata
def test_eels_eds_grid():
    """example_velox_EELS_EDS.emd: the EDS SI is 16 x 20, not 128 x 128.

    The stream's AcquisitionSettings (RasterScanDefinition) and the survey image 'a' say
    128 x 128, which is where the reference reader takes its grid from. But the file's
    own facts agree on 16 rows of 20 pixels: the SI's scan area (ScanSize 128 x 128 times
    the ScanArea fractions 0.125 x 0.15625), the DF-S image and the EDS/EELS maps acquired
    with it, the EELS cubes (Info width 20, height 16, AcquisitionMetadata per row ending
    at pixel index 19, 39, ...), and the event stream itself: one frame
    (FrameLocationTable has one entry) holding 320 = 16 x 20 pixels. A 128 x 128 grid would
    need 16384 pixels per frame.
    """
    path = real_file(EELS_EDS)
    facts = velox.si_facts(path)
    assert (facts.ny, facts.nx) == (16, 20)
    assert facts.n_frames == 1
    with h5py.File(path) as f:
        stream = f["Data/SpectrumStream"]
        for key in stream:
            events = stream[key]["Data"][:, 0]
            pixels = int((events == 65535).sum()) + int(events[-1] != 65535)
            assert pixels == 16 * 20
            assert stream[key]["FrameLocationTable"].shape[0] == 1
    ds = _by_title(_read(path))
    assert ds["EDS"].shape == (16, 20, 4096)
    # the lazy open counts too (the scan area is lost): the same grid
    assert _by_title(_read(path, lazy=True))["EDS"].shape == (16, 20, 4096)
    assert ds["EDS"].axes[0].scale == ds["DF-S"].axes[0].scale
    assert ds["EDS"].axes[0].units == ds["DF-S"].axes[0].units == "µm"
    # the EDS counts land on the same pixels the EDS maps show signal on
    eels = [d for d in ds.values() if d.signal_type == "EELS"]
    assert len(eels) == 3 and all(d.shape == (16, 20, 2048) for d in eels)
    assert sorted(ds) == sorted(
        ["Fe-EELS", "Co-EELS", "O-EELS", "Co", "O", "Fe", "DF-S", "a", "EDS"]
        + [f"EDS spectrum - UltraX{i}" for i in range(1, 7)]
        + [d.title for d in eels]
    )


@pytest.mark.realdata
def test_grid_from_the_stream_when_scan_metadata_is_lost(tmp_path):
    """With the SI's scan metadata zeroed and the EELS cubes gone, only the stream's
    RasterScanDefinition (128 x 128) and the images' shapes are left: counting the
    stream's pixels (320 in one frame) picks the 16 x 20 grid of the maps."""
    path = _copy(EELS_EDS, tmp_path)
    with h5py.File(path, "r+") as f:
        for group in ("Data/SpectrumImage", "Data/SpectrumStream"):
            for key in f[group]:
                f[group][key]["Metadata"][...] = 0
        del f["Data/EelsSpectrumImage"]
    ds = _by_title(_read(path))
    assert ds["EDS"].shape == (16, 20, 4096)
    # the lazy open counts too (the scan area is lost): the same grid
    assert _by_title(_read(path, lazy=True))["EDS"].shape == (16, 20, 4096)
    ref = _by_title(_read(real_file(EELS_EDS)))["EDS"]
    np.testing.assert_array_equal(ds["EDS"].data, ref.data)
    source = ds["EDS"].original_metadata["ImportedDataParameter"]["Scan_grid_source"]
    assert source == "image in the file"


# --- lazy ------------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize("name", VELOX_FILES)
def test_lazy_equals_eager(name):
    path = real_file(name)
    eager = _read(path)
    lazy = _read(path, lazy=True)
    assert [d.title for d in lazy] == [d.title for d in eager]
    for a, b in zip(eager, lazy):
        assert b.is_lazy, b.title
        assert (a.shape, a.dtype) == (b.shape, b.dtype), a.title
        pickle.dumps(b.data)  # the graph holds a path, no open h5py handle
        np.testing.assert_array_equal(np.asarray(a.data), b.data.compute(), err_msg=a.title)
        assert [ax.to_dict(i) for i, ax in enumerate(a.axes)] == [
            ax.to_dict(i) for i, ax in enumerate(b.axes)]


@pytest.mark.realdata
def test_lazy_chunks():
    """Image stacks: one chunk per frame; EELS cubes: one chunk per scan row."""
    tem = _read(real_file("fei_example_tem_stack.emd"), lazy=True)[0]
    assert tem.data.chunks == ((1, 1), (3,), (3,))
    ds = _read(real_file(EELS_EDS), lazy=True, select_type="spectrum_image")
    for d in ds:
        if d.signal_type == "EELS":
            assert d.data.chunks[0] == (1,) * 16
            assert d.data.chunks[1:] == ((20,), (2048,))


@pytest.mark.realdata
def test_lazy_open_does_not_read_the_stream(monkeypatch):
    """Opening lazily with a FrameLocationTable never counts the stream's pixels (the
    spy replaces this module's own counting function, not any library)."""
    from napari_emd.formats.velox import grid

    calls = []
    monkeypatch.setattr(grid, "count_pixels", lambda *a, **k: calls.append(a) or (0, None))
    path = real_file("fei_SI_EDS-HAADF-4detectors_2frames.emd")
    facts = velox.si_facts(path)
    assert facts.n_frames == 2 and facts.frame_table
    si = _by_title(_read(path, lazy=True))["EDS"]
    assert si.shape == (16, 16, 4096) and si.is_lazy
    assert calls == []


# --- options -----------------------------------------------------------------------------


@pytest.mark.realdata
def test_select_type():
    path = real_file("Test SI 16x16 215 kx.emd")
    everything = _read(path)
    images = _read(path, select_type="image")
    assert [d.title for d in _read(path, select_type="images")] == [d.title for d in images]
    assert images and all(d.kind in (IMAGE, IMAGE_STACK) for d in images)
    spectra = _read(path, select_type="single_spectrum")
    assert len(spectra) == 4 and all(d.kind == SPECTRUM for d in spectra)
    sis = _read(path, select_type="spectrum_image")
    assert [d.title for d in sis] == ["EDS"]
    assert len(everything) == len(images) + len(spectra) + len(sis)
    with pytest.raises(ValueError, match="select_type"):
        read_datasets(path, select_type="movie")
    with pytest.warns(EMDWarning, match="matches nothing"):
        assert read_datasets(real_file("fei_emd_image.emd"), select_type="spectrum_image") == []


@pytest.mark.realdata
def test_eds_detectors_frames_rebin():
    path = real_file("fei_SI_EDS-HAADF-4detectors_2frames.emd")
    summed = _by_title(_read(path))["EDS"]
    per = [d for d in _read(path, sum_EDS_detectors=False) if d.kind == SPECTRUM_IMAGE]
    assert [d.title for d in per] == [f"EDS - SuperXG2{i}" for i in range(1, 5)]
    total = sum(np.asarray(d.data, dtype=np.int64) for d in per)
    np.testing.assert_array_equal(total, summed.data)
    for d in per:
        det = d.metadata["Acquisition_instrument"]["TEM"]["Detector"]["EDS"]
        assert det["live_time"] > 0 and "azimuth_angle" in det

    frames = _by_title(_read(path, sum_frames=False))["EDS"]
    assert frames.shape == (2, 16, 16, 4096)
    assert [a.name for a in frames.axes] == ["Time", "y", "x", "Energy"]
    assert (frames.axes[0].scale, frames.axes[0].units) == (pytest.approx(16.384), "s")
    np.testing.assert_array_equal(np.asarray(frames.data).sum(0), summed.data)

    rebinned = _by_title(_read(path, rebin_energy=4))["EDS"]
    assert rebinned.shape == (16, 16, 1024)
    e0, e = summed.axes[-1], rebinned.axes[-1]
    assert e.scale == pytest.approx(4 * e0.scale)
    assert e.offset == pytest.approx(e0.offset + 1.5 * e0.scale)  # mean of 4 channels
    np.testing.assert_array_equal(
        rebinned.data, np.asarray(summed.data).reshape(16, 16, 1024, 4).sum(-1))

    for d in (summed, frames):  # the energy-first view for napari, when the decoder gives one
        if d.display is not None:
            assert [a.name for a in d.display_axes] == [
                *(a.name for a in d.axes[:-3]), "Energy", "y", "x"]
            assert tuple(d.display.shape) == tuple(a.size for a in d.display_axes)
            np.testing.assert_array_equal(
                np.asarray(d.display), np.moveaxis(np.asarray(d.data), -1, -3))

    f32 = _by_title(_read(path, SI_dtype="float32"))["EDS"]
    assert f32.dtype == np.float32
    with pytest.raises(ValueError):
        read_datasets(path, first_frame=5)
    with pytest.raises(ValueError):
        read_datasets(path, rebin_energy=3)


@pytest.mark.realdata
def test_si_images_first_frame_or_stack():
    """Images acquired with an SI are the first frame by default (as rsciio returns), or
    every frame with load_SI_image_stack=True (lazily one chunk per frame)."""
    path = real_file("fei_emd_si.emd")
    with h5py.File(path) as f:
        stored = f["Data/Image/9f4e9989c30045d490f40dcf5ca5cd9d/Data"][()]
    first = _by_title(_read(path))["HAADF"]
    np.testing.assert_array_equal(first.data, stored[:, :, 0])
    stack = _by_title(_read(path, load_SI_image_stack=True))["HAADF"]
    assert stack.kind == IMAGE_STACK and stack.shape == (5, 16, 16)
    np.testing.assert_array_equal(stack.data, np.moveaxis(stored, 2, 0))
    assert stack.axes[0].name == "Time" and stack.axes[0].units == "ms"
    assert len(stack.original_metadata["Frames"]) == 5
    lazy = _by_title(_read(path, load_SI_image_stack=True, lazy=True))["HAADF"]
    assert lazy.data.chunks[0] == (1,) * 5
    np.testing.assert_array_equal(lazy.data.compute(), stack.data)


# --- metadata ----------------------------------------------------------------------------


@pytest.mark.realdata
def test_metadata():
    ds = _by_title(_read(real_file("fei_SI_EDS-HAADF-4detectors_2frames.emd")))
    md = ds["EDS"].metadata
    assert md["General"]["date"] == "2018-03-15"
    assert md["General"]["time_zone"]
    tem = md["Acquisition_instrument"]["TEM"]
    assert tem["beam_energy"] == 200.0
    assert tem["camera_length"] == pytest.approx(260.0)
    assert tem["Stage"]["tilt_alpha"] == pytest.approx(0.007, abs=1e-3)
    assert set(tem["Stage"]) >= {"tilt_alpha", "tilt_beta", "x", "y", "z"}
    eds = tem["Detector"]["EDS"]
    assert eds["elevation_angle"] == pytest.approx(22.0, abs=0.01)
    assert eds["number_of_frames"] == 2
    assert md["Sample"]["elements"] == []
    om = ds["EDS"].original_metadata
    assert om["ImportedDataParameter"]["Number_of_frames"] == 2
    assert "Operations" in om and "BinaryResult" in om and len(om["Frames"]) == 2
    full = ds["HAADF"].full_metadata()
    assert full["General"]["title"] == "HAADF"
    assert full["General"]["original_filename"] == "fei_SI_EDS-HAADF-4detectors_2frames.emd"

    test_si = _by_title(_read(real_file("Test SI 16x16 215 kx.emd")))
    assert test_si["EDS"].metadata["Sample"]["elements"] == ["C", "Ca", "Cu", "O"]
    assert "SharedProperties" in test_si["EDS"].original_metadata
    eels = _read(real_file(EELS_EDS), select_type="spectrum_image")
    assert eels[-1].metadata["Sample"]["elements"] == ["Co", "Fe", "O"]
    # the experiment log's time stamps carry the acquisition's UTC offset (+02:00)
    assert eels[-1].metadata["General"]["time_zone"] == "UTC+02:00"
    assert _read(real_file("fei_example_dpc_titles.emd"))[0].metadata["Sample"] == {
        "elements": []}


@pytest.mark.realdata
@pytest.mark.parametrize("name", SI_FILES)
def test_si_facts(name):
    path = real_file(name)
    facts = velox.si_facts(path)
    si = _by_title(_read(path, select_type="spectrum_image"))["EDS"]
    assert facts.has_si and facts.readable and facts.source == "event streams"
    assert (facts.ny, facts.nx) == si.shape[:2]
    assert facts.channels == si.shape[2]
    assert facts.pixel_size == pytest.approx(si.axes[1].scale)
    assert facts.pixel_units == si.axes[1].units
    lo, hi = facts.energy_range
    assert lo == pytest.approx(si.axes[2].offset)
    assert hi == pytest.approx(si.axes[2].offset + si.axes[2].scale * (si.shape[2] - 1))
    assert list(facts.detectors) == si.original_metadata["ImportedDataParameter"]["Detectors"]


@pytest.mark.realdata
def test_si_facts_no_si():
    facts = velox.si_facts(real_file("fei_emd_spectrum.emd"))
    assert not facts.has_si and list(facts.elements) == ["C", "Cu", "O", "Si"]


# --- damaged and unusual files -----------------------------------------------------------


def _copy(name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name.replace(" ", "_")
    shutil.copyfile(real_file(name), dst)
    return dst


@pytest.mark.realdata
def test_pruned_file_reads_its_si_from_the_blob(tmp_path):
    """Without its event streams, a file's EDS SI comes from the SpectrumImage blob (the
    frame and detector sum; tests/test_pruned.py and tests/test_blob.py test it all)."""
    path = _copy("fei_SI_EDS-HAADF-4detectors_2frames.emd", tmp_path)
    with h5py.File(path, "r+") as f:
        del f["Data/SpectrumStream"]
    ds = read_datasets(path)
    assert sorted(d.kind for d in ds) == sorted([IMAGE, SPECTRUM_IMAGE] + [SPECTRUM] * 4)
    si = next(d for d in ds if d.kind == SPECTRUM_IMAGE)
    ref = _by_title(_read(real_file("fei_SI_EDS-HAADF-4detectors_2frames.emd")))["EDS"]
    np.testing.assert_array_equal(si.data, ref.data)
    facts = velox.si_facts(path)
    assert facts.has_si and facts.readable and facts.source == "pruned cube"
    assert "pruned" in facts.reason


@pytest.mark.realdata
def test_damaged_metadata_json(tmp_path):
    path = _copy("fei_emd_si.emd", tmp_path)
    with h5py.File(path, "r+") as f:
        md = f["Data/Image/9f4e9989c30045d490f40dcf5ca5cd9d/Metadata"]
        md[:20, 0] = np.frombuffer(b'{"Core": {broken!!!!', dtype=np.uint8)
        op = f["Operations/StemInputOperation/25fd7661f680483bafb49895fa825853"]
        op[0] = b"{not json"
    with pytest.warns(EMDWarning, match="damaged"):
        ds = _by_title_warn(path)
    image = next(d for d in ds.values() if d.kind == IMAGE)
    assert image.shape == (16, 16)
    # its own calibration is lost with the JSON; it is on the SI's grid, so it gets the
    # SI's; its name still comes from the display that shows it
    assert image.title == "HAADF"
    assert (image.axes[0].scale, image.axes[0].units) == (pytest.approx(5.3024, rel=1e-4), "nm")
    assert ds["EDS"].shape == (16, 16, 4096)


def _by_title_warn(path):
    return _by_title(read_datasets(path))


@pytest.mark.realdata
def test_damaged_stream_settings(tmp_path):
    path = _copy("fei_SI_EDS-HAADF-4detectors_2frames.emd", tmp_path)
    with h5py.File(path, "r+") as f:
        f["Data/SpectrumStream/9be0a40882e8417f9ba3cea8f4178b86/AcquisitionSettings"][0] = b"{"
    with pytest.warns(EMDWarning):
        ds = read_datasets(path, sum_EDS_detectors=False)
    titles = [d.title for d in ds if d.kind == SPECTRUM_IMAGE]
    assert titles == ["EDS - SuperXG22", "EDS - SuperXG23", "EDS - SuperXG24"]


@pytest.mark.realdata
def test_missing_groups(tmp_path):
    path = _copy("fei_emd_image.emd", tmp_path)
    with h5py.File(path, "r+") as f:
        del f["Data/Image/23088cf7c7844be397c5c465915044ac/Data"]
    with pytest.warns(EMDWarning, match="no Data array"):
        assert read_datasets(path) == []
    with h5py.File(path, "r+") as f:
        del f["Data"]
    with pytest.raises(EMDError, match="Data"):
        read_datasets(path)


@pytest.mark.realdata
def test_damaged_version_and_later_versions(tmp_path):
    path = _copy("Test SI 16x16 215 kx.emd", tmp_path)
    ref = [(d.title, d.shape) for d in _read(real_file("Test SI 16x16 215 kx.emd"))]
    with h5py.File(path, "r+") as f:
        f["Version"][0] = b'{"version": "14", "format": "Velox"}'
    assert detect_format(path) == "velox"
    assert [(d.title, d.shape) for d in _read(path)] == ref
    with h5py.File(path, "r+") as f:
        f["Version"][0] = b'{"version": "14", "format": "DevelopersKit"}'
    assert detect_format(path) == "velox"
    with h5py.File(path, "r+") as f:
        f["Version"][0] = b'{"version": "11", "format": "Velox"'
    assert detect_format(path) == "velox"
    with pytest.warns(EMDWarning, match="Version"):
        ds = read_datasets(path)
    assert [(d.title, d.shape) for d in ds] == ref
    with h5py.File(path, "r+") as f:
        f["Version"][0] = b'{"version": "1", "format": "SomethingElse"}'
    assert detect_format(path) is None


def test_minimal_written_file(tmp_path):
    """A file written here with only what Velox's layout needs: an int16 camera stack
    with an exposure time and no display or operation groups."""
    path = tmp_path / "minimal.emd"
    meta = (
        b'{"BinaryResult": {"DetectorIndex": "0", "PixelSize": {"width": "2e-10", '
        b'"height": "2e-10"}, "PixelUnitX": "m", "PixelUnitY": "m", "Offset": {"x": "0", '
        b'"y": "0"}}, "Detectors": {"Detector-0": {"DetectorName": "BM-Ceta", '
        b'"ExposureTime": "0.002"}}, "Optics": {"AccelerationVoltage": "300000"}}'
    )
    with h5py.File(path, "w") as f:
        f.create_dataset("Version", data=np.array([b'{"version": "11", "format": "Velox"}'],
                                                  dtype=object))
        g = f.create_group("Data/Image/abc")
        data = np.arange(4 * 6 * 3, dtype=np.int16).reshape(4, 6, 3)
        g.create_dataset("Data", data=data, chunks=(4, 6, 1))
        md = np.zeros((1000, 3), dtype=np.uint8)
        md[: len(meta), :] = np.frombuffer(meta, dtype=np.uint8)[:, None]
        g.create_dataset("Metadata", data=md)
    (ds,) = read_datasets(path)
    assert (ds.title, ds.dtype, ds.shape) == ("BM-Ceta", np.int16, (3, 4, 6))
    np.testing.assert_array_equal(ds.data, np.moveaxis(data, 2, 0))
    assert (ds.axes[0].scale, ds.axes[0].units) == (pytest.approx(2.0), "ms")
    assert (ds.axes[1].scale, ds.axes[1].units) == (pytest.approx(200.0), "pm")
    assert ds.metadata["Acquisition_instrument"]["TEM"]["beam_energy"] == 300.0
    assert len(ds.original_metadata["Frames"]) == 3


@pytest.mark.realdata
def test_frame_metadata_on_demand(monkeypatch):
    """Lazy stacks longer than the limit leave per-frame metadata out of
    original_metadata; frame_metadata() reads one frame's on demand."""
    path = real_file("fei_example_tem_stack.emd")
    eager = _read(path)[0]
    monkeypatch.setattr(velox.reader, "LAZY_FRAME_METADATA_LIMIT", 1)
    lazy = _read(path, lazy=True)[0]
    assert isinstance(lazy.original_metadata["Frames"], str)
    assert "frame_metadata" in lazy.original_metadata["Frames"]
    for i in range(2):
        assert velox.frame_metadata(str(path), lazy.path, i) == eager.original_metadata[
            "Frames"][i]
    with pytest.raises(ValueError):
        velox.frame_metadata(str(path), lazy.path, 2)


def test_si_frame_range_keeps_those_frames_metadata(tmp_path):
    """An SI read with first_frame/last_frame carries the metadata of those frames only
    (parsed from their columns alone), the first one first."""
    from napari_emd.synthetic import write_velox_si

    path = tmp_path / "si.emd"
    write_velox_si(path, ny=8, nx=8, frames=4, detectors=2, seed=3)
    whole = _by_title(_read(path, sum_frames=False))["EDS"]
    part = _by_title(_read(path, sum_frames=False, first_frame=1, last_frame=3))["EDS"]
    assert len(whole.original_metadata["Frames"]) == 4
    assert len(part.original_metadata["Frames"]) == 2
    for k in range(2):
        assert part.original_metadata["Frames"][k] == velox.frame_metadata(
            str(path), part.path, k + 1)
    part.original_metadata["Frames"][0]["edited"] = True  # each frame owns its tree
    assert "edited" not in part.original_metadata["Frames"][1]
