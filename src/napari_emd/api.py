"""The library entry points: format detection, ``read_datasets``, ``si_facts`` and the
RosettaSciIO-style ``file_reader`` / ``file_writer``. No napari import here."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import h5py

from .errors import EMDError
from .h5 import is_hdf5, open_h5
from .model import ARRAY, SPECTRUM_IMAGE, Dataset, SIContent, SIFacts, unique_titles
from .options import ReadOptions

READ_EXTENSIONS = (".emd", ".de5", ".h5", ".hdf5", ".hdf")


def _format_of(f: h5py.File) -> ModuleType | None:
    from .formats import FORMATS

    for fmt in FORMATS:
        try:
            if fmt.detect(f):
                return fmt
        except Exception:  # a detector must never crash on an odd file
            continue
    return None


def detect_format(filename: str | os.PathLike) -> str | None:
    """The format name (``"velox"``, ``"emd1"``, ``"prismatic"``, ``"ncem"``) of a file,
    or ``None`` when it is not an EMD file we read (including non-HDF5 files).

    Only attributes and group names are looked at. A file that looks like HDF5 but cannot
    be opened raises :class:`EMDError`.
    """
    path = os.fspath(filename)
    if not os.path.isfile(path) or not is_hdf5(path):
        return None
    with open_h5(path) as f:
        fmt = _format_of(f)
        return fmt.NAME if fmt is not None else None


def read_datasets(filename: str | os.PathLike, **kwargs: Any) -> list[Dataset]:
    """Read every dataset of an EMD file into :class:`Dataset` records.

    Takes the same keyword arguments as :func:`file_reader`. Raises :class:`EMDError` for a
    file that is not EMD or cannot be read, ``ValueError`` for invalid options.
    """
    opts = ReadOptions.from_kwargs(**kwargs)
    path = os.path.abspath(os.fspath(filename))
    with open_h5(path) as f:
        fmt = _format_of(f)
        if fmt is None:
            raise EMDError(path, "HDF5 file, but not in any EMD layout napari-emd reads "
                           "(Velox, NCEM EMD 0.2, prismatic, EMD 1.0, DE5)")
        try:
            datasets = fmt.read(path, f, opts)
        except (EMDError, ValueError, TypeError):
            raise
        except (OSError, KeyError, RuntimeError, IndexError) as err:
            raise EMDError(path, f"damaged or unexpected {fmt.NAME} file: {err}") from err
    for ds in datasets:
        ds.filename = path
        if ds.kind == SPECTRUM_IMAGE and ds.si is None:
            ds.si = SIContent(ARRAY)  # a cube stored as it is: nothing more is known
    unique_titles(datasets)
    return datasets


def file_reader(
    filename: str | os.PathLike,
    lazy: bool = False,
    dataset_path: str | list[str] | None = None,
    stack_group: bool | None = None,
    select_type: str | None = None,
    first_frame: int = 0,
    last_frame: int | None = None,
    sum_frames: bool = True,
    sum_EDS_detectors: bool = True,
    rebin_energy: int = 1,
    SI_dtype: Any = None,
    load_SI_image_stack: bool = False,
    align_frames: bool | Any = False,
    exclude_frames: Any = (),
    detectors: Any = None,
) -> list[dict[str, Any]]:
    """Read an EMD file into a list of dicts with ``data``, ``axes``, ``metadata`` and
    ``original_metadata``, one per dataset: the contract of ``rsciio.emd.file_reader``.

    Parameters
    ----------
    filename
        Path of a Velox, NCEM EMD 0.2, prismatic, EMD 1.0 (emdfile/py4DSTEM) or DE5 file.
    lazy
        Return dask arrays that read (and decode) only what is computed.
    dataset_path
        NCEM/EMD 1.0: HDF5 path(s) of the dataset(s) to read (all when ``None``).
    stack_group
        NCEM/prismatic: stack datasets of a group that differ only by a ``_depthNNNN``
        suffix into one dataset with a depth axis (default ``True``).
    select_type
        Velox: ``None`` (all), ``"image"``, ``"single_spectrum"`` or ``"spectrum_image"``.
    first_frame, last_frame
        Velox spectrum images: the frame range to read (``last_frame`` exclusive).
    sum_frames
        Velox spectrum images: sum the frames (else a frame axis is kept).
    sum_EDS_detectors
        Velox spectrum images: sum the EDS detectors (else one dataset per detector).
    rebin_energy
        Velox spectrum images: sum this many neighbouring channels (must divide the
        channel count). The energy offset moves to the centre of the first bin (the
        mean energy of the channels it sums); RosettaSciIO keeps the first channel's.
    SI_dtype
        Velox spectrum images: dtype of the spectrum image (default: the file's).
    load_SI_image_stack
        Velox: load every frame of the images acquired with a spectrum image.
    align_frames
        Velox spectrum images (napari-emd only): correct the frames' drift while
        decoding. ``True`` measures it on the SI's image stack
        (:func:`napari_emd.estimate_frame_shifts`); an ``(F, 2)`` array gives it, one
        ``(dy, dx)`` per frame ``first_frame..last_frame - 1`` (a feature at ``(y, x)`` of
        the first frame is at ``(y + dy, x + dx)`` in frame ``f``). Every frame's events
        are moved back by its shift rounded to whole pixels, onto the first frame's grid;
        events that land outside it are dropped. An "EDS frame coverage" image (and
        ``metadata['Signal']['Frame_alignment']['coverage']``) counts the frames that
        reached each pixel. With ``sum_frames=False`` each frame is moved; with
        ``load_SI_image_stack`` the SI's image stacks are moved the same way.
    exclude_frames
        Velox spectrum images (napari-emd only): frame numbers (the file's, like
        ``first_frame``) left out of the read, e.g. frames damaged by the beam.
    detectors
        Velox spectrum images (napari-emd only): the EDS detectors to decode, by name
        (as ``napari-emd info`` lists them, e.g. ``"SuperXG21"``) or by index in that
        list; ``None`` (default) decodes them all. Only the chosen detectors' streams are
        read: summed into one spectrum image with ``sum_EDS_detectors=True``, one per
        chosen detector otherwise. A name the file does not have raises ``ValueError``
        listing the file's detectors.
    """
    datasets = read_datasets(
        filename,
        lazy=lazy,
        dataset_path=dataset_path,
        stack_group=stack_group,
        select_type=select_type,
        first_frame=first_frame,
        last_frame=last_frame,
        sum_frames=sum_frames,
        sum_EDS_detectors=sum_EDS_detectors,
        rebin_energy=rebin_energy,
        SI_dtype=SI_dtype,
        load_SI_image_stack=load_SI_image_stack,
        align_frames=align_frames,
        exclude_frames=exclude_frames,
        detectors=detectors,
    )
    return [ds.to_dict() for ds in datasets]


def file_writer(
    filename: str | os.PathLike, signal: dict[str, Any], chunks: Any = None, **kwds: Any
) -> None:
    """Write ``signal`` (a dict with ``data``, ``axes``, ``metadata``) to an NCEM EMD 0.2
    file: the contract of ``rsciio.emd.file_writer``; see
    :func:`napari_emd.writer.file_writer` for the details and the ``progress`` callback."""
    from .writer import file_writer as write

    write(filename, signal, chunks=chunks, **kwds)


def si_facts(filename: str | os.PathLike) -> SIFacts:
    """What ``filename`` says about its spectrum image, without decoding it: grid, frames,
    detectors, channels and energy range, pixel size, elements, whether it can be read.

    Velox files are described from their metadata alone (no stream is read); other
    formats from a lazy read (metadata and dask graphs only). ``has_si`` is False for a
    file without a spectrum image. Raises :class:`EMDError` for a file that is not EMD.
    """
    path = os.path.abspath(os.fspath(filename))
    fmt = detect_format(path)
    if fmt is None:
        raise EMDError(path, "not an EMD file napari-emd reads (Velox, NCEM EMD 0.2, "
                             "prismatic, EMD 1.0, DE5)")
    if fmt == "velox":
        from .formats import velox

        return velox.si_facts(path)
    for ds in read_datasets(path, lazy=True):
        if ds.kind == SPECTRUM_IMAGE and ds.data.ndim >= 3:
            e, x = ds.axes[-1], ds.axes[-2]
            return SIFacts(
                path=path, format=fmt, has_si=True, readable=True, source="array",
                signal_type=ds.signal_type, ny=ds.shape[-3], nx=ds.shape[-2],
                n_frames=ds.shape[0] if ds.data.ndim >= 4 else 1, channels=ds.shape[-1],
                energy_offset=e.linear_offset, energy_scale=e.linear_scale,
                energy_units=e.units, pixel_size=x.linear_scale, pixel_units=x.units,
                dtype=str(ds.dtype),
                elements=tuple((ds.metadata.get("Sample") or {}).get("elements") or ()),
            )
    return SIFacts(path=path, format=fmt)


def display_pending(ds: Dataset) -> Any:
    """For a lazy spectrum image whose energy planes need an index not built yet (a big
    event stream, no index in this process or the disk cache): a callable
    ``build(progress=None, first=None)`` that builds it (``progress(done, total)``; stops
    with ``Cancelled`` under :func:`napari_emd.cancel.cancellation`), meant for a worker
    thread before the planes are shown. None when the planes are cheap already."""
    if ds.display is None or not hasattr(ds.display, "dask"):
        return None
    from .formats.velox.stream.planes import pending_build

    return pending_build(ds.display)
