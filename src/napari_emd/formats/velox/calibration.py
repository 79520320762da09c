"""Calibrations from Velox metadata: pixel sizes and offsets in readable units, frame
times, EDS energy calibrations, detectors and element selections."""

from __future__ import annotations

import warnings
from typing import Any

from ...errors import EMDWarning
from ...model import Axis
from ...units import clean_unit, length_factor, readable_length_unit, readable_reciprocal_unit
from .jsontree import get, to_float, warn

_ELEMENT_TEXT = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge "
    "As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm "
    "Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th "
    "Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
)
SYMBOLS = tuple(_ELEMENT_TEXT.split())


def spatial_calibration(
    binary_result: dict[str, Any], shape_yx: tuple[int, int], where: str,
    meta: dict[str, Any] | None = None,
) -> tuple[float, float, float, float, str, str | None] | None:
    """(scale_y, scale_x, offset_y, offset_x, unit, raw_unit) in a readable unit, from a
    BinaryResult; ``None`` when it has no pixel size.

    The offset of a real-space scan comes from where the scan lies in the microscope's
    field of view (``meta``'s ``Scan.ScanArea`` fractions of
    ``Optics.FullScanFieldOfView``, centred on the optical axis): every image of one scan
    then sits at the same place. Velox writes the same number as ``BinaryResult.Offset``
    for element maps and spectrum images, but 0 for the HAADF image of the same scan.
    """
    ps = binary_result.get("PixelSize") if isinstance(binary_result, dict) else None
    if not isinstance(ps, dict):
        return None
    sx = to_float(ps.get("width"))
    sy = to_float(ps.get("height"), sx)
    if sx is None or sy is None:
        return None
    off = binary_result.get("Offset") if isinstance(binary_result.get("Offset"), dict) else {}
    ox = to_float(off.get("x"), 0.0) or 0.0
    oy = to_float(off.get("y"), 0.0) or 0.0
    raw_x = str(binary_result.get("PixelUnitX", "m") or "m")
    raw_y = str(binary_result.get("PixelUnitY", raw_x) or raw_x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EMDWarning)
        ux, uy = clean_unit(raw_x), clean_unit(raw_y)
    nx = max(int(shape_yx[1]), 1)
    reciprocal = ux.startswith("1/")
    base = ux[2:] if reciprocal else ux
    fx = length_factor(base)
    fy = length_factor(uy[2:] if uy.startswith("1/") else uy)
    if fx is None:
        # not a length: keep the numbers and the (cleaned) unit as they are
        if not ux:
            warn(f"{where}: pixel unit {raw_x!r} is not understood; axes have no unit")
        return sy, sx, oy, ox, ux, (raw_x if not ux else None)
    if fy is None:
        fy = fx
    scan = scan_origin(meta) if meta is not None and not reciprocal else None
    if scan is not None:  # metres -> the file's pixel unit
        oy, ox = scan[0] / fy, scan[1] / fx
    if reciprocal:
        per_m_x = sx / fx
        unit = readable_reciprocal_unit(per_m_x * nx / 2)
        tf = length_factor(unit[2:]) or 1.0
        return sy / fy * tf, sx / fx * tf, oy / fy * tf, ox / fx * tf, unit, None
    unit = readable_length_unit(sx * fx * nx / 2)
    uf = length_factor(unit) or 1.0
    return sy * fy / uf, sx * fx / uf, oy * fy / uf, ox * fx / uf, unit, None


def scan_origin(meta: dict[str, Any]) -> tuple[float, float] | None:
    """(y, x) in metres of the scan area's top-left corner in the field of view, whose
    centre is the optical axis; ``None`` without a scan area and field of view."""
    area = get(meta, "Scan", "ScanArea")
    fov = get(meta, "Optics", "FullScanFieldOfView")
    if not isinstance(area, dict) or not isinstance(fov, dict):
        return None
    left, top = to_float(area.get("left")), to_float(area.get("top"))
    fx, fy = to_float(fov.get("x")), to_float(fov.get("y"))
    if None in (left, top, fx, fy) or not fx or not fy:
        return None
    return ((top - 0.5) * fy, (left - 0.5) * fx)


def time_axis(frame_time: float | None, n: int, offset_frames: int = 0) -> Axis:
    """A ``Time`` axis in s or ms (the unit in which the whole series reads best)."""
    if frame_time is None or frame_time <= 0:
        return Axis("Time", n, 1.0, float(offset_frames), "", navigate=True)
    total = frame_time * max(n, 1)
    unit, factor = ("s", 1.0)
    if total < 1e-3:
        unit, factor = "µs", 1e6
    elif total < 1.0:
        unit, factor = "ms", 1e3
    scale = frame_time * factor
    return Axis("Time", n, scale, scale * offset_frames, unit, navigate=True)


def elements_from_selection(selection: Any) -> list[str]:
    if not isinstance(selection, list):
        return []
    out = set()
    for z in selection:
        try:
            zi = int(z)
        except (TypeError, ValueError):
            if isinstance(z, str) and z in SYMBOLS:
                out.add(z)
            continue
        if 1 <= zi <= len(SYMBOLS):
            out.add(SYMBOLS[zi - 1])
    return sorted(out)


def detector_dict(meta: dict[str, Any], name: str | None) -> dict[str, Any] | None:
    """The ``Detectors/Detector-n`` entry named ``name`` (exact, then prefix match)."""
    dets = meta.get("Detectors")
    if not isinstance(dets, dict) or not name:
        return None
    items = [d for d in dets.values() if isinstance(d, dict)]
    for d in items:
        if d.get("DetectorName") == name:
            return d
    for d in items:
        if str(d.get("DetectorName", "")).startswith(name):
            return d
    return None


def indexed_detector(meta: dict[str, Any]) -> dict[str, Any] | None:
    idx = get(meta, "BinaryResult", "DetectorIndex")
    if idx is None:
        return None
    d = get(meta, "Detectors", f"Detector-{idx}")
    return d if isinstance(d, dict) else None


def energy_calibration(meta: dict[str, Any], detector: str | None) -> tuple[float, float] | None:
    """(dispersion, offset) in keV of an EDS detector (Velox stores eV)."""
    d = detector_dict(meta, detector)
    if d is None:
        return None
    disp = to_float(d.get("Dispersion"))
    off = to_float(d.get("OffsetEnergy"), 0.0)
    if disp is None or disp <= 0:
        return None
    return disp / 1000.0, (off or 0.0) / 1000.0



def yx_axes(cal: tuple | None, ny: int, nx: int, navigate: bool) -> list[Axis]:
    """The (y, x) axes of an image or scan from a :func:`spatial_calibration`."""
    if cal is None:
        return [Axis("y", ny, navigate=navigate), Axis("x", nx, navigate=navigate)]
    sy, sx, oy, ox, unit, raw = cal
    return [
        Axis("y", ny, sy, oy, unit, navigate=navigate, raw_units=raw),
        Axis("x", nx, sx, ox, unit, navigate=navigate, raw_units=raw),
    ]
