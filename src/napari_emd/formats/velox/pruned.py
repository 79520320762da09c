"""The EDS spectrum image of a pruned Velox file, read from its SpectrumImage blob.

Velox can prune a file (and its Bruker converter always does): the event streams are
dropped and only ``Data/SpectrumImage/<id>/Data`` is left, Velox's own spectrum image
summed over all frames and all EDS detectors (:mod:`.blob`). This module turns it into the
same :class:`Dataset` the stream decoder's SI becomes, with the options that the sum can
honour (``rebin_energy``, ``SI_dtype``, ``lazy``) and a ``ValueError`` naming each one it
cannot (frames and detectors), and says in the metadata where the cube comes from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import EMDError
from ...model import PRUNED_CUBE, SPECTRUM_IMAGE, Axis, Dataset, SIContent
from ...options import ReadOptions
from .blob import lazy_cube, lazy_planes, read_eager
from .calibration import detector_dict, spatial_calibration, yx_axes
from .grid import SIPlan
from .jsontree import get, warn
from .metadata import VeloxMetadata

SOURCE = "Velox SpectrumImage cube of a pruned file, summed over all frames and detectors"

#: How the blob's cube relates to decoding the streams, as far as the reference files
#: tell (docs/velox.md); a pruned file has no streams left to compare with.
DIFFERENCES = (
    "The cube is Velox's own accumulated spectrum image. On three of the five reference "
    "files (Velox 6, 11, 13) it equals napari-emd's decoding of the event streams voxel "
    "for voxel. Where a stream ends with events after its last pixel separator (Velox "
    "had started one more frame), Velox counted them into pixel (0, 0), which the stream "
    "decoding drops (fei_SI_SuperX-HAADF_10frames_10x50.emd: 72 counts). Where a Velox 4 "
    "stream lost pixel separators, Velox placed the pixels of later frames where the "
    "stored stream cannot tell (fei_emd_si.emd: frames 1-4 shifted by 2, 4, 5 and 6 "
    "pixels; same total and summed spectrum)."
)


def check_pruned_options(path: str, opts: ReadOptions, plan: SIPlan) -> None:
    """``ValueError`` naming each option the summed cube cannot honour."""
    frames = f"all {plan.n_frames} frames" if plan.n_frames else "all frames"
    why = (f"{path} is a pruned Velox file: its event streams are gone and only the "
           f"spectrum image summed over {frames} and all EDS detectors is stored")
    if not opts.sum_frames:
        raise ValueError(f"sum_frames=False cannot be honoured: {why}, so the frames "
                         "cannot be told apart")
    full = (None, plan.n_frames or 1)
    if opts.first_frame != 0 or opts.last_frame not in full:
        raise ValueError(
            f"first_frame={opts.first_frame}, last_frame={opts.last_frame} cannot be "
            f"honoured: {why}; only the whole range (first_frame=0, last_frame=None) "
            "can be read")
    if not opts.sum_EDS_detectors or opts.detectors is not None:
        which = "sum_EDS_detectors=False" if not opts.sum_EDS_detectors else \
            f"detectors={list(opts.detectors or ())}"
        raise ValueError(f"{which} cannot be honoured: {why}, so the detectors cannot be "
                         "told apart")
    if opts.align_frames is not False or opts.exclude_frames:
        raise ValueError(f"align_frames / exclude_frames cannot be honoured: {why}, so "
                         f"its frames cannot be moved or left out ({path})")
    opts.check_rebin(plan.bincount, path)


def _eds_detectors(meta: dict[str, Any]) -> list[str]:
    """The EDS detectors the SI's metadata lists (those with an energy calibration)."""
    dets = meta.get("Detectors")
    if not isinstance(dets, dict):
        return []
    return [str(d.get("DetectorName")) for d in dets.values()
            if isinstance(d, dict) and d.get("Dispersion") is not None
            and d.get("DetectorName")]


def pruned_si_dataset(path: str, md: VeloxMetadata, plan: SIPlan,
                      opts: ReadOptions) -> Dataset | None:
    """The summed EDS spectrum image of a pruned file (``None``, with a warning, when the
    file has no blob). ``EMDError`` naming the file for a damaged blob; ``ValueError``
    for options the summed cube cannot honour."""
    if plan.blob is None:
        warn(f"{path}: no EDS spectrum image is returned: {plan.reason}")
        return None
    lay = plan.blob_layout
    if lay is None:
        raise EMDError(path, f"the spectrum image blob {plan.blob} is damaged: "
                             f"{plan.blob_error}")
    check_pruned_options(path, opts, plan)
    rebin = opts.rebin_energy
    spec = plan.read(path, opts)
    if opts.lazy:
        data, display = lazy_cube(spec), lazy_planes(spec)
    else:
        try:
            data = read_eager(spec)
        except ValueError as err:
            raise EMDError(path, f"the spectrum image blob {plan.blob} is damaged: "
                                 f"{err}") from err
        except (OSError, KeyError) as err:
            raise EMDError(path, f"cannot read the spectrum image blob {plan.blob}: "
                                 f"{err}") from err
        display = np.moveaxis(data, -1, -3)
    meta = plan.meta
    cal = spatial_calibration(meta.get("BinaryResult") or {}, (lay.height, lay.width),
                              "spectrum image")
    yx = yx_axes(cal, lay.height, lay.width, navigate=True)
    disp, off = lay.dispersion_eV / 1000.0, lay.energy_offset_eV / 1000.0
    # a summed bin's energy is the mean of its channels' energies
    energy = Axis("Energy", lay.channels // rebin, disp * rebin, off + disp * (rebin - 1) / 2,
                  "keV")
    axes = [*yx, energy]
    det = detector_dict(meta, get(meta, "BinaryResult", "Detector"))
    detectors = _eds_detectors(meta)
    imported = {
        "Source": SOURCE,
        "Differences_from_stream_decoding": DIFFERENCES,
        "SpectrumImage_blob": plan.blob,
        "First_frame": 0,
        "Last_frame": plan.n_frames or None,
        "Number_of_frames": plan.n_frames or None,
        "Rebin_energy": rebin,
        "Number_of_channels": lay.channels,
        "Scan_grid": [lay.height, lay.width],
        "Scan_grid_source": plan.grid_source,
        "Detectors": detectors,
        "Detectors_summed": True,
        "Blob_header": {
            "header_length": lay.header_length, "schema": lay.schema,
            "energy_offset_eV": lay.energy_offset_eV, "dispersion_eV": lay.dispersion_eV,
            "energy_end_eV": lay.energy_end_eV,
            "acceleration_voltage_V": lay.acceleration_voltage_V, "value_size": 2,
        },
    }
    om = md.original(meta, DetectorMetadata=det, fresh={"ImportedDataParameter": imported})
    hs = md.metadata(meta, "EDS_TEM", det, md.elements_eds)
    eds = hs.setdefault("Acquisition_instrument", {}).setdefault("TEM", {}) \
        .setdefault("Detector", {}).setdefault("EDS", {})
    if plan.n_frames:
        eds["number_of_frames"] = plan.n_frames
    return Dataset(
        title="EDS",
        data=data,
        axes=axes,
        kind=SPECTRUM_IMAGE,
        signal_type="EDS_TEM",
        path=plan.blob,
        metadata=hs,
        original_metadata=om,
        display=display,
        display_axes=[energy, *yx],
        si=SIContent(PRUNED_CUBE, tuple(detectors), tuple(range(plan.n_frames or 0))),
    )
