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
datasets), :mod:`.facts` (the SI's facts for the loader), :mod:`.stream` (the decoder),
:mod:`.identify` (whether a file is Velox), :mod:`.sistack` (the SI's image stacks and
its frames' drift: :func:`estimate_frame_shifts`), :mod:`.frames_report` (per frame:
dose, image means, drift; :func:`frame_report`).
"""

from __future__ import annotations

from .facts import si_facts
from .frames_report import FrameReport, frame_report
from .identify import FORMATS, detect
from .reader import frame_metadata, read
from .sistack import estimate_frame_shifts

NAME = "velox"


__all__ = ["FORMATS", "NAME", "FrameReport", "detect", "estimate_frame_shifts", "frame_metadata",
           "frame_report", "read", "si_facts"]
