"""Format readers. Each module reads one family of EMD files into :class:`Dataset` records.

A format module exposes:

- ``NAME``: a short label (``"velox"``, ``"ncem"``...);
- ``detect(f: h5py.File) -> bool``: decides from attributes and group names alone, never
  reading data;
- ``read(path: str, f: h5py.File, opts: ReadOptions) -> list[Dataset]``: the records, with
  data as numpy arrays, or as dask arrays holding ``path`` (not ``f``) when ``opts.lazy``.

Detection order matters: the most specific layouts come first.
"""

from __future__ import annotations

from types import ModuleType

from . import emd1, ncem, prismatic, velox

FORMATS: tuple[ModuleType, ...] = (velox, emd1, prismatic, ncem)

__all__ = ["FORMATS"]
