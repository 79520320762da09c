"""NCEM (Berkeley) EMD 0.2 files, as HyperSpy, ncempy and Direct Electron (DE5) write
them: detection, then the shared EMD 0.x reading of :mod:`.emd0` with its defaults."""

from __future__ import annotations

import h5py

from ..h5 import attr_str
from ..model import Dataset
from ..options import ReadOptions
from .emd0 import emd_version, is_data_group_type, major_version
from .emd0_datasets import Profile, read_with_profile

NAME = "ncem"


def _has_data_group(group: h5py.Group, depth: int, budget: list[int]) -> bool:
    for item in group.values():
        budget[0] -= 1
        if budget[0] < 0:
            return False
        if isinstance(item, h5py.Group):
            if "emd_group_type" in item.attrs and is_data_group_type(
                item.attrs["emd_group_type"]
            ):
                return True
            if depth > 1 and _has_data_group(item, depth - 1, budget):
                return True
    return False


def detect(f: h5py.File) -> bool:
    """An EMD 0.x file: version attributes (root or top-level group) with major 0, or,
    without them, a data group (``emd_group_type = 1``) within three levels."""
    gtype = attr_str(f.attrs.get("emd_group_type", "")).strip().lower()
    if gtype == "file":  # EMD 1.0 (emdfile)
        return False
    major = major_version(emd_version(f))
    if major is not None:
        return major == 0
    return _has_data_group(f, 3, [2000])


def read(path: str, f: h5py.File, opts: ReadOptions) -> list[Dataset]:
    """Read an NCEM EMD 0.2 (HyperSpy, ncempy, DE5) file into datasets."""
    return read_with_profile(path, f, opts, Profile())
