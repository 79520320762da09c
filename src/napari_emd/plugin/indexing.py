"""Building a big spectrum image's energy-plane index from a napari viewer.

A lazy spectrum image whose plane index is not built yet (see
:func:`napari_emd.api.display_pending`) opens hidden: asking napari for a plane would
freeze the window until the whole stream is indexed. :func:`start` builds the index in a
worker thread instead, with a napari progress bar and a note saying what happens:

- the build's first pass counts the plane the viewer opens on (the strongest X-ray
  peak); as soon as that pass ends, that plane is shown as a 2-D *preview* layer (named
  so, placed and coloured like the spectrum image, just above it), while the second pass
  writes the index. The spectrum image stays hidden until then, so moving its sliders
  never waits on the build;
- when the index is ready, the preview goes, the spectrum image shows on that plane
  (served from memory) and its first view is set up (:meth:`.view.Presenter.present`);
- removing the spectrum image meanwhile cancels the build (no cache entry is left);
  the loader's Cancel does that for the layers it loaded (:func:`cancel`). An error is
  notified and the layer stays hidden.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import look
from .layer_meta import EMDLayerInfo, layer_info

#: Metadata key marking a preview layer (its value: the spectrum image's layer name).
PREVIEW_KEY = "napari_emd_index_preview"


@dataclass
class IndexBuild:
    """One index being built for a hidden spectrum-image layer."""

    layer: Any
    stop: threading.Event = field(default_factory=threading.Event)
    preview: Any = None
    done: int = 0
    total: int = 0


def is_preview(layer: Any) -> bool:
    """Whether ``layer`` is the preview of a spectrum image whose index is building."""
    return PREVIEW_KEY in (getattr(layer, "metadata", None) or {})


def opening_plane(record: Any, energy: float | None,
                  lead: tuple[int, ...] | None) -> tuple[tuple[int, ...], float | None]:
    """The display chunk (``(e,)``, or ``(frame, e)`` per frame) a spectrum image opens
    on: the plane at ``energy`` (else the record's strongest peak, from one chunk of its
    cube; else the plane ``lead`` shows), of the frame ``lead`` shows. Returns it with
    the energy. Runs in the worker (the peak may read a block of scan rows)."""
    from .layers import display_array

    data, axes = display_array(record)
    n = data.ndim - 2
    index = list(lead[-n:]) if lead is not None and len(lead) >= n else [0] * n
    if energy is None:
        with contextlib.suppress(Exception):  # no peak: the plane the sliders show
            energy = look.chunk_peak(record)
    ax = axes[-3]
    if energy is not None and ax.linear_scale:
        step = (energy - ax.linear_offset) / ax.linear_scale
        index[-1] = int(np.clip(np.rint(step), 0, data.shape[-3] - 1))
    return tuple(index), energy


def display_index(info: EMDLayerInfo, lead: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The display-array index of a layer's leading-axes index ``lead`` (filler axes,
    which the record has not, dropped)."""
    if lead is None:
        return None
    if not info.record_axes:
        return lead
    out = {r: i for i, r in zip(lead, info.record_axes) if r is not None}
    return tuple(out[r] for r in sorted(out))


def start(presenter: Any, layer: Any, info: EMDLayerInfo) -> IndexBuild:
    """Build the index of the hidden lazy spectrum image ``layer`` in a worker (see the
    module docstring); returns the build, kept in ``presenter.indexing`` until it ends."""
    from napari.qt.threading import create_worker
    from napari.utils import progress
    from napari.utils.notifications import show_error, show_info

    from .. import api
    from ..cancel import cancellation

    assert info.record is not None
    viewer = presenter.viewer
    if info.peak_energy is not None:  # the slider waits on the energy it opens on
        presenter._focus(layer, info)
    build = api.display_pending(info.record)
    job = IndexBuild(layer)
    presenter.indexing[id(layer)] = job
    presenter.tell_listeners()
    lead = display_index(info, presenter._data_index(layer))
    record, peak = info.record, info.peak_energy
    early: dict[str, Any] = {}
    failed: list[BaseException] = []

    def run() -> None:
        def report(done: int, total: int) -> None:
            job.done, job.total = done, total

        def first(plane: np.ndarray) -> None:
            early["plane"] = plane

        try:
            with cancellation(job.stop):
                plane, early["energy"] = opening_plane(record, peak, lead)
                if build is not None:
                    build(report, plane, first)
        except BaseException as err:  # shown by the main thread
            failed.append(err)

    def work() -> Any:  # yields progress (and the early plane once) to the main thread
        t = threading.Thread(target=run, name="napari-emd-index", daemon=True)
        t.start()
        sent = False
        while t.is_alive():
            t.join(0.1)
            plane = None
            if not sent and "plane" in early:
                plane, sent = early["plane"], True
            yield job.done, job.total, plane

    bar = progress(total=0, desc=f"Indexing {layer.name}")

    def step(value: tuple[int, int, np.ndarray | None]) -> None:
        done, total, plane = value
        if total and bar.total != total:
            bar.total = total
        if done > bar.n:
            bar.update(done - bar.n)
        if plane is not None and not job.stop.is_set() and layer in viewer.layers:
            energy = early.get("energy")
            if info.peak_energy is None and energy is not None:
                info.peak_energy, info.peak_confidence = energy, look.LIKELY
                presenter._focus(layer, info)
            job.preview = _show_preview(viewer, layer, plane, energy)

    def finished() -> None:
        bar.close()
        presenter.indexing.pop(id(layer), None)
        _remove(viewer, job.preview)
        job.preview = None
        presenter.tell_listeners()
        if job.stop.is_set():
            return
        if failed:
            show_error(f"napari-emd: could not index {layer.name}: {failed[0]}")
            return
        info.indexing = False
        layer.visible = info.shown_after_index
        presenter.present(layer)

    show_info(f"napari-emd: indexing the energy planes of {layer.name} (once per file: "
              "the index is kept in the disk cache); a preview of its first plane shows "
              "after the first pass, the layer when the index is ready. Remove the layer "
              "to stop.")
    worker = create_worker(work, _start_thread=False)
    worker.yielded.connect(step)
    worker.finished.connect(finished)
    worker.finished.connect(lambda: presenter.workers.remove(worker)
                            if worker in presenter.workers else None)
    presenter.workers.append(worker)
    worker.start()
    return job


def _energy_text(layer: Any, energy: float | None) -> str:
    info = layer_info(layer)
    if energy is None or info is None or info.record is None:
        return "first plane"
    from .layers import display_array

    unit = display_array(info.record)[1][-3].units or ""
    return f"{energy:.3g} {unit}".strip()


def _show_preview(viewer: Any, layer: Any, plane: np.ndarray, energy: float | None) -> Any:
    """Add the 2-D preview of ``layer``'s opening plane just above it (placed and
    coloured like it, its contrast from the plane), keeping the layer selection."""
    from napari.layers import Image

    limits = look.robust_limits(plane) or (0.0, float(max(plane.max(initial=0), 1)))
    preview = Image(
        plane, name=f"{layer.name} {_energy_text(layer, energy)} preview",
        scale=tuple(layer.scale[-2:]), translate=tuple(layer.translate[-2:]),
        colormap=layer.colormap, blending=layer.blending,
        opacity=layer.opacity if layer.opacity > 0 else 1.0, contrast_limits=limits,
        metadata={PREVIEW_KEY: layer.name},
    )
    with contextlib.suppress(Exception):  # napari >= 0.6.1: units on layers
        preview.units = tuple(layer.units[-2:])
    selection = viewer.layers.selection
    chosen, active = set(selection), selection.active
    viewer.layers.insert(viewer.layers.index(layer) + 1, preview)
    selection.clear()
    selection.update(chosen)
    if active is not None:
        selection.active = active
    return preview


def _remove(viewer: Any, preview: Any) -> None:
    if preview is not None and preview in viewer.layers:
        viewer.layers.remove(preview)


def cancel(presenter: Any, layers: Any) -> list[str]:
    """Stop the index builds of ``layers`` by removing them (what removing a layer by
    hand does); returns the names removed."""
    gone = []
    for layer in list(layers):
        if id(layer) in presenter.indexing and layer in presenter.viewer.layers:
            gone.append(layer.name)
            presenter.viewer.layers.remove(layer)
    return gone
