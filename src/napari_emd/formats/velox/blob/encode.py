"""Writing SpectrumImage blobs: the canonical record encoder and a minimal header.

Velox's writer is canonical (maximal zero runs of at most 256 pixels, all-zero records
as L = 0): :func:`encode_records` reproduces every record of the five reference blobs
byte for byte, which is how the run-length rules were confirmed. It also makes the
synthetic pruned files of the tests and benchmarks (:func:`napari_emd.synthetic.prune`).

:func:`encode_header` writes only the fields the decoder uses (channels, energy offset,
dispersion and end, voltage, width, height, value size) with zeros in between; Velox's
headers carry more (detector geometry, times, tilts) that no reader needs.
"""

from __future__ import annotations

import struct

import numpy as np

from .layout import (
    I_CHANNELS,
    I_DISPERSION,
    I_END,
    I_OFFSET,
    I_SCHEMA,
    I_VOLTAGE,
    MAGIC,
    TAG_DOUBLE,
    TAG_START,
    TAG_ZERO,
)

# Records encoded per numpy block: bounds the temporaries (about 40 bytes per pixel).
BLOCK_PIXELS = 1 << 22


def _int_token(value: int) -> bytes:
    if value == 0:
        return bytes([TAG_ZERO])
    for size in (1, 2, 3):
        if value < 1 << (8 * size):
            return bytes([size]) + int(value).to_bytes(size, "little")
    raise ValueError(f"{value} does not fit the 3-byte integers seen in blob headers")


def _float_token(value: float) -> bytes:
    return bytes([TAG_ZERO]) if value == 0 else bytes([TAG_DOUBLE]) + struct.pack("<d", value)


def encode_header(height: int, width: int, channels: int, offset_eV: float,
                  dispersion_eV: float, voltage_V: float = 200000.0, schema: int = 14) -> bytes:
    """The preamble and a 17-token header for a ``height x width x channels`` cube."""
    fields: list[bytes] = [bytes([TAG_ZERO])] * 14
    fields[0] = bytes([TAG_START])
    fields[I_SCHEMA] = _int_token(schema)
    fields[I_CHANNELS] = _int_token(channels)
    fields[I_OFFSET] = _float_token(offset_eV)
    fields[I_DISPERSION] = _float_token(dispersion_eV)
    fields[I_END] = _float_token(offset_eV + channels * dispersion_eV)
    fields[I_VOLTAGE] = _float_token(voltage_V)
    fields += [_int_token(width), _int_token(height), _int_token(2)]
    header = b"".join(fields)
    return MAGIC + struct.pack("<Q", len(header)) + header


def encode_records(rows: np.ndarray) -> bytes:
    """The record table of ``rows``: uint16 ``(records, width)``, one record's pixels per
    row (for a cube ``(y, x, E)`` that is ``cube.transpose(0, 2, 1)`` flattened to 2-D).

    Canonical: each maximal run of zero pixels becomes ``00 00 n`` tokens of at most 256
    pixels, each non-zero pixel its uint16 count, an all-zero record ``L = 0``.
    """
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.dtype.kind not in "ui" or (rows.size and rows.min() < 0):
        raise ValueError("records are a 2-D array of non-negative integer counts")
    if rows.size and int(rows.max()) > 0xFFFF:
        raise ValueError("a blob holds uint16 counts; a count is above 65535")
    n, nx = rows.shape
    step = max(1, BLOCK_PIXELS // max(nx, 1))
    return b"".join(_encode_block(rows[i : i + step].astype(np.uint16)) for i in
                    range(0, n, step))


def _encode_block(a: np.ndarray) -> bytes:
    n, nx = a.shape
    idx = np.broadcast_to(np.arange(nx), a.shape)
    nz = a != 0
    # where each zero's run started and where it ends (the next non-zero pixel)
    last_nz = np.maximum.accumulate(np.where(nz, idx, -1), axis=1)
    next_nz = np.minimum.accumulate(np.where(nz, idx, nx)[:, ::-1], axis=1)[:, ::-1]
    in_run = idx - last_nz - 1
    run_token = ~nz & (in_run % 256 == 0) & nz.any(axis=1)[:, None]  # all zero: L = 0
    size = np.where(nz, 2, np.where(run_token, 3, 0))
    length = size.sum(axis=1)
    if int(length.max(initial=0)) > 0xFFFF:
        raise ValueError("a record is longer than its uint16 length field can say")
    # byte position of every pixel's token: 2 length bytes per record before it
    flat = size.ravel()
    before = np.cumsum(flat) - flat + 2 * (np.arange(flat.size) // nx + 1)
    out = np.zeros(int(length.sum()) + 2 * n, np.uint8)
    rec_at = np.concatenate([[0], np.cumsum(length + 2)[:-1]])
    out[rec_at] = length & 0xFF
    out[rec_at + 1] = length >> 8
    at = before[nz.ravel()]
    vals = a.ravel()[nz.ravel()]
    out[at] = vals & 0xFF
    out[at + 1] = vals >> 8
    rt = run_token.ravel()
    at = before[rt]
    out[at + 2] = (np.minimum(next_nz - idx, 256).ravel()[rt] - 1).astype(np.uint8)
    return out.tobytes()


def encode_blob(cube: np.ndarray, offset_eV: float, dispersion_eV: float,
                voltage_V: float = 200000.0, schema: int = 14) -> bytes:
    """A whole blob of ``cube`` (``(y, x, E)`` counts up to 65535), as Velox lays it out:
    the header, then the records row by row, channel by channel."""
    cube = np.asarray(cube)
    if cube.ndim != 3:
        raise ValueError(f"a spectrum image is (y, x, E), not shape {cube.shape}")
    ny, nx, nch = cube.shape
    head = encode_header(ny, nx, nch, offset_eV, dispersion_eV, voltage_V, schema)
    body = b"".join(encode_records(cube[y].T) for y in range(ny))
    return head + body
