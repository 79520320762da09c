"""Reading a Velox file's datasets: images and image stacks (complex FFT and DPC
products too), single EDS spectra, the EDS spectrum image (decoded from the event streams
by :mod:`.stream`) and EELS spectrum images.

Every dataset gets HyperSpy-style ``metadata`` and the file's JSON as
``original_metadata``. Damaged JSON or missing groups give an :class:`EMDWarning` (the
dataset is read with what is left) or an :class:`EMDError`, never a crash.
"""

from __future__ import annotations

import functools
from typing import Any

import h5py
import numpy as np

from ...errors import EMDError
from ...h5 import lazy_dataset, open_h5
from ...model import (
    IMAGE,
    IMAGE_STACK,
    SPECTRUM,
    SPECTRUM_IMAGE,
    STREAMS,
    Axis,
    Dataset,
    SIContent,
)
from ...options import ReadOptions
from .calibration import (
    detector_dict,
    energy_calibration,
    indexed_detector,
    spatial_calibration,
    time_axis,
    yx_axes,
)
from .grid import SIPlan, plan_spectrum_image
from .jsontree import frame_metadata_columns, get, json_dataset, metadata_column, to_float, warn
from .metadata import VeloxMetadata
from .pruned import pruned_si_dataset
from .siread import Frames
from .sistack import aligned_stack, is_si_image, resolve_frames
from .stream import read_spectrum_images

# Stacks with more frames than this keep only frame 0's metadata when read lazily.
LAZY_FRAME_METADATA_LIMIT = 64


def _compound_to_complex(block: np.ndarray, real: str, imag: str, dtype: str) -> np.ndarray:
    out = np.empty(block.shape, dtype=dtype)
    out.real = block[real]
    out.imag = block[imag]
    return out


def _complex_fields(dtype: np.dtype) -> tuple[str, str, str] | None:
    """(real field, imaginary field, complex dtype) of a Velox FFT/DPC compound dtype."""
    names = dtype.names
    if not names or len(names) != 2:
        return None
    r, i = names
    if not (r.lower().startswith("real") and i.lower().startswith("imag")):
        return None
    itemsize = max(dtype.fields[r][0].itemsize, dtype.fields[i][0].itemsize)
    return r, i, ("complex64" if itemsize <= 4 else "complex128")


class VeloxReader:
    """One read of a Velox file with the given options."""

    def __init__(self, path: str, f: h5py.File, opts: ReadOptions) -> None:
        self.path = path
        self.f = f
        self.opts = opts
        self.md = VeloxMetadata(path, f)
        self.plan: SIPlan | None = None
        self.datasets: list[Dataset] = []
        # align_frames / exclude_frames, resolved against the SI before anything is read
        self.frames: Frames | None = None

    def _each_readable(self, kind: str, read_one: Any) -> list[Any]:
        """``read_one(group, key, where)`` for every member of ``Data/<kind>``, in file
        order: the results that are not None. A member that cannot be read is skipped
        with a warning naming it, so one damaged dataset never hides the others."""
        from ...errors import InvalidOption

        group = self.md.data.get(kind)
        if not isinstance(group, h5py.Group):
            return []
        found = []
        for key in group:
            where = f"Data/{kind}/{key}"
            try:
                item = read_one(group[key], key, where)
            except InvalidOption:
                raise  # the caller's option, not a damaged dataset
            except (OSError, KeyError, IndexError, TypeError, ValueError) as err:
                warn(f"{self.path}: {where}: cannot be read ({err}); it is skipped")
                continue
            if item is not None:
                found.append(item)
        return found

    def _read_images(self) -> None:
        self.datasets.extend(self._each_readable("Image", self._read_image))

    def _is_si_image(self, meta: dict[str, Any], shape: tuple[int, int, int]) -> bool:
        return is_si_image(self.plan, meta, shape)

    def _read_image(self, g: Any, key: str, where: str) -> Dataset | None:
        if not isinstance(g, h5py.Group) or not isinstance(g.get("Data"), h5py.Dataset):
            warn(f"{where}: has no Data array; it is skipped")
            return None
        dset = g["Data"]
        if dset.ndim == 2:
            ny, nx, nf = *dset.shape, 1
        elif dset.ndim == 3:
            ny, nx, nf = dset.shape
        else:
            warn(f"{self.path}: {where}: unexpected image shape {dset.shape}; it is skipped")
            return None
        if 0 in (ny, nx, nf):  # an aborted acquisition: a record with nothing to show
            warn(f"{self.path}: {where}: the image holds no data (stored shape "
                 f"{dset.shape}); it is skipped")
            return None
        meta = self.md.image_meta(g, where)
        is_si = self._is_si_image(meta, (ny, nx, nf))
        keep = nf if (not is_si or self.opts.load_SI_image_stack) else 1
        fplan = self._stack_frames(dset) if is_si and keep > 1 else None
        frames_md: Any = None
        if nf > 1 and keep > 1:
            if self.opts.lazy and nf > LAZY_FRAME_METADATA_LIMIT:
                frames_md = _frames_note(nf, dset.name)
            else:
                frames_md = frame_metadata_columns(g.get("Metadata"), where)
                if fplan is not None and frames_md:
                    frames_md = [frames_md[f] for f in fplan.frames]
        if fplan is not None:  # the SI's frames, aligned like it
            data = aligned_stack(self.path, dset, fplan, self.opts.lazy)
            keep = len(fplan.frames)
        else:
            data = self._image_data(dset, keep)
        title = self.md.image_title(key, meta)
        br = meta.get("BinaryResult") if isinstance(meta.get("BinaryResult"), dict) else {}
        cal = spatial_calibration(br, (ny, nx), where, meta)
        if cal is None and is_si:
            cal = spatial_calibration(self._si_meta.get("BinaryResult") or {}, (ny, nx), where,
                                      self._si_meta)
        axes = yx_axes(cal, ny, nx, navigate=False)
        if keep > 1:
            ft = to_float(get(meta, "Scan", "FrameTime"))
            if ft is None:
                det = indexed_detector(meta) or detector_dict(meta, br.get("Detector"))
                ft = to_float(det.get("ExposureTime")) if det else None
            axes.insert(0, time_axis(ft, keep) if fplan is None else _frame_axis(ft, fplan))
        det = indexed_detector(meta)
        om = self.md.original(
            meta,
            fresh={"Frames": frames_md},
            DetectorMetadata=det,
            Display=self.md.display_info.get(key),
        )
        md = self.md.metadata(meta, "", elements=self.md.elements_eds)
        if fplan is not None:
            md.setdefault("Signal", {})["Frame_alignment"] = self._frames_md()
        return Dataset(
            title=title,
            data=data,
            axes=axes,
            kind=IMAGE_STACK if keep > 1 else IMAGE,
            signal_type="",
            path=dset.name,
            metadata=md,
            original_metadata=om,
        )

    def _stack_frames(self, dset: h5py.Dataset) -> Frames | None:
        """The SI's frame plan for one of its image stacks when the read aligns or leaves
        out frames (``None``: the stack is returned as stored)."""
        plan = self.plan
        if self.frames is None or plan is None or dset.dtype.names:
            return None
        fplan = self.frames
        if dset.shape[2] <= fplan.frames[-1] or dset.shape[:2] != (plan.ny, plan.nx):
            warn(f"{dset.name}: the image stack ({dset.shape[2]} frames of "
                 f"{dset.shape[0]} x {dset.shape[1]}) does not hold the spectrum image's "
                 "frames on its grid; it is returned as stored, not aligned")
            return None
        return fplan

    def _image_data(self, dset: h5py.Dataset, keep: int) -> Any:
        """(frame, y, x) of the first ``keep`` frames, or (y, x) when keep == 1."""
        cplx = _complex_fields(dset.dtype)
        if dset.ndim == 2:
            if self.opts.lazy:
                arr = lazy_dataset(self.path, dset, chunks=dset.shape)
                if cplx:
                    arr = arr.map_blocks(
                        functools.partial(_compound_to_complex, real=cplx[0], imag=cplx[1],
                                          dtype=cplx[2]), dtype=cplx[2])
                return arr
            raw = dset[()]
            return _compound_to_complex(raw, *cplx) if cplx else raw
        ny, nx, _ = dset.shape
        if self.opts.lazy:
            import dask.array as da

            arr = lazy_dataset(self.path, dset, chunks=(ny, nx, 1))
            if cplx:
                arr = arr.map_blocks(
                    functools.partial(_compound_to_complex, real=cplx[0], imag=cplx[1],
                                      dtype=cplx[2]),
                    dtype=np.dtype(cplx[2]),
                    meta=np.empty((0, 0, 0), dtype=cplx[2]),
                )
            arr = da.transpose(arr[:, :, :keep], (2, 0, 1))
            return arr[0] if keep == 1 else arr
        out_dtype = np.dtype(cplx[2]) if cplx else dset.dtype
        out = np.empty((keep, ny, nx), dtype=out_dtype)
        for i in range(keep):  # frame by frame: one chunk each, no element-wise scatter
            frame = dset[:, :, i]
            out[i] = _compound_to_complex(frame, *cplx) if cplx else frame
        return out[0] if keep == 1 else out

    # -- single spectra ------------------------------------------------------------------

    def _read_spectra(self, has_si: bool) -> None:
        found: list[Dataset] = self._each_readable(
            "Spectrum", lambda g, _key, where: self._read_spectrum(g, where)
        )
        several = len(found) > 1 or has_si
        for ds in found:
            det = ds.detector
            if several:
                ds.title = f"EDS spectrum - {det}" if det else "EDS spectrum"
        found.sort(key=lambda d: d.title)
        self.datasets.extend(found)

    def _read_spectrum(self, g: Any, where: str) -> Dataset | None:
        if not isinstance(g, h5py.Group) or not isinstance(g.get("Data"), h5py.Dataset):
            warn(f"{where}: has no Data array; it is skipped")
            return None
        dset = g["Data"]
        if dset.size == 0:  # an aborted acquisition: nothing to show
            warn(f"{self.path}: {where}: the spectrum holds no data (stored shape "
                 f"{dset.shape}); it is skipped")
            return None
        meta = metadata_column(g.get("Metadata"), 0, where)
        data = lazy_dataset(self.path, dset, chunks=dset.shape) if self.opts.lazy else dset[()]
        if data.ndim == 2:
            data = data[:, 0] if data.shape[1] == 1 else data.T
        detector = get(meta, "BinaryResult", "Detector")
        cal = energy_calibration(meta, detector)
        if cal is None:
            warn(f"{where}: no energy calibration for detector {detector!r}; channels "
                  "are used")
            energy = Axis("Energy", data.shape[-1])
        else:
            energy = Axis("Energy", data.shape[-1], cal[0], cal[1], "keV")
        axes = [energy]
        if data.ndim == 2:
            axes.insert(0, Axis("Stack", data.shape[0], navigate=True))
        det = detector_dict(meta, detector)
        ds = Dataset(
            title="EDS",
            data=data,
            axes=axes,
            kind=SPECTRUM,
            signal_type="EDS_TEM",
            path=dset.name,
            metadata=self.md.metadata(meta, "EDS_TEM", det, self.md.elements_eds),
            original_metadata=self.md.original(meta, DetectorMetadata=det),
            detector=str(detector) if detector else None,
        )
        return ds

    # -- EDS spectrum image: the plan ----------------------------------------------------

    @property
    def _si_meta(self) -> dict[str, Any]:
        return self.plan.meta if self.plan is not None else {}

    def _read_eds_si(self, plan: SIPlan) -> None:
        if plan.pruned:
            self._read_pruned_si(plan)
            return
        if 0 in (plan.ny, plan.nx):
            warn(f"{self.path}: the EDS spectrum image has an empty scan grid "
                 f"({plan.ny} x {plan.nx}); it is skipped")
            return
        # every option is checked here, once (ValueError naming the file)
        spec = plan.read(self.path, self.opts, self.frames)
        fplan = spec.frames
        first, last = fplan.first, fplan.last
        try:
            results = read_spectrum_images(spec, plan.preloaded)
        except (EMDError, OSError, KeyError, IndexError) as err:
            warn(f"{self.path}: the EDS spectrum image cannot be decoded ({err}); it is "
                  "skipped, everything else is read")
            return
        meta = plan.meta
        cal = spatial_calibration(meta.get("BinaryResult") or {}, (plan.ny, plan.nx),
                                  "spectrum image", meta)
        yx = yx_axes(cal, plan.ny, plan.nx, navigate=True)
        rebin = self.opts.rebin_energy
        by_det = {s.detector: s for s in plan.streams}
        frame_time = to_float(get(meta, "Scan", "FrameTime"))
        summed = self.opts.sum_EDS_detectors
        every = len(spec.groups[0]) == len(plan.streams) if summed else False
        for res in results:
            one = None if summed else res.detectors[0]
            stream = by_det.get(one) if one else by_det.get(res.detectors[0])
            smeta = stream.meta if stream is not None and stream.meta else meta
            det_name = one or (get(meta, "BinaryResult", "Detector") if every else None) or (
                stream.detector if stream else None)
            ecal = energy_calibration(smeta, stream.detector if stream else None) or \
                energy_calibration(meta, det_name)
            nE = plan.bincount // rebin
            if ecal is None:
                warn(f"{self.path}: no energy calibration for the spectrum image; "
                      "channels are used")
                energy = Axis("Energy", nE, float(rebin), (rebin - 1) / 2)
            else:
                disp, off = ecal
                # a summed bin's energy is the mean of its channels' energies
                energy = Axis("Energy", nE, disp * rebin, off + disp * (rebin - 1) / 2, "keV")
            axes = [Axis(a.name, a.size, a.scale, a.offset, a.units, True, None, a.raw_units)
                    for a in yx]
            if not self.opts.sum_frames:
                axes.insert(0, _frame_axis(frame_time, fplan))
            axes.append(energy)
            display_axes = None
            if res.display is not None:
                display_axes = [*axes[:-3], axes[-1], axes[-3], axes[-2]]
            det_dict = detector_dict(smeta, one) if one else \
                detector_dict(smeta, stream.detector if stream else None)
            frames_md: Any = None
            if stream is not None and self.opts.lazy and \
                    plan.n_frames > LAZY_FRAME_METADATA_LIMIT:
                frames_md = _frames_note(plan.n_frames, stream.path)
            elif stream is not None:
                g = self.f.get(stream.path.rsplit("/", 1)[0])
                if g is not None and isinstance(g.get("Metadata"), h5py.Dataset) and \
                        g["Metadata"].ndim == 2 and g["Metadata"].shape[1] > 1:
                    # the frames this SI holds (a frame range reads only those)
                    frames_md = frame_metadata_columns(g["Metadata"], stream.path, first, last)
            om = self.md.original(
                smeta,
                AcquisitionSettings=stream.settings if stream else None,
                DetectorMetadata=det_dict,
                fresh={"Frames": frames_md, "ImportedDataParameter": {
                    "First_frame": first,
                    "Last_frame": last,
                    "Number_of_frames": plan.n_frames,
                    "Rebin_energy": rebin,
                    "Number_of_channels": plan.bincount,
                    "Scan_grid": [plan.ny, plan.nx],
                    "Scan_grid_source": plan.grid_source,
                    "Detectors": list(res.detectors),
                    **(fplan.parameters() if self.frames else {}),
                }},
            )
            md = self.md.metadata(smeta, "EDS_TEM", det_dict, self.md.elements_eds)
            eds_md = md.setdefault("Acquisition_instrument", {}).setdefault("TEM", {}) \
                .setdefault("Detector", {}).setdefault("EDS", {})
            eds_md["number_of_frames"] = len(fplan.frames)
            if self.frames is not None:
                md.setdefault("Signal", {})["Frame_alignment"] = self._frames_md()
            ds = Dataset(
                title=_si_title(res.detectors, summed, every)
                + (fplan.title_note() if self.frames is not None else ""),
                data=res.data,
                axes=axes,
                kind=SPECTRUM_IMAGE,
                signal_type="EDS_TEM",
                path=by_det[res.detectors[0]].path,
                metadata=md,
                original_metadata=om,
                display=res.display,
                display_axes=display_axes,
                pixel_reader=res.pixel,
                si=SIContent(STREAMS, res.detectors, fplan.frames, fplan.excluded,
                             fplan.align, fplan.shifts, self.opts.sum_frames),
            )
            self.datasets.append(ds)
        if self.frames is not None and self.frames.align and self.opts.select_type is None:
            self._add_coverage(yx, meta)

    # -- frame alignment and exclusion ---------------------------------------------------

    def _frames_md(self) -> dict[str, Any]:
        plan, frames = self.plan, self.frames
        assert plan is not None and frames is not None
        return frames.metadata(plan.ny, plan.nx)

    def _add_coverage(self, yx: list[Axis], meta: dict[str, Any]) -> None:
        """The "EDS frame coverage" image: how many frames contributed to each pixel of
        the aligned SI (divide by it to normalise the edges drifted frames missed)."""
        plan, frames = self.plan, self.frames
        assert plan is not None and frames is not None
        md = self.md.metadata(meta, "", elements=self.md.elements_eds)
        md.setdefault("Signal", {})["Frame_alignment"] = self._frames_md()
        self.datasets.append(Dataset(
            title="EDS frame coverage",
            data=frames.coverage(plan.ny, plan.nx),
            axes=[Axis(a.name, a.size, a.scale, a.offset, a.units, False, None, a.raw_units)
                  for a in yx],
            kind=IMAGE,
            signal_type="",
            path=plan.streams[0].path,
            metadata=md,
            original_metadata={"ImportedDataParameter": frames.parameters()},
        ))

    def _read_pruned_si(self, plan: SIPlan) -> None:
        """A pruned file's SI, from its SpectrumImage blob (:mod:`.pruned`)."""
        ds = pruned_si_dataset(self.path, self.md, plan, self.opts)
        if ds is not None:
            self.datasets.append(ds)

    # -- EELS spectrum images ------------------------------------------------------------

    def _read_eels(self) -> None:
        found: list[tuple[float, Dataset]] = self._each_readable(
            "EelsSpectrumImage", lambda g, _key, where: self._read_eels_one(g, where)
        )
        found.sort(key=lambda t: t[0])
        several = len(found) > 1
        for start, ds in found:
            if several:
                end = ds.axes[-1].offset + ds.axes[-1].scale * (ds.axes[-1].size - 1)
                ds.title = f"EELS {start:.4g} to {end:.4g} eV"
            self.datasets.append(ds)

    def _read_eels_one(self, g: Any, where: str) -> tuple[float, Dataset] | None:
        if not isinstance(g, h5py.Group) or not isinstance(g.get("Data"), h5py.Dataset):
            warn(f"{where}: has no Data array; it is skipped")
            return None
        dset = g["Data"]
        if dset.ndim != 3:
            warn(f"{where}: unexpected EELS cube shape {dset.shape}; it is skipped")
            return None
        nx, ne, ny = dset.shape  # stored (x, E, y)
        if 0 in (nx, ne, ny):
            warn(f"{self.path}: {where}: the EELS spectrum image holds no data (stored "
                 f"shape {dset.shape}); it is skipped")
            return None
        if self.opts.lazy:
            import dask.array as da

            data = da.transpose(lazy_dataset(self.path, dset, chunks=(nx, ne, 1)), (2, 0, 1))
        else:
            data = np.empty((ny, nx, ne), dtype=dset.dtype)
            for j in range(ny):  # one chunk per scan row
                data[j] = dset[:, :, j]
        meta = metadata_column(g.get("Metadata"), 0, where)
        acq = metadata_column(g.get("AcquisitionMetadata"), 0, f"{where}/AcquisitionMetadata")
        disp = to_float(get(acq, "Data", "dispersion"))
        off = to_float(get(acq, "Data", "offset"), 0.0) or 0.0
        if disp is None or disp <= 0:
            warn(f"{where}: no energy calibration in AcquisitionMetadata; channels are used")
            energy = Axis("Energy loss", ne)
        else:
            energy = Axis("Energy loss", ne, disp, off, "eV")
        br = meta.get("BinaryResult") if isinstance(meta.get("BinaryResult"), dict) else {}
        cal = spatial_calibration(br, (ny, nx), where, meta)
        if cal is None:
            cal = spatial_calibration(self._si_meta.get("BinaryResult") or {}, (ny, nx), where,
                                      self._si_meta)
        axes = [*yx_axes(cal, ny, nx, navigate=True), energy]
        md = self.md.metadata(meta or self._si_meta, "EELS", elements=self.md.elements_eels)
        info = json_dataset(g.get("Info"), f"{where}/Info")
        om = self.md.original(meta, AcquisitionMetadata=acq or None, Info=info)
        ds = Dataset(
            title="EELS",
            data=data,
            axes=axes,
            kind=SPECTRUM_IMAGE,
            signal_type="EELS",
            path=dset.name,
            metadata=md,
            original_metadata=om,
        )
        return off, ds

    # -- everything ----------------------------------------------------------------------

    def read(self) -> list[Dataset]:
        st = self.opts.select_type
        want_images = st in (None, "image")
        want_spectra = st in (None, "single_spectrum")
        want_si = st in (None, "spectrum_image")
        # the SI plan tells which images belong to the SI (first frame by default)
        try:
            # counting the stream's pixels only matters when the SI is read
            self.plan = plan_spectrum_image(self.md, self.opts.lazy,
                                            count=None if want_si else False)
        except (OSError, KeyError, IndexError, TypeError) as err:
            warn(f"{self.path}: the spectrum image cannot be described ({err}); it is "
                 "skipped")
        plan = self.plan
        if self.opts.frame_hygiene and (want_si or (want_images and
                                                    self.opts.load_SI_image_stack)):
            # checked (ValueError) and shifts measured before anything is decoded
            self.opts, self.frames = resolve_frames(self.md, plan, self.opts)
        if want_images:
            self._read_images()
        if want_spectra:
            self._read_spectra(has_si=plan is not None and (not plan.pruned or plan.from_blob))
        if want_si:
            self._read_eels()
            if plan is not None:
                self._read_eds_si(plan)
        if st is not None and not self.datasets:
            warn(f"{self.path}: select_type={st!r} matches nothing in this file")
        return self.datasets


def read(path: str, f: h5py.File, opts: ReadOptions) -> list[Dataset]:
    """All datasets of a Velox file (images, spectra, EDS and EELS spectrum images)."""
    return VeloxReader(path, f, opts).read()


def _si_title(detectors: tuple[str, ...], summed: bool, every: bool) -> str:
    """``EDS`` (every detector summed), ``EDS - SuperXG21`` (one detector) or
    ``EDS - SuperXG21 + SuperXG22`` (a sum of some): for people, nothing parses it."""
    if summed and every:
        return "EDS"
    return f"EDS - {' + '.join(detectors)}"


def _frame_axis(frame_time: float | None, fplan: Frames) -> Axis:
    """The time axis of the frames of ``fplan``: uniform from the first frame read, or
    the times of the frames read when some are left out."""
    axis = time_axis(frame_time, fplan.last - fplan.first, fplan.first)
    if len(fplan.frames) == fplan.last - fplan.first:
        return axis
    step = axis.scale
    times = np.asarray(fplan.frames, np.float64) * step
    return Axis(axis.name, len(fplan.frames), step, float(times[0]), axis.units, True,
                times)


def _frames_note(n: int, data_path: str) -> str:
    return (f"{n} frames' metadata not read (lazy); get frame i with "
            f"napari_emd.formats.velox.frame_metadata(path, {data_path!r}, i)")


def frame_metadata(path: str, data_path: str, index: int) -> dict[str, Any]:
    """The metadata JSON of frame ``index`` of a Velox image stack or spectrum stream.

    ``data_path`` is the HDF5 path of the ``Data`` array (``Dataset.path``); its sibling
    ``Metadata`` holds one JSON text per frame. Lazy readers of long stacks leave the
    per-frame metadata out of ``original_metadata``; this reads one frame's on demand.
    """
    with open_h5(path) as f:
        parent = str(data_path).rstrip("/").rsplit("/", 1)[0]
        ds = f.get(f"{parent}/Metadata")
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 2:
            raise EMDError(path, f"{parent} has no per-frame Metadata")
        if not 0 <= index < ds.shape[1]:
            raise ValueError(f"frame {index} is outside the {ds.shape[1]} frame(s) of {parent}")
        return metadata_column(ds, index, f"{parent}/Metadata")
