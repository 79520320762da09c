"""What napari-emd keeps in a layer's metadata: the one definition, writer and reader.

Every layer napari-emd makes carries one entry, ``layer.metadata["emd"]``, holding a
:class:`EMDLayerInfo`: the file and dataset the layer shows, the dataset record itself
(so the spectrum viewer can compute spectra from the lazy array), which part of a
complex dataset it is, the file's single spectra and tables, and, for maps made later,
what they were made from. Nothing else in the package reads or writes that key: use
:func:`layer_info` to read it and :func:`attach` to write it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final, Literal

from ..model import SPECTRUM_IMAGE, Dataset, DatasetKind

#: The key of ``layer.metadata`` napari-emd owns.
KEY = "emd"
#: ``kind`` of a layer that carries only a file's spectra (no image of its own).
SPECTRA: Final = "spectra"
#: ``kind`` of a map computed from a spectrum-image layer.
DERIVED: Final = "derived"
#: What a napari-emd layer shows: a dataset of one of the dataset kinds, a file's
#: spectra, or a map derived from a spectrum image.
LayerKind = DatasetKind | Literal["spectra", "derived"]


class Confidence(IntEnum):
    """How sure a spectrum image's opening energy is: a peak or edge the file names
    (``SURE``), the strongest channel of a sample (``LIKELY``), or only the middle of the
    range (``GUESS``). Of several layers, the surest is shown."""

    GUESS = 0
    LIKELY = 1
    SURE = 2
#: Metadata keys earlier versions wrote next to ``"emd"``: never restored from files.
LEGACY_KEYS = ("emd_spectra", "emd_part", "emd_derived", "emd_tables")


@dataclass
class Derived:
    """What a map layer was computed from: the spectrum-image layer's name, the energy
    window (first and last channel's energy, in ``units``) and the channels ``[i0, i1)``.
    An element map also names its X-ray ``line`` (``"Fe_Ka"``), what it shows
    (``quantity``: ``"counts"`` in the window, ``"net counts"`` after background
    subtraction, or ``"sigma"``, the Poisson uncertainty of the net counts) and the
    background windows subtracted (in ``units``)."""

    si_layer: str
    window: tuple[float, float]
    channels: tuple[int, int]
    units: str
    line: str | None = None
    quantity: str = "counts"
    background: tuple[tuple[float, float], ...] = ()


@dataclass
class EMDLayerInfo:
    """napari-emd's record of one layer (``layer.metadata["emd"]``).

    ``record`` is the :class:`~napari_emd.Dataset` the layer shows (``None`` for derived
    maps and spectra-only layers); ``part`` names the part of a complex dataset
    (``"magnitude"``, ``"phase"``); ``spectra`` are the file's single spectra as
    :func:`spectrum_entry` dicts; ``peak_energy`` is the energy the reader found for the
    first view of a spectrum image.
    """

    source: str = ""
    dataset_path: str = ""
    title: str = ""
    kind: LayerKind | Literal[""] = ""
    signal_type: str = ""
    record: Dataset | None = None
    part: str | None = None
    peak_energy: float | None = None
    peak_confidence: Confidence = Confidence.SURE
    spectra: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)
    derived: Derived | None = None
    # where the layer's leading (slider) axes sit: the slot of each (see .world), and
    # for each the axis of the record's display array it shows (None: a size-1 filler)
    world_keys: tuple[str, ...] = ()
    record_axes: tuple[int | None, ...] = ()
    presented: bool = False  # the viewer has set the first view of this layer up
    # a lazy spectrum image whose energy-plane index is not built yet: it opens hidden
    # (napari would build the index on its first plane, freezing the window) and shows
    # (``shown_after_index``) once the viewer has built it in a worker (.view)
    indexing: bool = False
    shown_after_index: bool = True

    @classmethod
    def of_dataset(
        cls, ds: Dataset, spectra: list[dict[str, Any]] | None = None, part: str | None = None
    ) -> EMDLayerInfo:
        """The info of a layer showing dataset ``ds`` (or its ``part``)."""
        return cls(source=ds.filename, dataset_path=ds.path, title=ds.title, kind=ds.kind,
                   signal_type=ds.signal_type, record=ds, part=part,
                   spectra=list(spectra or []))

    @property
    def is_spectrum_image(self) -> bool:
        """True for the layer of a whole spectrum image (not a part or a map of one)."""
        rec = self.record
        return (rec is not None and rec.kind == SPECTRUM_IMAGE and rec.data.ndim >= 3
                and self.part is None)

    def summary(self) -> dict[str, Any]:
        """The JSON-safe fields (what a saved layer keeps; the record, spectra and tables
        are stored as datasets of their own)."""
        out: dict[str, Any] = {
            "source": self.source, "dataset_path": self.dataset_path, "title": self.title,
            "kind": self.kind, "signal_type": self.signal_type,
        }
        if self.part is not None:
            out["part"] = self.part
        if self.peak_energy is not None:
            out["peak_energy"] = float(self.peak_energy)
        if self.derived is not None:
            d = self.derived
            out["derived"] = {"si_layer": d.si_layer, "window": list(d.window),
                              "channels": list(d.channels), "units": d.units}
            if d.line is not None:
                out["derived"].update(line=d.line, quantity=d.quantity,
                                      background=[list(b) for b in d.background])
        return out


def layer_info(layer_or_metadata: Any) -> EMDLayerInfo | None:
    """The :class:`EMDLayerInfo` of a layer (or of a layer's metadata dict, or of a layer
    data tuple's keyword dict), ``None`` for layers napari-emd did not make."""
    md = layer_or_metadata
    if not isinstance(md, Mapping):
        md = getattr(layer_or_metadata, "metadata", None)
    elif "metadata" in md and isinstance(md.get("metadata"), Mapping) and KEY not in md:
        md = md["metadata"]  # a layer data tuple's keyword arguments
    info = md.get(KEY) if isinstance(md, Mapping) else None
    return info if isinstance(info, EMDLayerInfo) else None


def attach(metadata: Mapping[str, Any] | None, info: EMDLayerInfo) -> dict[str, Any]:
    """A copy of ``metadata`` carrying ``info`` (legacy keys dropped)."""
    out = {k: v for k, v in (metadata or {}).items() if k not in LEGACY_KEYS}
    out[KEY] = info
    return out


def user_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """``metadata`` without napari-emd's own entries: what belongs to the user."""
    return {k: v for k, v in (metadata or {}).items() if k != KEY and k not in LEGACY_KEYS}


def source_file(layer: Any) -> str | None:
    """The file a layer was read from: napari-emd's record first, then napari's own
    ``layer.source.path``."""
    info = layer_info(layer)
    if info is not None and info.source:
        return os.fspath(info.source)
    path = getattr(getattr(layer, "source", None), "path", None)
    return os.fspath(path) if path else None


def si_record(layer: Any) -> Dataset | None:
    """The spectrum-image record behind a layer showing a whole spectrum image."""
    info = layer_info(layer)
    return info.record if info is not None and info.is_spectrum_image else None


def is_si_layer(layer: Any) -> bool:
    """True for a layer showing a whole napari-emd spectrum image."""
    return si_record(layer) is not None


def spectrum_entry(ds: Dataset) -> dict[str, Any]:
    """A small, self-contained description of a single spectrum (data read into memory)
    for the spectrum viewer: ``title``, ``data``, ``axes`` (RosettaSciIO dicts),
    ``signal_type``, ``metadata``, ``dataset_path``."""
    import numpy as np

    data = ds.data
    if not isinstance(data, np.ndarray):
        data = np.asarray(data.compute() if hasattr(data, "compute") else data)
    return {
        "title": ds.title,
        "data": data,
        "axes": [ax.to_dict(i) for i, ax in enumerate(ds.axes)],
        "signal_type": ds.signal_type,
        "metadata": ds.full_metadata(),
        "dataset_path": ds.path,
    }


def file_spectra(layers: Any) -> dict[str, dict[str, Any]]:
    """The single spectra the files of ``layers`` carry, ``label -> spectrum entry``, each
    file's once; a multi-row spectrum gives one entry per row (``"title [i]"``)."""
    import numpy as np

    out: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str]] = set()
    for layer in layers:
        info = layer_info(layer)
        for sp in info.spectra if info is not None else []:
            key = (str(source_file(layer)), str(sp.get("title")))
            if key in seen:
                continue
            seen.add(key)
            data = np.asarray(sp.get("data"))
            if data.ndim <= 1:
                out[str(sp.get("title"))] = sp
            else:
                for i, row in enumerate(data.reshape(-1, data.shape[-1])):
                    out[f"{sp.get('title')} [{i}]"] = {**sp, "data": row}
    return out
