"""Units: cleaning what files write into strings pint (and so napari) parses, picking
readable length units, unit symbols for writing, and byte counts for people.

Files spell units many ways: NCEM EMD writes ``[n_m]`` or ``n_m``, prismatic and emdfile
write ``A`` (Ångström in these files, never ampere) and ``A^-1``, Velox writes SI metres.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

from .errors import EMDWarning

# SI length prefixes we show, smallest first, with their factor to metres.
_LENGTH = [("pm", 1e-12), ("nm", 1e-9), ("µm", 1e-6), ("mm", 1e-3), ("m", 1.0)]
_LENGTH_FACTOR = {name: f for name, f in _LENGTH}
_LENGTH_FACTOR.update({"Å": 1e-10, "um": 1e-6, "μm": 1e-6, "A": 1e-10})

# Exact spellings -> clean unit ("" means dimensionless / no unit).
_ALIASES = {
    "": "",
    "none": "",
    "unknown": "",
    "<undefined>": "",
    "px": "",
    "pixel": "",
    "pixels": "",
    "a.u.": "",
    "counts": "",
    "a": "Å",
    "ang": "Å",
    "angstrom": "Å",
    "angstroms": "Å",
    "å": "Å",
    "a^-1": "1/Å",
    "a-1": "1/Å",
    "1/a": "1/Å",
    "å^-1": "1/Å",
    "1/å": "1/Å",
    "um": "µm",
    "μm": "µm",
    "micron": "µm",
    "microns": "µm",
    "micrometer": "µm",
    "1/um": "1/µm",
    "um^-1": "1/µm",
    "nanometer": "nm",
    "nanometers": "nm",
    "picometer": "pm",
    "meter": "m",
    "meters": "m",
    "second": "s",
    "seconds": "s",
    "sec": "s",
    "millisecond": "ms",
    "msec": "ms",
    "ev": "eV",
    "kev": "keV",
    "mrad": "mrad",
    "rad": "rad",
    "deg": "deg",
    "degree": "deg",
    "degrees": "deg",
}

_SIMPLE = re.compile(r"^(?:[pnµμumk]?m|[mµμun]?s|[mk]?eV|m?rad|deg|Å|K|V|kV|A|Hz|1/s)$")


def clean_unit(raw: object, *, context: str = "") -> str:
    """Return ``raw`` as a pint-parsable unit string, ``""`` when there is none.

    An unknown unit gives ``""`` and an :class:`EMDWarning` naming it (``context`` says
    where it came from); it never raises.
    """
    if raw is None:
        return ""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        try:
            raw = str(raw.item() if hasattr(raw, "item") else raw)  # numpy scalars
        except Exception:
            return ""
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
    s = raw.strip().strip("\x00")
    # NCEM style: [n_m], n_m, [1/n_m], [s]
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    s = s.replace("_", "").strip()
    if s in ("eV", "keV", "meV", "MeV", "mm", "Mm"):  # where case is the meaning
        return s
    low = s.lower()
    if low in _ALIASES:
        return _ALIASES[low]
    if _SIMPLE.match(s):
        return "µm" if s in ("um", "μm") else ("µs" if s in ("us", "μs") else s)
    # reciprocal forms: 1/nm, nm^-1, nm-1
    m = re.match(r"^1\s*/\s*(\S+)$", s) or re.match(r"^(\S+?)\s*\^?\s*-1$", s)
    if m:
        inner = clean_unit(m.group(1), context=context) if m.group(1).lower() != "a" else "Å"
        if inner and " " not in inner and "/" not in inner:
            return f"1/{inner}"
    if _pint_parses(s):
        return s
    where = f" ({context})" if context else ""
    warnings.warn(
        f"unit {raw!r}{where} is not understood; it is kept in the metadata but the "
        "layer is shown without a unit",
        EMDWarning,
        stacklevel=2,
    )
    return ""


def _pint_parses(s: str) -> bool:
    try:
        import pint
    except ImportError:  # pragma: no cover - pint comes with napari
        return False
    try:
        _registry().Unit(s)
    except Exception:
        return False
    return bool(pint)


_REG = None


def _registry():
    global _REG
    if _REG is None:
        import pint

        _REG = pint.UnitRegistry()
    return _REG


def readable_length_unit(metres: float) -> str:
    """The length unit (pm, nm, µm, mm, m) in which ``metres`` reads as 1–999."""
    v = abs(metres)
    if not v or not math.isfinite(v):
        return "nm"
    for name, f in _LENGTH:
        if v / f < 1000:
            return name
    return "m"


def readable_reciprocal_unit(per_metre: float) -> str:
    """The reciprocal length unit (1/pm ... 1/m) in which ``per_metre`` reads as 1–999."""
    v = abs(per_metre)
    if not v or not math.isfinite(v):
        return "1/nm"
    for name, f in reversed(_LENGTH):
        # value in 1/name = per_metre * f
        if v * f < 1000 and v * f >= 1:
            return f"1/{name}"
    return "1/pm" if v * 1e-12 >= 1 else "1/m"


def length_factor(unit: str) -> float | None:
    """Metres per ``unit`` for length units, ``None`` for anything else."""
    return _LENGTH_FACTOR.get(unit)


def convert_length(value: float, from_unit: str, to_unit: str) -> float:
    """Convert a length (or a reciprocal length, ``1/nm``) between units."""
    if from_unit.startswith("1/") and to_unit.startswith("1/"):
        return value / convert_length(1.0, from_unit[2:], to_unit[2:])
    f1, f2 = length_factor(from_unit), length_factor(to_unit)
    if f1 is None or f2 is None:
        raise ValueError(f"cannot convert {from_unit!r} to {to_unit!r}")
    return value * f1 / f2


def is_undefined(value: Any) -> bool:
    """True for traits' ``Undefined`` (HyperSpy's axes use it for "no unit/name")."""
    return type(value).__name__ in ("_Undefined", "Undefined")


def finite_float(value: Any, default: float) -> float:
    """``float(value)`` when that is a finite number, else ``default``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def unit_symbol(unit: Any) -> str:
    """A unit (string, pint Unit or Quantity, None) as a short symbol: ``nm``, ``µm``,
    ``Å``, ``1/nm``, ``keV``, ``eV``, ``s``; ``""`` for none, pixels or unknown units."""
    if unit is None or is_undefined(unit):
        return ""
    if hasattr(unit, "units") and hasattr(unit, "magnitude"):  # pint Quantity
        unit = unit.units
    if hasattr(unit, "dimensionality") and not isinstance(unit, str):  # pint Unit
        text = format(unit, "~P")
        if not text or text in ("pixel", "px", "dimensionless"):
            return ""
        unit = text
    text = str(unit).strip()
    if not text:
        return ""
    text = text.replace(" / ", "/").replace("·", "*")
    if text.lower() in ("pixel", "pixels", "px", "dimensionless"):
        return ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EMDWarning)
        cleaned = clean_unit(text)
    return cleaned or text


def format_bytes(n: float) -> str:
    """A byte count for people: ``1536`` -> ``"1.5 KiB"``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover

