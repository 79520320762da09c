"""napari-emd: read and write Electron Microscopy Datasets (.emd) in Python and napari.

The library core has no napari import::

    import napari_emd
    signals = napari_emd.file_reader("SI.emd", lazy=True)   # list of dicts, like rsciio
    napari_emd.file_writer("out.emd", signals[0])

``read_datasets`` gives the same content as :class:`Dataset` records.
"""

from __future__ import annotations

import os
from typing import Any

from ._io import detect_format, file_reader, read_datasets
from ._model import Axis, Dataset
from .errors import EMDError, EMDWarning

try:
    from ._version import __version__  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("napari-emd-io")
    except PackageNotFoundError:
        __version__ = "0.0.0"


def file_writer(
    filename: str | os.PathLike, signal: dict[str, Any], chunks: Any = None, **kwds: Any
) -> None:
    """Write ``signal`` (a dict with ``data``, ``axes``, ``metadata``) to an NCEM EMD 0.2
    file; see :func:`napari_emd.writer.file_writer`."""
    from .writer import file_writer as _fw

    return _fw(filename, signal, chunks=chunks, **kwds)


__all__ = [
    "Axis",
    "Dataset",
    "EMDError",
    "EMDWarning",
    "__version__",
    "detect_format",
    "file_reader",
    "file_writer",
    "read_datasets",
]
