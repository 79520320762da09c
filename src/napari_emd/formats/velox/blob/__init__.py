"""The Velox ``Data/SpectrumImage/<id>/Data`` blob: the spectrum image Velox keeps when it
"prunes" a file (drops the per-detector event streams), and the only SI of files that
Velox's Bruker converter writes.

The blob holds the spectrum image summed over all frames and all EDS detectors, as Velox
accumulated it: uint16 counts ``(y, x, E)`` in a header and a run-length coded record
table, one record per scan row and channel. The layout was worked out from the bytes of
the five Velox files in the shared test data (each of which also has its streams, so
every count could be checked); ``docs/velox.md`` gives it field by field with how each
field was established, ``docs/pruned-blob-research.md`` the research log.

Modules: :mod:`.layout` (the header parser and the numpy reference decoder),
:mod:`.encode` (the canonical encoder, for tests and synthetic files), :mod:`.kernels`
(numba, loaded on first use), :mod:`.cube` (reading a file's blob eager, lazy and as
energy planes, with the per-process record index).
"""

from __future__ import annotations

from .cube import (
    blob_index,
    clear_blob_indexes,
    decode_blob,
    lazy_cube,
    lazy_planes,
    read_eager,
    read_layout,
)
from .encode import encode_blob, encode_header, encode_records
from .layout import MAGIC, BlobLayout, decode_reference, parse_blob, record_positions

__all__ = [
    "MAGIC",
    "BlobLayout",
    "blob_index",
    "clear_blob_indexes",
    "decode_blob",
    "decode_reference",
    "encode_blob",
    "encode_header",
    "encode_records",
    "lazy_cube",
    "lazy_planes",
    "parse_blob",
    "read_eager",
    "read_layout",
    "record_positions",
]
