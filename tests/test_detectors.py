"""``file_reader(..., detectors=...)``: only the chosen EDS detectors are decoded, summed or
one spectrum image each, with every other option; the datasets say which detectors they
hold in a typed field (``Dataset.si``), never only in their title."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SI_FILES, real_file, write_si_with_bad_stream
from napari_emd import file_reader, read_datasets, si_facts
from napari_emd.formats.velox.stream import clear_caches
from napari_emd.model import SPECTRUM_IMAGE, STREAMS
from napari_emd.synthetic import write_velox_si

DRIFT = np.array([[0, 0], [1, 2], [3, -1], [4, 3]])


def _sis(datasets):
    return [d for d in datasets if d.kind == SPECTRUM_IMAGE and d.signal_type == "EDS_TEM"]


def _value(data):
    return np.asarray(data.compute() if hasattr(data, "compute") else data)


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """A drifting four-frame, two-detector synthetic SI with exact counts kept."""
    path = tmp_path_factory.mktemp("det") / "two.emd"
    return write_velox_si(path, ny=24, nx=20, frames=4, detectors=2, counts_per_pixel=3,
                          bincount=256, keep_counts=True, drift=DRIFT, seed=3)


MULTI = [n for n in SI_FILES if n in ("fei_SI_EDS-HAADF-4detectors_2frames.emd",
                                      "Test SI 16x16 215 kx.emd",
                                      "example_velox_EELS_EDS.emd")]


@pytest.mark.realdata
@pytest.mark.parametrize("name", MULTI)
@pytest.mark.parametrize("lazy", [False, True])
def test_chosen_detectors_equal_the_per_detector_reads(name, lazy):
    """Compared: the SI of ``detectors=[a, b]`` (summed, and one per detector) with the
    per-detector SIs of a read of every detector (``sum_EDS_detectors=False``), on the
    same file, frames and binning."""
    path = real_file(name)
    names = si_facts(path).detectors
    assert len(names) > 1
    every = {d.si.detector: _value(d.data)
             for d in _sis(read_datasets(path, sum_EDS_detectors=False, rebin_energy=2))}
    assert set(every) == set(names)
    pick = [names[-1], names[0]]  # any order: the file's order comes back
    summed = _sis(read_datasets(path, lazy=lazy, detectors=pick, rebin_energy=2))
    assert len(summed) == 1
    assert summed[0].si.detectors == (names[0], names[-1])
    assert summed[0].si.source == STREAMS
    np.testing.assert_array_equal(_value(summed[0].data), every[names[0]] + every[names[-1]])
    if lazy:  # the energy-first view napari shows is the same cube
        np.testing.assert_array_equal(_value(summed[0].display),
                                      np.moveaxis(every[names[0]] + every[names[-1]], -1, 0))
    apart = _sis(read_datasets(path, lazy=lazy, detectors=pick, sum_EDS_detectors=False,
                               rebin_energy=2))
    assert [d.si.detectors for d in apart] == [(names[0],), (names[-1],)]
    for d in apart:
        np.testing.assert_array_equal(_value(d.data), every[d.si.detector])
    by_index = _sis(read_datasets(path, lazy=lazy, detectors=[1], sum_EDS_detectors=False))
    assert [d.si.detector for d in by_index] == [names[1]]
    clear_caches()


@pytest.mark.realdata
def test_a_detector_the_file_lacks_is_named_with_the_files_detectors():
    path = real_file("fei_SI_EDS-HAADF-4detectors_2frames.emd")
    with pytest.raises(ValueError, match="SuperXG21, SuperXG22, SuperXG23, SuperXG24") as e:
        file_reader(path, detectors=["SuperXG25"])
    assert "SuperXG25" in str(e.value) and str(path) in str(e.value)
    with pytest.raises(ValueError, match="outside the 4 detector"):
        file_reader(path, detectors=[7], lazy=True)
    with pytest.raises(ValueError, match="no detector"):
        file_reader(path, detectors=[])
    with pytest.raises(ValueError, match="names"):
        file_reader(path, detectors=[1.5])


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("options", [
    {},
    {"sum_frames": False},
    {"align_frames": DRIFT},
    {"exclude_frames": (1,)},
    {"align_frames": DRIFT, "exclude_frames": (2,), "sum_frames": False},
    {"first_frame": 1, "last_frame": 3, "rebin_energy": 4, "SI_dtype": "uint32"},
])
def test_one_detector_with_every_other_option_equals_the_exact_counts(two, lazy, options):
    """Compared: ``detectors=['EDS1']`` (one of two) with a read of both detectors kept
    apart, under the same frame, alignment, binning and dtype options: the chosen
    detector's cube is identical, and only it is returned."""
    kw = dict(options)
    apart = {d.si.detector: _value(d.data)
             for d in _sis(read_datasets(two.path, sum_EDS_detectors=False, **kw))}
    name = two.detectors[1]
    for summed in (True, False):
        (one,) = _sis(read_datasets(two.path, lazy=lazy, detectors=[name],
                                    sum_EDS_detectors=summed, **kw))
        assert one.si.detectors == (name,)
        np.testing.assert_array_equal(_value(one.data), apart[name])
        assert one.dtype == apart[name].dtype
        frames = one.si.frames
        if "exclude_frames" in kw:
            assert not set(kw["exclude_frames"]) & set(frames)
        assert one.si.aligned == ("align_frames" in kw)
    clear_caches()


def test_unchosen_streams_are_never_read(tmp_path):
    """A stream that cannot be decoded (a channel beyond the spectrum) does not matter
    when its detector is not chosen, eagerly or lazily: nothing of it is read."""
    info = write_si_with_bad_stream(tmp_path / "bad.emd")
    with pytest.warns(UserWarning, match="cannot be decoded"):
        assert not _sis(read_datasets(info.path))
    for lazy in (False, True):
        (si,) = _sis(read_datasets(info.path, lazy=lazy, detectors=[info.detectors[1]]))
        assert _value(si.data).sum() > 0
    clear_caches()


def test_titles_are_for_people_and_the_record_says_the_detectors(two):
    sis = _sis(read_datasets(two.path, detectors=two.detectors, align_frames=DRIFT,
                             sum_EDS_detectors=False, exclude_frames=[3]))
    assert [d.title for d in sis] == [f"EDS - {n} (aligned; frame 4 left out)"
                                      for n in two.detectors]
    assert [d.si.detector for d in sis] == list(two.detectors)
    assert all(d.si.excluded_frames == (3,) and d.si.aligned for d in sis)
    (whole,) = _sis(read_datasets(two.path))
    assert whole.title == "EDS" and whole.si.detectors == tuple(two.detectors)
    assert whole.si.detector is None


@pytest.mark.realdata
@pytest.mark.parametrize("frames", [{"align_frames": True}, {"exclude_frames": [1]}])
def test_two_detectors_apart_with_aligned_or_excluded_frames_on_a_real_file(frames):
    """The loader's old failure (issue #23): two detectors kept apart while frames are
    aligned or left out. Both chosen spectrum images come back, named by their typed
    record whatever their titles say."""
    path = real_file("fei_SI_EDS-HAADF-4detectors_2frames.emd")
    for lazy in (False, True):
        sis = _sis(read_datasets(path, lazy=lazy, sum_EDS_detectors=False,
                                 detectors=["SuperXG22", "SuperXG24"], **frames))
        assert [d.si.detector for d in sis] == ["SuperXG22", "SuperXG24"]
        assert all(_value(d.data).sum() > 0 for d in sis)
    clear_caches()
