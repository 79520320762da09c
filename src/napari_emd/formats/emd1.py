"""EMD 1.0 reader (files written by emdfile, e.g. py4DSTEM 0.13+).

Layout: the root has ``emd_group_type = 'file'`` and ``version_major = 1``; below it,
``root`` groups hold a tree of nodes, each a group tagged by ``emd_group_type``:

- ``array``: a ``data`` array (numpy order, a ``units`` attribute for its values) and
  one vector per axis, ``dim0 .. dim{N-1}``, with ``name`` and ``units`` attributes;
  linear vectors are stored as two values, non-linear ones in full. A stack-like array
  has an extra string dim named ``_labels_`` naming its slices;
- ``pointlist``: a compound (structured) array, read as a table;
- ``metadatabundle`` / ``metadata``: named parameters (py4DSTEM's calibration), one small
  dataset each, tagged by a ``type`` attribute.

Arrays keep their stored order (no reversal, unlike EMD 0.2). Units such as ``A^-1``
are cleaned (``1/Å``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import h5py
import numpy as np

from ..errors import EMDError
from ..h5 import attr_str, attr_value, attrs_dict
from ..model import TABLE, Axis, Dataset
from ..options import ReadOptions
from . import emd0

NAME = "emd1"
_NODE_TYPES = ("array", "pointlist")


def _gtype(obj: h5py.HLObject) -> str:
    if "emd_group_type" not in obj.attrs:
        return ""
    return attr_str(obj.attrs["emd_group_type"]).strip().lower()


def detect(f: h5py.File) -> bool:
    """EMD 1.x: ``emd_group_type = 'file'`` at the root, or a root major version of 1."""
    if _gtype(f) == "file":
        return True
    major = f.attrs.get("version_major")
    if major is None:
        return False
    try:
        return int(float(attr_str(major))) == 1
    except ValueError:
        return False


# --- metadata -------------------------------------------------------------------------


def _metadata_value(obj: h5py.HLObject) -> Any:
    """One emdfile metadata item as a plain value (lists of strings are groups of
    numbered items; nested dicts are groups)."""
    if isinstance(obj, h5py.Dataset):
        try:
            value = obj[()]
        except Exception:  # an unreadable item should not fail the file
            return None
        kind = attr_str(obj.attrs.get("type", "")).lower()
        if kind == "none":
            return None
        if isinstance(value, np.ndarray) and value.size > 64:
            return value
        return attr_value(value)
    kind = attr_str(obj.attrs.get("type", "")).lower()
    children = {k: _metadata_value(v) for k, v in obj.items()}
    if kind.startswith(("list", "tuple")):
        try:
            return [children[k] for k in sorted(children, key=int)]
        except ValueError:
            return list(children.values())
    out = {k: v for k, v in attrs_dict(obj).items() if k not in ("type", "length",
                                                                  "emd_group_type",
                                                                  "python_class")}
    out.update(children)
    return out


def metadata_bundle(node: h5py.Group) -> dict[str, Any]:
    """The node's ``metadatabundle``: ``{metadata name: {key: value}}``."""
    bundle = node.get("metadatabundle")
    if not isinstance(bundle, h5py.Group):
        return {}
    out: dict[str, Any] = {}
    for name, item in bundle.items():
        with contextlib.suppress(Exception):
            out[name] = _metadata_value(item)
    return out


# --- discovery ------------------------------------------------------------------------


def find_nodes(f: h5py.File) -> list[str]:
    """HDF5 paths of every array and pointlist node, in name order."""
    found: list[str] = []
    for name in emd0.group_names(f):
        obj = f.get(name)
        if isinstance(obj, h5py.Group) and _gtype(obj) in _NODE_TYPES and "data" in obj:
            found.append("/" + name)
    return found


def _select(f: h5py.File, nodes: list[str], wanted: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for raw in wanted:
        p = "/" + str(raw).strip().strip("/")
        if p not in nodes and p.endswith("/data") and p[: -len("/data")] in nodes:
            p = p[: -len("/data")]
        if p not in nodes:
            avail = ", ".join(nodes) or "none"
            raise EMDError(f.filename, f"dataset_path {raw!r} is not an array of this EMD 1.0 "
                                       f"file (arrays: {avail})")
        if p not in out:
            out.append(p)
    return out


def _root_of(f: h5py.File, path: str) -> h5py.Group | None:
    top = path.strip("/").split("/")[0]
    g = f.get(top)
    return g if isinstance(g, h5py.Group) else None


# --- reading --------------------------------------------------------------------------


def _array_axes(group: h5py.Group, shape: tuple[int, ...]) -> tuple[list[Axis], dict]:
    """Axes of an array node; a ``_labels_`` dim (stack-like array) becomes an index
    axis on whichever end of the array has its length, its labels kept."""
    ndim = len(shape)
    labels_key = None
    n_labels = 0
    for i in range(ndim):
        d = group.get(f"dim{i}")
        if isinstance(d, h5py.Dataset) and attr_str(d.attrs.get("name", "")) == "_labels_":
            labels_key, n_labels = i, (d.shape[0] if d.ndim else 0)
    order = list(range(ndim))  # axis -> dim index
    if labels_key is not None and shape[-1] != n_labels and shape[0] == n_labels:
        # labels on the first axis: dims 0.. describe axes 1..
        order = [labels_key, *[i for i in range(ndim) if i != labels_key]]
    axes: list[Axis] = []
    dims_om: dict[str, Any] = {}
    for axis_index, dim_index in enumerate(order):
        ax, info = emd0.read_dim(group, dim_index, shape[axis_index], False)
        if dim_index == labels_key:
            ax.name = "labels"
        axes.append(ax)
        if info:
            dims_om[f"dim{dim_index}"] = info
    return axes, dims_om


def read(path: str, f: h5py.File, opts: ReadOptions) -> list[Dataset]:
    """Read the array (and pointlist) nodes of an EMD 1.0 file, each in stored order."""
    nodes = find_nodes(f)
    if opts.dataset_path is not None:
        nodes = _select(f, nodes, opts.dataset_path)
    if not nodes:
        raise EMDError(path, "EMD 1.0 file without any array node")
    file_attrs = attrs_dict(f)
    version = emd0.version_attrs(f) or "1.0"
    out: list[Dataset] = []
    root_bundles: dict[str, dict[str, Any]] = {}
    for node_path in nodes:
        group = f[node_path]
        dset = group["data"]
        if not isinstance(dset, h5py.Dataset):
            continue
        root = _root_of(f, node_path)
        root_name = root.name if root is not None else "/"
        if root_name not in root_bundles:
            root_bundles[root_name] = metadata_bundle(root) if root is not None else {}
        gtype = _gtype(group)
        data = emd0.read_array(path, dset, opts.lazy, reverse=False)
        if gtype == "pointlist" or emd0.is_table_dtype(dset.dtype):
            axes = [Axis(name="", size=int(s)) for s in data.shape]
            dims_om: dict[str, Any] = {}
            kind = TABLE
        else:
            axes, dims_om = _array_axes(group, data.shape)
            kind = emd0.guess_kind(data, axes)
        md: dict[str, Any] = {}
        if "units" in dset.attrs:
            q = attr_str(dset.attrs["units"]).strip()
            if q:
                md["Signal"] = {"quantity": q}
        if attr_str(file_attrs.get("authoring_user", "")).strip():
            md["General"] = {"authors": attr_str(file_attrs["authoring_user"]).strip()}
        om: dict[str, Any] = {"EMD_version": version}
        om.update(root_bundles[root_name])  # e.g. py4DSTEM's "calibration"
        om["file"] = file_attrs
        om["dataset"] = {
            "path": dset.name,
            "attributes": attrs_dict(group),
            "data_attributes": attrs_dict(dset),
            "dims": dims_om,
            "metadata": metadata_bundle(group),
        }
        out.append(
            Dataset(
                title=node_path.rpartition("/")[2] or "array",
                data=data,
                axes=axes,
                kind=kind,
                signal_type="",
                path=dset.name,
                metadata=md,
                original_metadata=om,
            )
        )
    return out
