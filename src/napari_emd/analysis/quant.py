"""Cliff–Lorimer quantification of thin-film EDS intensities, with numpy only.

For a thin specimen the weight fractions of two elements stand in the ratio of their
X-ray intensities times a k-factor, ``C_A / C_B = k_AB * I_A / I_B`` (Cliff and Lorimer
1975). With one k-factor per element (all relative to a common reference) and the
fractions summing to one, ``C_i = k_i I_i / sum_j k_j I_j``. Atomic fractions follow
from weight fractions through the atomic weights A: ``x_i = (C_i / A_i) / sum_j (C_j /
A_j)``, which is the same form with ``k_i / A_i`` in place of ``k_i``.

Uncertainties come from the intensities' (Poisson) sigmas by first-order propagation;
for ``f_i = a_i I_i / S`` with ``S = sum_j a_j I_j``:
``var(f_i) = sum_j (d f_i / d I_j)^2 sigma_j^2``, ``d f_i / d I_j = a_i (delta_ij S -
I_i a_j) / S^2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..xray_lines import normalize_element

# IUPAC/CIAAW standard atomic weights (conventional values, g/mol) of the elements of
# data/xray_lines.json (Li to U). Elements without a standard atomic weight (Tc, Pm,
# Po to Ac) carry the mass number of their longest-lived or usual isotope.
ATOMIC_WEIGHTS: dict[str, float] = {
    "Li": 6.94, "Be": 9.0121831, "B": 10.81, "C": 12.011, "N": 14.007, "O": 15.999,
    "F": 18.998403163, "Ne": 20.1797, "Na": 22.98976928, "Mg": 24.305,
    "Al": 26.9815384, "Si": 28.085, "P": 30.973761998, "S": 32.06, "Cl": 35.45,
    "Ar": 39.95, "K": 39.0983, "Ca": 40.078, "Sc": 44.955908, "Ti": 47.867,
    "V": 50.9415, "Cr": 51.9961, "Mn": 54.938043, "Fe": 55.845, "Co": 58.933194,
    "Ni": 58.6934, "Cu": 63.546, "Zn": 65.38, "Ga": 69.723, "Ge": 72.630,
    "As": 74.921595, "Se": 78.971, "Br": 79.904, "Kr": 83.798, "Rb": 85.4678,
    "Sr": 87.62, "Y": 88.90584, "Zr": 91.224, "Nb": 92.90637, "Mo": 95.95,
    "Tc": 97.0, "Ru": 101.07, "Rh": 102.90549, "Pd": 106.42, "Ag": 107.8682,
    "Cd": 112.414, "In": 114.818, "Sn": 118.710, "Sb": 121.760, "Te": 127.60,
    "I": 126.90447, "Xe": 131.293, "Cs": 132.90545196, "Ba": 137.327,
    "La": 138.90547, "Ce": 140.116, "Pr": 140.90766, "Nd": 144.242, "Pm": 145.0,
    "Sm": 150.36, "Eu": 151.964, "Gd": 157.25, "Tb": 158.925354, "Dy": 162.500,
    "Ho": 164.930328, "Er": 167.259, "Tm": 168.934218, "Yb": 173.045,
    "Lu": 174.9668, "Hf": 178.49, "Ta": 180.94788, "W": 183.84, "Re": 186.207,
    "Os": 190.23, "Ir": 192.217, "Pt": 195.084, "Au": 196.966570, "Hg": 200.592,
    "Tl": 204.38, "Pb": 207.2, "Bi": 208.98040, "Po": 209.0, "At": 210.0,
    "Rn": 222.0, "Fr": 223.0, "Ra": 226.0, "Ac": 227.0, "Th": 232.0377,
    "Pa": 231.03588, "U": 238.02891,
}


def atomic_weight(symbol: str) -> float:
    """The standard atomic weight (g/mol) of an element symbol."""
    return ATOMIC_WEIGHTS[normalize_element(symbol)]


def _element(key: str) -> str:
    """``"Fe"`` or ``"Fe_Ka"`` -> ``"Fe"``."""
    return normalize_element(str(key).split("_", 1)[0])


def _values(x: Any) -> np.ndarray:
    """An intensity as a float array: a plain array, or a LineIntensity's ``net``."""
    x = getattr(x, "net", x)
    if hasattr(x, "compute"):
        x = x.compute()
    return np.asarray(x, dtype=np.float64)


def cliff_lorimer(
    intensities: Mapping[str, Any],
    kfactors: Mapping[str, float],
    weight_percent: bool = False,
    sigmas: Mapping[str, Any] | bool | None = None,
) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Compositions in percent from line intensities by the Cliff–Lorimer ratio method.

    ``intensities``: ``{element or line: array}`` (arrays of any one shape, or the
    :class:`~napari_emd.analysis.LineIntensity` records of
    :func:`~napari_emd.analysis.line_intensities`, whose ``net`` is used).
    ``kfactors``: ``{element or line: k}``, all relative to one reference element.
    Returns ``{element: atomic %}`` (``weight_percent=True``: weight %); pixels whose
    weighted intensities sum to zero are NaN. With ``sigmas`` (``{key: sigma array}``,
    or ``True`` to take them from LineIntensity records) it returns ``(percent,
    sigma_percent)``, propagated to first order.
    """
    keys = list(intensities)
    if not keys:
        raise ValueError("no intensities given")
    elements = [_element(k) for k in keys]
    if len(set(elements)) != len(elements):
        raise ValueError(f"an element appears twice among {keys}")
    kmap = {_element(k): float(v) for k, v in kfactors.items()}
    missing = [e for e in elements if e not in kmap]
    if missing:
        raise ValueError(f"no k-factor for {', '.join(missing)}")
    values = np.broadcast_arrays(*[_values(intensities[k]) for k in keys])
    a = np.array([kmap[e] if weight_percent else kmap[e] / atomic_weight(e)
                  for e in elements])
    weighted = [ai * v for ai, v in zip(a, values)]
    total = np.sum(weighted, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(total != 0, 1.0 / np.where(total != 0, total, 1.0), np.nan)
        percent = {e: 100.0 * w * inv for e, w in zip(elements, weighted)}
    if sigmas is None or sigmas is False:
        return percent
    if sigmas is True:
        sig = [np.asarray(_values(intensities[k].sigma)) for k in keys]
    else:
        sig = [_values(sigmas[k]) for k in keys]
    sig = list(np.broadcast_arrays(*sig, values[0])[:-1])
    out_sigma = {}
    for i, e in enumerate(elements):
        var = np.zeros_like(total)
        for j in range(len(keys)):
            d = a[i] * ((i == j) * total - values[i] * a[j]) * inv**2
            var = var + (d * sig[j]) ** 2
        out_sigma[e] = 100.0 * np.sqrt(var)
    return percent, out_sigma
