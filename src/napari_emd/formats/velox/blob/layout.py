"""The byte layout of the Velox ``SpectrumImage`` blob: the header parser and the plain
numpy record decoder, which is the reference (the oracle) the numba kernels are tested
against and the decoder of small blobs.

Layout (little-endian; how each field was established: ``docs/velox.md``)::

    0     8 bytes  magic 8c 46 96 a3 48 b4 d7 18
    8     uint64   H, the length of the token header
    16    H bytes  token header: 0x7f, then tokens 00 (zero), 01/02/03 + an unsigned
                   integer of that many bytes, 08 + a float64
    16+H           height x channels records, row after row, channel after channel:
                   uint16 L, then L bytes: the row's ``width`` counts of that channel,
                   run-length coded (a non-zero uint16 is one pixel's count; a uint16 0
                   and a byte n are n + 1 pixels of count 0); L = 0: all zero

Everything here raises ``ValueError`` (never anything else) for bytes that do not follow
the established layout; the file-level reader turns that into an ``EMDError`` naming the
file. Nothing that was not seen in a real blob is accepted: other header tags, another
value size, a channel count that disagrees with the energy range.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

MAGIC = bytes.fromhex("8c4696a348b4d718")
"""The first 8 bytes of every blob (all five reference files)."""

PREAMBLE = 16  # magic + uint64 header length
TAG_START = 0x7F
TAG_ZERO = 0x00
TAG_DOUBLE = 0x08
INT_TAGS = (1, 2, 3)  # unsigned little-endian integers of that many bytes

# Token indices established on all five reference blobs (schemas 14 and 17).
I_SCHEMA = 1
I_CHANNELS = 4
I_OFFSET = 8
I_DISPERSION = 9
I_END = 10
I_VOLTAGE = 13
MIN_TOKENS = 17  # tokens 0..13 used above + width, height and value size at the end

Token = tuple[int, int | float]

# What the numba kernels return for a damaged record (see :func:`kernel_error`).
E_TRUNCATED = -1  # the record's length field or payload is past the end of the blob
E_LENGTH = -2  # a length outside 2 .. 3 bytes per pixel
E_IN_COUNT = -3  # the payload ends inside a uint16 count
E_IN_RUN = -4  # the payload ends inside a zero-run token
E_TOO_MANY = -5  # a count beyond the row's last pixel
E_RUN_PAST = -6  # a zero run beyond the row's last pixel
E_SHORT = -7  # the payload covers fewer pixels than the row has


@dataclass(frozen=True)
class BlobLayout:
    """The header of a SpectrumImage blob: the fields the decoder uses, and every token.

    ``schema`` (token 1: 14 in the Velox 4 and 6 files, 17 in Velox 11 and 13) is kept
    though its meaning beyond "changes with the Velox version" is not known. ``size`` is
    the whole blob's length in bytes (the record table runs from ``data_offset`` to it).
    """

    size: int
    header_length: int
    schema: int
    channels: int
    energy_offset_eV: float
    dispersion_eV: float
    energy_end_eV: float
    acceleration_voltage_V: float
    width: int
    height: int
    value_size: int
    tokens: tuple[Token, ...]

    @property
    def data_offset(self) -> int:
        """Where the record table starts: right after the header."""
        return PREAMBLE + self.header_length

    @property
    def shape(self) -> tuple[int, int, int]:
        """The decoded cube's shape ``(height, width, channels)`` = ``(y, x, E)``."""
        return (self.height, self.width, self.channels)

    @property
    def n_records(self) -> int:
        """Records in the table: one per row and channel."""
        return self.height * self.channels

    def energies_eV(self) -> np.ndarray:
        """Energy of each channel (eV): ``energy_offset_eV + i * dispersion_eV``."""
        return self.energy_offset_eV + self.dispersion_eV * np.arange(self.channels)


def as_bytes(raw: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A blob as a flat uint8 array: bytes-likes, or the (N, 1) uint8 array h5py reads."""
    if isinstance(raw, np.ndarray):
        if raw.dtype not in (np.uint8, np.int8):
            raise ValueError(f"a blob is uint8 (its HDF5 dataset's dtype), not {raw.dtype}")
        return np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(raw), np.uint8)
    raise ValueError(f"a blob is bytes or a uint8 array, not {type(raw).__name__}")


def tokenize(header: bytes) -> list[Token]:
    """The header's tokens as (tag, value), tag 0x7f first; every byte must be consumed."""
    if not header or header[0] != TAG_START:
        raise ValueError("the blob header does not start with tag 0x7f")
    tokens: list[Token] = [(TAG_START, 0)]
    p, n = 1, len(header)
    while p < n:
        tag = header[p]
        p += 1
        if tag == TAG_ZERO:
            tokens.append((tag, 0))
        elif tag in INT_TAGS:
            if p + tag > n:
                raise ValueError(f"the blob header ends inside an integer at byte {p - 1}")
            tokens.append((tag, int.from_bytes(header[p : p + tag], "little")))
            p += tag
        elif tag == TAG_DOUBLE:
            if p + 8 > n:
                raise ValueError(f"the blob header ends inside a float64 at byte {p - 1}")
            tokens.append((tag, struct.unpack_from("<d", header, p)[0]))
            p += 8
        else:
            raise ValueError(
                f"unknown tag 0x{tag:02x} at blob header byte {p - 1} (known: 00, 01, 02, "
                "03, 08; no other tag was seen in a real blob)")
    return tokens


def _int_token(tokens: list[Token], i: int, name: str) -> int:
    tag, value = tokens[i]
    if tag not in INT_TAGS and tag != TAG_ZERO:
        raise ValueError(f"blob header token {i} ({name}) should be an integer, "
                         f"found tag 0x{tag:02x}")
    return int(value)


def _float_token(tokens: list[Token], i: int, name: str) -> float:
    tag, value = tokens[i]
    if tag not in (TAG_DOUBLE, TAG_ZERO):
        raise ValueError(f"blob header token {i} ({name}) should be a float64, "
                         f"found tag 0x{tag:02x}")
    if not math.isfinite(value):
        raise ValueError(f"blob header token {i} ({name}) is not finite: {value}")
    return float(value)


def header_length(head: bytes) -> int:
    """H from the 16-byte preamble (``ValueError`` when it is not a blob's preamble)."""
    if len(head) < PREAMBLE:
        raise ValueError(f"the blob has {len(head)} bytes, its preamble alone is {PREAMBLE}")
    if bytes(head[:8]) != MAGIC:
        raise ValueError(f"the blob does not start with the SpectrumImage magic "
                         f"{MAGIC.hex(' ')} but {bytes(head[:8]).hex(' ')}")
    return int(struct.unpack_from("<Q", bytes(head[:PREAMBLE]), 8)[0])


def parse_header(head: bytes, size: int) -> BlobLayout:
    """The layout of a blob of ``size`` bytes whose first bytes are ``head`` (at least
    the preamble and the header: ``16 + H``). Reads nothing of the record table but
    checks it can hold ``height x channels`` records.

    ``ValueError``: wrong magic, a header longer than the blob, unknown tags, fields of the
    wrong type, a value size other than 2, an empty grid, a channel count that disagrees
    with the energy range, a record table too short for its records.
    """
    hl = header_length(head)
    if hl > size - PREAMBLE:
        raise ValueError(f"the blob header length {hl} runs past the end of the "
                         f"{size}-byte blob")
    if len(head) < PREAMBLE + hl:
        raise ValueError(f"{len(head)} bytes given, the header needs {PREAMBLE + hl}")
    tokens = tokenize(bytes(head[PREAMBLE : PREAMBLE + hl]))
    if len(tokens) < MIN_TOKENS:
        raise ValueError(f"the blob header has {len(tokens)} tokens, fewer than the "
                         f"{MIN_TOKENS} every real blob has")
    n = len(tokens)
    layout = BlobLayout(
        size=int(size),
        header_length=hl,
        schema=_int_token(tokens, I_SCHEMA, "schema"),
        channels=_int_token(tokens, I_CHANNELS, "channel count"),
        energy_offset_eV=_float_token(tokens, I_OFFSET, "energy offset"),
        dispersion_eV=_float_token(tokens, I_DISPERSION, "dispersion"),
        energy_end_eV=_float_token(tokens, I_END, "energy end"),
        acceleration_voltage_V=_float_token(tokens, I_VOLTAGE, "acceleration voltage"),
        width=_int_token(tokens, n - 3, "width"),
        height=_int_token(tokens, n - 2, "height"),
        value_size=_int_token(tokens, n - 1, "value size"),
        tokens=tuple(tokens),
    )
    _check_layout(layout)
    return layout


def _check_layout(lay: BlobLayout) -> None:
    if lay.channels < 1 or lay.width < 1 or lay.height < 1:
        raise ValueError(f"the blob header describes an empty grid: {lay.channels} "
                         f"channels, width {lay.width}, height {lay.height}")
    if lay.value_size != 2:
        raise ValueError(f"the blob header gives {lay.value_size}-byte counts; only 2-byte "
                         "(uint16) counts are established")
    if lay.dispersion_eV <= 0:
        raise ValueError(f"the blob header's dispersion {lay.dispersion_eV} eV is not "
                         "positive")
    expected = lay.energy_offset_eV + lay.channels * lay.dispersion_eV
    if not math.isclose(lay.energy_end_eV, expected, rel_tol=1e-9, abs_tol=1e-6):
        raise ValueError(
            f"the blob header's channel count {lay.channels} disagrees with its energy "
            f"range: {lay.energy_offset_eV} + {lay.channels} x {lay.dispersion_eV} = "
            f"{expected} eV, but the header says {lay.energy_end_eV} eV")
    table = lay.size - lay.data_offset
    if 2 * lay.n_records > table:
        raise ValueError(
            f"the record table is truncated: {lay.height} rows x {lay.channels} channels "
            f"need at least {2 * lay.n_records} bytes, {table} are left")


def parse_blob(raw: bytes | bytearray | memoryview | np.ndarray) -> BlobLayout:
    """The layout of a whole blob in memory (see :func:`parse_header`)."""
    buf = as_bytes(raw)
    hl = header_length(buf[:PREAMBLE].tobytes())
    return parse_header(buf[: PREAMBLE + min(hl, buf.size)].tobytes(), buf.size)


def record_error(lay: BlobLayout, record: int, what: str) -> ValueError:
    """The error for a damaged record, naming its row and channel."""
    row, ch = divmod(int(record), lay.channels)
    return ValueError(f"record {record} (row {row}, channel {ch}) {what}")


def kernel_error(lay: BlobLayout, code: int, record: int) -> ValueError:
    """The error for a numba kernel's negative return ``code`` at ``record``."""
    nx = lay.width
    what = {
        E_TRUNCATED: "runs past the end of the blob (truncated?)",
        E_LENGTH: f"has a length outside 2..{3 * nx} for a {nx}-pixel row",
        E_IN_COUNT: "ends inside a count",
        E_IN_RUN: "ends inside a zero run",
        E_TOO_MANY: f"has more than {nx} pixels",
        E_RUN_PAST: f"has a zero run past pixel {nx}",
        E_SHORT: f"covers fewer than the row's {nx} pixels",
    }.get(code, f"is damaged (code {code})")
    return record_error(lay, record, what)


def record_positions(buf: np.ndarray, lay: BlobLayout) -> np.ndarray:
    """Where each record starts (its length field), plus the blob's end:
    ``height * channels + 1`` int64 positions, by walking the length fields.

    Checks every length (0, or 2 up to 3 bytes per pixel of the row: a zero-run token
    covers at least one pixel in 3 bytes, a count one pixel in 2), that no record runs
    past the blob, and that the last record ends exactly where the blob ends.
    """
    n, size, longest = lay.n_records, buf.size, 3 * lay.width
    lengths = memoryview(buf)
    pos = np.empty(n + 1, np.int64)
    p = lay.data_offset
    for r in range(n):
        if p + 2 > size:
            raise record_error(lay, r, f"would start at byte {p}: the {size}-byte blob is "
                                       "truncated")
        pos[r] = p
        length = lengths[p] | (lengths[p + 1] << 8)
        if length and not 2 <= length <= longest:
            raise record_error(lay, r, f"has length {length}, outside 2..{longest} for "
                                       f"a {lay.width}-pixel row")
        p += 2 + length
        if p > size:
            raise record_error(lay, r, f"runs past the end of the {size}-byte blob")
    if p != size:
        raise ValueError(f"{size - p} unexpected bytes after the last of the {n} records")
    pos[n] = p
    return pos


def decode_records(buf: np.ndarray, starts: np.ndarray, lay: BlobLayout,
                   numbers: np.ndarray | None = None) -> np.ndarray:
    """The ``width`` counts of each record starting at ``starts`` (positions of length
    fields in ``buf``, from :func:`record_positions`): uint16 ``(len(starts), width)``.

    Vectorised over records: each round decodes one token of every record not yet done,
    so a row of ``width`` pixels takes at most ``width + 1`` rounds. ``numbers`` are the
    records' numbers, for error messages (default: ``0, 1, ...``).
    """
    nx = lay.width
    starts = np.asarray(starts, np.int64)
    numbers = np.arange(starts.size) if numbers is None else np.asarray(numbers)
    out = np.zeros((starts.size, nx), np.uint16)
    if starts.size == 0:
        return out
    data = buf
    length = data[starts].astype(np.int64) | (data[starts + 1].astype(np.int64) << 8)
    keep = np.flatnonzero(length > 0)
    pos = starts[keep] + 2
    end = pos + length[keep]
    if end.size and int(end.max()) > buf.size:
        raise record_error(lay, numbers[keep[np.argmax(end)]], "runs past the blob")
    col = np.zeros(keep.size, np.int64)
    active = np.arange(keep.size)
    for _ in range(nx + 1):
        active = active[pos[active] < end[active]]
        if active.size == 0:
            break
        p = pos[active]
        short = p + 2 > end[active]
        if short.any():
            raise record_error(lay, numbers[keep[active[short][0]]], "ends inside a count")
        value = data[p].astype(np.int64) | (data[p + 1].astype(np.int64) << 8)
        run = value == 0
        one = active[~run]
        if one.size:
            c = col[one]
            if (c >= nx).any():
                raise record_error(lay, numbers[keep[one[c >= nx][0]]],
                                   f"has more than {nx} pixels")
            out[keep[one], c] = value[~run]
            col[one] += 1
            pos[one] += 2
        zr = active[run]
        if zr.size:
            q = pos[zr]
            cut = q + 3 > end[zr]
            if cut.any():
                raise record_error(lay, numbers[keep[zr[cut][0]]],
                                   "ends inside a zero run")
            col[zr] += data[q + 2].astype(np.int64) + 1
            past = col[zr] > nx
            if past.any():
                raise record_error(lay, numbers[keep[zr[past][0]]],
                                   f"has a zero run past pixel {nx}")
            pos[zr] += 3
    left = pos < end
    if left.any():
        raise record_error(lay, numbers[keep[np.flatnonzero(left)[0]]],
                           f"has more than {nx} pixels")
    bad = col != nx
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise record_error(lay, numbers[keep[i]], f"covers {int(col[i])} pixels, the row "
                                                  f"has {nx}")
    return out


def decode_rows_reference(buf: np.ndarray, lay: BlobLayout, positions: np.ndarray,
                          r0: int, r1: int) -> np.ndarray:
    """Rows ``r0:r1`` of the cube, uint16 ``(r1 - r0, width, channels)``."""
    nch = lay.channels
    numbers = np.arange(r0 * nch, r1 * nch)
    recs = decode_records(buf, positions[r0 * nch : r1 * nch], lay, numbers)
    return np.ascontiguousarray(recs.reshape(r1 - r0, nch, lay.width).transpose(0, 2, 1))


def decode_reference(raw: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """The whole spectrum image of a blob: uint16 ``(height, width, channels)``,
    channel ``i`` at ``energy_offset_eV + i * dispersion_eV``. ``ValueError`` for a blob
    that does not follow the layout."""
    buf = as_bytes(raw)
    lay = parse_blob(buf)
    positions = record_positions(buf, lay)
    return decode_rows_reference(buf, lay, positions, 0, lay.height)
