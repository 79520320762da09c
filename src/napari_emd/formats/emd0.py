"""The EMD 0.x machinery NCEM EMD 0.2 (HyperSpy, ncempy, DE5) and prismatic files share:
finding data groups, reading their arrays and ``dim`` vectors, stacking series and
guessing what kind of dataset each is (:mod:`.emd0_datasets` builds the datasets).

Layout (EMD 0.2 and its later 0.x variants): any group with ``emd_group_type = 1`` holds
one data array (``data``, or ``datacube``/``realslice``/... in prismatic and py4DSTEM 0.x
files) and one vector per dimension, ``dim1 .. dimN``, with ``name`` and ``units``
attributes. Writers differ in details this module accepts:

- HyperSpy writes ``/signals/<title>``, string version attributes, the signal's
  ``metadata.Signal`` items as group attributes, root groups ``microscope``, ``sample``,
  ``user``, ``comments`` and every dim as two values ``[offset, offset + scale]``;
- ncempy (and Direct Electron's DE5) write ``/data/<name>``, integer version attributes
  and full-length dim vectors;
- attributes may be ``bytes`` or ``str``; dims may be scalars or string labels.

Axis order follows the reference reader: ``dim1`` describes the first *stored* axis,
which for HyperSpy-, ncempy- and prismatic-written arrays is x, so arrays come back
reversed (a transpose, lazy when ``opts.lazy``) with ``dim1`` last. ``datacube`` arrays
and ``dim0``-numbered groups keep their stored order. A format module describes how its
writer differs in a :class:`.emd0_datasets.Profile` and calls
:func:`.emd0_datasets.read_with_profile`.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from ..errors import EMDError, EMDWarning
from ..h5 import attr_str, attr_value, attrs_dict, grow_chunks, lazy_dataset
from ..model import (
    IMAGE,
    IMAGE_STACK,
    SIGNAL,
    SPECTRUM,
    SPECTRUM_IMAGE,
    TABLE,
    Axis,
)
from ..units import clean_unit, length_factor

# Names of the data array inside an EMD 0.x data group, in order of preference.
DATA_NAMES = (
    "data",
    "datacube",
    "counted_datacube",
    "realslice",
    "diffractionslice",
    "pointlist",
    "pointlistarray",
)
# Arrays stored in numpy order (no reversal), whatever the dim numbering.
NATIVE_ORDER_NAMES = ("datacube",)
ROOT_GROUPS = ("microscope", "sample", "user", "comments")
_DIM_RE = re.compile(r"^dim(\d+)$")
# "virtual_detector_depth0003" -> ("virtual_detector", "_depth", "0003"); "group0001" too.
_SERIES_RE = re.compile(r"^(?P<base>.*?)(?P<depth>_depth)?(?P<index>\d{4,})$")
# Relative tolerance of the linearity test of a dim vector (float32 vectors are common).
_LINEAR_RTOL = 1e-4


# --- detection ------------------------------------------------------------------------


def is_data_group_type(value: Any) -> bool:
    """True for ``emd_group_type`` 1 written as int, float, str or bytes."""
    try:
        v = attr_value(value)
        if isinstance(v, str):
            return v.strip() == "1"
        return int(v) == 1 and not isinstance(v, bool)
    except (TypeError, ValueError):
        return False


def version_attrs(obj: h5py.HLObject) -> str | None:
    """``"major.minor"`` from ``version_major``/``version_minor`` attributes, or None."""
    attrs = obj.attrs
    if "version_major" not in attrs:
        return None
    major = attr_str(attrs["version_major"]).strip()
    minor = attr_str(attrs["version_minor"]).strip() if "version_minor" in attrs else "0"
    return f"{major}.{minor}"


def major_version(version: str | None) -> int | None:
    if version is None:
        return None
    try:
        return int(float(version.split(".")[0]))
    except ValueError:
        return None


def emd_version(f: h5py.File) -> str | None:
    """The EMD version written at the root or on a top-level group (prismatic), if any."""
    v = version_attrs(f)
    if v is not None:
        return v
    for item in f.values():
        if isinstance(item, h5py.Group):
            v = version_attrs(item)
            if v is not None:
                return v
    return None


# --- discovery ------------------------------------------------------------------------


@dataclass
class Member:
    """One data array found in a data group."""

    group: str  # HDF5 path of the data group
    name: str  # name of the data array inside the group

    @property
    def path(self) -> str:
        return f"{self.group.rstrip('/')}/{self.name}"


def data_name(group: h5py.Group) -> str | None:
    """Name of the data array of an EMD 0.x data group (None when there is none)."""
    datasets = [k for k, v in group.items() if isinstance(v, h5py.Dataset)]
    for name in DATA_NAMES:
        if name in datasets:
            return name
    for name in DATA_NAMES:
        for k in datasets:
            if k.startswith(name):
                return k
    others = [k for k in datasets if not _DIM_RE.match(k)]
    return others[0] if len(others) == 1 else None


def group_names(f: h5py.File) -> list[str]:
    """Paths (without the leading slash) of every group below the root, in HDF5 name
    order. The low-level visit reports object types, so no dataset object is created:
    much cheaper than ``visititems`` on files with many arrays."""
    names: list[str] = []

    def visit(name: bytes, info: Any) -> None:
        if info.type == h5py.h5o.TYPE_GROUP and name != b".":
            names.append(name.decode("utf-8", "surrogateescape"))

    h5py.h5o.visit(f.id, visit, info=True)
    return names


def find_members(f: h5py.File) -> list[Member]:
    """Every data array of the file, in HDF5 name order (groups only, no data read)."""
    found: list[Member] = []
    groups = group_names(f)
    for name in groups:
        obj = f.get(name)
        if not isinstance(obj, h5py.Group):
            continue
        gtype = obj.attrs.get("emd_group_type")
        if gtype is None or not is_data_group_type(gtype):
            continue
        dname = data_name(obj)
        if dname is not None:
            found.append(Member("/" + name, dname))
        elif any(
            isinstance(v, h5py.Dataset) and not _DIM_RE.match(k) for k, v in obj.items()
        ):
            warnings.warn(
                f"EMD group /{name} holds several arrays and none is named 'data'; skipped",
                EMDWarning,
                stacklevel=2,
            )
    if not found:
        # Files that skip the emd_group_type tag: a group with a 'data' array and dims.
        for name in groups:
            obj = f.get(name)
            if (
                isinstance(obj, h5py.Group)
                and obj.get("data", getclass=True) is h5py.Dataset
                and ("dim1" in obj or "dim0" in obj)
            ):
                found.append(Member("/" + name, "data"))
    return _in_creation_order(f, found)


def _in_creation_order(f: h5py.File, found: list[Member]) -> list[Member]:
    """Members in the order of their groups in the file: each step of a group's path by
    its place among its parent's members, which h5py lists in creation order for a group
    that tracks it (napari-emd's writer keeps the napari layer order that way, a group
    it had to put one level down, ``/data/C (1)/C``, in its folder's place) and by name
    otherwise."""
    listings: dict[str, list[str]] = {}

    def listing(parent: str) -> list[str]:
        if parent not in listings:
            try:
                listings[parent] = list(f[parent])
            except Exception:
                listings[parent] = []
        return listings[parent]

    def key(m: Member) -> tuple[int, ...]:
        out, parent = [], "/"
        for part in m.group.strip("/").split("/"):
            names = listing(parent)
            out.append(names.index(part) if part in names else len(names))
            parent = f"{parent.rstrip('/')}/{part}"
        return tuple(out)

    return sorted(found, key=key)


def select_members(f: h5py.File, found: list[Member], wanted: tuple[str, ...]) -> list[Member]:
    """The members named by ``dataset_path`` entries (a data array or its group), in the
    order given. Unknown paths raise :class:`EMDError` listing what the file holds."""
    by_path = {m.path: m for m in found}
    by_group = {m.group: m for m in found}
    out: list[Member] = []
    for raw in wanted:
        p = "/" + str(raw).strip().strip("/")
        m = by_path.get(p) or by_group.get(p)
        if m is None:
            obj = f.get(p)
            if isinstance(obj, h5py.Dataset):
                parent = p.rsplit("/", 1)
                m = Member(parent[0] or "/", parent[1])
            elif isinstance(obj, h5py.Group) and data_name(obj) is not None:
                m = Member(p, data_name(obj) or "data")
        if m is None:
            avail = ", ".join(x.path for x in found) or "none"
            raise EMDError(f.filename, f"dataset_path {raw!r} is not in the file "
                                       f"(datasets: {avail})")
        if m not in out:
            out.append(m)
    return out


def group_series(members: list[Member]) -> list[list[Member]]:
    """Group members that differ only by a numeric suffix (``name_depth0000``,
    ``name_depth0001``... or ``group0000``, ``group0001``) in the same parent and with the
    same array name into series, keeping file order; the rest are single."""
    keyed: dict[tuple[str, str, str], list[Member]] = {}
    order: list[tuple[str, str, str] | Member] = []
    for m in members:
        parent, _, gname = m.group.rpartition("/")
        match = _SERIES_RE.match(gname)
        if match is None or not match.group("base"):
            order.append(m)
            continue
        key = (parent, match.group("base") + (match.group("depth") or ""), m.name)
        if key not in keyed:
            keyed[key] = []
            order.append(key)
        keyed[key].append(m)
    out: list[list[Member]] = []
    for item in order:
        if isinstance(item, Member):
            out.append([item])
        else:
            ms = keyed[item]
            ms.sort(key=lambda m: int(_SERIES_RE.match(m.group.rpartition("/")[2])["index"]))
            out.append(ms)
    return out


def series_title(members: list[Member], stacked: bool) -> str:
    """Title of a dataset: the ``title`` attribute is read by the caller; here the group
    name, without a ``_depthNNNN`` suffix when stacking (a series of one included)."""
    gname = members[0].group.rpartition("/")[2] or members[0].name
    if stacked:
        match = _SERIES_RE.match(gname)
        if match is not None and match.group("base") and (
            match.group("depth") or len(members) > 1
        ):
            return match.group("base").rstrip("_- ") or match.group("base")
    return gname


# --- axes -----------------------------------------------------------------------------


def axis_from_vector(
    name: str,
    raw_units: str | None,
    values: np.ndarray | None,
    size: int,
    *,
    navigate: bool = False,
    context: str = "",
) -> Axis:
    """An :class:`Axis` of ``size`` points from a dim vector.

    A linear vector (two values ``[offset, offset + scale]`` as HyperSpy writes, or a
    full-length one) gives offset/scale; a non-linear full-length one is kept as
    ``vector``; missing, scalar or string dims give an index axis.
    """
    units = clean_unit(raw_units, context=context) if raw_units else ""
    ax = Axis(name=name, size=int(size), units=units, navigate=navigate)
    if raw_units:
        ax.raw_units = raw_units
    if values is None:
        return ax
    v = np.asarray(values)
    if v.ndim != 1 or v.size < 2 or v.dtype.kind not in "iuf":
        return ax
    v = v.astype(np.float64)
    if not np.all(np.isfinite(v)):
        return ax
    if v.size not in (2, size):  # two values: HyperSpy's [offset, offset + scale]
        warnings.warn(
            f"{context}: the dim vector has {v.size} values for an axis of {size} "
            "points; its mean step and first value are used", EMDWarning, stacklevel=2)
    steps = np.diff(v)
    scale = (v[-1] - v[0]) / (v.size - 1)
    eps = float(np.finfo(np.asarray(values).dtype).eps) if np.asarray(values).dtype.kind == "f" \
        else 0.0
    tol = _LINEAR_RTOL * abs(scale) + 8 * eps * float(np.max(np.abs(v)))
    if scale == 0:  # constant coordinates say nothing about the spacing
        ax.offset = float(v[0])
        return ax
    linear = bool(np.all(np.abs(steps - scale) <= tol))
    if linear or v.size != size:
        if not linear:
            warnings.warn(
                f"{context}: non-uniform axis of {v.size} values for {size} points; "
                "its mean step is used",
                EMDWarning,
                stacklevel=2,
            )
        ax.offset = float(v[0])
        ax.scale = float(scale)
        return ax
    ax.vector = v
    ax.offset = float(v[0])
    ax.scale = float(scale)
    return ax


def read_dim(group: h5py.Group, index: int, size: int, navigate: bool) -> tuple[Axis, dict]:
    """The axis described by ``dim<index>`` of ``group`` (an index axis when absent), and
    the dim's attributes and labels for ``original_metadata``."""
    key = f"dim{index}"
    obj = group.get(key)
    context = f"{group.file.filename}: {group.name}/{key}"
    if not isinstance(obj, h5py.Dataset):
        return Axis(name="", size=int(size), navigate=navigate), {}
    info = attrs_dict(obj)
    if "navigate" in info:  # napari-emd's writer keeps HyperSpy's navigation flags
        with contextlib.suppress(TypeError, ValueError):
            navigate = bool(int(attr_value(info["navigate"])))
    name = attr_str(info.get("name", "")).strip()
    raw_units = attr_str(info["units"]).strip() if "units" in info else None
    values = None
    if obj.ndim == 1 and obj.size <= 10_000_000:
        if obj.dtype.kind in "iuf":
            values = obj[()]
        elif h5py.check_string_dtype(obj.dtype) is not None or obj.dtype.kind in "SO":
            # undecodable labels are not worth a failed open
            with contextlib.suppress(Exception):
                info["labels"] = [str(s) for s in obj.asstr()[()]]
    elif obj.ndim == 0:
        info["value"] = attr_value(obj[()])
    ax = axis_from_vector(name, raw_units, values, size, navigate=navigate, context=context)
    return ax, info


def group_extras(group: h5py.Group, data_array: str | None) -> dict[str, Any]:
    """Every array of a data group besides its data and ``dim`` vectors, read into
    memory: ``name -> (array, attributes)``, and ``name -> {...}`` for a subgroup (text
    becomes object arrays of ``str``). napari-emd's writer stores a layer's features and
    per-element state this way (:mod:`napari_emd.writer.tables`). ``data_array`` is None
    for a subgroup, whose arrays are all kept."""
    out: dict[str, Any] = {}
    for name, obj in group.items():
        own = data_array is not None and (name == data_array or _DIM_RE.match(name))
        if isinstance(obj, h5py.Group):
            out[name] = group_extras(obj, None)
        elif isinstance(obj, h5py.Dataset) and not own:
            if is_table_dtype(obj.dtype) and obj.dtype.names is None:
                arr = _read_table(obj)
            else:
                arr = np.asarray(obj[()])
            out[name] = (arr, attrs_dict(obj))
    return out


# --- data -----------------------------------------------------------------------------


def is_table_dtype(dtype: np.dtype) -> bool:
    return dtype.kind in "OSUV" or dtype.names is not None


def _read_table(dset: h5py.Dataset) -> np.ndarray:
    """Object/string data decoded to an object array of ``str`` (compound kept as is)."""
    if h5py.check_string_dtype(dset.dtype) is not None or dset.dtype.kind == "S":
        return np.asarray(dset.asstr()[()], dtype=object)
    data = np.asarray(dset[()])
    if data.dtype.kind == "O":
        flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in data.ravel()]
        out = np.empty(data.shape, dtype=object)
        out.ravel()[:] = flat
        return out
    return data


def reversed_chunks(
    shape: tuple[int, ...],
    h5chunks: tuple[int, ...] | None,
    itemsize: int,
    target: int = 16 * 2**20,
) -> tuple[int, ...]:
    """Dask chunks for an array that will be reversed: its first *stored* axes become
    the last (on-screen) ones, so those grow to full size first, in whole HDF5 chunks,
    while the others stay as thin as the file's chunking allows. A napari slice then
    reads about one block, however the file was chunked."""
    base = h5chunks or (1,) * len(shape)
    return grow_chunks(shape, base, itemsize, target, order=range(len(shape)))


def read_array(path: str, dset: h5py.Dataset, lazy: bool, reverse: bool) -> Any:
    """One stored array, reversed when ``reverse``: numpy in the native dtype, or a dask
    array that reopens ``path`` (tables are small and read at once)."""
    if is_table_dtype(dset.dtype):
        data = _read_table(dset)
        if lazy:
            import dask.array as da

            data = da.from_array(data, chunks=-1)
    elif lazy:
        chunks = reversed_chunks(dset.shape, dset.chunks, dset.dtype.itemsize) if (
            reverse and dset.ndim > 1) else None
        data = lazy_dataset(path, dset, chunks=chunks)
    else:
        data = np.empty(dset.shape, dtype=dset.dtype)
        if data.size:
            dset.read_direct(data)
    return data.transpose() if reverse and data.ndim > 1 else data


def read_stack(path: str, dsets: list[h5py.Dataset], lazy: bool, reverse: bool) -> Any:
    """Arrays of one shape stacked along a new first axis (each reversed when
    ``reverse``); eager reads go straight into the stacked buffer."""
    if lazy or is_table_dtype(dsets[0].dtype):
        import dask.array as da

        parts = [read_array(path, d, True, reverse) for d in dsets]
        data = da.stack(parts)
        return data if lazy else np.asarray(data.compute())
    shape = dsets[0].shape
    buf = np.empty((len(dsets), *shape), dtype=dsets[0].dtype)
    for i, d in enumerate(dsets):
        if buf[i].size:
            d.read_direct(buf[i])
    if reverse and len(shape) > 1:
        buf = buf.transpose(0, *range(len(shape), 0, -1))
    return buf


# --- kinds ----------------------------------------------------------------------------

_ENERGY_UNITS = ("eV", "keV", "meV")
_SPECTRAL_TYPES = ("EELS", "EDS", "EDS_TEM", "EDS_SEM", "CL", "LUMISPECTRUM", "EDX")
_SPATIAL_NAMES = re.compile(r"^(r_?)?[xyz]$|^(x|y)[ _-]?(axis|position)?$", re.IGNORECASE)


def _is_spatial(ax: Axis) -> bool:
    if ax.units and not ax.units.startswith("1/") and length_factor(ax.units) is not None:
        return True
    return bool(ax.name and _SPATIAL_NAMES.match(ax.name))


def guess_kind(
    data: Any, axes: list[Axis], record_by: str = "", signal_type: str = ""
) -> str:
    """Dataset kind from dtype, dimensionality and axes: strings -> TABLE, 1-D ->
    SPECTRUM, 2-D -> IMAGE, n-D whose last two axes are spatial (or HyperSpy's
    ``record_by='image'``) -> IMAGE_STACK, 3-D spectra (HyperSpy's
    ``record_by='spectrum'``, an energy last axis or a spectral signal type) ->
    SPECTRUM_IMAGE, anything else SIGNAL."""
    dtype = np.dtype(data.dtype)
    if is_table_dtype(dtype) or data.ndim == 0:
        return TABLE
    if data.ndim == 1:
        return SPECTRUM
    if data.ndim == 2:
        # (detector or frame, E): spectra, not an image
        if axes[-1].units in _ENERGY_UNITS and not _is_spatial(axes[0]):
            return SPECTRUM
        return IMAGE
    if record_by == "image":
        return IMAGE_STACK
    spectral = SPECTRUM_IMAGE if data.ndim == 3 else SIGNAL
    if record_by == "spectrum" or axes[-1].units in _ENERGY_UNITS:
        return spectral
    if _is_spatial(axes[-1]) and _is_spatial(axes[-2]):
        return IMAGE_STACK
    if signal_type.upper() in _SPECTRAL_TYPES:
        return spectral
    return SIGNAL
