"""Spectra out of a spectrum image, and their export as EMSA/MSA text.

:func:`region_spectrum` sums a spectrum image over the pixels of a mask into a
file_reader-style spectrum dict (metadata kept), and :func:`write_msa` writes any 1-D
spectrum dict in the EMSA/MAS spectral data file format (version 1.0, the public
Microscopy Society of America / ISO 22029 text format every EDS and EELS program
reads): ``#KEYWORD : value`` header lines, the counts as ``DATATYPE Y`` (calibration
in ``XPERCHAN`` and ``OFFSET``), and ``#ENDOFDATA``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import warnings
from typing import Any

import numpy as np

from ..writer.safefile import atomic_replace
from .signal import as_signal

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
           "DEC")


def region_spectrum(signal: Any, mask: Any = None) -> dict[str, Any]:
    """The spectrum summed over the navigation pixels where ``mask`` is true.

    ``signal``: a spectrum image (file_reader dict or ``Dataset``), energy last.
    ``mask``: a boolean array shaped like the last navigation axes (``(y, x)``; leading
    axes such as frames are summed whole) or like all of them; ``None`` sums every
    pixel. Only the mask's bounding box is read from a lazy signal. Returns a
    file_reader-style 1-D spectrum dict (float64 counts, the energy axis, a copy of the
    metadata with ``General.title`` naming the region's pixel count).
    """
    sig = as_signal(signal)
    data = sig.data
    nav_nd = data.ndim - 1
    if mask is None:
        total = data.sum(axis=tuple(range(nav_nd)), dtype=np.float64)
        n_pix = int(np.prod(data.shape[:-1]))
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim > nav_nd or mask.shape != data.shape[nav_nd - mask.ndim:-1]:
            raise ValueError(f"mask shape {mask.shape} does not match the navigation "
                             f"shape {data.shape[:-1]}")
        n_pix = int(mask.sum())
        if not mask.any():
            total = np.zeros(data.shape[-1])
        else:
            idx = np.nonzero(mask)
            box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
            lead = (slice(None),) * (nav_nd - mask.ndim)
            sub = data[(*lead, *box, slice(None))]
            m = mask[box][..., None]
            total = (sub * m).sum(axis=tuple(range(nav_nd)), dtype=np.float64)
    if hasattr(total, "compute"):
        total = total.compute()
    meta = copy.deepcopy(sig.metadata) if sig.metadata else {}
    general = meta.setdefault("General", {})
    base = general.get("title") or sig.title or "spectrum image"
    general["title"] = f"{base} (sum of {n_pix} pixels)"
    axis = {"name": "Energy", "size": sig.n_channels, "scale": sig.scale,
            "offset": sig.offset, "units": sig.units, "navigate": False}
    return {"data": np.asarray(total, dtype=np.float64), "axes": [axis],
            "metadata": meta, "original_metadata": {}}


def _clean(text: Any) -> str:
    """A header value on one line, without the ': ' that separates keyword and value."""
    return " ".join(str(text).replace(": ", " - ").split())


def _when(meta: dict[str, Any]) -> tuple[str, str]:
    """``(DD-MMM-YYYY, HH:MM)`` from ``General.date``/``time`` (ISO), else now (UTC)."""
    general = meta.get("General", {}) if isinstance(meta, dict) else {}
    try:
        d = _dt.date.fromisoformat(str(general["date"]))
    except (KeyError, ValueError):
        d = None
    try:
        t = _dt.time.fromisoformat(str(general["time"]))
    except (KeyError, ValueError):
        t = None
    if d is None:
        now = _dt.datetime.now(_dt.timezone.utc)
        d, t = now.date(), t or now.time()
    t = t or _dt.time(0, 0)
    return f"{d.day:02d}-{_MONTHS[d.month - 1]}-{d.year:04d}", f"{t.hour:02d}:{t.minute:02d}"


def _number(v: Any) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


# The most points an EMSA/MSA 1.0 file holds (ISO 22029: NPOINTS <= 4096).
MSA_MAX_POINTS = 4096


def _fit_points(y: np.ndarray, scale: float, offset: float, max_points: int | None,
                what: str) -> tuple[np.ndarray, float, float]:
    """The spectrum within ``max_points``: with more channels, adjacent channels are
    summed in groups of the smallest factor that fits (counts conserved, the energy
    calibration of the wider channels), a trailing incomplete group dropped, and a
    warning says so."""
    if max_points is None or y.size <= max_points:
        return y, scale, offset
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    f = y.size // (max_points + 1) + 1  # the smallest f with y.size // f <= max_points
    n = y.size // f
    dropped = y.size - n * f
    binned = y[:n * f].reshape(n, f).sum(axis=1)
    # the new point's x is the centre of its f channels
    new_scale, new_offset = scale * f, offset + scale * (f - 1) / 2
    note = f", the last {dropped} channel(s) dropped" if dropped else ""
    warnings.warn(f"write_msa: {what} has {y.size} channels, more than the "
                  f"{max_points} points an EMSA/MSA file holds (ISO 22029): written with "
                  f"{f} channels summed per point ({n} points{note})", UserWarning,
                  stacklevel=3)
    return binned, new_scale, new_offset


def write_msa(path: str | os.PathLike, spectrum: Any, title: str | None = None,
              owner: str = "napari-emd", max_points: int | None = MSA_MAX_POINTS) -> None:
    """Write a 1-D spectrum as an EMSA/MSA file (version 1.0), atomically.

    ``spectrum``: a file_reader-style spectrum dict (or ``Dataset``), one axis, e.g.
    from :func:`region_spectrum`. Written: FORMAT, VERSION, TITLE, DATE, TIME, OWNER,
    NPOINTS, NCOLUMNS (1), XUNITS, YUNITS, DATATYPE (Y), XPERCHAN, OFFSET, SIGNALTYPE
    (EDS, or ELS for EELS), and when the metadata has them BEAMKV (kV), LIVETIME and
    REALTIME (s), FWHMMNKA (eV), the elements as the user keyword ``##ELEMENTS``; then
    the counts, five per line, and ``#ENDOFDATA``. The text goes to a temporary file
    that replaces ``path`` only when complete.

    The format holds at most 4096 points (``max_points``). A longer spectrum (an 8192- or
    16384-channel detector) is written with adjacent channels summed, by the smallest
    factor that fits, with ``XPERCHAN`` and ``OFFSET`` of the wider channels and a
    ``UserWarning``: counts are conserved and every reader opens the file, while a
    truncated spectrum would lose lines. ``max_points=None`` writes every channel (a
    file outside the standard that some programs refuse).
    """
    sig = as_signal(spectrum)
    if sig.data.ndim != 1:
        raise ValueError(f"write_msa writes one spectrum; this signal has "
                         f"{sig.data.ndim} axes (sum it with region_spectrum first)")
    y = sig.data.compute() if sig.lazy else sig.data
    y = np.asarray(y, dtype=np.float64)
    y, xperchan, offset = _fit_points(y, float(sig.scale), float(sig.offset), max_points,
                                      repr(title if title is not None else sig.title
                                           or "spectrum"))
    meta = sig.metadata or {}
    date, time = _when(meta)
    st = str(sig.meta("Signal", "signal_type", default="") or "").upper()
    signaltype = "ELS" if "EELS" in st else ("EDS" if "EDS" in st or not st else "")
    header: list[tuple[str, Any]] = [
        ("FORMAT", "EMSA/MAS Spectral Data File"), ("VERSION", "1.0"),
        ("TITLE", _clean(title if title is not None else sig.title or "spectrum")[:64]),
        ("DATE", date), ("TIME", time), ("OWNER", _clean(owner)),
        ("NPOINTS", str(y.size)), ("NCOLUMNS", "1"),
        ("XUNITS", sig.units or "channel"), ("YUNITS", "counts"),
        ("DATATYPE", "Y"), ("XPERCHAN", repr(xperchan)),
        ("OFFSET", repr(offset)),
    ]
    if signaltype:
        header.append(("SIGNALTYPE", signaltype))
    tem = ("Acquisition_instrument", "TEM")
    eds = (*tem, "Detector", "EDS")
    for key, keys in (("BEAMKV   -kV", (*tem, "beam_energy")),
                      ("LIVETIME  -s", (*eds, "live_time")),
                      ("REALTIME  -s", (*eds, "real_time")),
                      ("FWHMMNKA -eV", (*eds, "energy_resolution_MnKa"))):
        v = _number(sig.meta(*keys))
        if v is not None:
            header.append((key, repr(v)))
    elements = sig.meta("Sample", "elements", default=None)
    if elements:
        els = [elements] if isinstance(elements, str) else list(elements)
        header.append(("#ELEMENTS", _clean(", ".join(str(e) for e in els))))
    lines = [f"#{k:<12}: {v}" for k, v in header]
    lines.append("#SPECTRUM    : Spectral Data Starts Here")
    vals = [f"{v:.10g}" for v in y]
    lines += [", ".join(vals[i:i + 5]) + "," for i in range(0, len(vals), 5)]
    lines.append("#ENDOFDATA   : ")
    text = "\r\n".join(lines) + "\r\n"
    with atomic_replace(os.fspath(path)) as tmp, open(tmp, "w", encoding="latin-1",
                                                      errors="replace", newline="") as fh:
        fh.write(text)
