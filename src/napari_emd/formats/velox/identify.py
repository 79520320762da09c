"""Whether an HDF5 file is a Velox file: the root ``Version`` JSON.

Its own module so that every Velox module that opens a file by path (facts, the frame
report, the frame shifts) can check it without importing the package that imports them.
"""

from __future__ import annotations

import h5py

from .jsontree import version_json

#: The ``format`` values of the root ``Version`` JSON that mark a Velox file.
FORMATS = ("Velox", "DevelopersKit")


def detect(f: h5py.File) -> bool:
    """True for files whose root ``Version`` JSON says ``Velox`` or ``DevelopersKit``
    (a damaged Version text that still names Velox counts, so reading can warn)."""
    parsed, text = version_json(f)
    if parsed is not None:
        return str(parsed.get("format", "")) in FORMATS
    return any(name in text for name in FORMATS) and "Data" in f


__all__ = ["FORMATS", "detect"]
