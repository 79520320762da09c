"""prismatic simulation output (EMD 0.5 groups under ``/4DSTEM_simulation``).

prismatic writes ``data/realslices/<name>_depthNNNN/realslice`` (2-D and 3-D outputs, the
DPC centre of mass, the projected potential ``ppotential``) and
``data/datacubes/CBED_array_depthNNNN/datacube`` (4-D output), one group per output
depth, with EMD 0.2-style ``dim1..dimN`` vectors whose ``dim1`` is the first stored axis
(x). The reading itself is :mod:`napari_emd.formats.ncem`'s; this module adds what is
prismatic's own:

- the depth series are stacked into one dataset with a depth axis in Å, calibrated from
  the simulation parameters (``numSlices`` x ``sliceThickness`` between outputs, the last
  output at the full thickness ``tile[2] x cellDimension[0]`` (the cell is stored
  z, y, x, the tiling x, y, z), the first at ``zStart``);
- realslices have the scan (``R_x``, ``R_y``) as signal axes and the rest (detector
  angle, potential slice, DPC component) navigating; datacubes have the diffraction
  plane (``Q_x``, ``Q_y``) as signal, and are ``electron_diffraction``;
- the dims' unit labels (``[n_m]``, ``[mrad]``) are corrected to Å and rad when the
  simulation parameters show the numbers are in those units (see :func:`fix_units`);
- the simulation parameters (stored under prismatic's command-line flags: ``E``, ``s``,
  ``ns``...) are given under readable names in ``original_metadata``, and the beam
  energy and convergence angle in ``metadata``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from ..errors import EMDWarning
from ..h5 import attrs_dict
from ..model import Axis, Dataset
from ..options import ReadOptions
from . import emd0_datasets

NAME = "prismatic"
# Correct prismatic's mislabelled dim units (see fix_units); False gives the file's labels,
# as the reference reader does.
FIX_UNITS = True
ROOT = "4DSTEM_simulation"
PARAMS = f"{ROOT}/metadata/metadata_0/original/simulation_parameters"

# prismatic's command-line flags (the attribute names in the file) -> parameter names
# of its documentation and Python API.
PARAMETER_NAMES = {
    "i": "filenameAtoms",
    "o": "filenameOutput",
    "a": "algorithm",
    "fx": "interpolationFactorX",
    "fy": "interpolationFactorY",
    "F": "numFP",
    "ns": "numSlices",
    "te": "includeThermalEffects",
    "oc": "includeOccupancy",
    "2D": "integrationAngle",
    "3D": "save3DOutput",
    "4D": "save4DOutput",
    "DPC": "saveDPC_CoM",
    "ps": "savePotentialSlices",
    "nqs": "nyquistSampling",
    "px": "realspacePixelSizeX",
    "py": "realspacePixelSizeY",
    "P": "potBound",
    "s": "sliceThickness",
    "zs": "zStart",
    "E": "E0",
    "A": "alphaBeamMax",
    "rx": "probeStepX",
    "ry": "probeStepY",
    "df": "probeDefocus",
    "sa": "probeSemiangle",
    "d": "detectorAngleStep",
    "tx": "probeXtilt",
    "ty": "probeYtilt",
    "c": "cellDimension",
    "t": "tile",
    "wx": "scanWindowX",
    "wy": "scanWindowY",
    "wxr": "scanWindowX_r",
    "wyr": "scanWindowY_r",
    "C3": "C3",
    "C5": "C5",
}


def detect(f: h5py.File) -> bool:
    """prismatic output: a top-level ``4DSTEM_simulation`` group."""
    return isinstance(f.get(ROOT, getlink=True), h5py.HardLink) and isinstance(
        f.get(ROOT), h5py.Group
    )


def simulation_parameters(f: h5py.File) -> dict[str, Any]:
    """The simulation parameters under readable names (unknown flags kept as is)."""
    g = f.get(PARAMS)
    if not isinstance(g, h5py.Group):
        return {}
    return {PARAMETER_NAMES.get(k, k): v for k, v in attrs_dict(g).items()}


def _number(x: Any) -> float | None:
    if isinstance(x, list):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _component(x: Any, i: int) -> float | None:
    if isinstance(x, list) and len(x) > i:
        return _number(x[i])
    return None


def depth_axis(params: dict[str, Any], title: str, n: int) -> Axis:
    """The depth axis (Å) of ``n`` outputs, where prismatic writes them: after every
    ``numSlices``-th potential slice (slices ``sliceThickness`` thick) from the first at
    or past ``zStart``, and after the last slice (the sample's exit surface). Uniform
    when the outputs are evenly spaced, a non-uniform vector when only the last
    interval differs; an index axis with a warning when ``n`` does not match what the
    parameters give (or they are missing)."""
    name = f"{title}_depth"
    ns = _number(params.get("numSlices"))
    st = _number(params.get("sliceThickness"))
    tile_z = _component(params.get("tile"), 2)
    # prismatic keeps the cell as (z, y, x) but the tiling as (x, y, z)
    cell_z = _component(params.get("cellDimension"), 0)
    z0 = _number(params.get("zStart")) or 0.0
    if not (ns and st and tile_z and cell_z) or n < 1 or ns < 1 or st <= 0:
        return Axis(name=name, size=n, navigate=True)
    total = tile_z * cell_z
    depths = output_depths(round(ns), st, total, z0)
    if len(depths) == n:
        step = ns * st
        gaps = np.diff(depths)
        if n == 1 or np.allclose(gaps, gaps[0], rtol=1e-4):
            scale = float(gaps[0]) if n > 1 else step
            return Axis(name=name, size=n, offset=float(depths[0]), scale=scale, units="Å",
                        navigate=True)
        return Axis(name=name, size=n, offset=float(depths[0]), scale=step, units="Å",
                    navigate=True, vector=np.asarray(depths, dtype=float))
    warnings.warn(
        f"{title}: {n} depth outputs do not fit the simulation parameters (thickness "
        f"{total:g} Å, {ns * st:g} Å between outputs, zStart {z0:g} Å give "
        f"{len(depths)}); the depth axis is an index",
        EMDWarning,
        stacklevel=2,
    )
    return Axis(name=name, size=n, navigate=True)


def output_depths(num_slices: int, thickness: float, total: float, z_start: float) -> list[float]:
    """The depths (Å) at which prismatic saves its outputs: the potential is cut into
    ``ceil(total / thickness)`` slices; an output follows every ``num_slices``-th slice
    whose bottom is at or past ``z_start`` (rounded up to a whole slice), and the last
    slice, whose bottom is the sample's exit surface."""
    eps = 1e-6
    planes = max(1, int(np.ceil(total / thickness - eps)))
    first_plane = int(np.ceil(z_start / thickness - eps)) if z_start > 0 else 0
    out = [p for p in range(num_slices, planes + 1, num_slices) if p >= first_plane]
    if not out or out[-1] != planes:
        out.append(planes)
    return [min(p * thickness, total) if p == planes else p * thickness for p in out]


def _close(a: float, b: float | None, rtol: float = 1e-3) -> bool:
    return b is not None and b != 0 and abs(a - b) <= rtol * abs(b)


def fix_units(params: dict[str, Any], axes: list[Axis]) -> dict[str, Any]:
    """Correct the units prismatic writes on its dims, in place, when the file's own
    parameters prove them wrong; returns ``{axis name: "file unit -> unit"}``.

    prismatic computes in Å and mrad-sized angles in radians but labels its dims
    ``[n_m]``, ``[n_m^-1]`` and ``[mrad]``. The values give it away: a scan axis whose
    step is the probe step (``probeStepX``/``probeStepY``, Å) or a potential-slice axis
    whose step is the slice thickness (Å) is in Å, and then so are the group's other
    lengths (and its reciprocal lengths in 1/Å); an angle axis whose step is the
    detector angle step (mrad) divided by 1000 is in rad. Only the unit label changes,
    never the numbers. Files whose dims really are in nm or mrad are left alone.
    """
    step_of = {
        "R_x": _number(params.get("probeStepX")),
        "R_y": _number(params.get("probeStepY")),
        "R_z": _number(params.get("sliceThickness")),
    }
    in_angstrom = any(
        ax.units == "nm" and ax.vector is None and _close(ax.scale, step_of.get(ax.name))
        for ax in axes
    )
    d = _number(params.get("detectorAngleStep"))
    fixes: dict[str, Any] = {}
    for ax in axes:
        new = None
        if in_angstrom and ax.units == "nm":
            new = "Å"
        elif in_angstrom and ax.units == "1/nm":
            new = "1/Å"
        elif ax.units == "mrad" and d and _close(ax.linear_scale, d / 1000.0):
            new = "rad"
        if new is not None:
            fixes[ax.name or "axis"] = f"{ax.raw_units or ax.units} -> {new}"
            ax.units = new
    return fixes


def _navigate(array_name: str, dim: str) -> bool:
    signal_dims = ("dim3", "dim4") if array_name == "datacube" else ("dim1", "dim2")
    return dim not in signal_dims


def _signal_type(title: str, array_name: str) -> str:
    if array_name == "datacube" or "CBED" in title:
        return "electron_diffraction"
    return ""


def _file_metadata(
    params: dict[str, Any],
) -> Callable[[h5py.File], tuple[dict[str, Any], dict[str, Any]]]:
    """The file-level metadata maker of prismatic files: the NCEM root groups plus the
    beam and probe settings of the simulation."""
    def make(f: h5py.File) -> tuple[dict[str, Any], dict[str, Any]]:
        md, om = emd0_datasets.root_metadata(f)
        tem: dict[str, Any] = {}
        e0 = _number(params.get("E0"))
        if e0:
            tem["beam_energy"] = e0  # prismatic's E0 is in keV
        sa = _number(params.get("probeSemiangle"))
        if sa:
            tem["convergence_angle"] = sa  # mrad
        df = _number(params.get("probeDefocus"))
        if df is not None:
            tem["defocus"] = df  # Å
        if tem:
            md = emd0_datasets.merge_trees(md, {"Acquisition_instrument": {"TEM": tem}})
        md = emd0_datasets.merge_trees(md, {"Signal": {"signal_origin": "simulation"},
                              "General": {"notes": "prismatic simulation"}})
        if params:
            om["simulation_parameters"] = params
        return md, om

    return make


def read(path: str, f: h5py.File, opts: ReadOptions) -> list[Dataset]:
    """Read a prismatic output file (depth series stacked unless ``stack_group=False``)."""
    params = simulation_parameters(f)
    profile = emd0_datasets.Profile(
        navigate=_navigate,
        stack_axis=lambda title, n, depth: (
            depth_axis(params, title, n) if depth else Axis(name=title, size=n, navigate=True)
        ),
        signal_type=_signal_type,
        file_metadata=_file_metadata(params),
        group_attrs_as_signal=False,
        fix_axes=lambda group, axes: fix_units(params, axes) if FIX_UNITS else {},
    )
    return emd0_datasets.read_with_profile(path, f, opts, profile)
