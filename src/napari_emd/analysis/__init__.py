"""EDS analysis the way Velox and exSpy do it, with numpy and dask only: net X-ray line
intensities with background windows (:func:`line_intensities`), Cliff–Lorimer
quantification (:func:`cliff_lorimer`), region spectra and EMSA/MSA export
(:func:`region_spectrum`, :func:`write_msa`). See ``docs/analysis.md``.
"""

from __future__ import annotations

from .lines import LineIntensity, line_energy_kev, line_intensities
from .msa import region_spectrum, write_msa
from .profile import Profile, line_profile
from .quant import ATOMIC_WEIGHTS, atomic_weight, cliff_lorimer
from .signal import SignalView, as_signal

__all__ = [
           "ATOMIC_WEIGHTS",
           "LineIntensity",
           "Profile",
           "SignalView",
           "as_signal",
           "atomic_weight",
           "cliff_lorimer",
           "line_energy_kev",
           "line_intensities",
           "line_profile",
           "region_spectrum",
           "write_msa",
]
