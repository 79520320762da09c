"""napari-emd: read and write Electron Microscopy Datasets (.emd) in Python and napari.

The library core has no napari import::

    import napari_emd
    signals = napari_emd.file_reader("SI.emd", lazy=True)   # list of dicts, like rsciio
    napari_emd.file_writer("out.emd", signals[0])

:func:`read_datasets` gives the same content as :class:`Dataset` records,
:func:`si_facts` what a file says about its spectrum image without decoding it,
:func:`estimate_frame_shifts` the drift of its frames (``file_reader(...,
align_frames=True)`` corrects it while decoding) and :func:`frame_report` what each
frame holds (X-rays, image means, drift). The napari plugin lives in
:mod:`napari_emd.plugin`.
"""

from __future__ import annotations

from .api import detect_format, file_reader, file_writer, read_datasets, si_facts
from .errors import EMDError, EMDWarning
from .formats.velox import estimate_frame_shifts, frame_report
from .model import (
    IMAGE,
    IMAGE_STACK,
    KINDS,
    SIGNAL,
    SPECTRUM,
    SPECTRUM_IMAGE,
    TABLE,
    Axis,
    Dataset,
    DatasetKind,
    SavedLayer,
    SIContent,
    SIFacts,
    SISource,
)
from .version import __version__

__all__ = [
    "IMAGE",
    "IMAGE_STACK",
    "KINDS",
    "SIGNAL",
    "SPECTRUM",
    "SPECTRUM_IMAGE",
    "TABLE",
    "Axis",
    "Dataset",
    "DatasetKind",
    "EMDError",
    "EMDWarning",
    "SIContent",
    "SIFacts",
    "SISource",
    "SavedLayer",
    "__version__",
    "detect_format",
    "estimate_frame_shifts",
    "file_reader",
    "file_writer",
    "frame_report",
    "read_datasets",
    "si_facts",
]


def __getattr__(name: str) -> object:
    """``napari_emd.analysis`` after a plain ``import napari_emd``, as scripts write
    ``napari_emd.analysis.line_intensities(...)``: imported on first use, so importing
    the package stays as light as before."""
    if name == "analysis":
        import importlib

        return importlib.import_module(f"{__name__}.analysis")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
