"""What a Velox file says about its spectrum image, from metadata alone (no stream is
read): :class:`napari_emd.SIFacts` for the loader and ``napari-emd info``."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import h5py

from ...errors import EMDError, EMDWarning
from ...h5 import open_h5
from ...model import SIFacts
from .calibration import energy_calibration, spatial_calibration
from .grid import SIPlan, plan_spectrum_image
from .identify import detect
from .jsontree import get, metadata_column, to_float
from .metadata import VeloxMetadata


def _eels_ranges(md: VeloxMetadata) -> tuple[tuple[float, float], ...]:
    """(first, last channel) energies in eV of each EELS spectrum image."""
    eels = md.data.get("EelsSpectrumImage")
    ranges = []
    if isinstance(eels, h5py.Group):
        for k in eels:
            acq = metadata_column(eels[k].get("AcquisitionMetadata"), 0, k)
            d = to_float(get(acq, "Data", "dispersion"))
            o = to_float(get(acq, "Data", "offset"), 0.0) or 0.0
            n = eels[k]["Data"].shape[1] if "Data" in eels[k] else 0
            ranges.append((o, o + (d or 1.0) * max(n - 1, 0)))
    return tuple(sorted(ranges))


def _pixel(plan: SIPlan) -> tuple[float | None, str]:
    """The SI's pixel size and unit (``None, ""`` when its metadata gives none)."""
    with contextlib.suppress(Exception):
        cal = spatial_calibration(plan.meta.get("BinaryResult") or {}, (plan.ny, plan.nx), "")
        if cal:
            return cal[1], cal[4]
    return None, ""


def _pruned_facts(base: dict[str, Any], plan: SIPlan) -> SIFacts:
    """A pruned file: readable when its SpectrumImage blob's header is, with the grid,
    channels and energies of that header. ``n_frames`` is 1 (the blob holds one summed
    frame: no frame range can be chosen; ``reason`` says how many frames it sums) and
    ``detectors`` is empty (they are summed: no detector can be chosen)."""
    lay = plan.blob_layout
    if lay is None:
        return SIFacts(**base, has_si=True, readable=False, reason=plan.reason,
                       source="pruned cube" if plan.blob else None, signal_type="EDS_TEM")
    pixel_size, pixel_units = _pixel(plan)
    return SIFacts(
        **base,
        has_si=True,
        readable=True,
        reason=plan.reason,
        source="pruned cube",
        signal_type="EDS_TEM",
        ny=lay.height,
        nx=lay.width,
        grid_source=plan.grid_source,
        n_frames=1,
        detectors=(),
        channels=lay.channels,
        energy_offset=lay.energy_offset_eV / 1000.0,
        energy_scale=lay.dispersion_eV / 1000.0,
        energy_units="keV",
        pixel_size=pixel_size,
        pixel_units=pixel_units,
        frame_table=False,
        dtype="uint16",
    )


def si_facts(path: str) -> SIFacts:
    """The facts of the EDS spectrum image of the Velox file ``path`` (``has_si`` False
    when it has none). Raises :class:`EMDError` for a file that is not Velox."""

    with open_h5(path) as f:
        if not detect(f):
            raise EMDError(path, "not a Velox EMD file")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EMDWarning)
            md = VeloxMetadata(path, f)
            plan = plan_spectrum_image(md, lazy=True)
            base = {"path": path, "format": "velox", "elements": tuple(md.elements_eds),
                    "eels_ranges": _eels_ranges(md)}
    if plan is None:
        return SIFacts(**base)
    if plan.pruned:
        return _pruned_facts(base, plan)
    ecal = energy_calibration(plan.streams[0].meta or plan.meta, plan.streams[0].detector)
    pixel_size, pixel_units = _pixel(plan)
    return SIFacts(
        **base,
        has_si=True,
        readable=True,
        source="event streams",
        signal_type="EDS_TEM",
        ny=plan.ny,
        nx=plan.nx,
        grid_source=plan.grid_source,
        n_frames=plan.n_frames,
        detectors=tuple(s.detector for s in plan.streams),
        channels=plan.bincount,
        energy_offset=ecal[1] if ecal else 0.0,
        energy_scale=ecal[0] if ecal else 1.0,
        energy_units="keV" if ecal else "",
        pixel_size=pixel_size,
        pixel_units=pixel_units,
        frame_table=all(s.frame_table for s in plan.streams),
        dtype=plan.file(path).source.dtype,
    )
