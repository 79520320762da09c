"""The EDS quantification settings a Velox file stores, in a form a user can read.

Velox keeps them in the file-wide ``SharedProperties/EDSSpectrumQuantificationSettings/<id>``
JSON (the reader copies ``SharedProperties`` whole into each dataset's
``original_metadata``): ``elementSelection`` (atomic numbers), ``absorptionCorrection``
(enabled, sample thickness in m, density), ``ionizationCrossSectionModel`` (e.g.
``BrownPowell``) and, in newer files, references to ``SharedProperties/BackgroundCorrection``
(``type``, ``useManualBackgroundWindows``) and ``SharedProperties/BackgroundWindows``.
``elementProperties`` lists every element of the periodic table with the shell family
Velox would quantify; only the selected elements' entries are kept here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ... import xray_lines
from .calibration import elements_from_selection
from .jsontree import get

_KEY = "EDSSpectrumQuantificationSettings"


@dataclass(frozen=True)
class EDSQuantSettings:
    """Velox's EDS quantification settings of a file.

    ``elements``: the selected element symbols. ``shells``: the X-ray shell family
    (``"K"``, ``"L"``...) Velox quantifies per selected element, when stated.
    ``quantify``: the selected elements Velox quantifies (others are only identified).
    ``background_windows``: manual windows ``(low, high)`` in keV per element, when the
    file stores usable ones (the Velox files seen so far store an empty
    ``BackgroundWindows`` object); :meth:`line_background` gives a line's pair."""

    elements: tuple[str, ...]
    shells: dict[str, str] = field(default_factory=dict)
    quantify: tuple[str, ...] = ()
    cross_section_model: str | None = None
    absorption: dict[str, Any] = field(default_factory=dict)
    background_correction: str | None = None
    manual_background_windows: bool = False
    background_windows: dict[str, tuple[tuple[float, float], ...]] = field(
        default_factory=dict)

    def line_background(self, line: str) -> tuple[float, float, float, float] | None:
        """The file's background windows of ``line`` (``"Fe_Ka"``) as ``(low1, high1,
        low2, high2)`` keV: of its element's stored windows, the nearest wholly below the
        line's energy and the nearest wholly above it; ``None`` without such a pair."""
        el, _, name = line.partition("_")
        wins = self.background_windows.get(el)
        if not wins or xray_lines.unknown_elements([el]):
            return None
        energy = xray_lines.lines(el).get(name, (None, 0.0))[0]
        if energy is None:
            return None
        below = [w for w in wins if w[1] <= energy]
        above = [w for w in wins if w[0] >= energy]
        if not below or not above:
            return None
        lo = max(below, key=lambda w: w[1])
        hi = min(above, key=lambda w: w[0])
        return lo[0], lo[1], hi[0], hi[1]

    def summary(self) -> str:
        """The settings as a few lines of text, for a tooltip or a text box."""
        lines = [f"Elements: {', '.join(self.elements) or 'none selected'}"]
        if self.shells:
            lines.append("Lines: " + ", ".join(f"{e} {s}" for e, s in self.shells.items()))
        left_out = [e for e in self.elements if self.quantify and e not in self.quantify]
        if left_out:
            lines.append(f"Marked not to quantify: {', '.join(left_out)}")
        if self.cross_section_model:
            lines.append(f"Ionization cross-sections: {self.cross_section_model}")
        ab = self.absorption
        if ab:
            if ab.get("enabled") in (True, "true", "True"):
                t = ab.get("sampleThickness")
                try:
                    thick = f", thickness {float(t) * 1e9:.4g} nm"
                except (TypeError, ValueError):
                    thick = ""
                dens = ab.get("density")
                lines.append(f"Absorption correction: on{thick}"
                             + (f", density {dens} g/cm³" if ab.get("useDensity") in
                                (True, "true") and dens is not None else ""))
            else:
                lines.append("Absorption correction: off")
        if self.background_correction:
            manual = " (manual windows)" if self.manual_background_windows else ""
            lines.append(f"Background correction: {self.background_correction}{manual}")
        for el, wins in self.background_windows.items():
            text = "; ".join(f"{lo:.3f}–{hi:.3f}" for lo, hi in wins)
            lines.append(f"Background windows {el}: {text} keV")
        return "\n".join(lines)


def _resolve(tree: dict[str, Any], ref: Any) -> Any:
    """The JSON a ``/SharedProperties/<kind>/<id>`` reference points at, else ``None``."""
    if not isinstance(ref, str) or not ref.startswith("/"):
        return None
    return get(tree, *ref.strip("/").split("/"))


def _windows(node: Any, elements: tuple[str, ...]) -> dict[str, tuple[tuple[float, float], ...]]:
    """Manual background windows from a ``BackgroundWindows`` node, read as
    ``{element or Z: [[low, high], ...]}`` in keV; anything else gives nothing."""
    out: dict[str, tuple[tuple[float, float], ...]] = {}
    if not isinstance(node, dict):
        return out
    for key, value in node.items():
        els = elements_from_selection([key])
        el = els[0] if els else str(key)
        if el not in elements or not isinstance(value, list):
            continue
        wins = []
        for w in value:
            try:
                lo, hi = float(w[0]), float(w[1])
            except (TypeError, ValueError, IndexError, KeyError):
                continue
            wins.append((lo, hi))
        if wins:
            out[el] = tuple(wins)
    return out


def eds_quant_settings(original_metadata: dict[str, Any] | None) -> EDSQuantSettings | None:
    """The EDS quantification settings in a dataset's ``original_metadata`` (the first
    ``EDSSpectrumQuantificationSettings`` entry), or ``None`` when the file has none."""
    shared = get(original_metadata or {}, "SharedProperties")
    entries = get(shared, _KEY)
    if not isinstance(entries, dict):
        return None
    node = next((v for v in entries.values() if isinstance(v, dict)), None)
    if node is None:
        return None
    elements = tuple(elements_from_selection(node.get("elementSelection")))
    shells: dict[str, str] = {}
    quantify: list[str] = []
    for prop in node.get("elementProperties") or []:
        if not isinstance(prop, dict):
            continue
        els = elements_from_selection([prop.get("element")])
        if not els or els[0] not in elements:
            continue
        if prop.get("atomicShellFamily"):
            shells[els[0]] = str(prop["atomicShellFamily"])
        if prop.get("quantify") in (True, "true", "True"):
            quantify.append(els[0])
    tree = {"SharedProperties": shared}
    bg = _resolve(tree, node.get("backgroundCorrection"))
    bg_type = str(bg.get("type")) if isinstance(bg, dict) and bg.get("type") else None
    manual = isinstance(bg, dict) and bg.get("useManualBackgroundWindows") in (True, "true")
    absorption = node.get("absorptionCorrection")
    model = node.get("ionizationCrossSectionModel")
    return EDSQuantSettings(
        elements=elements, shells=shells, quantify=tuple(quantify),
        cross_section_model=str(model) if model else None,
        absorption=dict(absorption) if isinstance(absorption, dict) else {},
        background_correction=bg_type, manual_background_windows=bool(manual),
        background_windows=_windows(_resolve(tree, node.get("backgroundWindows")), elements),
    )
