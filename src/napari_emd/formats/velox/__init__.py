"""Velox (ThermoFisher/FEI) EMD files.

Layout (format facts, learned from real files of Velox versions 4 to 13):

- root ``Version``: JSON ``{"version": "11", "format": "Velox"}`` (``DevelopersKit`` for
  files written by the ThermoFisher developer kit);
- ``Data/Image/<id>/Data``: ``(y, x, frame)``, one HDF5 chunk per frame; FFT and DPC
  results use a compound dtype of two float fields (real, imaginary);
  ``Data/Image/<id>/Metadata``: uint8 ``(N, frame)``, one NUL-padded JSON text per frame;
- ``Data/Spectrum/<id>/Data``: ``(channel, 1)`` EDS spectrum (one per detector);
- ``Data/SpectrumStream/<id>``: EDS event stream per detector (``Data``, ``Metadata``,
  ``AcquisitionSettings`` with ``bincount`` and ``RasterScanDefinition``,
  ``FrameLocationTable`` from Velox 6 on), decoded by :mod:`.stream`;
- ``Data/SpectrumImage/<id>``: Velox's own SI cube, its ``Metadata`` and
  ``SpectrumImageSettings`` (frame count); a "pruned" file keeps this but no stream;
- ``Data/EelsSpectrumImage/<id>/Data``: EELS cube stored ``(x, E, y)``, one chunk per scan
  row, with ``AcquisitionMetadata`` (energy offset and dispersion).

Modules: :mod:`.jsontree` (reading the JSON), :mod:`.metadata` (names, HyperSpy
metadata), :mod:`.calibration`, :mod:`.grid` (the SI's plan), :mod:`.reader` (the
datasets), :mod:`.facts` (the SI's facts for the loader), :mod:`.stream` (the decoder).
"""

from __future__ import annotations

import h5py

from .facts import si_facts
from .jsontree import version_json
from .reader import frame_metadata, read

NAME = "velox"

#: The ``format`` values of the root ``Version`` JSON that mark a Velox file.
FORMATS = ("Velox", "DevelopersKit")


def detect(f: h5py.File) -> bool:
    """True for files whose root ``Version`` JSON says ``Velox`` or ``DevelopersKit``
    (a damaged Version text that still names Velox counts, so reading can warn)."""
    parsed, text = version_json(f)
    if parsed is not None:
        return str(parsed.get("format", "")) in FORMATS
    return any(name in text for name in FORMATS) and "Data" in f


__all__ = ["FORMATS", "NAME", "detect", "frame_metadata", "read", "si_facts"]
