"""prismatic output reader: the real simulation files against the reference reader, the
depth stacking and its calibration, and files written here."""

from __future__ import annotations

import pickle
import warnings

import h5py
import numpy as np
import pytest

from conftest import real_file
from napari_emd import EMDWarning, detect_format, read_datasets
from napari_emd.formats import prismatic
from napari_emd.model import IMAGE, IMAGE_STACK, SIGNAL
from napari_emd.units import clean_unit

FILES = [
    "Si100_3D.emd",
    "Si100_2x1x1_3D.emd",
    "Si100_4D.emd",
    "Si100_1x1x3-zStart5.43.emd",
    "Si100_2D_3D_DPC_potential_2slices.emd",
]
SIM = "/4DSTEM_simulation/data"


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


# prismatic labels its dims nm, 1/nm and mrad but writes Å, 1/Å and rad (the simulation
# parameters prove it: the scan step is the probe step in Å, the angle step the detector
# step in mrad / 1000); the reference reader keeps the labels, we correct them.
CORRECTED = {"nm": "Å", "1/nm": "1/Å", "mrad": "rad"}


def compare_to_rsciio(path, compare_titles: bool = True, fixed_units: bool = True,
                      **kw) -> list:
    """Read ``path`` with both readers and assert they agree on data and axes (units
    after cleaning, and after the prismatic correction when ``fixed_units``)."""
    rs = pytest.importorskip("rsciio.emd")
    ours = _quiet(read_datasets, path, **kw)
    ref = _quiet(rs.file_reader, str(path), **kw)
    assert len(ours) == len(ref)
    for o, r in zip(ours, ref):
        rdata = np.asarray(r["data"])
        if compare_titles:
            assert o.title == r["metadata"]["General"]["title"]
        assert o.shape == rdata.shape
        assert o.dtype == rdata.dtype
        np.testing.assert_array_equal(np.asarray(o.data), rdata)
        assert o.signal_type == r["metadata"]["Signal"]["signal_type"]
        for a, b in zip(o.axes, r["axes"], strict=True):
            assert a.name == (b["name"] or "")
            assert a.size == b["size"]
            assert a.navigate == b["navigate"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref_unit = clean_unit(b["units"])
            if fixed_units:
                ref_unit = CORRECTED.get(ref_unit, ref_unit)
            assert a.units == ref_unit
            assert a.linear_offset == pytest.approx(float(b["offset"]), rel=1e-5, abs=1e-12)
            assert a.linear_scale == pytest.approx(float(b["scale"]), rel=1e-5)
    return ours


@pytest.mark.realdata
@pytest.mark.parametrize("name", FILES)
def test_real_files_match_rsciio(name):
    path = real_file(name)
    assert detect_format(path) == "prismatic"
    compare_to_rsciio(path)


@pytest.mark.realdata
@pytest.mark.parametrize("name", FILES)
def test_unstacked_match_rsciio(name):
    # rsciio titles unstacked members "virtual_detector0000"; ours keep the group name
    ours = compare_to_rsciio(real_file(name), compare_titles=False, stack_group=False)
    for ds in ours:
        assert ds.title == ds.path.split("/")[-2]


@pytest.mark.realdata
@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("stack_group", [None, False])
def test_lazy_equals_eager(name, stack_group):
    path = real_file(name)
    eager = _quiet(read_datasets, path, stack_group=stack_group)
    lazy = _quiet(read_datasets, path, lazy=True, stack_group=stack_group)
    assert [d.title for d in eager] == [d.title for d in lazy]
    for e, lz in zip(eager, lazy):
        assert isinstance(e.data, np.ndarray) and lz.is_lazy
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(lz.data)).compute(), e.data)
        assert [a.to_dict(i) for i, a in enumerate(lz.axes)] == [
            a.to_dict(i) for i, a in enumerate(e.axes)
        ]


@pytest.mark.realdata
def test_readme_shapes():
    (vd,) = read_datasets(real_file("Si100_3D.emd"))
    assert (vd.title, vd.dtype, vd.shape, vd.kind) == (
        "virtual_detector", np.float32, (37, 22, 22), IMAGE_STACK)
    (cbed,) = read_datasets(real_file("Si100_4D.emd"))
    assert (cbed.title, cbed.shape, cbed.kind) == ("CBED_array", (2, 11, 11, 8, 8), SIGNAL)
    assert cbed.signal_type == "electron_diffraction"
    assert [a.name for a in cbed.axes] == ["CBED_array_depth", "R_x", "R_y", "Q_x", "Q_y"]
    assert [a.units for a in cbed.axes] == ["Å", "Å", "Å", "1/Å", "1/Å"]
    (ad,) = read_datasets(real_file("Si100_2x1x1_3D.emd"))
    assert (ad.title, ad.shape, ad.kind) == ("annular_detector", (22, 44), IMAGE)
    datasets = {d.title: d for d in read_datasets(real_file(
        "Si100_2D_3D_DPC_potential_2slices.emd"))}
    assert list(datasets) == ["DPC_CoM", "annular_detector", "ppotential", "virtual_detector"]
    assert datasets["ppotential"].shape == (4, 16, 16)
    assert [a.name for a in datasets["ppotential"].axes] == ["R_z", "R_y", "R_x"]
    assert datasets["DPC_CoM"].shape == (2, 2, 22, 22)
    # the DPC component labels are kept
    dims = datasets["DPC_CoM"].original_metadata["dataset"]["dims"]
    assert dims["dim3"]["labels"] == ["DPC_CoM_x", "DPC_CoM_y"]


@pytest.mark.realdata
def test_realslice_order_is_reversed():
    """A realslice stored (R_x, R_y, angle) comes back (angle, R_y, R_x)."""
    path = real_file("Si100_3D.emd")
    (vd,) = read_datasets(path)
    with h5py.File(path, "r") as f:
        stored = f[f"{SIM}/realslices/virtual_detector_depth0000/realslice"][()]
    assert stored.shape == (22, 22, 37)
    np.testing.assert_array_equal(vd.data, stored.transpose(2, 1, 0))
    assert [a.name for a in vd.axes] == ["bin_outer_angle", "R_y", "R_x"]
    assert [a.navigate for a in vd.axes] == [True, False, False]


@pytest.mark.realdata
def test_depth_axis_from_simulation_parameters():
    (vd,) = read_datasets(real_file("Si100_1x1x3-zStart5.43.emd"))
    depth = vd.axes[0]
    assert vd.shape == (3, 208, 7, 7)
    assert (depth.name, depth.units, depth.navigate) == ("virtual_detector_depth", "Å", True)
    # 4 slices of 1.3575 Å between outputs, first output at zStart = 5.43 Å, last at the
    # 3-cell thickness 16.29 Å
    assert depth.offset == pytest.approx(5.43, rel=1e-6)
    assert depth.scale == pytest.approx(5.43, rel=1e-6)
    assert depth.offset + 2 * depth.scale == pytest.approx(3 * 5.43, rel=1e-6)
    md = vd.full_metadata()
    assert md["Acquisition_instrument"]["TEM"]["beam_energy"] == 80.0
    assert md["Signal"]["signal_origin"] == "simulation"
    params = vd.original_metadata["simulation_parameters"]
    assert params["zStart"] == pytest.approx(5.43)
    assert params["numSlices"] == 4 and params["numFP"] == 20
    assert params["save3DOutput"] == 1 and params["save4DOutput"] == 0


@pytest.mark.realdata
def test_dataset_path_and_stack_group():
    path = real_file("Si100_4D.emd")
    member = f"{SIM}/datacubes/CBED_array_depth0001/datacube"
    (one,) = compare_to_rsciio(path, compare_titles=False, dataset_path=member)
    assert one.shape == (11, 11, 8, 8)
    (full,) = read_datasets(path)
    np.testing.assert_array_equal(one.data, full.data[1])
    both = compare_to_rsciio(
        path, compare_titles=False,
        dataset_path=[member, f"{SIM}/datacubes/CBED_array_depth0000/datacube"])
    assert [d.title for d in both] == ["CBED_array_depth0001", "CBED_array_depth0000"]
    # a group path names its array too
    (grp,) = read_datasets(path, dataset_path=f"{SIM}/datacubes/CBED_array_depth0000")
    np.testing.assert_array_equal(grp.data, full.data[0])
    # asking for stacking explicitly stacks the listed members, in depth order
    (stacked,) = read_datasets(path, dataset_path=[member, f"{SIM}/datacubes/"
                                                   "CBED_array_depth0000/datacube"],
                               stack_group=True)
    np.testing.assert_array_equal(stacked.data, full.data)


# --- files written here -------------------------------------------------------------


def _write_prismatic(path, n_depth: int, *, ns=2, s=1.0, tile_z=1.0, cell_z=6.0, zs=0.0,
                     rx=None):
    rng = np.random.default_rng(1)
    stored = []
    with h5py.File(path, "w") as f:
        root = f.create_group("4DSTEM_simulation")
        root.attrs.update({"emd_group_type": 2, "version_major": 0, "version_minor": 5})
        p = root.create_group("metadata/metadata_0/original/simulation_parameters")
        p.attrs.update({"ns": np.int32(ns), "s": np.float32(s), "zs": np.float32(zs),
                        "t": np.array([1, 1, tile_z], np.float32),
                        "c": np.array([cell_z, 4, 4], np.float32), "E": np.float32(300),
                        "a": np.bytes_(b"p")})
        if rx is not None:
            p.attrs.update({"rx": np.float32(rx), "ry": np.float32(rx)})
        for i in range(n_depth):
            g = root.create_group(f"data/realslices/annular_detector_depth{i:04d}")
            g.attrs.update({"emd_group_type": np.int32(1), "depth": np.int32(1)})
            a = rng.random((5, 3)).astype(np.float32)  # stored (R_x, R_y)
            stored.append(a)
            g.create_dataset("realslice", data=a)
            for k, (n, name) in enumerate([(5, b"R_x"), (3, b"R_y")], 1):
                d = g.create_dataset(f"dim{k}", data=np.arange(n, dtype=np.float32) * 0.2)
                d.attrs["name"], d.attrs["units"] = name, b"[n_m]"
    return stored


@pytest.mark.realdata
@pytest.mark.parametrize("name", FILES)
def test_file_unit_labels_without_correction(name, monkeypatch):
    """With the correction off, the units are the file's labels, as rsciio gives them."""
    monkeypatch.setattr(prismatic, "FIX_UNITS", False)
    compare_to_rsciio(real_file(name), fixed_units=False)


@pytest.mark.realdata
def test_unit_correction_evidence():
    (vd,) = read_datasets(real_file("Si100_1x1x3-zStart5.43.emd"))
    # the scan window starts half a 5.43 Å cell in: 2.715 Å, not nm
    assert vd.axes[-1].offset == pytest.approx(2.715, rel=1e-6)
    assert [a.units for a in vd.axes] == ["Å", "rad", "Å", "Å"]
    assert [a.raw_units for a in vd.axes[1:]] == ["[mrad]", "[n_m]", "[n_m]"]
    fixes = vd.original_metadata["dataset"]["unit_corrections"]
    assert fixes == {"bin_outer_angle": "[mrad] -> rad", "R_y": "[n_m] -> Å",
                     "R_x": "[n_m] -> Å"}


def test_written_prismatic_uniform_depth(tmp_path):
    path = tmp_path / "sim.emd"
    stored = _write_prismatic(path, 3, ns=2, s=1.0, cell_z=6.0)
    assert detect_format(path) == "prismatic"
    # no probe step in these parameters: nothing proves the nm labels wrong, they stay
    (ds,) = compare_to_rsciio(path, fixed_units=False)
    assert ds.axes[1].units == "nm"
    np.testing.assert_array_equal(ds.data, np.stack([a.T for a in stored]))
    assert (ds.axes[0].offset, ds.axes[0].scale, ds.axes[0].units) == (2.0, 2.0, "Å")
    assert ds.kind == IMAGE_STACK
    assert ds.original_metadata["simulation_parameters"]["algorithm"] == "p"


def test_written_prismatic_short_last_interval(tmp_path):
    """7 Å thick, an output every 3 Å: outputs at 3, 6 and 7 Å (the final one at the
    full thickness) give a non-uniform depth axis, kept as a vector."""
    path = tmp_path / "sim.emd"
    _write_prismatic(path, 3, ns=3, s=1.0, cell_z=7.0)
    (ds,) = read_datasets(path)
    np.testing.assert_allclose(ds.axes[0].vector, [3.0, 6.0, 7.0])
    assert ds.axes[0].units == "Å"


def test_written_prismatic_inconsistent_depth(tmp_path):
    path = tmp_path / "sim.emd"
    _write_prismatic(path, 5, ns=3, s=1.0, cell_z=7.0)
    with pytest.warns(EMDWarning, match="depth"):
        (ds,) = read_datasets(path)
    assert (ds.axes[0].offset, ds.axes[0].scale, ds.axes[0].units) == (0.0, 1.0, "")
    assert ds.shape == (5, 3, 5)


def test_written_prismatic_single_depth(tmp_path):
    path = tmp_path / "sim.emd"
    stored = _write_prismatic(path, 1)
    (ds,) = compare_to_rsciio(path, fixed_units=False)
    assert ds.title == "annular_detector" and ds.kind == IMAGE
    np.testing.assert_array_equal(ds.data, stored[0].T)


def test_depth_axis_without_parameters():
    ax = prismatic.depth_axis({}, "x", 4)
    assert (ax.name, ax.size, ax.offset, ax.scale, ax.navigate) == ("x_depth", 4, 0.0, 1.0,
                                                                    True)


@pytest.mark.parametrize(("rx", "unit"), [(0.2, "Å"), (2.0, "nm")])
def test_unit_correction_needs_evidence(tmp_path, rx, unit):
    """The scan dims step 0.2: with a 0.2 Å probe step they are Å; with a 2 Å probe step
    they really are nm (0.2 nm = 2 Å) and keep their label."""
    path = tmp_path / "sim.emd"
    _write_prismatic(path, 1, rx=rx)
    (ds,) = read_datasets(path)
    assert [a.units for a in ds.axes] == [unit, unit]


def test_written_prismatic_first_output_past_zstart(tmp_path):
    """zStart 3 Å, 1 Å slices, an output every 2 slices, 8 Å thick: prismatic saves
    after slices 4, 6 and 8 (the first whole output interval at or past zStart), so the
    first output is at 4 Å, not at zStart; the axis is calibrated, without a warning."""
    path = tmp_path / "sim.emd"
    _write_prismatic(path, 3, ns=2, s=1.0, cell_z=8.0, zs=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EMDWarning)
        (ds,) = read_datasets(path)
    depth = ds.axes[0]
    assert (depth.offset, depth.scale, depth.units) == (4.0, 2.0, "Å")
    assert depth.vector is None


def test_written_prismatic_zstart_and_short_last_interval(tmp_path):
    """zStart 3.5 Å (mid-slice: rounded up to slice 4), 7 Å thick: outputs at 4, 6, 7 Å."""
    path = tmp_path / "sim.emd"
    _write_prismatic(path, 3, ns=2, s=1.0, cell_z=7.0, zs=3.5)
    (ds,) = read_datasets(path)
    np.testing.assert_allclose(ds.axes[0].vector, [4.0, 6.0, 7.0])


def test_output_depths():
    assert prismatic.output_depths(4, 1.3575, 16.29, 5.43) == pytest.approx([5.43, 10.86, 16.29])
    assert prismatic.output_depths(2, 1.3575, 5.43, 0.0) == pytest.approx([2.715, 5.43])
    assert prismatic.output_depths(3, 1.0, 7.0, 0.0) == pytest.approx([3.0, 6.0, 7.0])
