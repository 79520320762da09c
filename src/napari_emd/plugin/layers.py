"""Dataset records -> napari layer data tuples, without importing napari.

The rules (one place for all formats):

- images, stacks and n-D signals become image layers with ``scale``, ``translate``,
  ``units`` and ``axis_labels`` from the axes;
- a spectrum image becomes an image layer with energy (and frame) on sliders: energy is
  moved in front of the spatial axes (or the record's ``display`` array is used);
- complex data becomes two real layers, magnitude and phase (phase with a cyclic colormap);
- spectra and tables are not layers: they ride in every layer's
  :class:`~napari_emd.plugin.layer_meta.EMDLayerInfo` for the spectrum viewer. A file with
  nothing but spectra gets one empty points layer to carry them.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..model import SPECTRUM, SPECTRUM_IMAGE, TABLE, Axis, Dataset
from .layer_meta import SPECTRA, EMDLayerInfo, attach, spectrum_entry

LayerData = tuple[Any, dict[str, Any], str]

# Lazy datasets at most this big are read into memory when opened in napari: small data
# displays faster from memory, and nothing big is ever read whole.
EAGER_LIMIT = 128 * 2**20


def clean_scale(ax: Axis) -> float:
    s = ax.linear_scale
    return s if s and math.isfinite(s) else 1.0


def napari_unit(ax: Axis) -> str:
    return ax.units if ax.units else "pixel"


def contrast_limits(data: Any) -> tuple[float, float] | None:
    """Contrast limits from a sample of ``data``: the middle plane of a lazy array, so the
    whole array is never computed."""
    try:
        if data.ndim > 2:
            idx = tuple(s // 2 for s in data.shape[:-2])
            sample = data[idx]
        else:
            sample = data
        if hasattr(sample, "compute"):
            sample = sample.compute()
        sample = np.asarray(sample)
        if sample.dtype.kind == "b":
            return (0.0, 1.0)
        finite = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
        if finite.size == 0:
            return None
        lo, hi = float(finite.min()), float(finite.max())
        if hi <= lo:
            hi = lo + 1.0
        return (lo, hi)
    except Exception:
        return None


def maybe_eager(data: Any) -> Any:
    if isinstance(data, np.ndarray) or not hasattr(data, "compute"):
        return data
    nbytes = int(np.prod(data.shape, dtype=np.int64)) * np.dtype(data.dtype).itemsize
    return data.compute() if nbytes <= EAGER_LIMIT else data


def display_array(ds: Dataset) -> tuple[Any, list[Axis]]:
    if ds.display is not None and ds.display_axes is not None:
        return ds.display, ds.display_axes
    data, axes = ds.data, list(ds.axes)
    if ds.kind == SPECTRUM_IMAGE and data.ndim >= 3:
        # (..., y, x, E) -> (..., E, y, x): energy on a slider, y and x on screen
        n = data.ndim
        order = [*range(n - 3), n - 1, n - 3, n - 2]
        data = data.transpose(order)
        axes = [axes[i] for i in order]
    return data, axes


def dataset_layers(ds: Dataset, spectra: list[dict[str, Any]]) -> list[LayerData]:
    """The layer data tuples of one (non-spectrum) dataset."""
    from .saved import saved_layer, saved_layer_state

    state = saved_layer_state(ds)
    if state is not None:
        return saved_layer(ds, state, spectra)
    data, axes = display_array(ds)
    data = maybe_eager(data)
    base: dict[str, Any] = {
        "name": ds.title,
        "scale": [clean_scale(a) for a in axes],
        "translate": [a.linear_offset if math.isfinite(a.linear_offset) else 0.0 for a in axes],
        "units": [napari_unit(a) for a in axes],
        "axis_labels": [a.name or f"axis {i}" for i, a in enumerate(axes)],
    }
    info = EMDLayerInfo.of_dataset(ds, spectra)
    if np.dtype(data.dtype).kind == "c":
        mag = abs(data)
        phase = np.angle(data) if isinstance(data, np.ndarray) else _dask_angle(data)
        kw_mag = {**base, "name": f"{ds.title} magnitude", "colormap": "gray"}
        kw_phase = {
            **base,
            "name": f"{ds.title} phase",
            "colormap": "twilight",
            "contrast_limits": (-np.pi, np.pi),
            "visible": False,
        }
        cl = contrast_limits(mag)
        if cl:
            kw_mag["contrast_limits"] = cl
        kw_mag["metadata"] = attach({}, EMDLayerInfo.of_dataset(ds, spectra, "magnitude"))
        kw_phase["metadata"] = attach({}, EMDLayerInfo.of_dataset(ds, spectra, "phase"))
        return [(mag, kw_mag, "image"), (phase, kw_phase, "image")]
    if np.dtype(data.dtype).kind not in "biuf":
        return []
    kw = {**base, "metadata": attach({}, info)}
    if ds.kind == SPECTRUM_IMAGE:
        kw.update(_spectrum_image_look(ds, data, spectra))
        info.peak_energy = kw.pop("peak_energy", None)
    else:
        cl = contrast_limits(data)
        if cl:
            kw["contrast_limits"] = cl
        kw["colormap"] = "gray"
    return [(data, kw, "image")]


def _spectrum_image_look(ds: Dataset, data: Any, spectra: list[dict[str, Any]]) -> dict:
    """Colormap, blending and contrast of a spectrum-image layer, and the energy of its
    strongest peak, all without touching the SI's data.

    Computing contrast limits from a plane (ours, or napari's own when none are given)
    would decode the event stream while the file is opening. The file's single spectra
    (the sum over the scan, per detector) tell the same for free: at the strongest peak
    a pixel holds about ``total / pixels`` counts. ``peak_energy`` lets a viewer start
    the energy slider there (:func:`.view.focus_energy`).
    """
    look: dict[str, Any] = {"colormap": "inferno"}
    fallback = (0.0, 10.0)
    if isinstance(data, np.ndarray):  # in memory: a plane costs nothing
        fallback = contrast_limits(data) or fallback
    energy_axis = ds.axes[-1]
    total, ax = None, None
    for sp in spectra:
        d = np.asarray(sp["data"], dtype=float)
        if sp.get("signal_type") != ds.signal_type or d.ndim != 1:
            continue
        if total is None:
            total, ax = d, sp["axes"][-1]
        elif total.shape == d.shape:
            total = total + d
    if total is None or ax is None or not total.any():
        look["contrast_limits"] = fallback
        return look
    energy = float(ax.get("offset", 0.0)) + float(ax.get("scale", 1.0)) * np.arange(total.size)
    floor = 0.2 if energy_axis.units == "keV" else 0.0  # past the zero-loss/strobe peak
    total = np.where(energy <= floor, 0.0, total)
    if total.any():
        i = int(np.argmax(total))
        look["peak_energy"] = float(energy[i])
        n_pixels = int(np.prod(ds.shape[:-1], dtype=np.int64)) or 1
        rebin = max(1, round(energy_axis.linear_scale / float(ax.get("scale", 1.0) or 1.0)))
        look["contrast_limits"] = (0.0, max(1.0, 3.0 * total[i] * rebin / n_pixels))
    look.setdefault("contrast_limits", fallback)
    return look


def _dask_angle(data: Any) -> Any:
    import dask.array as da

    return da.angle(data)


def datasets_to_layers(datasets: list[Dataset], path: str = "") -> list[LayerData]:
    """All layer tuples for the datasets of one file (spectra carried in metadata)."""
    from .saved import saved_layer_state

    spectra = [spectrum_entry(d) for d in datasets if d.kind == SPECTRUM]
    layers: list[LayerData] = []
    for ds in datasets:
        if ds.kind in (SPECTRUM, TABLE) and saved_layer_state(ds) is None:
            continue
        layers.extend(dataset_layers(ds, spectra))
    if not layers and datasets:
        name = os.path.splitext(os.path.basename(path or datasets[0].filename))[0]
        tables = {d.title: np.asarray(d.data).tolist() for d in datasets if d.kind == TABLE}
        info = EMDLayerInfo(source=datasets[0].filename, kind=SPECTRA, spectra=spectra,
                            tables=tables)
        meta = attach({}, info)
        layers.append(
            (np.empty((0, 2)), {"name": f"{name} spectra", "metadata": meta}, "points")
        )
    return layers


def map_placement(si_layer: Any) -> dict[str, Any]:
    """Layer keyword arguments that place a map computed from a spectrum-image layer
    (shown ``(..., E, y, x)``) exactly over it: its scale, translate, units and axis
    labels without the energy axis."""
    keep = [i for i in range(si_layer.ndim) if i != si_layer.ndim - 3]
    out: dict[str, Any] = {
        "scale": [float(si_layer.scale[i]) for i in keep],
        "translate": [float(si_layer.translate[i]) for i in keep],
    }
    try:
        out["units"] = [str(si_layer.units[i]) for i in keep]
        out["axis_labels"] = [str(si_layer.axis_labels[i]) for i in keep]
    except (AttributeError, IndexError, TypeError):
        pass
    return out
