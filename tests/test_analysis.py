"""The napari-free EDS analysis (napari_emd.analysis): net line intensities with
background windows, Cliff–Lorimer quantification, region spectra and MSA export.

Oracles: a synthetic spectrum image whose expected counts are known exactly (a linear
background plus planted Gaussian peaks, Poisson-sampled); hand-computed Cliff–Lorimer
numbers; RosettaSciIO's MSA reader; and, when installed, exSpy (``get_lines_intensity``
and ``quantification(method="CL")``) on the same windows, intensities and k-factors.
"""

from __future__ import annotations

import threading
import warnings

import dask
import dask.array as da
import numpy as np
import pytest

import napari_emd
from conftest import real_file
from napari_emd.analysis import (
    ATOMIC_WEIGHTS,
    cliff_lorimer,
    line_energy_kev,
    line_intensities,
    line_profile,
    region_spectrum,
    write_msa,
)
from napari_emd.errors import Cancelled
from napari_emd.xray_lines import eds_fwhm, elements

SCALE, OFFSET, NE = 0.01, -0.2, 1200  # keV per channel, keV, channels (to 11.8 keV)
NY, NX = 12, 14
PEAKS = {"Fe_Ka": (300.0, 3000.0), "Cu_Ka": (200.0, 2000.0)}  # amplitude range (counts)


def _axes(nav: bool = True) -> list[dict]:
    energy = {"name": "Energy", "size": NE, "scale": SCALE, "offset": OFFSET,
              "units": "keV", "navigate": False}
    if not nav:
        return [energy]
    return [{"name": "y", "size": NY, "scale": 2.0, "offset": 0.0, "units": "nm",
             "navigate": True},
            {"name": "x", "size": NX, "scale": 2.0, "offset": 0.0, "units": "nm",
             "navigate": True}, energy]


def _metadata() -> dict:
    return {"General": {"title": "synthetic SI", "date": "2024-03-05", "time": "14:07:30"},
            "Signal": {"signal_type": "EDS_TEM"},
            "Sample": {"elements": ["Cu", "Fe"]},
            "Acquisition_instrument": {"TEM": {"beam_energy": 200.0, "Detector": {"EDS": {
                "live_time": 12.5, "real_time": 13.25, "energy_resolution_MnKa": 128.0}}}}}


def _synthetic(seed: int = 1):
    """A Poisson-sampled SI of a linear background (falling with energy) plus Gaussian
    Fe Ka and Cu Ka peaks of the detector's width, and the exact expected peak counts
    per channel (``peaks[line]`` shaped (y, x, E))."""
    rng = np.random.default_rng(seed)
    e = OFFSET + SCALE * np.arange(NE)
    background = 40.0 - 2.5 * e  # counts per channel, linear in energy
    mean = np.broadcast_to(background, (NY, NX, NE)).copy()
    peaks = {}
    for line, (lo, hi) in PEAKS.items():
        e0 = line_energy_kev(line)
        s = eds_fwhm(e0, 128.0) / (2 * np.sqrt(2 * np.log(2)))
        # exact channel integrals of the Gaussian (difference of its CDF at the edges)
        from math import erf
        edges = np.concatenate([e - SCALE / 2, [e[-1] + SCALE / 2]])
        cdf = np.array([0.5 * (1 + erf((x - e0) / (s * np.sqrt(2)))) for x in edges])
        shape = np.diff(cdf)
        amp = rng.uniform(lo, hi, (NY, NX))
        peaks[line] = amp[..., None] * shape
        mean += peaks[line]
    data = rng.poisson(mean).astype(np.uint16)
    signal = {"data": data, "axes": _axes(), "metadata": _metadata(),
              "original_metadata": {}}
    return signal, peaks


def _planted(peaks, result) -> np.ndarray:
    """The expected peak counts inside a result's integration window."""
    i0 = round((result.window[0] - OFFSET) / SCALE)
    i1 = round((result.window[1] - OFFSET) / SCALE) + 1
    return peaks[result.line][..., i0:i1].sum(axis=-1)


def test_net_recovers_planted_counts_where_the_window_sum_does_not():
    signal, peaks = _synthetic()
    res = line_intensities(signal, ["Fe_Ka", "Cu_Ka"])
    for line, r in res.items():
        assert r.net.shape == (NY, NX) and r.sigma.shape == (NY, NX)
        planted = _planted(peaks, r)
        z = (r.net - planted) / r.sigma
        # unbiased and of the stated spread (336 pixels: the mean of z is ~ +-0.06)
        assert abs(z.mean()) < 0.25, line
        assert 0.75 < z.std() < 1.25, line
        assert np.all(np.abs(z) < 5), line
        # the plain window sum carries the background: many sigmas too high
        z_gross = (r.gross - planted) / np.sqrt(r.gross)
        assert z_gross.mean() > 5, line
        # the windows follow the detector width at the line (FWHM from the metadata)
        e0 = line_energy_kev(line)
        fwhm = eds_fwhm(e0, 128.0)
        assert r.fwhm == pytest.approx(fwhm)
        assert r.window[0] == pytest.approx(e0 - fwhm, abs=SCALE)
        assert r.window[1] == pytest.approx(e0 + fwhm, abs=SCALE)
        (a0, a1), (b0, b1) = r.background_windows
        assert (a0 + a1) / 2 == pytest.approx(e0 - 2 * fwhm, abs=SCALE)
        assert (b0 + b1) / 2 == pytest.approx(e0 + 2 * fwhm, abs=SCALE)
        assert a1 - a0 == pytest.approx(fwhm, abs=2 * SCALE)
        assert r.overlaps == () and r.background_overlaps == ()


def test_background_off_and_explicit_windows():
    signal, _ = _synthetic()
    data = signal["data"].astype(float)
    r = line_intensities(signal, "Fe_Ka", background=False)["Fe_Ka"]
    assert r.background_windows is None
    np.testing.assert_array_equal(r.net, r.gross)
    np.testing.assert_allclose(r.sigma, np.sqrt(r.gross))
    # explicit windows: channels whose centres lie inside, the background interpolated
    # linearly to the window centre (an asymmetric pair, so the weights differ)
    ch = lambda i: OFFSET + SCALE * i  # noqa: E731
    r = line_intensities(signal, ["Fe_Ka"], windows=[(ch(650), ch(669))],
                         background_windows=[(ch(600), ch(609), ch(700), ch(729))])["Fe_Ka"]
    s = data[..., 650:670].sum(-1)
    left, right = data[..., 600:610].sum(-1), data[..., 700:730].sum(-1)
    t = (659.5 - 604.5) / (714.5 - 604.5)
    b = (1 - t) * left / 10 + t * right / 30
    np.testing.assert_allclose(r.net, s - 20 * b)
    np.testing.assert_allclose(
        r.sigma**2, s + 400 * ((1 - t) ** 2 * left / 100 + t**2 * right / 900))
    assert r.window == pytest.approx((ch(650), ch(669)))
    assert np.allclose(r.background_windows, ((ch(600), ch(609)), (ch(700), ch(729))))


def test_lazy_gives_the_eager_numbers_in_one_graph():
    signal, _ = _synthetic()
    eager = line_intensities(signal, ["Fe_Ka", "Cu_Ka", "O_Ka"])
    lazy_signal = dict(signal, data=da.from_array(signal["data"], chunks=(5, 7, 300)))
    lazy = line_intensities(lazy_signal, ["Fe_Ka", "Cu_Ka", "O_Ka"])
    arrays = [a for r in lazy.values() for a in (r.net, r.sigma)]
    assert all(isinstance(a, da.Array) for a in arrays)
    # one graph: computing every result together reads each block of the data once
    reads: list[tuple] = []

    def counted(block, block_info=None):
        reads.append(tuple(block_info[0]["chunk-location"]))
        return block

    counting = dict(signal, data=lazy_signal["data"].map_blocks(counted, dtype=np.uint16))
    arrays = [a for r in line_intensities(counting, ["Fe_Ka", "Cu_Ka", "O_Ka"]).values()
              for a in (r.net, r.sigma)]
    computed = dask.compute(*arrays)
    assert reads and len(reads) == len(set(reads))
    expected = [a for r in eager.values() for a in (r.net, r.sigma)]
    for got, want in zip(computed, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # computed now, with progress, gives the same
    calls = []
    now = line_intensities(lazy_signal, ["Fe_Ka", "Cu_Ka"], compute=True,
                           progress=lambda d, t: calls.append((d, t)))
    np.testing.assert_allclose(now["Cu_Ka"].net, eager["Cu_Ka"].net)
    assert isinstance(now["Cu_Ka"].net, np.ndarray)
    assert calls and calls[-1][0] == calls[-1][1]


def test_cancel_stops_the_computation():
    signal, _ = _synthetic()
    event = threading.Event()
    event.set()
    with pytest.raises(Cancelled):
        line_intensities(signal, ["Fe_Ka"], cancel=event)
    lazy_signal = dict(signal, data=da.from_array(signal["data"], chunks=(4, 7, 600)))
    with napari_emd.cancel.cancellation(event), pytest.raises(Cancelled):
        line_intensities(lazy_signal, ["Fe_Ka"], compute=True)


def test_overlapping_windows_are_named():
    signal, _ = _synthetic()
    with pytest.warns(UserWarning, match="Mn_Ka.*Cr_Kb"):
        res = line_intensities(signal, ["Mn_Ka", "Cr_Kb", "Cu_Ka"])
    assert res["Mn_Ka"].overlaps == ("Cr_Kb",)
    assert res["Cr_Kb"].overlaps == ("Mn_Ka",)
    assert res["Cu_Ka"].overlaps == ()
    # Ho La (6.72 keV) is clear of Fe Ka's window but reaches into its upper
    # background window
    with pytest.warns(UserWarning, match="Fe_Ka's background windows reach into Ho_La"):
        res = line_intensities(signal, ["Fe_Ka", "Ho_La"])
    assert res["Fe_Ka"].overlaps == ()
    assert res["Fe_Ka"].background_overlaps == ("Ho_La",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        line_intensities(signal, ["Fe_Ka", "Cu_Ka"])


def test_single_spectrum_and_bad_input():
    signal, _ = _synthetic()
    spectrum = region_spectrum(signal)
    r = line_intensities(spectrum, ["Cu_Ka"])["Cu_Ka"]
    assert np.ndim(r.net) == 0 and r.sigma > 0
    full = line_intensities(signal, ["Cu_Ka"])["Cu_Ka"]
    assert float(r.net) == pytest.approx(float(full.net.sum()))
    with pytest.raises(ValueError, match=r"no line .Kz."):
        line_intensities(signal, ["Fe_Kz"])
    with pytest.raises(TypeError):
        line_intensities(np.zeros(10), ["Fe_Ka"])


def test_region_spectrum_sums_the_mask():
    signal, _ = _synthetic()
    mask = np.zeros((NY, NX), bool)
    mask[2:5, 3:9] = True
    mask[7, 1] = True
    spec = region_spectrum(signal, mask)
    np.testing.assert_array_equal(spec["data"], signal["data"][mask].sum(0))
    assert spec["axes"][0]["scale"] == SCALE and spec["axes"][0]["offset"] == OFFSET
    assert "19 pixels" in spec["metadata"]["General"]["title"]
    lazy = dict(signal, data=da.from_array(signal["data"], chunks=(4, 4, 600)))
    np.testing.assert_array_equal(region_spectrum(lazy, mask)["data"], spec["data"])
    assert not region_spectrum(signal, np.zeros((NY, NX), bool))["data"].any()
    with pytest.raises(ValueError, match="mask shape"):
        region_spectrum(signal, np.ones((3, 3), bool))


# --- Cliff–Lorimer -------------------------------------------------------------------

def test_atomic_weights_cover_the_line_table():
    assert set(ATOMIC_WEIGHTS) == set(elements())
    assert ATOMIC_WEIGHTS["Fe"] == pytest.approx(55.845)
    assert ATOMIC_WEIGHTS["O"] == pytest.approx(15.999)


def test_cliff_lorimer_by_hand():
    # I_Fe = 100, I_Cu = 200, k_Fe = 1, k_Cu = 1.5: weight 100 : 300 -> 25 % and 75 %
    wt = cliff_lorimer({"Fe_Ka": np.array([100.0]), "Cu_Ka": np.array([200.0])},
                       {"Fe": 1.0, "Cu": 1.5}, weight_percent=True)
    assert wt["Fe"][0] == pytest.approx(25.0) and wt["Cu"][0] == pytest.approx(75.0)
    at = cliff_lorimer({"Fe": 100.0, "Cu": 200.0}, {"Fe_Ka": 1.0, "Cu_Ka": 1.5})
    n_fe, n_cu = 25.0 / 55.845, 75.0 / 63.546
    assert float(at["Fe"]) == pytest.approx(100 * n_fe / (n_fe + n_cu))
    assert float(at["Fe"] + at["Cu"]) == pytest.approx(100.0)
    # a pixel without counts is NaN, not a division error
    z = cliff_lorimer({"Fe": np.array([0.0, 1.0]), "Cu": np.array([0.0, 1.0])},
                      {"Fe": 1.0, "Cu": 1.0})
    assert np.isnan(z["Fe"][0]) and np.isfinite(z["Fe"][1])
    with pytest.raises(ValueError, match="k-factor"):
        cliff_lorimer({"Fe": 1.0, "Ni": 1.0}, {"Fe": 1.0})


def test_cliff_lorimer_uncertainty_matches_numeric_propagation():
    ints = {"Fe": 100.0, "Cu": 200.0, "O": 50.0}
    sig = {"Fe": 10.0, "Cu": 14.0, "O": 7.0}
    k = {"Fe": 1.0, "Cu": 1.5, "O": 2.0}
    _, err = cliff_lorimer(ints, k, sigmas=sig)
    for el in ints:
        var = 0.0
        for other in ints:
            h = 1e-4 * ints[other]
            up = cliff_lorimer(dict(ints, **{other: ints[other] + h}), k)[el]
            dn = cliff_lorimer(dict(ints, **{other: ints[other] - h}), k)[el]
            var += ((up - dn) / (2 * h) * sig[other]) ** 2
        assert float(err[el]) == pytest.approx(np.sqrt(var), rel=1e-6)


def test_cliff_lorimer_takes_line_intensities_with_their_sigmas():
    signal, _ = _synthetic()
    res = line_intensities(signal, ["Fe_Ka", "Cu_Ka"])
    pct, err = cliff_lorimer(res, {"Fe": 1.2, "Cu": 1.6}, sigmas=True)
    assert pct["Fe"].shape == (NY, NX)
    np.testing.assert_allclose(pct["Fe"] + pct["Cu"], 100.0)
    assert np.all(err["Fe"] > 0)


def test_cliff_lorimer_matches_exspy():
    exspy = pytest.importorskip("exspy", reason="exSpy is the optional oracle")
    import hyperspy.api as hs

    rng = np.random.default_rng(3)
    arrays = {"Fe_Ka": rng.uniform(50, 500, (4, 5)), "Cu_Ka": rng.uniform(50, 500, (4, 5)),
              "O_Ka": rng.uniform(10, 100, (4, 5))}
    k = {"Fe_Ka": 1.2, "Cu_Ka": 1.6, "O_Ka": 2.1}
    s = exspy.signals.EDSTEMSpectrum(np.zeros((4, 5, 100)))
    s.axes_manager.signal_axes[0].units = "keV"
    s.set_microscope_parameters(beam_energy=200)
    s.add_lines(list(arrays))
    ints = []
    for line, a in arrays.items():
        sig = hs.signals.BaseSignal(a).T
        sig.metadata.set_item("Sample.elements", [line.split("_")[0]])
        sig.metadata.set_item("Sample.xray_lines", [line])
        ints.append(sig)
    # weight %: the same formula, to rounding. atomic %: exSpy's atomic-weight table
    # carries older, more precise values (O 15.9994 where IUPAC's conventional value is
    # 15.999), which moves the result in the 5th digit
    for unit, weight, rtol in (("atomic", False, 1e-4), ("weight", True, 1e-10)):
        theirs = s.quantification(ints, method="CL", factors=[k[n] for n in arrays],
                                  composition_units=unit, navigation_mask=None,
                                  show_progressbar=False)
        ours = cliff_lorimer(arrays, k, weight_percent=weight)
        for el_sig in theirs:
            el = el_sig.metadata.Sample.elements[0]
            np.testing.assert_allclose(ours[el], el_sig.data, rtol=rtol)


# --- EMSA/MSA export -----------------------------------------------------------------

def test_msa_round_trip_through_rosettasciio(tmp_path):
    msa = pytest.importorskip("rsciio.msa", reason="RosettaSciIO reads MSA (the oracle)")
    signal, _ = _synthetic()
    mask = np.zeros((NY, NX), bool)
    mask[3:7, 2:10] = True
    spec = region_spectrum(signal, mask)
    path = tmp_path / "region.msa"
    path.write_text("old")
    write_msa(path, spec, title="Fe particle: region 1")
    assert not list(tmp_path.glob(".*part"))  # the temporary file replaced the target
    text = path.read_text("latin-1")
    assert text.startswith("#FORMAT") and "#ENDOFDATA" in text
    assert "##ELEMENTS   : Cu, Fe" in text
    assert "#DATE        : 05-MAR-2024" in text and "#TIME        : 14:07" in text
    (back,) = msa.file_reader(str(path))
    np.testing.assert_array_equal(back["data"], spec["data"])
    ax = back["axes"][0]
    assert ax["size"] == NE and ax["units"] == "keV"
    assert ax["scale"] == pytest.approx(SCALE) and ax["offset"] == pytest.approx(OFFSET)
    md = back["metadata"]
    tem = md["Acquisition_instrument"]["TEM"]
    assert tem["beam_energy"] == pytest.approx(200.0)
    eds = tem["Detector"]["EDS"]
    assert eds["live_time"] == pytest.approx(12.5)
    assert eds["real_time"] == pytest.approx(13.25)
    assert eds["energy_resolution_MnKa"] == pytest.approx(128.0)
    assert md["Signal"]["signal_type"] == "EDS_TEM"
    assert md["General"]["title"] == "Fe particle - region 1"
    assert md["General"]["date"] == "2024-03-05"
    assert back["original_metadata"]["ELEMENTS"] == "Cu, Fe"


def test_msa_refuses_a_spectrum_image(tmp_path):
    signal, _ = _synthetic()
    with pytest.raises(ValueError, match="region_spectrum"):
        write_msa(tmp_path / "x.msa", signal)
    assert not list(tmp_path.iterdir())


# --- a real Velox spectrum image -----------------------------------------------------

def _real_si(lazy: bool):
    path = real_file("Test SI 16x16 215 kx.emd")
    sis = [d for d in napari_emd.file_reader(path, lazy=lazy) if d["data"].ndim == 3]
    return sis[0]


REAL_LINES = ["C_Ka", "O_Ka", "Ca_Ka", "Cu_Ka"]  # the file's Sample.elements: C Ca Cu O


def test_real_si_net_maps():
    si = _real_si(lazy=False)
    assert set(si["metadata"]["Sample"]["elements"]) == {"C", "Ca", "Cu", "O"}
    res = line_intensities(si, REAL_LINES)
    for r in res.values():
        assert r.net.shape == (16, 16)
        assert np.all(np.isfinite(r.net)) and np.all(np.isfinite(r.sigma))
        assert np.all(r.sigma[r.gross > 0] > 0)
    lazy = line_intensities(_real_si(lazy=True), REAL_LINES)
    nets = dask.compute(*[r.net for r in lazy.values()])
    for got, r in zip(nets, res.values()):
        np.testing.assert_allclose(got, r.net)


def test_real_si_matches_exspy_on_the_same_windows():
    """exSpy's ``get_lines_intensity`` against ours on the real SI, window for window.

    Compared: the window sums (``integration_windows`` alone) and the net counts
    (``background_windows`` too), for integration windows from our FWHM rule and
    background windows placed symmetrically about them (same channel count, same gap).
    exSpy takes a window as ``[first channel's centre, centre after the last)``; ours
    as the channels whose centres lie inside ``[low, high]``, so its high edge is one
    channel further. On symmetric windows exSpy's background (the mean of both windows)
    equals our linear interpolation to the window centre; on asymmetric ones they
    differ by design.
    """
    exspy = pytest.importorskip("exspy", reason="exSpy is the optional oracle")
    si = _real_si(lazy=False)
    energy = si["axes"][-1]
    sc, off = energy["scale"], energy["offset"]
    ch = lambda i: off + sc * i  # noqa: E731
    ours_default = line_intensities(si, REAL_LINES)
    windows, bgs, ex_windows, ex_bgs = [], [], [], []
    for r in ours_default.values():
        i0 = round((r.window[0] - off) / sc)
        i1 = round((r.window[1] - off) / sc) + 1
        nb, gap = max(2, (i1 - i0) // 2), max(1, (i1 - i0) // 2)
        a0, b0 = max(i0 - gap - nb, 0), i1 + gap
        windows.append((ch(i0), ch(i1 - 1)))
        bgs.append((ch(a0), ch(a0 + nb - 1), ch(b0), ch(b0 + nb - 1)))
        ex_windows.append([ch(i0), ch(i1)])
        ex_bgs.append([ch(a0), ch(a0 + nb), ch(b0), ch(b0 + nb)])
    ours = line_intensities(si, REAL_LINES, windows=windows, background_windows=bgs)
    s = exspy.signals.EDSTEMSpectrum(np.asarray(si["data"], dtype=float))
    axis = s.axes_manager.signal_axes[0]
    axis.scale, axis.offset, axis.units = sc, off, "keV"
    gross = s.get_lines_intensity(xray_lines=REAL_LINES, integration_windows=ex_windows)
    net = s.get_lines_intensity(xray_lines=REAL_LINES, integration_windows=ex_windows,
                                background_windows=ex_bgs)
    for line, g, n in zip(REAL_LINES, gross, net):
        np.testing.assert_allclose(ours[line].gross, g.data, err_msg=line)
        np.testing.assert_allclose(ours[line].net, n.data, rtol=1e-9, atol=1e-9,
                                   err_msg=line)


# --- line profiles -------------------------------------------------------------------

def test_line_profile_conserves_counts_and_uses_scan_units():
    signal, _ = _synthetic()
    res = line_intensities(signal, ["Fe_Ka", "Cu_Ka"])
    # a horizontal line along row 5, 3 pixels wide: rows 4-6, columns 2..11
    prof = line_profile(res, [(5, 2), (5, 11)], width=3.0)
    assert prof.pixels.sum() == 3 * 10
    band = res["Fe_Ka"].net[4:7, 2:12]
    assert prof.values["Fe_Ka"].sum() == pytest.approx(band.sum())
    np.testing.assert_allclose(prof.values["Fe_Ka"], band.sum(0))
    np.testing.assert_allclose(prof.sigma["Cu_Ka"] ** 2,
                               (res["Cu_Ka"].sigma[4:7, 2:12] ** 2).sum(0))
    assert prof.units == "px"
    np.testing.assert_allclose(prof.distance, np.arange(10.0))
    # from the spectrum image itself: the distance axis in nm (2 nm per pixel)
    prof2 = line_profile(signal, [(5, 2), (5, 11)], width=3.0, lines=["Fe_Ka"])
    assert prof2.units == "nm" and prof2.distance[-1] == pytest.approx(18.0)
    np.testing.assert_allclose(prof2.values["Fe_Ka"], prof.values["Fe_Ka"])
    total = line_profile(signal, [(0, 0), (NY - 1, NX - 1), (0, NX - 1)], width=2.0)
    assert set(total.values) == {"total"} and total.values["total"].sum() > 0
    with pytest.raises(ValueError, match="vertices"):
        line_profile(res, [(1, 1)])


def test_dataset_records_of_a_synthetic_velox_file(tmp_path):
    """A Dataset record (read_datasets) works like the dict, eager and lazy alike."""
    from napari_emd.synthetic import write_velox_si

    path = tmp_path / "si.emd"
    write_velox_si(path, ny=8, nx=8, frames=1, detectors=1, counts_per_pixel=200.0,
                   bincount=2048)
    records = {lazy: next(r for r in napari_emd.read_datasets(path, lazy=lazy)
                      if r.kind == "spectrum_image") for lazy in (False, True)}
    eager = line_intensities(records[False], ["Fe_Ka", "Cu_Ka"])
    calls: list[tuple[int, int]] = []
    lazy = line_intensities(records[True], ["Fe_Ka", "Cu_Ka"], compute=True,
                            progress=lambda d, t: calls.append((d, t)))
    for line in eager:
        np.testing.assert_allclose(lazy[line].net, eager[line].net)
        assert eager[line].net.shape == (8, 8)
    assert calls and calls[-1][0] == calls[-1][1]
    # the synthetic sample is copper-rich: Cu Ka clearly above its background in total
    assert eager["Cu_Ka"].net.sum() > 5 * np.sqrt((eager["Cu_Ka"].sigma ** 2).sum())


# --- leftovers: clipped windows, the MSA point limit, the documented entry points ---

def _cut(signal, first: int) -> dict:
    """The signal without its first ``first`` channels (the spectrum starts later)."""
    axes = [dict(a) for a in signal["axes"]]
    axes[-1].update(size=NE - first, offset=OFFSET + SCALE * first)
    return {**signal, "data": signal["data"][..., first:], "axes": axes}


def test_a_background_window_clipped_at_the_spectrum_start_warns_naming_the_line():
    signal, _ = _synthetic()
    (lo1, hi1), _ = line_intensities(signal, "Fe_Ka")["Fe_Ka"].background_windows
    # the spectrum starts inside Fe Ka's lower background window
    start = round((0.5 * (lo1 + hi1) - OFFSET) / SCALE)
    with pytest.warns(UserWarning, match=r"Fe_Ka's lower background window .* clipped"):
        line_intensities(_cut(signal, start), "Fe_Ka")
    # wholly outside: an error naming the line, not a one-channel "background"
    with pytest.raises(ValueError, match=r"Fe_Ka.s lower background window .* outside"):
        line_intensities(_cut(signal, round((hi1 - OFFSET) / SCALE) + 2), "Fe_Ka")
    # no background: nothing to clip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        line_intensities(_cut(signal, start), "Fe_Ka", background=False)


def test_msa_longer_than_4096_points_is_binned_with_a_warning(tmp_path):
    msa = pytest.importorskip("rsciio.msa", reason="RosettaSciIO reads MSA (the oracle)")
    rng = np.random.default_rng(3)
    for n, dropped in ((8192, 0), (8193, 1)):
        counts = rng.poisson(20.0, n).astype(float)
        spec = {"data": counts, "axes": [{"name": "Energy", "size": n, "scale": 0.005,
                                          "offset": -0.1, "units": "keV"}],
                "metadata": _metadata()}
        path = tmp_path / f"long{n}.msa"
        with pytest.warns(UserWarning, match=f"{n} channels.*4096.*2 channels summed"):
            write_msa(path, spec)
        (back,) = msa.file_reader(str(path))
        assert back["data"].size == 4096
        np.testing.assert_array_equal(back["data"], counts[:8192].reshape(-1, 2).sum(1))
        ax = back["axes"][0]
        assert ax["scale"] == pytest.approx(0.01)
        assert ax["offset"] == pytest.approx(-0.1 + 0.0025)  # centre of the first pair
        assert back["data"].sum() == counts.sum() - counts[8192:].sum()
        assert dropped == n - 8192
    # every channel on request (outside the standard)
    write_msa(tmp_path / "all.msa", spec, max_points=None)
    assert "#NPOINTS     : 8193" in (tmp_path / "all.msa").read_text("latin-1")


def test_entry_points_scripts_rely_on():
    """The issue's names, reachable as ``napari_emd.analysis.<name>`` after a plain
    ``import napari_emd``."""
    import napari_emd as ne

    for name in ("line_intensities", "cliff_lorimer", "write_msa", "region_spectrum",
                 "line_profile"):
        assert callable(getattr(ne.analysis, name)), name
        assert name in ne.analysis.__all__


def test_line_profile_distance_with_non_square_pixels(tmp_path):
    """Pixels 0.75 nm tall and 1 nm wide (the project's synthetic Velox writer): a
    diagonal line over 16 rows and 9 columns is 12 nm by 9 nm, 15 nm long, not the
    18.4 nm the x pixel size alone would give."""
    from napari_emd.synthetic import write_velox_si

    path = tmp_path / "tall.emd"
    write_velox_si(path, ny=20, nx=12, frames=1, detectors=1, counts_per_pixel=50.0,
                   pixel_size_m=1e-9, pixel_height_m=0.75e-9)
    si = next(d for d in napari_emd.file_reader(str(path)) if d["data"].ndim == 3)
    y_ax, x_ax = si["axes"][0], si["axes"][1]
    assert (y_ax["scale"], y_ax["units"]) != (x_ax["scale"], x_ax["units"])
    pts = [(1.0, 1.0), (17.0, 10.0)]
    prof = line_profile(si, pts, width=1.0, lines=["Fe_Ka"])
    assert prof.units == "nm"
    assert prof.distance[-1] == pytest.approx(15.0)
    np.testing.assert_allclose(np.diff(prof.distance), 1.0)  # one x pixel width a step
    # the same with the maps and the (y, x) pixel sizes given
    res = line_intensities(si, ["Fe_Ka"])
    prof2 = line_profile(res, pts, width=1.0, scale=(0.75, 1.0), units="nm")
    np.testing.assert_allclose(prof2.distance, prof.distance)
    np.testing.assert_allclose(prof2.values["Fe_Ka"], prof.values["Fe_Ka"])
    # square pixels of the x size (what the distance used to assume) give the longer one
    square = line_profile(res, pts, width=1.0, scale=1.0)
    assert square.distance[-1] == pytest.approx(np.floor(np.hypot(16, 9)))
    with pytest.raises(ValueError, match="scale"):
        line_profile(res, pts, scale=(0.0, 1.0))


# --- Velox quantification settings: stored background windows -------------------------

FE_WINDOWS = [(5.55, 5.85), (7.25, 7.55)]  # keV, unlike the placement rule's


def test_stored_background_windows_layout_and_use(tmp_path):
    """The synthetic writer stores background windows the way the real Velox 13 file
    lays out its (empty) ones: the EDS settings refer to a BackgroundCorrection and a
    BackgroundWindows JSON object. The pair that brackets a line is used for its net
    counts; a NaN row keeps the placement rule for its line."""
    from napari_emd.formats.velox.quantsettings import eds_quant_settings
    from napari_emd.synthetic import write_velox_si

    real = real_file("example_velox_EELS_EDS.emd")
    path = tmp_path / "bg.emd"
    write_velox_si(path, ny=8, nx=10, frames=1, detectors=1, counts_per_pixel=200.0,
                   background_windows={"Fe": FE_WINDOWS})

    def shared(p):
        rec = next(d for d in napari_emd.read_datasets(str(p)) if "EDS" in d.signal_type)
        return rec, rec.original_metadata["SharedProperties"]

    real_rec, real_sp = shared(real)
    rec, syn_sp = shared(path)
    for sp in (real_sp, syn_sp):
        node = next(iter(sp["EDSSpectrumQuantificationSettings"].values()))
        for key, kind in (("backgroundWindows", "BackgroundWindows"),
                          ("backgroundCorrection", "BackgroundCorrection")):
            assert node[key].startswith(f"/SharedProperties/{kind}/")
            assert isinstance(sp[kind][node[key].rsplit("/", 1)[1]], dict)
        assert isinstance(next(iter(sp["BackgroundCorrection"].values()))[
            "useManualBackgroundWindows"], bool)
    # the real file's windows object is empty: nothing to use there
    assert eds_quant_settings(real_rec.original_metadata).background_windows == {}
    settings = eds_quant_settings(rec.original_metadata)
    assert settings.manual_background_windows
    assert settings.background_windows == {"Fe": tuple(FE_WINDOWS)}
    assert settings.line_background("Fe_Ka") == (5.55, 5.85, 7.25, 7.55)
    assert settings.line_background("Fe_La") is None  # no stored window below it
    assert settings.line_background("Cu_Ka") is None
    assert "Background windows Fe: 5.550–5.850; 7.250–7.550 keV" in settings.summary()
    # per line: the file's windows for Fe, the rule (NaN row) for Cu
    got = line_intensities(rec, ["Fe_Ka", "Cu_Ka"],
                           background_windows=[settings.line_background("Fe_Ka"),
                                               [np.nan] * 4])
    rule = line_intensities(rec, ["Fe_Ka", "Cu_Ka"])
    assert got["Fe_Ka"].background_windows[0][0] == pytest.approx(5.55, abs=0.01)
    assert got["Fe_Ka"].background_windows != rule["Fe_Ka"].background_windows
    assert got["Cu_Ka"].background_windows == rule["Cu_Ka"].background_windows
    np.testing.assert_array_equal(got["Cu_Ka"].net, rule["Cu_Ka"].net)
