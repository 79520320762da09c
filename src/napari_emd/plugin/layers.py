"""Dataset records -> napari layer data tuples, without importing napari.

The rules (one place for all formats):

- images, stacks and n-D signals become image layers with ``scale``, ``translate``,
  ``units`` and ``axis_labels`` from the axes, contrast from percentiles of a sample;
- a spectrum image becomes an image layer with energy (and frame) on sliders: energy in
  front of the spatial axes (or the record's ``display`` array);
- complex data becomes magnitude and phase layers (phase with a cyclic colormap); a
  Velox half-plane FFT becomes one centred log-power image, as Velox shows it;
- a small unnamed component axis (prismatic's DPC x/y) is split into one layer each;
- element maps get distinct colours and additive blending over the other images, and a
  spectrum image is hidden when the file has maps of it (Velox's mix view);
- every slider axis is placed by what it measures (:mod:`.world`): energies of EDS and
  EELS, times, depths never share a slider;
- spectra and tables are not layers: they ride in every layer's
  :class:`~napari_emd.plugin.layer_meta.EMDLayerInfo` for the spectrum viewer.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import api
from ..errors import EMDWarning
from ..model import IMAGE, SPECTRUM, SPECTRUM_IMAGE, TABLE, Axis, Dataset
from . import look, world
from .layer_meta import SPECTRA, EMDLayerInfo, attach, layer_info, spectrum_entry

LayerData = tuple[Any, dict[str, Any], str]

# Lazy datasets at most this big are read into memory when opened in napari: small data
# displays faster from memory, and nothing big is ever read whole.
EAGER_LIMIT = 128 * 2**20
# A leading axis without name and unit and at most this long holds components (DPC x/y):
# one layer each.
COMPONENT_AXIS_MAX = 4

contrast_limits = look.contrast_limits


def clean_scale(ax: Axis) -> float:
    """The axis step napari gets: the file's, or 1 when it is zero or not finite."""
    s = ax.linear_scale
    return s if s and math.isfinite(s) else 1.0


def clean_offset(ax: Axis) -> float:
    """The axis origin napari gets (0 when not finite)."""
    o = ax.linear_offset
    return o if math.isfinite(o) else 0.0


def napari_unit(ax: Axis) -> str:
    """The unit napari gets (``pixel`` when the axis has none)."""
    return ax.units if ax.units else "pixel"


def maybe_eager(data: Any) -> Any:
    """Small lazy arrays (up to :data:`EAGER_LIMIT`) read into memory, others as they are."""
    if isinstance(data, np.ndarray) or not hasattr(data, "compute"):
        return data
    nbytes = int(np.prod(data.shape, dtype=np.int64)) * np.dtype(data.dtype).itemsize
    return data.compute() if nbytes <= EAGER_LIMIT else data


def display_array(ds: Dataset) -> tuple[Any, list[Axis]]:
    """The array napari shows for ``ds`` and its axes: the record's energy-first
    ``display`` view when it has one, a spectrum image's energy moved in front of y, x,
    else the data as it is."""
    if ds.display is not None and ds.display_axes is not None:
        return ds.display, ds.display_axes
    data, axes = ds.data, list(ds.axes)
    if ds.kind == SPECTRUM_IMAGE and data.ndim >= 3:
        n = data.ndim
        order = [*range(n - 3), n - 1, n - 3, n - 2]
        data = data.transpose(order)
        axes = [axes[i] for i in order]
    return data, axes


@dataclass
class Part:
    """One layer to be: ``data`` (its own slider axes, then y, x), one :class:`Axis` per
    data axis, and for each data axis the axis of the record's display array it shows."""

    data: Any
    axes: list[Axis]
    name: str
    info: EMDLayerInfo
    look: dict[str, Any] = field(default_factory=dict)
    record_axes: list[int] = field(default_factory=list)
    signal_type: str = ""

    @property
    def keys(self) -> list[str]:
        keys = [world.axis_key(ax, self.signal_type) for ax in self.axes[:-2]]
        for i, k in enumerate(keys):  # two axes of one layer never share a slider
            if k in keys[:i]:
                keys[i] = f"{k}#{i}"
        return keys


def _warn(ds: Dataset, why: str) -> None:
    warnings.warn(f"{ds.filename}: {ds.path or ds.title}: {why}", EMDWarning, stacklevel=4)


def _is_half_fft(ds: Dataset, axes: list[Axis]) -> bool:
    return ("fft" in ds.title.lower() and len(axes) >= 2
            and all(a.units.startswith("1/") for a in axes[-2:]))


def _fft_part(ds: Dataset, data: Any, axes: list[Axis], info: EMDLayerInfo) -> Part | None:
    """A half-plane FFT as a centred log-power image (None when it is too big to show
    that way: it is then shown as magnitude and phase)."""
    if not isinstance(data, np.ndarray):
        return None
    power = look.log_power(data)
    h, w = power.shape[-2:]
    ay, ax = axes[-2], axes[-1]
    dy, dx = clean_scale(ay), clean_scale(ax)
    new_axes = [*axes[:-2],
                Axis(ay.name, h, dy, -(h // 2) * dy, ay.units, ay.navigate),
                Axis(ax.name, w, dx, -(w // 2) * dx, ax.units, ax.navigate)]
    info.part = "log power"
    return Part(power, new_axes, f"{ds.title} (log power)", info,
                {"colormap": "gray", "contrast_limits": look.contrast_limits(power)},
                list(range(power.ndim)), ds.signal_type)


def _component_axis(ds: Dataset, axes: list[Axis]) -> int | None:
    """The index of a small unnamed, unitless leading axis (components, such as DPC x/y)
    among calibrated screen axes, if any."""
    if ds.kind == SPECTRUM_IMAGE or not all(a.units for a in axes[-2:]):
        return None
    for i, ax in enumerate(axes[:-2]):
        if not ax.name and not ax.units and 2 <= ax.size <= COMPONENT_AXIS_MAX:
            return i
    return None


def dataset_parts(ds: Dataset, spectra: list[dict[str, Any]]) -> list[Part]:
    """The layers-to-be of one (non-spectrum) dataset."""
    data, axes = display_array(ds)
    if any(int(s) == 0 for s in data.shape) or data.ndim < 2:
        _warn(ds, f"has shape {tuple(data.shape)}: nothing to show, no layer is added")
        return []
    if ds.kind != SPECTRUM_IMAGE:  # a spectrum image stays lazy: planes come on demand
        data = maybe_eager(data)
    kind = np.dtype(data.dtype).kind
    record_axes = list(range(data.ndim))
    if kind == "c":
        info = EMDLayerInfo.of_dataset(ds, spectra)
        if _is_half_fft(ds, axes):
            part = _fft_part(ds, data, axes, info)
            if part is not None:
                return [part]
        mag = abs(data)
        phase = np.angle(data) if isinstance(data, np.ndarray) else _dask_angle(data)
        return [
            Part(mag, axes, f"{ds.title} magnitude",
                 EMDLayerInfo.of_dataset(ds, spectra, "magnitude"),
                 {"colormap": "gray", "contrast_limits": look.contrast_limits(mag)},
                 record_axes, ds.signal_type),
            Part(phase, axes, f"{ds.title} phase",
                 EMDLayerInfo.of_dataset(ds, spectra, "phase"),
                 {"colormap": "twilight", "contrast_limits": (-np.pi, np.pi),
                  "visible": False}, record_axes, ds.signal_type),
        ]
    if kind not in "biuf":
        return []
    comp = _component_axis(ds, axes)
    if comp is not None:
        names = ("x", "y") if data.shape[comp] == 2 else tuple(map(str, range(data.shape[comp])))
        parts = []
        for i, label in enumerate(names):
            sub = data[(slice(None),) * comp + (i,)]
            parts.append(Part(sub, [a for j, a in enumerate(axes) if j != comp],
                              f"{ds.title} {label}", EMDLayerInfo.of_dataset(ds, spectra, label),
                              {"colormap": "gray", "contrast_limits": look.contrast_limits(sub)},
                              [j for j in record_axes if j != comp], ds.signal_type))
        return parts
    info = EMDLayerInfo.of_dataset(ds, spectra)
    if ds.kind == SPECTRUM_IMAGE:
        return [Part(data, axes, ds.title, info, spectrum_image_look(ds, data, spectra, info),
                     record_axes, ds.signal_type)]
    return [Part(data, axes, ds.title, info,
                 {"colormap": "gray", "contrast_limits": look.contrast_limits(data)},
                 record_axes, ds.signal_type)]


def _summed_file_spectrum(
    ds: Dataset, spectra: list[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(energy, counts) of the file's single spectra of the SI's kind, summed over
    detectors: the whole scan's spectrum, for free."""
    total, ax = None, None
    for sp in spectra:
        d = np.asarray(sp["data"], dtype=float)
        if sp.get("signal_type") != ds.signal_type or d.ndim != 1:
            continue
        if total is None:
            total, ax = d.copy(), sp["axes"][-1]
        elif total.shape == d.shape:
            total += d
    if total is None or ax is None or not total.any():
        return None
    energy = float(ax.get("offset", 0.0)) + float(ax.get("scale", 1.0)) * np.arange(total.size)
    return energy, total


def spectrum_image_look(
    ds: Dataset, data: Any, spectra: list[dict[str, Any]], info: EMDLayerInfo
) -> dict[str, Any]:
    """Colormap and contrast of a spectrum-image layer, and the energy it opens on
    (``info.peak_energy``), decided without computing the lazy cube: EDS from the file's
    summed spectra (the strongest X-ray peak above the zero-energy noise peak), EELS
    from the elements' edges inside its range (the summed cube when it is in memory).
    The contrast is that plane's when the cube is in memory; for a lazy cube the viewer
    sets it once napari has computed the plane (:mod:`.view`)."""
    energy_axis = ds.axes[-1]
    e = energy_axis.linear_offset + energy_axis.linear_scale * np.arange(energy_axis.size)
    peak = None
    if ds.signal_type.upper().startswith("EELS"):
        elements = list((ds.metadata.get("Sample") or {}).get("elements") or [])
        summed = None
        if isinstance(data, np.ndarray):
            summed = data.reshape(-1, data.shape[-3], *data.shape[-2:]).sum(axis=(0, 2, 3))
        peak, info.peak_confidence = look.eels_focus(float(e[0]), float(e[-1]), elements,
                                                     summed, e)
    else:
        elements = list((ds.metadata.get("Sample") or {}).get("elements") or [])
        found = _summed_file_spectrum(ds, spectra)
        if found is not None:
            peak = look.eds_peak(*found, elements)
        elif isinstance(data, np.ndarray):
            summed = data.reshape(-1, data.shape[-3], *data.shape[-2:]).sum(axis=(0, 2, 3))
            peak = look.eds_peak(e, summed, elements)
    info.peak_energy = peak
    out: dict[str, Any] = {"colormap": "inferno"}
    if isinstance(data, np.ndarray) and peak is not None:
        i = int(np.clip(np.rint((peak - e[0]) / (e[1] - e[0] if e.size > 1 else 1)), 0,
                        e.size - 1))
        out["contrast_limits"] = look.robust_limits(data[..., i, :, :]) or (0.0, 1.0)
    elif isinstance(data, np.ndarray):
        out["contrast_limits"] = look.contrast_limits(data) or (0.0, 1.0)
    else:
        out["contrast_limits"] = (0.0, 1.0)  # set from the first plane napari computes
    return out


def _dask_angle(data: Any) -> Any:
    import dask.array as da

    return da.angle(data)


def _dress(parts: list[Part]) -> list[Part]:
    """Order and colours of one file's layers, like Velox's mix view: plain images at the
    bottom in grey, element maps above them in distinct colours with additive blending,
    spectrum images on top, hidden when the file has maps."""
    def rank(p: Part) -> int:
        if p.info.kind == SPECTRUM_IMAGE and p.info.part is None:
            return 2
        return 1 if _is_map(p) else 0

    parts = sorted(parts, key=rank)
    maps = [p for p in parts if _is_map(p)]
    for i, p in enumerate(maps):
        p.look.update(colormap=look.MAP_COLORMAPS[i % len(look.MAP_COLORMAPS)],
                      contrast_limits=look.map_limits(look.sample(p.data)))
    if maps:
        for p in parts:
            role = ("image" if p.data.ndim == 2 else "", "map", "si")[rank(p)]
            p.look.update(look.mix_view(role))
    for p in parts:
        if _is_auxiliary(p):
            p.look["visible"] = False
    for p in parts:  # hidden until the viewer has built its plane index (.view)
        if p.info.is_spectrum_image and p.info.record is not None \
                and api.display_pending(p.info.record) is not None:
            p.info.indexing = True
            p.info.shown_after_index = bool(p.look.get("visible", True))
            p.look["visible"] = False
    spaces = {_space(p) for p in parts}
    if {"real", "reciprocal"} <= spaces:  # napari cannot show both with one scale bar
        for p in parts:
            if _space(p) == "reciprocal":
                p.look["visible"] = False
    return parts


def _is_auxiliary(p: Part) -> bool:
    """An image that explains a read rather than shows the specimen: the "EDS frame
    coverage" of an aligned or frame-selected load (how many frames reached each pixel).
    It opens hidden: shown, it covers every image of the scan."""
    rec = p.info.record
    md = (rec.metadata.get("Signal") or {}) if rec is not None else {}
    return rec is not None and rec.kind == IMAGE and "Frame_alignment" in md


def mix_view_role(layer: Any) -> str:
    """The role of a napari layer in its scan's mix view (:func:`.look.mix_view`):
    ``"si"`` (a whole spectrum image), ``"map"`` (an element or energy-window map),
    ``"image"`` (a plain 2-D image of the file: the HAADF), else ``""``."""
    info = layer_info(layer)
    if info is None:
        return ""
    if info.is_spectrum_image:
        return "si"
    if info.derived is not None or getattr(layer, "blending", "") == "additive":
        return "map"
    rec = info.record
    if (rec is None or rec.kind != IMAGE or info.part is not None
            or display_array(rec)[0].ndim != 2 or look.element_of(info.title) is not None
            or "Frame_alignment" in (rec.metadata.get("Signal") or {})):
        return ""
    return "image"


def apply_mix_view(layers: Any, source: str) -> None:
    """Velox's mix view over the napari layers of file ``source`` once a map is shown
    over its scan (a map made in the spectrum viewer): the same rule the reader gives a
    file with maps (:func:`.look.mix_view`); an image already dimmer stays so."""
    for ly in layers:
        info = layer_info(ly)
        if info is None or info.source != source:
            continue
        for key, value in look.mix_view(mix_view_role(ly)).items():
            if key == "opacity":
                value = min(float(ly.opacity), value)
            if key != "blending":  # a map's own look is set where it is made
                setattr(ly, key, value)


def _space(p: Part) -> str:
    """Whether a layer-to-be is in real or reciprocal space (its screen axes' units)."""
    return "reciprocal" if p.axes[-1].units.startswith("1/") else "real"


def _is_map(p: Part) -> bool:
    return (p.info.kind == IMAGE and p.info.part is None and p.data.ndim == 2
            and look.element_of(p.name) is not None)


def _existing_axes(layers: Any) -> list[world.LayerAxes]:
    """The slider axes of napari-emd layers already in a viewer."""
    out = []
    for layer in layers or ():
        info = layer_info(layer)
        if info is None or not info.world_keys:
            continue
        n = len(info.world_keys)
        shape = tuple(getattr(layer.data, "shape", ()))[:n]
        if len(shape) < n:
            continue
        fill = [r is None for r in info.record_axes[:n]] if info.record_axes else [False] * n
        out.append(world.LayerAxes(
            keys=[None if f else k for k, f in zip(info.world_keys, fill)],
            sizes=list(shape), scales=[float(s) for s in layer.scale[:n]],
            translates=[float(t) for t in layer.translate[:n]],
            units=[str(u) for u in getattr(layer, "units", ("",) * n)[:n]],
            labels=[str(a) for a in getattr(layer, "axis_labels", ("",) * n)[:n]],
        ))
    return out


def _arrange(parts: list[Part], existing: Any = ()) -> list[LayerData]:
    """Layer data tuples with every slider axis in its slot (see :mod:`.world`)."""
    placed = _existing_axes(existing)
    order = world.slot_order(
        [info.world_keys for layer in existing or () if (info := layer_info(layer))],
        [p.keys for p in parts])
    own = [world.LayerAxes(p.keys, [a.size for a in p.axes[:-2]],
                           [clean_scale(a) for a in p.axes[:-2]],
                           [clean_offset(a) for a in p.axes[:-2]],
                           [napari_unit(a) for a in p.axes[:-2]],
                           [world.slot_label(k, a.name or f"axis {i}")
                            for i, (k, a) in enumerate(zip(p.keys, p.axes))])
           for p in parts]
    extents = world.slot_extents([*placed, *own])
    first: dict[str, tuple[str, str]] = {}
    for la in [*placed, *own]:
        for k, u, lab in zip(la.keys, la.units, la.labels):
            if k is not None and k not in first:
                first[k] = (u, lab)
    out: list[LayerData] = []
    for p, la in zip(parts, own):
        where = world.placement(p.keys, order)
        data = world.place(p.data, 2, where)
        scale, translate, units, labels, keys, rec = [], [], [], [], [], []
        n_lead = len(where)
        for s, i in zip(range(n_lead - 1, -1, -1), where):
            key = order[s]
            keys.append(key)
            u, lab = first.get(key, ("pixel", world.slot_label(key)))
            if i is None:
                sc, tr = world.singleton_extent(*extents.get(key, (0.0, 1.0)))
                rec.append(None)
            else:  # a slider has one label, whichever layer brought it first
                sc, tr, u = la.scales[i], la.translates[i], la.units[i]
                rec.append(p.record_axes[i])
            scale.append(sc)
            translate.append(tr)
            units.append(u)
            labels.append(lab)
        for ax, r, role in zip(p.axes[-2:], p.record_axes[-2:], ("y", "x")):
            scale.append(clean_scale(ax))
            translate.append(clean_offset(ax))
            units.append(napari_unit(ax))
            labels.append(ax.name or role)  # unnamed screen axes: rows y, columns x
            rec.append(r)
        p.info.world_keys = tuple(keys)
        p.info.record_axes = tuple(rec)
        kw: dict[str, Any] = {"name": p.name, "scale": scale, "translate": translate,
                              "units": units, "axis_labels": labels,
                              "metadata": attach({}, p.info)}
        kw.update({k: v for k, v in p.look.items() if v is not None})
        out.append((data, kw, "image"))
    return out


def new_layers(
    datasets: list[Dataset], spectra: list[dict[str, Any]], existing: Any = ()
) -> list[LayerData]:
    """The layer tuples of datasets read afresh (not saved by napari-emd: those are
    :mod:`.saved`'s), one file's; ``spectra`` the file's single spectra (they ride in
    every layer's metadata). Spectra and tables themselves give no layer.

    ``existing``: the layers already in the viewer the file opens into, so that slider
    axes of the same kind share a slider and different kinds never do.
    """
    parts = [p for ds in datasets if ds.kind not in (SPECTRUM, TABLE)
             for p in dataset_parts(ds, spectra)]
    return _arrange(_dress(parts), existing)


def file_info(datasets: list[Dataset], path: str = "") -> EMDLayerInfo:
    """napari-emd's record of a file as a whole: its single spectra and its tables (what
    a file with no image to show opens as: the spectrum viewer and table docks)."""
    name = os.path.splitext(os.path.basename(path or (datasets[0].filename if datasets
                                                      else "")))[0]
    spectra = [spectrum_entry(d) for d in datasets if d.kind == SPECTRUM]
    tables = {d.title: np.asarray(d.data) for d in datasets if d.kind == TABLE}
    return EMDLayerInfo(source=datasets[0].filename if datasets else path, kind=SPECTRA,
                        spectra=spectra, tables=tables, title=name)


def map_layer(
    si_layer: Any, data: Any, name: str, info: EMDLayerInfo, look_kw: dict[str, Any],
    existing: Any = (),
) -> LayerData:
    """The layer tuple of a map computed from a spectrum-image layer (its record's
    display axes without energy: ``(..., y, x)``), placed exactly over the SI, its slider
    axes in their slots."""
    src = layer_info(si_layer)
    rec = src.record if src is not None else None
    if rec is None:
        raise ValueError(f"layer {getattr(si_layer, 'name', si_layer)!r} is not a spectrum image")
    _, axes = display_array(rec)
    energy = len(axes) - 3
    keep = [i for i in range(len(axes)) if i != energy]
    part = Part(np.asarray(data), [axes[i] for i in keep], name, info, dict(look_kw),
                list(range(len(keep))), rec.signal_type)
    (out,) = _arrange([part], existing)
    return out
