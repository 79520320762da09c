"""The plan of an EDS spectrum image: which streams, detectors and channels, on which scan
grid and with how many frames, decided from the file's metadata before anything is
decoded (a stream's pixels are counted only when the file's grids disagree and the
stream is about to be read anyway, or the frame count is unknown)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from ...options import ReadOptions
from .blob import BlobLayout, read_layout
from .jsontree import get, json_dataset, metadata_column, to_float, warn
from .metadata import VeloxMetadata
from .siread import Blob, Frames, Grid, SIFile, SIRead, Streams
from .stream import count_pixels


@dataclass
class StreamInfo:
    """One detector's event stream, as its group describes it."""

    key: str
    path: str  # HDF5 path of the Data dataset
    detector: str
    bincount: int
    encoding: str
    frame_table: str | None
    n_frames_table: int | None
    length: int
    meta: dict[str, Any]
    settings: dict[str, Any]


@dataclass
class SIPlan:
    """What the file says about its EDS spectrum image, before any decoding: where the
    counts are (:meth:`source`), on which grid (:attr:`grid`), and the metadata, scan and
    candidate grids the planning looked at. A read of it is an :class:`SIRead`
    (:meth:`read`)."""

    meta: dict[str, Any] = field(default_factory=dict)  # SI frame-0 metadata
    streams: list[StreamInfo] = field(default_factory=list)
    ny: int = 0
    nx: int = 0
    n_frames: int = 0
    bincount: int = 0
    grid_source: str = ""
    pruned: bool = False
    reason: str = ""
    candidates: list[tuple[str, tuple[int, int]]] = field(default_factory=list)
    counted_pixels: int | None = None
    # whole streams read while planning (by dataset path), handed to the decoder
    preloaded: dict[str, np.ndarray] = field(default_factory=dict)
    # the scan (area, size, dwell time) of the SI: images of the same scan belong to it
    scan: tuple | None = None
    # a pruned file's SpectrumImage blob: its HDF5 path, its header (None when it cannot
    # be used) and why not
    blob: str | None = None
    blob_layout: BlobLayout | None = None
    blob_error: str = ""

    @property
    def from_blob(self) -> bool:
        """True when the SI is read from a pruned file's SpectrumImage blob."""
        return self.pruned and self.blob_layout is not None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(ny, nx, frames) of the scan."""
        return (self.ny, self.nx, self.n_frames)

    @property
    def grid(self) -> Grid:
        """The scan grid, frames (at least one) and channels."""
        return Grid(self.ny, self.nx, max(self.n_frames, 1) if self.from_blob
                    else self.n_frames, self.bincount)

    def source(self) -> Streams | Blob | None:
        """Where the counts are: the event streams, a pruned file's blob, or ``None``."""
        if self.from_blob:
            assert self.blob is not None and self.blob_layout is not None
            return Blob(self.blob, self.blob_layout)
        if not self.streams:
            return None
        dtype = self.streams[0].encoding
        try:
            np.dtype(dtype)
        except TypeError:
            dtype = "uint16"
        return Streams(
            paths=tuple(s.path for s in self.streams),
            detectors=tuple(s.detector for s in self.streams),
            frame_tables=tuple(s.frame_table for s in self.streams),
            dtype=dtype,
        )

    def file(self, path: str) -> SIFile:
        """The spectrum image of the file at ``path`` as the decoders take it."""
        source = self.source()
        if source is None:
            raise ValueError(f"{path}: no spectrum image to read ({self.reason})")
        return SIFile(path, source, self.grid)

    def read(self, path: str, opts: ReadOptions, frames: Frames | None = None) -> SIRead:
        """The :class:`SIRead` of ``opts`` on this spectrum image (every option checked,
        ``ValueError`` naming the file); ``frames``: already checked frames."""
        si = self.file(path)
        if isinstance(si.source, Blob) and frames is None:
            frames = Frames.every(0, self.grid.n_frames)
        return si.read(opts, frames)


def scan_key(meta: dict[str, Any]) -> tuple | None:
    """What identifies a scan: its area, size and dwell time (``None`` without them)."""
    scan = meta.get("Scan")
    if not isinstance(scan, dict):
        return None
    area = scan.get("ScanArea")
    size = scan.get("ScanSize")
    if not isinstance(area, dict) or not isinstance(size, dict):
        return None
    return (
        json.dumps(area, sort_keys=True),
        json.dumps(size, sort_keys=True),
        str(scan.get("DwellTime")),
    )


def scan_grid(meta: dict[str, Any]) -> tuple[int, int] | None:
    """(ny, nx) of a scan: ScanSize times the fractional ScanArea."""
    size = get(meta, "Scan", "ScanSize")
    area = get(meta, "Scan", "ScanArea")
    if not isinstance(size, dict):
        return None
    w, h = to_float(size.get("width")), to_float(size.get("height"))
    if not w or not h:
        return None
    if isinstance(area, dict):
        left, right = to_float(area.get("left"), 0.0), to_float(area.get("right"), 1.0)
        top, bottom = to_float(area.get("top"), 0.0), to_float(area.get("bottom"), 1.0)
        nx, ny = round(w * (right - left)), round(h * (bottom - top))
    else:
        nx, ny = round(w), round(h)
    if nx <= 0 or ny <= 0:
        return None
    return int(ny), int(nx)


PRUNED_REASON = (
    "the spectrum image has no usable spectrum stream (the file was 'pruned' in Velox or "
    "written by a converter)"
)


def plan_spectrum_image(
    md: VeloxMetadata, lazy: bool, count: bool | None = None
) -> SIPlan | None:
    """Grid, frames, detectors and channels of the EDS SI of the file ``md`` describes,
    without decoding; ``None`` when the file has no spectrum image.

    ``count``: count the stream's pixels (one pass over one stream) to check the grid.
    ``None`` decides: always when the file gives no frame count; when the grids the file
    describes disagree, only if the read is eager (it decodes the stream anyway, and keeps
    the counted stream for that). Lazy opening therefore never reads the stream.
    """
    path, data = md.path, md.f.get("Data")
    si_group = data.get("SpectrumImage")
    stream_group = data.get("SpectrumStream")
    plan = SIPlan()
    si_keys = list(si_group) if isinstance(si_group, h5py.Group) else []
    settings: dict[str, Any] = {}
    blob: Any = None
    for k in si_keys:
        g = si_group[k]
        if isinstance(g, h5py.Group):
            plan.meta = metadata_column(g.get("Metadata"), 0, f"Data/SpectrumImage/{k}")
            settings = json_dataset(g.get("SpectrumImageSettings"),
                                    f"Data/SpectrumImage/{k}/SpectrumImageSettings") or {}
            blob = g.get("Data")
            break
    for k in (list(stream_group) if isinstance(stream_group, h5py.Group) else []):
        st = stream_info(stream_group[k], k)
        if st is not None:
            plan.streams.append(st)
    if not plan.meta and plan.streams:
        plan.meta = plan.streams[0].meta
    grid_scan = scan_grid(plan.meta) if plan.meta else None
    if not si_keys and grid_scan is None:
        return None  # a spectrum acquisition's stream (no scan): not a spectrum image
    plan.scan = scan_key(plan.meta) if plan.meta else None
    frames_settings = settings_frames(settings)
    if not plan.streams:
        plan_pruned(plan, blob, grid_scan, frames_settings, path)
        return plan
    plan.streams.sort(key=lambda s: s.detector)
    bins = {s.bincount for s in plan.streams}
    plan.bincount = max(bins)
    if len(bins) > 1:
        warn(f"{path}: the spectrum streams have different channel counts "
             f"{sorted(bins)}; {plan.bincount} are used")
    cands = _grid_candidates(md, plan, grid_scan)
    plan.candidates = cands
    tables = [s.n_frames_table for s in plan.streams if s.n_frames_table]
    n_frames = max(tables) if tables else frames_settings
    if count is None:
        disagree = len({shape for _, shape in cands}) > 1
        # The SI's own scan area is trusted without reading the stream (the decoder
        # checks the stream against it when it decodes). Only when the frame count is
        # unknown, or the scan area is lost and the other descriptions disagree, is the
        # stream counted: lazily and eagerly alike, so both give the same grid.
        count = n_frames is None or (disagree and grid_scan is None)
    if count or not cands:
        longest = max(plan.streams, key=lambda s: s.length)
        # an eager read keeps the counted stream for the decoder: one pass, not two
        plan.counted_pixels, values = count_pixels(md.f[longest.path], keep=not lazy)
        if values is not None:
            plan.preloaded = {longest.path: values}
    chosen = _choose_grid(cands, plan.counted_pixels, n_frames)
    if chosen is None:
        if not cands:
            plan.pruned = True
            plan.reason = "the file does not say on which scan grid the SI was taken"
            return plan
        chosen = cands[0]
        warn(f"{path}: the spectrum stream holds {plan.counted_pixels} pixels, which fits "
             f"no scan grid the file describes ({sorted({s for _, s in cands})}); "
             f"{chosen[1]} ({chosen[0]}) is used")
    plan.grid_source, (plan.ny, plan.nx) = chosen
    if n_frames is None:
        per = plan.ny * plan.nx
        n_frames = max(1, math.ceil((plan.counted_pixels or per) / per))
    plan.n_frames = int(n_frames)
    return plan


def settings_frames(settings: Any) -> int | None:
    """The frame count ``SpectrumImageSettings`` gives (``None`` when it gives none)."""
    end = to_float(settings.get("endFramePosition")) if isinstance(settings, dict) else None
    if not end:
        return None
    start = to_float(settings.get("startFramePosition"), 1.0) or 1.0
    return int(end - start + 1) if end >= start else int(end)


BLOB_GRID_SOURCE = "SpectrumImage blob header"


def plan_pruned(
    plan: SIPlan, blob: Any, grid_scan: tuple[int, int] | None, frames: int | None,
    path: str,
) -> None:
    """Plan a file without usable streams from its SpectrumImage blob: grid and channels
    from the blob's header (the only part read), frames from ``SpectrumImageSettings``
    (``0`` when unknown). Without a usable blob, ``reason`` says why there is no SI."""
    plan.pruned = True
    plan.n_frames = frames or 0
    if not isinstance(blob, h5py.Dataset):
        plan.reason = f"{PRUNED_REASON}, and it has no SpectrumImage blob either"
        return
    plan.blob = blob.name
    try:
        lay = read_layout(blob)
    except (ValueError, OSError) as err:
        plan.blob_error = str(err)
        plan.reason = f"{PRUNED_REASON}, and its SpectrumImage blob cannot be used: {err}"
        return
    plan.blob_layout = lay
    plan.ny, plan.nx, plan.bincount = lay.height, lay.width, lay.channels
    plan.grid_source = BLOB_GRID_SOURCE
    if grid_scan is not None and grid_scan != (lay.height, lay.width):
        warn(f"{path}: the SpectrumImage blob's header gives a {lay.height} x {lay.width} "
             f"grid, the SI's scan metadata {grid_scan[0]} x {grid_scan[1]}; the blob's "
             "is used (its records are laid out on it)")
    n = f"all {frames} frames" if frames else "all frames"
    plan.reason = (
        "the event streams were pruned: only Velox's spectrum image summed over "
        f"{n} and all EDS detectors is stored, so the frame options (first_frame, "
        "last_frame, sum_frames) and the detector option (sum_EDS_detectors) do not "
        "apply; rebin_energy, SI_dtype and lazy do")


def _grid_candidates(
    md: VeloxMetadata, plan: SIPlan, grid_scan: tuple[int, int] | None
) -> list[tuple[str, tuple[int, int]]]:
    """The scan grids the file describes, most trusted first, with where each is from."""
    data = md.f["Data"]
    cands: list[tuple[str, tuple[int, int]]] = []
    if grid_scan:
        cands.append(("scan area of the spectrum image", grid_scan))
    if plan.scan is not None:
        for shape in _image_shapes(md, plan.scan):
            cands.append(("image acquired with the spectrum image", shape))
    eels = data.get("EelsSpectrumImage")
    if isinstance(eels, h5py.Group):
        for k in eels:
            info = json_dataset(eels[k].get("Info"), f"Data/EelsSpectrumImage/{k}/Info")
            w, h = to_float(get(info, "width")), to_float(get(info, "height"))
            if w and h:
                cands.append(("EELS spectrum image", (int(h), int(w))))
    raster = get(plan.streams[0].settings, "RasterScanDefinition")
    w, h = to_float(get(raster, "Width")), to_float(get(raster, "Height"))
    if w and h:
        cands.append(("RasterScanDefinition", (int(h), int(w))))
    # last resort (when the SI's metadata is lost): any image's grid, if the stream fits
    for shape in _image_shapes(md, None):
        cands.append(("image in the file", shape))
    return cands


def _choose_grid(
    cands: list[tuple[str, tuple[int, int]]], npix: int | None, n_frames: int | None
) -> tuple[str, tuple[int, int]] | None:
    """The most trusted grid the stream's pixel count fits: whole frames first, then a
    partial last frame (an interrupted acquisition). Velox 4 streams may end with the
    unclosed first pixel of one more frame."""

    def fits(shape: tuple[int, int], exact: bool) -> bool:
        per = shape[0] * shape[1]
        if npix is None or per <= 0:
            return True
        if n_frames:
            if exact:
                return npix in (per * n_frames, per * n_frames + 1)
            return per * (n_frames - 1) < npix <= per * n_frames + 1
        return npix % per in (0, 1) if exact else npix >= per

    return next(((src, s) for src, s in cands if fits(s, True)), None) or next(
        ((src, s) for src, s in cands if fits(s, False)), None)


def _image_shapes(md: VeloxMetadata, scan: tuple | None) -> list[tuple[int, int]]:
    """(ny, nx) of the file's images: of every image (``scan`` None), or of those taken
    with that scan."""
    group = md.f["Data"].get("Image")
    shapes: list[tuple[int, int]] = []
    if not isinstance(group, h5py.Group):
        return shapes
    for key in group:
        g = group[key]
        d = g.get("Data") if isinstance(g, h5py.Group) else None
        if not isinstance(d, h5py.Dataset) or d.ndim not in (2, 3):
            continue
        if scan is not None and scan_key(md.image_meta(g, f"Data/Image/{key}")) != scan:
            continue
        shp = (int(d.shape[0]), int(d.shape[1]))
        if shp not in shapes:
            shapes.append(shp)
    return shapes


def stream_info(g: Any, key: str) -> StreamInfo | None:
    """What the group ``Data/SpectrumStream/<key>`` says about its stream (``None``, with
    a warning, when the stream cannot be used)."""
    where = f"Data/SpectrumStream/{key}"
    if not isinstance(g, h5py.Group) or not isinstance(g.get("Data"), h5py.Dataset):
        warn(f"{where}: has no event Data; this detector is left out")
        return None
    settings = json_dataset(g.get("AcquisitionSettings"), f"{where}/AcquisitionSettings")
    if not isinstance(settings, dict):
        settings = {}
    meta = metadata_column(g.get("Metadata"), 0, where)
    bincount = int(to_float(settings.get("bincount"), 0) or 0)
    if bincount <= 0:
        warn(f"{where}: AcquisitionSettings gives no channel count; this detector is "
             "left out")
        return None
    detector = str(get(meta, "BinaryResult", "Detector") or key)
    table = g.get("FrameLocationTable")
    n_table = None
    table_path = None
    if isinstance(table, h5py.Dataset) and table.size:
        table_path = table.name
        n_table = int(table.size)
    dset = g["Data"]
    return StreamInfo(
        key=key,
        path=dset.name,
        detector=detector,
        bincount=bincount,
        encoding=str(settings.get("StreamEncoding") or settings.get("encoding") or "uint16"),
        frame_table=table_path,
        n_frames_table=n_table,
        length=int(dset.size),
        meta=meta,
        settings=settings,
    )
