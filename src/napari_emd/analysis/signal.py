"""What the analysis functions need from a signal, whatever form it comes in: a
RosettaSciIO-style dict from :func:`napari_emd.file_reader` or a
:class:`napari_emd.Dataset` record. The last axis is the energy axis (as every
spectrum and spectrum image of the reader has it); every other axis is navigation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model import Axis, Dataset
from ..spectra import ENERGY_FACTOR
from ..xray_lines import FWHM_MN_KA_EV


@dataclass(frozen=True)
class SignalView:
    """A signal reduced to what the analysis reads: ``data`` (numpy or dask, energy
    last), the energy axis' ``scale``/``offset``/``units``, the navigation axes (as
    ``(name, scale, offset, units)``) and the HyperSpy-style ``metadata`` tree."""

    data: Any
    scale: float
    offset: float
    units: str
    nav_axes: tuple[tuple[str, float, float, str], ...]
    metadata: dict[str, Any]
    title: str = ""

    @property
    def n_channels(self) -> int:
        return int(self.data.shape[-1])

    @property
    def lazy(self) -> bool:
        return hasattr(self.data, "dask")

    @property
    def kev(self) -> float:
        """The factor from the energy unit to keV (1 when the unit is not an energy)."""
        return ENERGY_FACTOR.get(self.units, 1e3) / 1e3

    def energies(self) -> np.ndarray:
        """The channel centres in the signal's energy unit."""
        return self.offset + self.scale * np.arange(self.n_channels, dtype=float)

    def channel(self, energy: float) -> float:
        """The (fractional) channel index of an energy in the signal's unit."""
        return (float(energy) - self.offset) / self.scale

    def meta(self, *keys: str, default: Any = None) -> Any:
        """A value of the metadata tree by its path, ``default`` when absent."""
        node: Any = self.metadata
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return default
            node = node[k]
        return node

    def fwhm_mn_ev(self) -> float:
        """The detector's FWHM at Mn Kα (eV) from the metadata, else the usual 130 eV."""
        v = self.meta("Acquisition_instrument", "TEM", "Detector", "EDS",
                      "energy_resolution_MnKa")
        try:
            v = float(v)
        except (TypeError, ValueError):
            return FWHM_MN_KA_EV
        return v if v > 0 else FWHM_MN_KA_EV


def _axis_tuple(ax: Axis | dict[str, Any]) -> tuple[str, float, float, str, int]:
    if isinstance(ax, Axis):
        return ax.name, float(ax.scale), float(ax.offset), ax.units or "", ax.size
    return (str(ax.get("name", "")), float(ax.get("scale", 1.0)),
            float(ax.get("offset", 0.0)), str(ax.get("units", "") or ""),
            int(ax.get("size", 0)))


def as_signal(signal: Any) -> SignalView:
    """The :class:`SignalView` of a file_reader dict, a ``Dataset`` or a view itself."""
    if isinstance(signal, SignalView):
        return signal
    if isinstance(signal, Dataset):
        data, axes, meta, title = signal.data, signal.axes, signal.metadata, signal.title
    elif isinstance(signal, dict) and "data" in signal:
        data, axes = signal["data"], signal.get("axes", [])
        meta = signal.get("metadata", {}) or {}
        title = str(meta.get("General", {}).get("title", ""))
    else:
        raise TypeError("expected a file_reader signal dict or a napari_emd.Dataset, "
                        f"got {type(signal).__name__}")
    if getattr(data, "ndim", 0) < 1:
        raise ValueError("the signal has no energy axis (its data is 0-d)")
    tuples = [_axis_tuple(a) for a in axes]
    if len(tuples) != data.ndim:
        raise ValueError(f"the signal has {data.ndim} data axes but {len(tuples)} "
                         "axis descriptions")
    name, scale, offset, units, _ = tuples[-1]
    if not scale:
        raise ValueError(f"the energy axis {name!r} has a zero scale")
    nav = tuple(t[:4] for t in tuples[:-1])
    return SignalView(data, scale, offset, units, nav, meta, title)
