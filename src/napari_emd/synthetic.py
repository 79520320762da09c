"""Synthetic Velox EDS spectrum-image files of any size, for tests and benchmarks.

:func:`write_velox_si` writes an ``.emd`` file laid out like the ones Velox writes
(checked against real Velox 4-13 files): a ``Version`` JSON, a HAADF image
``Data/Image/<id>/Data`` stored (y, x, frame) with per-frame ``Metadata`` JSON columns,
one ``Data/SpectrumStream/<id>`` group per EDS detector (``Data`` uint16 event list in
HDF5 chunks of 8192, ``AcquisitionSettings`` JSON with the channel count,
``FrameLocationTable``, ``Metadata``), a summed ``Data/Spectrum/<id>`` per detector, the
``Data/SpectrumImage/<id>`` settings, and the ``Operations`` / ``Presentation`` entries
that name the images.

The events look like real data: two phases (a copper-rich matrix with iron-oxide
particles on a carbon film) give element-like gaussian peaks (C, O, Fe, Cu K and L lines)
on a bremsstrahlung background, with counts following the HAADF contrast. Streams are
written in blocks of pixels made on the worker pool (a few blocks ahead of the writer),
so any size needs only a few blocks of memory: the benchmarks' 2 G-event, 4.4 GB file
(1024 x 1024, 20 frames, 4 detectors) is written this way.

All randomness comes from ``seed``: the same arguments always write the same file.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

SEPARATOR = 65535

# X-ray lines (keV) and relative weights of the two phases.
LINES_MATRIX = {"Cu_Ka": (8.048, 1.0), "Cu_Kb": (8.905, 0.14), "Cu_La": (0.930, 0.35),
                "C_Ka": (0.277, 0.25)}
LINES_PARTICLE = {"Fe_Ka": (6.404, 1.0), "Fe_Kb": (7.058, 0.13), "Fe_La": (0.705, 0.2),
                  "O_Ka": (0.525, 0.6), "C_Ka": (0.277, 0.2)}


@dataclass
class SyntheticSI:
    """What :func:`write_velox_si` wrote (enough to build the expected arrays).

    ``counts`` (only with ``keep_counts=True``) is the exact int64 cube of every event
    written, shaped (detector, frame, y, x, channel). ``drift`` is the ``(frames, 2)``
    whole-pixel drift the file was written with (``None``: none).
    """

    path: str
    ny: int
    nx: int
    frames: int
    bincount: int
    detectors: list[str]
    streams: list[str]
    frame_tables: list[str | None]
    events: int
    stream_lengths: list[int]
    dispersion_ev: float
    offset_ev: float
    pixel_size_m: float
    haadf: str
    counts: np.ndarray | None = field(default=None, repr=False)
    drift: np.ndarray | None = field(default=None, repr=False)

    def file(self) -> Any:
        """The :class:`napari_emd.formats.velox.siread.SIFile` of this file (what the
        decoders read; ``.read(ReadOptions(...))`` gives one read of it)."""
        from .formats.velox.siread import Grid, SIFile, Streams

        return SIFile(self.path,
                      Streams(tuple(self.streams), tuple(self.detectors),
                              tuple(self.frame_tables)),
                      Grid(self.ny, self.nx, self.frames, self.bincount))


def _uid(rng: np.random.Generator) -> str:
    return uuid.UUID(bytes=rng.bytes(16), version=4).hex


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=4).encode("utf-8")


def _vlen(group: h5py.Group, name: str, obj: Any) -> None:
    """A one-element variable-length bytes dataset holding JSON (as Velox writes them)."""
    dt = h5py.special_dtype(vlen=bytes)
    ds = group.create_dataset(name, (1,), dtype=dt)
    ds[0] = _json_bytes(obj)


def _metadata_columns(group: h5py.Group, metas: list[dict[str, Any]]) -> None:
    """``Metadata`` as Velox stores it: (60000, n) uint8, one zero-padded JSON per column."""
    n = len(metas)
    arr = np.zeros((60000, n), np.uint8)
    for i, m in enumerate(metas):
        b = _json_bytes(m)
        if len(b) > 60000:
            raise ValueError("metadata JSON longer than 60000 bytes")
        arr[: len(b), i] = np.frombuffer(b, np.uint8)
    group.create_dataset("Metadata", data=arr, chunks=(60000, 1))


def _spectrum_shape(bincount: int, disp_kev: float, off_kev: float, lines: dict) -> np.ndarray:
    """Relative probability of each channel: bremsstrahlung plus gaussian peaks whose width
    grows with energy like a silicon drift detector's."""
    e = off_kev + disp_kev * (np.arange(bincount) + 0.5)
    e0 = 20.0  # effective Kramers cut-off (keV) for the background shape
    brems = np.where(e > 0.15, (e0 - e) / np.maximum(e, 0.15), 0.0)
    brems *= 1 - np.exp(-((np.maximum(e, 0) / 1.2) ** 3))  # absorption at low energy
    brems = np.clip(brems, 0, None)
    brems /= brems.sum() or 1.0
    spec = 0.25 * brems
    for energy, weight in lines.values():
        fwhm = np.sqrt(0.045**2 + 0.00245 * energy)  # 128 eV at Mn K-alpha
        sigma = fwhm / 2.3548
        g = np.exp(-0.5 * ((e - energy) / sigma) ** 2)
        if g.sum() > 0:
            spec = spec + 0.75 * weight * g / g.sum()
    spec = np.clip(spec, 0, None)
    total = spec.sum()
    if not total > 0:  # a calibration below every line and the background: flat
        return np.full(bincount, 1.0 / bincount)
    return spec / total


def _phase_maps(ny: int, nx: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(particle fraction, relative thickness) maps: round iron-oxide particles in a copper
    matrix, thickness varying smoothly."""
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    frac = np.zeros((ny, nx), np.float32)
    scale = max(2.0, min(ny, nx) / 10)
    n_part = max(3, int(0.2 * ny * nx / (np.pi * (0.7 * scale) ** 2)))  # ~20 % particles
    for _ in range(n_part):
        cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
        r = rng.uniform(0.4, 1.0) * scale
        frac = np.maximum(frac, np.clip((r - np.hypot(yy - cy, xx - cx)) / 1.5, 0, 1))
    thick = 0.7 + 0.3 * np.sin(xx / max(nx, 1) * 3.1) * np.cos(yy / max(ny, 1) * 2.3)
    return frac, thick.astype(np.float32)


# Channels are drawn through an inverse-CDF lookup table of 2**LUT_BITS entries per
# phase (one random integer and one table read per X-ray): channels whose probability is
# below 2**-LUT_BITS never occur, as in a real acquisition of that many counts.
LUT_BITS = 20


def _channel_lut(bincount: int, cdfs: tuple[np.ndarray, ...]) -> np.ndarray:
    """One table of stream values: ``2**LUT_BITS`` channels drawn from each cumulative
    spectrum of ``cdfs`` by inverse transform, then ``2**LUT_BITS`` separators."""
    q = (np.arange(1 << LUT_BITS) + 0.5) / (1 << LUT_BITS)
    parts = [np.minimum(np.searchsorted(cdf, q, side="right"), bincount - 1).astype(np.uint16)
             for cdf in cdfs]
    parts.append(np.full(1 << LUT_BITS, SEPARATOR, np.uint16))
    return np.concatenate(parts)


def _pixel_block(entropy: list[int], rate: np.ndarray, frac: np.ndarray,
                 lut: np.ndarray) -> np.ndarray:
    """The stream values of the pixels whose mean X-ray counts are ``rate`` and particle
    fractions ``frac``: per pixel its matrix X-rays, its particle X-rays, a separator.
    Depends only on ``entropy`` (its own random stream), so blocks can be made in any
    order, on any thread."""
    rng = np.random.default_rng(entropy)
    n = rate.size
    reps = np.ones((n, 3), np.int64)
    reps[:, 0] = rng.poisson(rate * (1 - frac))
    reps[:, 1] = rng.poisson(rate * frac)
    phase = np.tile(np.array([0, 1, 2], np.uint32) << LUT_BITS, n)
    idx = np.repeat(phase, reps.ravel())
    idx |= rng.integers(0, 1 << LUT_BITS, idx.size, dtype=np.uint32)
    return lut.take(idx)


def _stream_blocks(
    seed: int, d: int, frames: int, npix: int, block_pixels: int, lut: np.ndarray,
    rate_of: Any, frac_of: Any,
) -> Any:
    """(frame, first pixel, values) of detector ``d``'s stream, block by block in stream
    order. Blocks are made on the process's worker pool, a few ahead of the one handed
    out, so memory stays a few blocks whatever the file's size."""
    from collections import deque

    from .threads import n_threads, pool

    def jobs() -> Any:
        for fr in range(frames):
            rate = np.ascontiguousarray(rate_of(fr)).ravel()
            frac = np.ascontiguousarray(frac_of(fr)).ravel()
            for p0 in range(0, npix, block_pixels):
                p1 = min(npix, p0 + block_pixels)
                yield fr, p0, ([seed, d, fr, p0], rate[p0:p1], frac[p0:p1], lut)

    ahead = 2 * n_threads()
    waiting: deque = deque()
    for fr, p0, args in jobs():
        waiting.append((fr, p0, pool().submit(_pixel_block, *args)))
        if len(waiting) > ahead:
            f0, q0, job = waiting.popleft()
            yield f0, q0, job.result()
    while waiting:
        f0, q0, job = waiting.popleft()
        yield f0, q0, job.result()


def write_velox_si(
    path: str | os.PathLike,
    ny: int = 32,
    nx: int = 32,
    frames: int = 2,
    detectors: int = 4,
    counts_per_pixel: float = 2.0,
    bincount: int = 4096,
    frame_table: bool = True,
    final_separator: bool = True,
    seed: int = 0,
    version: int = 6,
    dispersion_ev: float = 10.0,
    offset_ev: float = -1000.0,
    pixel_size_m: float = 1.0e-9,
    keep_counts: bool = False,
    block_pixels: int = 1 << 16,
    drift: Any = None,
    pixel_height_m: float | None = None,
    background_windows: dict[str, list[tuple[float, float]]] | None = None,
    manual_background: bool = True,
) -> SyntheticSI:
    """Write a synthetic Velox EDS spectrum image to ``path`` and describe it.

    ``counts_per_pixel`` is the mean number of X-rays per pixel, frame and detector.
    ``frame_table=False`` leaves out ``FrameLocationTable`` (as Velox before 6);
    ``final_separator=False`` drops the stream's last ``65535`` (as some files do).
    ``keep_counts=True`` also returns the exact cube of all events (small files only).

    ``drift``: an ``(frames, 2)`` integer array; frame ``f`` then sees the specimen moved
    by ``drift[f] - drift[0]`` (a feature at ``(y, x)`` in frame 0 is at ``(y + dy,
    x + dx)`` in frame ``f``), in the events and the HAADF alike. The specimen is made
    larger than the scan, so drifted frames see more specimen at their edges, not a
    wrapped copy. ``None`` (default) writes exactly the file it always did.

    ``pixel_height_m``: the pixels' height when it differs from their width
    ``pixel_size_m`` (non-square pixels; default: square).

    ``background_windows``: ``{element: [(low, high), ...]}`` in keV, stored as Velox's
    EDS quantification settings with manual background windows (``None``: no settings);
    ``manual_background=False`` stores them with Velox's "use manual background windows"
    off (windows kept in the file but not used by Velox's quantification).
    """
    if ny < 1 or nx < 1 or frames < 1 or not 1 <= detectors <= 8:
        raise ValueError("ny, nx and frames must be >= 1 and detectors 1..8")
    if not 1 <= bincount < SEPARATOR:
        raise ValueError("bincount must be in 1..65534")
    path = os.fspath(path)
    rng = np.random.default_rng(seed)
    npix = ny * nx
    disp_kev, off_kev = dispersion_ev / 1000, offset_ev / 1000
    cdf_m = np.cumsum(_spectrum_shape(bincount, disp_kev, off_kev, LINES_MATRIX))
    cdf_p = np.cumsum(_spectrum_shape(bincount, disp_kev, off_kev, LINES_PARTICLE))
    cdf_m /= cdf_m[-1]
    cdf_p /= cdf_p[-1]
    shifts = _check_drift(drift, frames)
    pad = 0 if shifts is None else int(np.abs(shifts - shifts[0]).max())
    frac, thick = _phase_maps(ny + 2 * pad, nx + 2 * pad, rng)
    rate = counts_per_pixel * thick * (0.8 + 0.4 * frac)
    rate *= counts_per_pixel / max(rate.mean(), 1e-12)

    def seen(a: np.ndarray, fr: int) -> np.ndarray:  # what frame fr scans of a map
        if shifts is None:
            return a
        dy, dx = shifts[fr] - shifts[0]
        return a[pad - dy : pad - dy + ny, pad - dx : pad - dx + nx]
    det_names = [f"SuperXG2{i + 1}" for i in range(detectors)]
    image_id, si_id = _uid(rng), _uid(rng)
    stream_ids = [_uid(rng) for _ in det_names]
    spectrum_ids = [_uid(rng) for _ in det_names]
    counts = np.zeros((detectors, frames, ny, nx, bincount), np.int64) if keep_counts else None

    frame_time = 1.0e-5 * npix
    pixel = (pixel_size_m if pixel_height_m is None else float(pixel_height_m), pixel_size_m)
    base_meta = _base_metadata(ny, nx, frame_time, pixel, det_names, dispersion_ev,
                               offset_ev, seed)

    with h5py.File(path, "w") as f:
        _vlen(f, "Version", {"version": str(version), "format": "Velox"})
        data = f.create_group("Data")
        # HAADF image (y, x, frame)
        img = data.create_group("Image").create_group(image_id)
        clean = 3000 + 9000 * thick * (1 - 0.5 * frac)
        haadf = np.stack([seen(clean, k) for k in range(frames)], axis=-1) if pad else \
            clean[..., None]
        haadf = haadf + rng.normal(0, 150, (ny, nx, frames))
        img.create_dataset("Data", data=np.clip(haadf, 0, 65535).astype(np.uint16),
                           chunks=(ny, nx, 1))
        _metadata_columns(img, [_with_binary(base_meta, "HAADF", 4, pixel, ny, nx,
                                             frame=k, frame_time=frame_time)
                                for k in range(frames)])
        # spectrum image settings + metadata (the SI's scan)
        si = data.create_group("SpectrumImage").create_group(si_id)
        _metadata_columns(si, [_with_binary(base_meta, det_names[0], None, pixel, ny,
                                            nx)])
        _vlen(si, "SpectrumImageSettings", {"endFramePosition": str(frames)})
        # the streams
        sgroup = data.create_group("SpectrumStream")
        spectra = np.zeros((detectors, bincount), np.int64)
        lengths = []
        total_events = 0
        lut = _channel_lut(bincount, (cdf_m, cdf_p))
        for d, name in enumerate(det_names):
            g = sgroup.create_group(stream_ids[d])
            ds = g.create_dataset("Data", shape=(0, 1), maxshape=(None, 1), dtype=np.uint16,
                                  chunks=(8192, 1))
            table = np.zeros(frames, np.uint64)
            pos = 0
            for fr, p0, block in _stream_blocks(seed, d, frames, npix, block_pixels, lut,
                                                 lambda fr: seen(rate, fr),
                                                 lambda fr: seen(frac, fr)):
                if p0 == 0:
                    table[fr] = pos
                if fr == frames - 1 and p0 + block_pixels >= npix and not final_separator:
                    block = block[:-1]
                ds.resize((pos + block.size, 1))
                ds[pos : pos + block.size, 0] = block
                pos += block.size
                hist = np.bincount(block, minlength=SEPARATOR + 1)
                spectra[d] += hist[:bincount]
                total_events += block.size - int(hist[SEPARATOR])
                if counts is not None:
                    is_sep = block == SEPARATOR
                    pix = np.cumsum(is_sep) - is_sep
                    flat = counts[d, fr].reshape(npix, bincount)
                    np.add.at(flat, (pix[~is_sep] + p0, block[~is_sep]), 1)
            lengths.append(pos)
            if frame_table:
                g.create_dataset("FrameLocationTable", data=table[:, None], chunks=(8192, 1),
                                 maxshape=(None, 1))
            _vlen(g, "AcquisitionSettings", {
                "encoding": "uint16", "bincount": str(bincount), "StreamEncoding": "uint16",
                "Size": str(npix), "RasterScanDefinition": {"Width": str(nx),
                                                            "Height": str(ny)},
            })
            _metadata_columns(g, [_with_binary(base_meta, name, None, pixel, ny, nx,
                                               frame=k, frame_time=frame_time)
                                  for k in range(frames)])
        # summed spectra per detector
        spg = data.create_group("Spectrum")
        for d, name in enumerate(det_names):
            g = spg.create_group(spectrum_ids[d])
            g.create_dataset("Data", data=spectra[d].astype(np.uint32)[:, None],
                             chunks=(bincount, 1))
            _metadata_columns(g, [_with_binary(base_meta, name, None, pixel, ny, nx)])
        _operations(f, rng, image_id, stream_ids)
        if background_windows is not None:
            _quant_settings(f, rng, background_windows, manual_background)
    return SyntheticSI(
        path=path, ny=ny, nx=nx, frames=frames, bincount=bincount, detectors=det_names,
        streams=[f"/Data/SpectrumStream/{s}/Data" for s in stream_ids],
        frame_tables=[f"/Data/SpectrumStream/{s}/FrameLocationTable" if frame_table else None
                      for s in stream_ids],
        events=total_events, stream_lengths=lengths, dispersion_ev=dispersion_ev,
        offset_ev=offset_ev, pixel_size_m=pixel_size_m,
        haadf=f"/Data/Image/{image_id}/Data", counts=counts, drift=shifts,
    )


def _quant_settings(f: h5py.File, rng: np.random.Generator,
                    windows: dict[str, list[tuple[float, float]]],
                    manual: bool = True) -> None:
    """``SharedProperties`` as a Velox 13 file lays them out: the EDS quantification
    settings (elements Fe, Cu, O and those of ``windows``, by atomic number) referring to
    a ``BackgroundCorrection`` (manual windows on or off) and a ``BackgroundWindows`` object,
    here ``{"<Z>": [[low, high], ...]}`` in keV (the real files seen store it empty)."""
    from .xray_lines import atomic_number

    shared = f.create_group("SharedProperties")
    q_id, c_id, w_id = (_uid(rng) for _ in range(3))
    zs = sorted({atomic_number(e) for e in ("Fe", "Cu", "O", *windows)})
    _vlen(shared.create_group("BackgroundCorrection"), c_id,
          {"type": "None", "useManualBackgroundWindows": bool(manual)})
    _vlen(shared.create_group("BackgroundWindows"), w_id,
          {str(atomic_number(e)): [[float(lo), float(hi)] for lo, hi in wins]
           for e, wins in windows.items()})
    _vlen(shared.create_group("EDSSpectrumQuantificationSettings"), q_id, {
        "absorptionCorrection": {"density": 1, "enabled": False, "sampleThickness": 5e-08,
                                 "useDensity": False},
        "backgroundCorrection": f"/SharedProperties/BackgroundCorrection/{c_id}",
        "backgroundWindows": f"/SharedProperties/BackgroundWindows/{w_id}",
        "elementSelection": zs,
        "elementProperties": [{"atomicShellFamily": "K", "element": z, "quantify": True}
                              for z in zs],
        "ionizationCrossSectionModel": "BrownPowell",
    })


def _check_drift(drift: Any, frames: int) -> np.ndarray | None:
    """``drift`` as an ``(frames, 2)`` int64 array (``None`` stays ``None``)."""
    if drift is None:
        return None
    arr = np.asarray(drift)
    if arr.shape != (frames, 2) or not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ValueError(f"drift must be an ({frames}, 2) array of whole pixels, one "
                         f"(dy, dx) per frame; got shape {arr.shape}")
    return arr.astype(np.int64)


def _base_metadata(ny: int, nx: int, frame_time: float, pixel: tuple[float, float],
                   dets: list[str],
                   dispersion_ev: float, offset_ev: float, seed: int) -> dict[str, Any]:
    detectors: dict[str, Any] = {
        "Detector-0": {"DetectorName": "BF", "DetectorType": "ScanningDetector",
                       "Inserted": "false", "Enabled": "true"},
        "Detector-1": {"DetectorName": "DF2", "DetectorType": "ScanningDetector",
                       "Inserted": "false", "Enabled": "true"},
        "Detector-2": {"DetectorName": "DF4", "DetectorType": "ScanningDetector",
                       "Inserted": "false", "Enabled": "true"},
        "Detector-3": {"DetectorName": "HAADF", "DetectorType": "ScanningDetector",
                       "Inserted": "true", "Enabled": "true",
                       "CollectionAngleRange": {"begin": "0.05", "end": "0.2"}},
    }
    for i, name in enumerate(dets):
        detectors[f"Detector-{4 + i}"] = {
            "DetectorName": name, "DetectorType": "AnalyticalDetector", "Inserted": "true",
            "Enabled": "true", "ElevationAngle": "0.38397244000000003",
            "AzimuthAngle": repr(0.7853981633974483 + i * 1.5707963267948966),
            "CollectionAngle": "0.22500000000000001", "Dispersion": repr(dispersion_ev),
            "PulseProcessTime": "3.0000000000000001e-006", "RealTime": repr(frame_time),
            "LiveTime": repr(frame_time * 0.85), "InputCountRate": "0",
            "OutputCountRate": "0", "AnalyticalDetectorShutterState": "0",
            "OffsetEnergy": repr(offset_ev), "ElectronicsNoise": "31", "BeginEnergy": "163",
        }
    return {
        "Core": {"MetadataDefinitionVersion": "7.9", "MetadataSchemaVersion": "v1/2013/07",
                 "guid": "00000000000000000000000000000000"},
        "Instrument": {"ControlSoftwareVersion": "1.7.0", "Manufacturer": "FEI Company",
                       "InstrumentId": "0000", "InstrumentClass": "Talos",
                       "ComputerName": "SYNTHETIC"},
        "Acquisition": {"AcquisitionStartDatetime": {"DateTime": str(1521151935 + seed)},
                        "BeamType": "", "SourceType": "XFEG"},
        "Optics": {"AccelerationVoltage": "200000", "SpotIndex": "3",
                   "FullScanFieldOfView": {"x": repr(pixel[1] * nx),
                                           "y": repr(pixel[0] * ny)},
                   "ProbeMode": "1", "OperatingMode": "2", "CameraLength": "0.098",
                   "BeamConvergence": "0.0105"},
        "EnergyFilter": {"EntranceApertureType": ""},
        "Stage": {"Position": {"x": "0", "y": "0", "z": "0"}, "AlphaTilt": "0",
                  "BetaTilt": "0", "HolderType": "FEI Double Tilt"},
        "Scan": {"ScanSize": {"width": str(nx), "height": str(ny)},
                 "DwellTime": repr(frame_time / (ny * nx)),
                 "ScanArea": {"left": "0", "top": "0", "right": "1", "bottom": "1"},
                 "MainsLockOn": "false", "LineTime": repr(frame_time / ny),
                 "LineIntegrationCount": "1", "LineInterlacing": "1",
                 "FrameTime": repr(frame_time), "ScanRotation": "0"},
        "Vacuum": {"VacuumMode": "Ready"},
        "Detectors": detectors,
        "Sample": "",
        "GasInjectionSystems": "",
        "CustomProperties": {"Synthetic": {"type": "string",
                                           "value": "napari_emd.synthetic.write_velox_si"}},
    }


def _with_binary(base: dict[str, Any], detector: str, index: int | None,
                 pixel: tuple[float, float],
                 ny: int, nx: int, frame: int = 0, frame_time: float = 0.0) -> dict[str, Any]:
    meta = json.loads(json.dumps(base))
    br: dict[str, Any] = {"AcquisitionUnit": "", "CompositionType": ""}
    if index is not None:
        br["DetectorIndex"] = str(index)
    br.update({
        "Detector": detector,
        "PixelSize": {"width": repr(pixel[1]), "height": repr(pixel[0])},
        "PixelUnitX": "m", "PixelUnitY": "m",
        "Offset": {"x": repr(-pixel[1] * nx / 2), "y": repr(-pixel[0] * ny / 2)},
        "Encoding": "",
    })
    meta["BinaryResult"] = br
    t0 = int(meta["Acquisition"]["AcquisitionStartDatetime"]["DateTime"])
    meta["Acquisition"]["AcquisitionDatetime"] = {"DateTime": str(int(t0 + frame * frame_time))}
    return meta


def _operations(f: h5py.File, rng: np.random.Generator, image_id: str,
                stream_ids: list[str]) -> None:
    """The Velox (< 11) ``Operations`` graph and ``Presentation`` displays naming the HAADF
    image and feeding the streams to an EDS quantification, as Velox writes them."""
    ops = f.create_group("Operations")
    display_id, levels_id, quant_id = _uid(rng), _uid(rng), _uid(rng)
    stem_id = _uid(rng)
    _vlen(ops.create_group("StemInputOperation"), stem_id, {
        "dataPath": f"/Data/Image/{image_id}", "detector": "HAADF",
        "outputs": [{"outputIndex": "0", "inputIndex": "0",
                     "operation": f"/Operations/DisplayLevelsOperation/{levels_id}"}],
        "scanArea": ["0.000000", "0.000000", "1.000000", "1.000000"],
    })
    _vlen(ops.create_group("DisplayLevelsOperation"), levels_id, {
        "outputs": [{"outputIndex": "0", "inputIndex": "0",
                     "operation": f"/Presentation/Displays/ImageDisplay/{display_id}"}],
    })
    eds = ops.create_group("EDSInputOperation")
    eds_ids = []
    for i, sid in enumerate(stream_ids):
        oid = _uid(rng)
        eds_ids.append(oid)
        _vlen(eds, oid, {
            "dataPath": f"/Data/SpectrumStream/{sid}", "detector": "Summed",
            "outputs": [{"outputIndex": "0", "inputIndex": str(i),
                         "operation": f"/Operations/ImageQuantificationOperation/{quant_id}"}],
        })
    _vlen(ops.create_group("ImageQuantificationOperation"), quant_id, {
        "outputs": "",
        "colormixSelection": [{"name": "HAADF", "color": "#ffffff", "selected": "true",
                               "stem": "true"}],
        "elementSelection": ["6", "8", "26", "29"],
    })
    listing = [{"StemInputOperation": f"/Operations/StemInputOperation/{stem_id}"},
               {"DisplayLevelsOperation": f"/Operations/DisplayLevelsOperation/{levels_id}"},
               {"ImageQuantificationOperation":
                f"/Operations/ImageQuantificationOperation/{quant_id}"}]
    listing += [{"EDSInputOperation": f"/Operations/EDSInputOperation/{o}"} for o in eds_ids]
    _vlen(ops, "Operations", {"operations": listing})
    pres = f.create_group("Presentation")
    disp = pres.create_group("Displays").create_group("ImageDisplay")
    _vlen(disp, display_id, {
        "display": {"id": "HAADF", "label": "HAADF", "overlays": "", "priority": "0",
                    "closable": "false", "visible": "true"},
        "dataPath": f"/Data/Image/{image_id}", "seriesIndex": "0", "zoom": "1",
        "pan": {"x": "0", "y": "0"}, "angle": "0", "cropMode": "Off",
    })
    _vlen(pres, "DisplayIndex", {
        "displays": [{"ImageDisplay": f"/Presentation/Displays/ImageDisplay/{display_id}"}],
    })


def prune_velox_si(path: str | os.PathLike, cube: np.ndarray | None = None) -> np.ndarray:
    """Prune the Velox file ``path`` in place as Velox does: write its summed EDS
    spectrum image as the ``Data/SpectrumImage/<id>/Data`` blob and delete the event
    streams (``Data/SpectrumStream``). Returns the cube the blob holds.

    ``cube`` (uint16-range counts ``(y, x, E)``) is written instead of the file's own
    summed SI (decoded from its streams). The blob's header takes the energy calibration
    and voltage from the file's SI; see :mod:`napari_emd.formats.velox.blob`.
    """
    from .api import read_datasets
    from .formats.velox.blob import encode_blob

    path = os.fspath(path)
    si = next(d for d in read_datasets(path, select_type="spectrum_image")
              if d.signal_type == "EDS_TEM")
    if cube is None:
        cube = np.asarray(si.data)
    energy = si.axes[-1]
    voltage = (si.metadata.get("Acquisition_instrument", {}).get("TEM", {})
               .get("beam_energy", 200.0)) * 1000.0
    raw = encode_blob(cube, round(energy.offset * 1000.0, 9), round(energy.scale * 1000.0, 9),
                      voltage)
    with h5py.File(path, "r+") as f:
        group = next(g for g in f["Data/SpectrumImage"].values() if isinstance(g, h5py.Group))
        if "Data" in group:
            del group["Data"]
        group.create_dataset("Data", data=np.frombuffer(raw, np.uint8)[:, None],
                             chunks=(8192, 1), maxshape=(None, 1))
        del f["Data/SpectrumStream"]
    return np.asarray(cube)
