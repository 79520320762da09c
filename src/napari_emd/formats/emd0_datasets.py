"""Building datasets from EMD 0.x data groups: what differs between writers (a
:class:`Profile`), the spec's root metadata groups, HyperSpy's ``metadata.Signal``
attributes and the trees napari-emd's writer stores, and :func:`read_with_profile`, the
reader NCEM and prismatic files share."""

from __future__ import annotations

import copy
import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h5py

from ..errors import EMDError, EMDWarning
from ..h5 import attr_str, attrs_dict, tree_dict
from ..model import ANNOTATION_TYPES, NAPARI_LAYER_ATTR, SIGNAL, Axis, Dataset, SavedLayer
from ..options import ReadOptions
from .emd0 import (
    NATIVE_ORDER_NAMES,
    ROOT_GROUPS,
    Member,
    emd_version,
    find_members,
    group_extras,
    group_series,
    guess_kind,
    read_array,
    read_dim,
    read_stack,
    select_members,
    series_title,
)

# --- metadata -------------------------------------------------------------------------


def _non_empty(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in ("", None, [], {})}


def _voltage_kv(text: Any) -> float | None:
    """``"300kV"``, ``"300 kV"``, ``300000`` (V) -> 300.0 keV beam energy."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        v = float(text)
        return v / 1000.0 if v > 1000 else v  # no microscope exceeds 1000 kV
    m = re.match(r"^\s*([0-9.eE+-]+)\s*(k?V)?\s*$", str(text), re.IGNORECASE)
    if not m:
        return None
    try:
        v = float(m.group(1))
    except ValueError:
        return None
    unit = (m.group(2) or "").lower()
    if unit == "v" or (not unit and v > 1000):
        return v / 1000.0
    return v


def root_metadata(f: h5py.File) -> tuple[dict[str, Any], dict[str, Any]]:
    """HyperSpy-style ``metadata`` and the ``original_metadata`` entries from the root
    groups ``microscope``, ``sample``, ``user``, ``comments`` (EMD 0.2 recommendation)."""
    om: dict[str, Any] = {}
    for name in ROOT_GROUPS:
        g = f.get(name)
        if isinstance(g, h5py.Group):
            om[name] = tree_dict(g, max_depth=3)
    md: dict[str, Any] = {}
    mic = _non_empty(om.get("microscope", {}))
    tem: dict[str, Any] = {}
    if "name" in mic:
        tem["microscope"] = str(mic["name"])
    if "voltage" in mic:
        kv = _voltage_kv(mic["voltage"])
        if kv is not None:
            tem["beam_energy"] = kv
    if tem:
        md["Acquisition_instrument"] = {"TEM": tem}
    sample = _non_empty(om.get("sample", {}))
    if sample:
        md["Sample"] = {k: v for k, v in sample.items() if not isinstance(v, dict)}
    user = _non_empty(om.get("user", {}))
    general: dict[str, Any] = {}
    if "name" in user:
        general["authors"] = str(user["name"])
    comments = _non_empty(om.get("comments", {}))
    notes = [f"{v}" if k == "comment" else f"{k}: {v}" for k, v in comments.items()
             if not isinstance(v, dict)]
    if notes:
        general["notes"] = "\n".join(notes)
    if general:
        md["General"] = general
    return md, om


# --- reading --------------------------------------------------------------------------


@dataclass
class Profile:
    """What differs between EMD 0.x writers: navigation flags, the stacked-axis
    calibration, signal type and metadata. The defaults are those of NCEM EMD 0.2."""

    # (array name, dim key such as "dim3") -> navigate flag
    navigate: Callable[[str, str], bool] = lambda name, dim: False
    # (title, number of members, is a _depth series) -> the stacked axis (navigate=True)
    stack_axis: Callable[[str, int, bool], Axis] | None = None
    # (title, array name) -> signal type ("" when the file does not say)
    signal_type: Callable[[str, str], str] | None = None
    # file-level (metadata, original_metadata)
    file_metadata: Callable[[h5py.File], tuple[dict, dict]] = root_metadata
    # HyperSpy writes metadata.Signal as the data group's attributes; other writers don't
    group_attrs_as_signal: bool = True
    # (data group, axes) -> notes for original_metadata; may correct the axes in place
    fix_axes: Callable[[h5py.Group, list[Axis]], dict[str, Any]] | None = None
    extra_om: dict[str, Any] = field(default_factory=dict)


def _default_stack_axis(title: str, n: int, depth: bool) -> Axis:
    return Axis(name=f"{title}_depth" if depth else title, size=n, navigate=True)


def _group_metadata(group_attrs: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """The data group's attributes as HyperSpy ``metadata.Signal`` (HyperSpy writes
    ``metadata.Signal`` there), its signal type and ``record_by``."""
    attrs = dict(group_attrs)
    attrs.pop("emd_group_type", None)
    signal_type = str(attrs.pop("signal_type", "") or "")
    record_by = str(attrs.get("record_by", "") or "")
    # record_by and binned are HyperSpy 1 items that HyperSpy 2 keeps elsewhere (signal
    # dimension, axes); they stay in original_metadata only.
    # napari-emd's writer keeps whole trees as JSON text in these attributes; they are
    # not Signal items (see _json_trees).
    signal = {
        k: v
        for k, v in attrs.items()
        if k not in ("title", "metadata", "record_by", "binned", *_JSON_TREES) and v != ""
    }
    return signal, signal_type, record_by


_JSON_TREES = ("original_metadata", NAPARI_LAYER_ATTR)


def _json_trees(group_attrs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``metadata`` and ``original_metadata`` trees that napari-emd's writer stores as
    JSON text on the data group (empty dicts when absent or not JSON)."""
    out = []
    for key in ("metadata", "original_metadata"):
        raw = group_attrs.get(key)
        tree: Any = {}
        if isinstance(raw, str) and raw.lstrip().startswith("{"):
            try:
                tree = json.loads(raw)
            except ValueError:
                tree = {}
        out.append(tree if isinstance(tree, dict) else {})
    return out[0], out[1]


def build_dataset(
    path: str,
    f: h5py.File,
    members: list[Member],
    title: str,
    opts: ReadOptions,
    profile: Profile,
    file_md: dict[str, Any],
    file_om: dict[str, Any],
    stack: bool,
) -> Dataset:
    """One dataset from one member, or from a series stacked along a new first axis."""
    group = f[members[0].group]
    dset = group[members[0].name]
    if not isinstance(dset, h5py.Dataset):
        raise EMDError(path, f"{members[0].path} is not an array")
    native = members[0].name in NATIVE_ORDER_NAMES or "dim0" in group
    base = 0 if "dim0" in group else 1
    reverse = not native
    stacked = stack and len(members) > 1
    if stacked:
        dsets = [f[m.path] for m in members]
        if any(d.shape != dset.shape or d.dtype != dset.dtype for d in dsets):
            raise ValueError("series members differ in shape or dtype")
        data = read_stack(path, dsets, opts.lazy, reverse)
    else:
        data = read_array(path, dset, opts.lazy, reverse)

    n_stored = dset.ndim
    axes: list[Axis] = []
    dims_om: dict[str, Any] = {}
    if stacked:
        depth = "_depth" in members[0].group.rpartition("/")[2]
        maker = profile.stack_axis or _default_stack_axis
        axes.append(maker(title, len(members), depth))
    for i in range(n_stored):
        stored_axis = n_stored - 1 - i if reverse else i
        key_index = stored_axis + base
        size = data.shape[i + (1 if stacked else 0)]
        nav = profile.navigate(members[0].name, f"dim{key_index}")
        ax, info = read_dim(group, key_index, size, nav)
        axes.append(ax)
        if info:
            dims_om[f"dim{key_index}"] = info

    fixes = profile.fix_axes(group, axes) if profile.fix_axes is not None else {}
    group_attrs = attrs_dict(group)
    signal_md, signal_type, record_by = _group_metadata(group_attrs)
    if profile.signal_type is not None:
        signal_type = profile.signal_type(title, members[0].name) or signal_type
    if not profile.group_attrs_as_signal:
        signal_md = {}
    # each dataset owns its trees: editing one must not change its siblings
    md = merge_trees(copy.deepcopy(file_md), {"Signal": signal_md} if signal_md else {})
    saved_md, saved_om = _json_trees(group_attrs)
    if saved_md:
        saved_md.pop("General", {}).pop("title", None)
        md = merge_trees(md, saved_md)
    # the original file's tree, as saved by napari-emd, is the base; this file's own
    # entries (root groups, "dataset") win, so re-saving never nests trees
    om = merge_trees(saved_om, copy.deepcopy(file_om))
    om.update(copy.deepcopy(profile.extra_om))
    om["dataset"] = {
        "path": members[0].path,
        "attributes": {
            k: v for k, v in group_attrs.items() if k not in ("metadata", *_JSON_TREES)
        },
        "dims": dims_om,
    }
    if stacked:
        om["dataset"]["stacked_paths"] = [m.path for m in members]
    if fixes:
        om["dataset"]["unit_corrections"] = fixes
    if "units" in dset.attrs:
        md.setdefault("Signal", {})["quantity"] = attr_str(dset.attrs["units"])
    ds = Dataset(
        title=title,
        data=data,
        axes=axes,
        kind=guess_kind(data, axes, record_by, signal_type),
        signal_type=signal_type,
        path=members[0].path,
        metadata=md,
        original_metadata=om,
    )
    if stacked:
        ds.stacked_paths = tuple(m.path for m in members)
    state = group_attrs.get(NAPARI_LAYER_ATTR)
    if isinstance(state, str):
        # napari layer state saved by napari-emd (napari_emd.plugin.saved restores it),
        # with the features and per-element arrays stored next to the data
        ds.saved = SavedLayer(state, group_extras(group, members[0].name))
        if _saved_layer_type(state) in ANNOTATION_TYPES:
            ds.kind = SIGNAL  # a coordinate table, not an image
    return ds


def _saved_layer_type(state: str) -> str:
    try:
        value = json.loads(state)
    except ValueError:
        return ""
    return str(value.get("layer_type", "")) if isinstance(value, dict) else ""


def merge_trees(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in a.items()}
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_trees(out[k], v)
        else:
            out[k] = v
    return out


def read_with_profile(
    path: str, f: h5py.File, opts: ReadOptions, profile: Profile
) -> list[Dataset]:
    """Read an EMD 0.x file: find the data groups, select (``dataset_path``), stack
    series (``stack_group``) and build one :class:`Dataset` each."""
    found = find_members(f)
    if opts.dataset_path is not None:
        members = select_members(f, found, opts.dataset_path)
    else:
        members = found
    # rsciio: stacking is on by default when reading everything, off when paths are given
    stack = opts.stack_group if opts.stack_group is not None else opts.dataset_path is None
    if not members:
        raise EMDError(path, "EMD file without any data group (emd_group_type = 1)")
    file_md, file_om = profile.file_metadata(f)
    version = emd_version(f)
    file_om = {"EMD_version": version, **file_om}
    series = group_series(members) if stack else [[m] for m in members]
    out: list[Dataset] = []
    for ms in series:
        g = f[ms[0].group]
        title = series_title(ms, stack)
        if "title" in g.attrs and len(ms) == 1:
            title = attr_str(g.attrs["title"]).strip() or title
        try:
            out.append(build_dataset(path, f, ms, title, opts, profile, file_md, file_om,
                                     stack))
        except ValueError:
            if len(ms) == 1:
                raise
            warnings.warn(
                f"{path}: the series {ms[0].group}... differs in shape or dtype; its "
                "members are read one by one",
                EMDWarning,
                stacklevel=2,
            )
            for m in ms:
                out.append(build_dataset(path, f, [m], series_title([m], False), opts,
                                         profile, file_md, file_om, False))
    return out

