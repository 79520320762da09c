"""Characteristic X-ray line energies, for element markers and element maps.

The table (``data/xray_lines.json``) lists, for every element from lithium (Z=3) to
uranium (Z=92), the K, L and M lines that EDS detectors see (below 40 keV): ``Ka``,
``Kb``, ``La``, ``Lb1``, ``Lb2``, ``Lg1``, ``Ll``, ``Ma``, ``Mb``, ``Mg``, each as
``[energy_keV, weight]``. Energies are public physical data (Elam, Ravel and Sieber 2002);
weights are rough relative intensities within a family, only used to size markers.

No napari import: the functions here are plain lookups usable from scripts too.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from typing import Any

# Lines tried, in order, when choosing the line to map an element with.
MAP_LINE_ORDER = ("Ka", "La", "Ma")

# FWHM of a silicon-drift detector at Mn Kα (eV), the usual specification value.
FWHM_MN_KA_EV = 130.0
_MN_KA_EV = 5895.0


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    text = resources.files("napari_emd").joinpath("data/xray_lines.json").read_text("utf-8")
    return json.loads(text)["elements"]


def elements() -> list[str]:
    """All element symbols in the table, by atomic number."""
    table = _table()
    return sorted(table, key=lambda s: table[s]["Z"])


def normalize_element(symbol: str) -> str:
    """``"fe"``, ``" FE "`` -> ``"Fe"``; raises ``ValueError`` for an unknown symbol."""
    s = str(symbol).strip()
    s = s[:1].upper() + s[1:].lower()
    if s not in _table():
        raise ValueError(f"unknown element {symbol!r} (the table covers Li to U)")
    return s


def parse_elements(text: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Element symbols from user text (``"Fe, Cu O"``) or a list, unknown ones dropped,
    duplicates removed, order kept."""
    if text is None:
        return []
    items = text.replace(";", ",").replace(",", " ").split() if isinstance(text, str) else text
    out: list[str] = []
    for item in items:
        try:
            el = normalize_element(item)
        except ValueError:
            continue
        if el not in out:
            out.append(el)
    return out


def unknown_elements(text: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """The items of user text (or a list) that are not element symbols of the table."""
    if text is None:
        return []
    items = text.replace(";", ",").replace(",", " ").split() if isinstance(text, str) else text
    bad = []
    for item in items:
        try:
            normalize_element(item)
        except ValueError:
            bad.append(str(item))
    return bad


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol."""
    return int(_table()[normalize_element(symbol)]["Z"])


def lines(symbol: str) -> dict[str, tuple[float, float]]:
    """The lines of one element: ``{"Ka": (6.4052, 1.0), ...}`` (energy in keV, weight)."""
    raw = _table()[normalize_element(symbol)]["lines"]
    return {name: (float(e), float(w)) for name, (e, w) in raw.items()}


def lines_in_range(
    symbols: list[str], e_min: float, e_max: float
) -> list[tuple[str, str, float, float]]:
    """``(element, line, energy_keV, weight)`` of the given elements' lines inside
    ``[e_min, e_max]`` keV, sorted by energy."""
    out = []
    for el in parse_elements(list(symbols)):
        for name, (e, w) in lines(el).items():
            if e_min <= e <= e_max:
                out.append((el, name, e, w))
    return sorted(out, key=lambda t: t[2])


def eds_fwhm(energy_kev: float, fwhm_mn_ev: float = FWHM_MN_KA_EV) -> float:
    """Expected peak width (FWHM, keV) of an EDS detector at ``energy_kev``.

    The width grows with the square root of the energy from the detector's electronic
    noise plus the counting statistics of the charge (Fano): FWHM² = FWHM(Mn Kα)² +
    2.49 eV · (E − E(Mn Kα)), with energies in eV.
    """
    sq = fwhm_mn_ev**2 + 2.49 * (energy_kev * 1000.0 - _MN_KA_EV)
    return math.sqrt(max(sq, 30.0**2)) / 1000.0


def map_line(
    symbol: str, e_min: float = 0.1, e_max: float = 12.0
) -> tuple[str, float] | None:
    """The line to map an element with: the first of Kα, Lα, Mα inside
    ``[e_min, e_max]`` keV (a high-energy Kα is weak and badly resolved, so heavier
    elements are mapped with their L or M line). ``None`` when no line fits."""
    el_lines = lines(symbol)
    for name in MAP_LINE_ORDER:
        if name in el_lines and e_min <= el_lines[name][0] <= e_max:
            return name, el_lines[name][0]
    inside = [(n, e) for n, (e, _) in el_lines.items() if e_min <= e <= e_max]
    return min(inside, key=lambda t: t[1]) if inside else None


def element_window(
    symbol: str, e_min: float = 0.1, e_max: float = 12.0, width_fwhm: float = 1.0
) -> tuple[str, float, float] | None:
    """``(line, low_keV, high_keV)``: an integration window of ± ``width_fwhm`` peak
    widths around the element's mapping line, or ``None`` when it has no line in range."""
    chosen = map_line(symbol, e_min, e_max)
    if chosen is None:
        return None
    name, e = chosen
    half = width_fwhm * eds_fwhm(e)
    return name, max(e - half, 0.0), e + half
