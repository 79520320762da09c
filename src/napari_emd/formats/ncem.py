"""ncem format reader (to be written)."""

from __future__ import annotations

import h5py

from .._model import Dataset
from .._options import ReadOptions

NAME = "ncem"


def detect(f: h5py.File) -> bool:
    return False


def read(path: str, f: h5py.File, opts: ReadOptions) -> list[Dataset]:
    raise NotImplementedError
