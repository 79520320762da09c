"""The one data model every format reader produces.

Format readers (``napari_emd.formats.*``) turn a file into a list of :class:`Dataset`
records. Everything else is a view of those records: :func:`napari_emd.file_reader`
turns them into RosettaSciIO-style dicts, the napari glue turns them into layer tuples,
the ``info`` command prints them. Keeping one record type means a format is added once
and shows up everywhere.

Axes are listed in numpy order (``axes[i]`` describes ``data.shape[i]``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

import numpy as np

#: What a dataset is; it decides how a record becomes a napari layer.
DatasetKind = Literal["image", "image_stack", "spectrum", "spectrum_image", "signal", "table"]
IMAGE: Final = "image"  # (y, x)
IMAGE_STACK: Final = "image_stack"  # (frame, y, x) or any leading navigation axes + (y, x)
SPECTRUM: Final = "spectrum"  # (E,) or (detector/frame..., E): no spatial axes, not an image
SPECTRUM_IMAGE: Final = "spectrum_image"  # (..., y, x, E): signal axis last, as RosettaSciIO
SIGNAL: Final = "signal"  # any other n-D array (volumes, 4D-STEM, simulations)
TABLE: Final = "table"  # object/string data: kept as metadata only

KINDS: tuple[DatasetKind, ...] = get_args(DatasetKind)

#: Where a spectrum image's counts come from: a Velox file's per-detector event streams,
#: the summed cube a pruned Velox file keeps, or an array stored as it is (other formats).
SISource = Literal["event streams", "pruned cube", "array"]
STREAMS: Final = "event streams"
PRUNED_CUBE: Final = "pruned cube"
ARRAY: Final = "array"


@dataclass(frozen=True)
class SIContent:
    """What one spectrum-image dataset holds, as typed fields (never parsed from its
    title): which detectors' counts it sums, which of the file's frames, how they were
    moved, and where the counts come from.

    ``detectors`` names every detector whose X-rays are counted (one for a
    per-detector SI, several for a sum; empty when the file does not say). ``frames`` are
    the file's frame numbers (0-based) read, ``excluded_frames`` those of the range left
    out, ``shifts`` the whole-pixel ``(dy, dx)`` each read frame was moved by (empty: none
    moved); ``frames_summed`` tells whether the frames are summed or kept on a frame axis.
    """

    source: SISource
    detectors: tuple[str, ...] = ()
    frames: tuple[int, ...] = ()
    excluded_frames: tuple[int, ...] = ()
    aligned: bool = False
    shifts: tuple[tuple[int, int], ...] = ()
    frames_summed: bool = True

    @property
    def detector(self) -> str | None:
        """The one detector of a per-detector spectrum image (``None`` for a sum)."""
        return self.detectors[0] if len(self.detectors) == 1 else None


#: The attribute of an EMD data group holding the napari state of a saved layer.
NAPARI_LAYER_ATTR: Final = "napari_layer"
#: napari layer types napari-emd's writer stores as coordinate tables, not images.
ANNOTATION_TYPES: tuple[str, ...] = ("points", "shapes", "vectors", "tracks")


@dataclass(frozen=True)
class SavedLayer:
    """A napari layer napari-emd saved into a file, as read back: ``state`` is the JSON
    text of the layer's napari state (type, name, colormap, ...), ``items`` the arrays an
    annotation layer keeps beside its data (feature columns, text, edge widths...) by
    name."""

    state: str
    items: dict[str, Any] = field(default_factory=dict)


@dataclass
class Axis:
    """One axis of a dataset, in physical units.

    ``units`` is a cleaned, pint-parsable unit string (``"nm"``, ``"keV"``, ``"1/nm"``) or
    ``""`` when the file gives none or one we cannot interpret (the raw value is then kept
    in ``raw_units``). ``vector`` holds the coordinates of a non-uniform axis.
    """

    name: str
    size: int
    scale: float = 1.0
    offset: float = 0.0
    units: str = ""
    navigate: bool = False
    vector: np.ndarray | None = None
    raw_units: str | None = None

    def to_dict(self, index: int) -> dict[str, Any]:
        """The RosettaSciIO axis dict for this axis at ``index_in_array``."""
        d: dict[str, Any] = {"name": self.name, "index_in_array": index, "navigate": self.navigate}
        if self.units:
            d["units"] = self.units
        if self.vector is not None:
            d["axis"] = np.asarray(self.vector)
        else:
            d["size"] = int(self.size)
            d["offset"] = float(self.offset)
            d["scale"] = float(self.scale)
        return d

    @property
    def linear_scale(self) -> float:
        """Scale for display: the mean step of a vector axis, else ``scale``."""
        if self.vector is not None and len(self.vector) > 1:
            return float((self.vector[-1] - self.vector[0]) / (len(self.vector) - 1))
        return float(self.scale) if self.scale else 1.0

    @property
    def linear_offset(self) -> float:
        if self.vector is not None and len(self.vector):
            return float(self.vector[0])
        return float(self.offset)


@dataclass
class Dataset:
    """One dataset of a file: data (numpy, or dask when lazy), axes and metadata.

    ``metadata`` is a HyperSpy-style tree (``General``, ``Signal``,
    ``Acquisition_instrument``, ``Sample``...); :meth:`to_dict` fills in
    ``General.title``, ``General.original_filename`` and ``Signal.signal_type``.
    ``original_metadata`` is the file's own tree for this dataset.

    ``display`` optionally holds an alternative array for viewing, with the same
    calibration as ``data`` but axes ordered for napari (see ``display_axes``), e.g. an
    energy-first view of a spectrum image backed by an event index, so the energy slider
    never needs the dense cube. ``pixel_reader`` optionally gives ``data[index + (:,)]``
    for one pixel's ``index`` (every axis but the last) more cheaply than slicing a lazy
    ``data`` (whose chunks hold many pixels): a lazy Velox spectrum image reads one scan
    line per frame for it.

    Typed facts beside the arrays: ``detector`` is the detector of a single spectrum,
    ``si`` what a spectrum image holds (:class:`SIContent`), ``saved`` the napari layer
    state of a dataset napari-emd saved (:class:`SavedLayer`), ``stacked_paths`` the
    groups a depth series was stacked from.
    """

    title: str
    data: Any
    axes: list[Axis]
    kind: DatasetKind = SIGNAL
    signal_type: str = ""
    path: str = ""
    filename: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    original_metadata: dict[str, Any] = field(default_factory=dict)
    display: Any = None
    display_axes: list[Axis] | None = None
    pixel_reader: Callable[[tuple[int, ...]], np.ndarray] | None = None
    detector: str | None = None
    si: SIContent | None = None
    saved: SavedLayer | None = None
    stacked_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown dataset kind {self.kind!r}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def is_lazy(self) -> bool:
        return not isinstance(self.data, np.ndarray)

    def full_metadata(self) -> dict[str, Any]:
        """``metadata`` with the fields the reader contract promises filled in."""
        md = copy.deepcopy(self.metadata)
        general = md.setdefault("General", {})
        general["title"] = self.title
        if self.filename:
            import os

            general.setdefault("original_filename", os.path.basename(self.filename))
        signal = md.setdefault("Signal", {})
        signal["signal_type"] = self.signal_type
        return md

    def to_dict(self) -> dict[str, Any]:
        """The RosettaSciIO-style dict: ``data``, ``axes``, ``metadata``,
        ``original_metadata``."""
        if len(self.axes) != self.data.ndim:
            raise ValueError(
                f"{self.title}: {len(self.axes)} axes for data of shape {self.shape}"
            )
        return {
            "data": self.data,
            "axes": [ax.to_dict(i) for i, ax in enumerate(self.axes)],
            "metadata": self.full_metadata(),
            "original_metadata": self.original_metadata,
            "attributes": {"_lazy": self.is_lazy},
        }


def unique_titles(datasets: list[Dataset]) -> None:
    """Make titles unique within one file, in place: the second ``HAADF`` becomes
    ``HAADF (2)``. napari layers and HyperSpy signals are looked up by name."""
    seen: dict[str, int] = {}
    for ds in datasets:
        base = ds.title or "dataset"
        n = seen.get(base, 0) + 1
        seen[base] = n
        ds.title = base if n == 1 else f"{base} ({n})"
    # A renamed title may itself collide with an original one ("A (2)" present already).
    titles = [d.title for d in datasets]
    if len(set(titles)) != len(titles):
        counts: dict[str, int] = {}
        for ds in datasets:
            c = counts.get(ds.title, 0) + 1
            counts[ds.title] = c
            if c > 1:
                ds.title = f"{ds.title} #{c}"


@dataclass(frozen=True)
class SIFacts:
    """What a file says about its spectrum image, read from metadata alone (no decoding):
    what the loader shows and bounds its options with, and what ``napari-emd info``
    prints. :func:`napari_emd.si_facts` makes it.

    ``readable`` is False (and ``reason`` says why) when the file describes a spectrum
    image that cannot be read. Energies are in ``energy_units`` (keV for EDS, eV for
    EELS); ``frame_table`` tells whether every stream has a Velox ``FrameLocationTable``
    (a frame range then reads only those frames).
    """

    path: str
    format: str | None = None
    has_si: bool = False
    readable: bool = False
    reason: str = ""
    source: SISource | None = None  # where the SI comes from (None: no readable SI)
    signal_type: str = ""
    ny: int = 0
    nx: int = 0
    grid_source: str = ""
    n_frames: int = 1
    detectors: tuple[str, ...] = ()
    channels: int = 0
    energy_offset: float = 0.0
    energy_scale: float = 1.0
    energy_units: str = ""
    pixel_size: float | None = None
    pixel_units: str = ""
    frame_table: bool = False
    elements: tuple[str, ...] = ()
    dtype: str = "uint16"
    eels_ranges: tuple[tuple[float, float], ...] = ()

    @property
    def energy_range(self) -> tuple[float, float] | None:
        """Energies of the first and the last channel (``None`` without channels)."""
        if not self.channels:
            return None
        return (self.energy_offset,
                self.energy_offset + self.energy_scale * (self.channels - 1))

    def rebin_choices(self, min_channels: int = 16) -> list[int]:
        """The ``rebin_energy`` factors that divide the channel count and leave at least
        ``min_channels`` channels (1 always)."""
        n = int(self.channels)
        if n < 1:
            return [1]
        small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
        every = sorted(set(small + [n // d for d in small]))
        return [d for d in every if d == 1 or n // d >= min_channels]

    def nbytes(
        self,
        first_frame: int = 0,
        last_frame: int | None = None,
        sum_frames: bool = True,
        detectors: int = 1,
        rebin_energy: int = 1,
        SI_dtype: Any = None,
    ) -> int:
        """Bytes the spectrum image(s) of these reader options take in memory
        (``detectors``: how many cubes, 1 when they are summed)."""
        if not self.has_si:
            return 0
        last = self.n_frames if last_frame is None else int(last_frame)
        frames = 1 if sum_frames else max(last - int(first_frame), 1)
        item = np.dtype(SI_dtype if SI_dtype is not None else self.dtype).itemsize
        channels = self.channels // max(int(rebin_energy), 1)
        return self.ny * self.nx * frames * max(detectors, 1) * channels * item
