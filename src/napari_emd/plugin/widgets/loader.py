"""The spectrum-image loader: a magicgui form whose parameters are ``file_reader``'s.

Choosing a file reads only its facts (:func:`napari_emd.si_facts`: metadata, no
decoding), and every choice, bound and default is set from them, afresh for each file;
the categorical choices (detectors, frames left out, rebin) are asked of those facts
whenever napari or magicgui resets them, so they and their values survive.
Frames are numbered as Velox numbers them, 1 to N inclusive (``file_reader`` keeps
RosettaSciIO's 0-based, end-exclusive ``first_frame``/``last_frame``). Loading runs in a
worker thread with napari's progress bar; Cancel stops the decoding itself. Loading a
file again replaces the layers it added before. The chosen detectors go to the read
(``detectors=``), summed or one spectrum image each. A load asked for a spectrum image
that makes none removes the earlier one and warns with the reader's reason.

The form is callable with the same parameters, so a script loads exactly what the form
would::

    _, loader = viewer.window.add_plugin_dock_widget("napari-emd-io", "Spectrum-image loader")
    loader(path="SI.emd", sum_frames=False, sum_EDS_detectors=False, lazy=True)
"""

import contextlib
import os
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

from magicgui.widgets import FunctionGui, Label, PushButton
from qtpy.QtCore import QObject, Signal

from ...api import read_datasets, si_facts
from ...errors import Cancelled, EMDError
from ...model import SIFacts
from ...units import format_bytes
from .. import indexing
from ..layer_meta import DERIVED, layer_info, source_file
from ..view import install
from .loader_options import (
    DTYPES,
    FILE_FILTER,
    FRAME_TABLE_TIP,
    MEMORY_SHARE,
    MIN_CHANNELS,
    PRUNED_TIP,
    SELECT_TYPES,
    asks_for_si,
    available_memory,
    facts_text,
    needed_bytes,
    reader_options,
)


def _load(path: str, options: dict[str, Any], viewer: Any, cancel: threading.Event):
    """The work of one load (a generator, so a cancel also stops it between steps).
    Returns the layer data and the messages of the reader's warnings (``UserWarning``s,
    ``EMDWarning`` among them), which the loader reports itself; other warnings go on to
    napari as before."""
    from ..reader import read_layers

    yield "reading"
    with contextlib.suppress(Exception):  # pint's registry, built here, not in the GUI
        import pint

        pint.get_application_registry().parse_expression("nm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layers = read_layers(path, viewer, cancel=cancel, **options)
    messages: list[str] = []
    for w in caught:
        if issubclass(w.category, UserWarning):
            if str(w.message) not in messages:
                messages.append(str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    yield "layers"
    return layers, messages


class LoaderWidget(FunctionGui):
    """Dock widget: a file's facts, ``file_reader``'s options bounded by them, Load and
    Cancel. Call it with parameters to load from a script.

    ``loaded`` is emitted with the layers a load added, ``failed`` with the reason a load
    failed."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(
            self._run,
            call_button="Load",
            param_options={
                "path": {"widget_type": "FileEdit", "mode": "r", "filter": FILE_FILTER,
                         "label": "file"},
                "first_frame": {"min": 1, "max": 1, "label": "first frame"},
                "last_frame": {"min": 1, "max": 1, "label": "last frame"},
                "sum_frames": {"label": "sum frames"},
                "sum_EDS_detectors": {"label": "sum detectors"},
                # choices are asked of the file's facts each time: napari and magicgui
                # reset them (a layer added, the form docked), and a fixed list would
                # then be the empty one the form was built with
                "detectors": {"widget_type": "Select", "choices": self._detector_choices,
                              "label": "detectors"},
                "rebin_energy": {"widget_type": "ComboBox",
                                 "choices": self._rebin_choices, "label": "energy rebin"},
                "SI_dtype": {"widget_type": "ComboBox", "choices": DTYPES, "label": "dtype"},
                "load_SI_image_stack": {"label": "image stack (every frame)"},
                "exclude_frames": {"widget_type": "Select",
                                   "choices": self._frame_choices,
                                   "label": "frames left out"},
                "align_frames": {"label": "align frames (drift)"},
                "select_type": {"widget_type": "ComboBox", "choices": list(SELECT_TYPES),
                                "label": "load"},
                "lazy": {"label": "lazy (read when shown)"},
            },
        )
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.presenter = install(self.viewer)
        # the layers of the last load whose plane index is being built (Cancel stops it),
        # and what the status says of it until it ends
        self.indexing: list[Any] = []
        self._indexing_note = ""
        self.presenter.listeners.append(weakref.WeakMethod(self._indexing_changed))
        self._signals = _Signals()
        self.loaded, self.failed = self._signals.loaded, self._signals.failed
        self.facts: SIFacts | None = None
        self.worker: Any = None
        self.cancel_event: threading.Event | None = None
        self._job = 0
        self.facts_label = Label(value="Choose an EMD file (or select one of its layers).")
        from .frames_panel import FramesPanel

        self.frames_panel = FramesPanel()
        self._report_worker: Any = None
        self.size_label = Label(value="")
        self.status = Label(value="")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.cancel_button.changed.connect(self.cancel)
        self.insert(1, self.facts_label)
        self.extend([self.cancel_button, self.size_label, self.status])
        self.native.layout().addWidget(self.frames_panel)
        self.facts_label.native.setWordWrap(True)
        self.status.native.setWordWrap(True)
        self.size_label.native.setWordWrap(True)
        self.ask_before_big_load = True
        self.path.changed.connect(self._path_changed)
        for name in ("first_frame", "last_frame", "sum_frames", "sum_EDS_detectors",
                     "detectors", "rebin_energy", "SI_dtype", "lazy", "exclude_frames"):
            getattr(self, name).changed.connect(self._update_size)
        self.exclude_frames.changed.connect(
            lambda value: self.frames_panel.set_excluded({int(v) - 1 for v in value}))
        self.first_frame.changed.connect(self._frames_changed)
        self.last_frame.changed.connect(self._frames_changed)
        self._set_enabled(None)
        self._chosen_by_hand = False
        # napari's events hold methods weakly: a closed loader stops following
        self.viewer.layers.selection.events.active.connect(self._active_layer_changed)
        self._drops = _FileDrops(self)
        from .docking import scroll_when_docked

        # docked, the long form scrolls: its height never sets the window's minimum
        scroll_when_docked(self.native, self)
        self._active_layer_changed()

    # the function behind the form: its parameters are file_reader's ---------------------
    def _run(
        self,
        path: Path = Path(),
        first_frame: int = 1,
        last_frame: int = 1,
        sum_frames: bool = True,
        sum_EDS_detectors: bool = True,
        detectors: list[str] = (),  # type: ignore[assignment]
        rebin_energy: int = 1,
        SI_dtype: str = "native",
        load_SI_image_stack: bool = False,
        exclude_frames: list[int] = (),  # type: ignore[assignment]
        align_frames: bool = False,
        select_type: str = "everything",
        lazy: bool = True,
    ) -> Any:
        """Load ``path`` with these options (frames 1…N inclusive, as Velox numbers
        them). Returns the worker thread, or ``None`` when nothing was started."""
        return self.load()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Set the form from keyword arguments (the file first: its facts reset the other
        choices), then load, exactly as pressing Load would."""
        if args:
            raise TypeError("call the loader with keyword arguments (file_reader's names)")
        path = kwargs.pop("path", None)
        if path is not None:
            self.set_path(path)
        for key, value in kwargs.items():
            if not hasattr(self, key) or key not in self.__signature__.parameters:
                raise TypeError(f"the loader has no parameter {key!r}")
            widget = getattr(self, key)
            if key == "SI_dtype" and value is None:
                value = "native"
            if key == "select_type" and value not in SELECT_TYPES:
                value = next((k for k, v in SELECT_TYPES.items() if v == value), value)
            widget.value = value
        return super().__call__()

    # choosing the file -------------------------------------------------------------------
    def set_path(self, path: str | os.PathLike) -> SIFacts | None:
        """Choose ``path``: read its facts (no data) and set choices, bounds and defaults
        from them. Returns the facts, ``None`` (with a notification) when unreadable."""
        p = os.path.abspath(os.fspath(path))
        if Path(p) != Path(self.path.value):
            with self.path.changed.blocked():
                self.path.value = p
        return self._read_facts(p)

    def _path_changed(self, value: Any) -> None:
        self._chosen_by_hand = True
        self._read_facts(os.path.abspath(os.fspath(value)))

    def _active_layer_changed(self, event: Any = None) -> None:
        """Until a file is chosen by hand, the loader offers the selected layer's file."""
        if not self._chosen_by_hand:
            with contextlib.suppress(RuntimeError):  # the form's Qt side was closed
                self.follow_layer(self.viewer.layers.selection.active)

    def _read_facts(self, p: str) -> SIFacts | None:
        try:
            if not os.path.isfile(p):
                raise EMDError(p, "no such file")
            facts = si_facts(p)
            listing = [] if (facts.has_si and facts.format == "velox") else [
                f"{d.title}: {d.kind} {'×'.join(map(str, d.shape))} {d.dtype}"
                for d in read_datasets(p, lazy=True)]
        except Exception as err:  # shown to the user, never raised into Qt
            self.facts = None
            self.facts_label.value = f"<b>Cannot read this file</b><br>{err}"
            self._set_enabled(None)
            self._notify_error(f"napari-emd: {err}")
            return None
        self.facts = facts
        self.facts_label.value = facts_text(facts, listing)
        self._apply(facts)
        return facts

    def follow_layer(self, layer: Any) -> None:
        """Choose the file a layer was read from (when no file was chosen by hand)."""
        src = source_file(layer) if layer is not None else None
        if src and os.path.isfile(src) and (self.facts is None or self.facts.path != src):
            self.set_path(src)

    # the choices of the categorical widgets, read from the file's facts each time they
    # are asked for (magicgui calls these with the widget) ----------------------------
    def _current_facts(self) -> SIFacts | None:
        # magicgui asks for the choices while the form is built, before ``facts`` is set
        return self.__dict__.get("facts")

    def _detector_choices(self, _widget: Any = None) -> list[str]:
        f = self._current_facts()
        return list(f.detectors) if f is not None else []

    def _rebin_choices(self, _widget: Any = None) -> list[int]:
        f = self._current_facts()
        return f.rebin_choices(MIN_CHANNELS) if f is not None else [1]

    def _frame_choices(self, _widget: Any = None) -> list[int]:
        f = self._current_facts()
        return list(range(1, max(f.n_frames, 1) + 1)) if f is not None else []

    def _apply(self, f: SIFacts) -> None:
        """Every choice, bound and default from the file's facts."""
        n = max(f.n_frames, 1)
        with self.first_frame.changed.blocked(), self.last_frame.changed.blocked():
            self.first_frame.max = self.last_frame.max = n
            self.first_frame.value, self.last_frame.value = 1, n
        self.sum_frames.value = True
        self.sum_EDS_detectors.value = True
        for name in ("detectors", "rebin_energy", "exclude_frames"):
            getattr(self, name).reset_choices()  # the new file's choices
        self.detectors.value = list(f.detectors)
        self.rebin_energy.value = 1
        self.SI_dtype.value = "native"
        self.load_SI_image_stack.value = False
        self.exclude_frames.value = []
        self.align_frames.value = False
        self.select_type.value = "everything"
        self.lazy.value = True
        self._set_enabled(f)
        self._update_size()
        self._start_frame_report(f)

    def _set_enabled(self, f: SIFacts | None) -> None:
        """Enable what the file has; say why the rest is off (tooltips)."""
        si = f is not None and f.has_si and f.readable
        streams = si and f.source == "event streams"
        why_no_si = ("this file has no spectrum image" if f is not None and not f.has_si
                     else f"the spectrum image cannot be read: {f.reason}"
                     if f is not None and f.has_si and not f.readable else "choose a file first")
        reasons = {
            "first_frame": None if streams and f.n_frames > 1 else
            PRUNED_TIP if si and not streams else
            "this spectrum image has one frame" if si else why_no_si,
            "sum_frames": None if streams and f.n_frames > 1 else
            PRUNED_TIP if si and not streams else
            "this spectrum image has one frame" if si else why_no_si,
            "sum_EDS_detectors": None if streams and len(f.detectors) > 1 else
            PRUNED_TIP if si and not streams else
            "this spectrum image has one detector" if si else why_no_si,
            "rebin_energy": None if si else why_no_si,
            "SI_dtype": None if si else why_no_si,
            "load_SI_image_stack": None if si else why_no_si,
            "align_frames": None if streams and f.n_frames > 1 else
            PRUNED_TIP if si and not streams else
            "this spectrum image has one frame" if si else why_no_si,
        }
        reasons["exclude_frames"] = reasons["align_frames"]
        # the detectors to read, summed or not: a choice whenever there are several
        reasons["detectors"] = reasons["sum_EDS_detectors"]
        reasons["last_frame"] = reasons["first_frame"]
        for name, why in reasons.items():
            w = getattr(self, name)
            w.enabled = why is None
            w.tooltip = why or _TIPS.get(name, "")
        if f is not None and f.frame_table and self.first_frame.enabled:
            self.first_frame.tooltip = self.last_frame.tooltip = FRAME_TABLE_TIP
        self.call_button.enabled = f is not None

    def _start_frame_report(self, f: SIFacts) -> None:
        """Work out the per-frame view (dose, image mean, drift) in a worker thread."""
        from napari.qt.threading import create_worker

        self.frames_panel.show_report(None)
        if not (f.has_si and f.readable and f.source == "event streams" and f.n_frames > 1):
            return
        from ...formats.velox import frame_report

        path = f.path
        worker = create_worker(frame_report, path, _ignore_errors=True)
        worker.returned.connect(lambda report: self._frame_report_ready(path, report))
        self._report_worker = worker
        worker.start()

    def _frame_report_ready(self, path: str, report: Any) -> None:
        if self.facts is None or self.facts.path != path:
            return  # another file was chosen meanwhile
        self.frames_panel.show_report(report, {int(v) - 1 for v in self.exclude_frames.value})

    def _frames_changed(self, *_: Any) -> None:
        if self.last_frame.value < self.first_frame.value:
            self.last_frame.value = self.first_frame.value

    def options(self) -> dict[str, Any]:
        """The ``file_reader`` keyword arguments the form is set to."""
        if self.facts is None:
            raise ValueError("choose an EMD file first")
        return reader_options(self.facts, self._values())

    def _values(self) -> dict[str, Any]:
        return {name: getattr(self, name).value for name in self.__signature__.parameters}

    def estimated_nbytes(self) -> int:
        """Memory the chosen spectrum image(s) take when computed."""
        return needed_bytes(self.facts, self._values()) if self.facts is not None else 0

    def memory_warning(self) -> str | None:
        """Why an in-memory load would not fit, or ``None``."""
        need, avail = self.estimated_nbytes(), available_memory()
        if self.lazy.value or avail is None or need <= MEMORY_SHARE * avail:
            return None
        return (f"An in-memory load needs {format_bytes(need)}, but only "
                f"{format_bytes(avail)} is free: load lazily, rebin, sum or pick fewer frames.")

    def _update_size(self, *_: Any) -> None:
        if self.facts is None or not (self.facts.has_si and self.facts.readable):
            self.size_label.value = ""
            return
        try:
            need = self.estimated_nbytes()
        except ValueError as err:
            self.size_label.value = str(err)
            return
        mode = "lazy: read when shown" if self.lazy.value else "in memory"
        text = f"Spectrum image: {format_bytes(need)} ({mode})"
        warn = self.memory_warning()
        if warn:
            text += f"<br><span style='color:#e05050'>{warn}</span>"
        self.size_label.value = text

    # loading -----------------------------------------------------------------------------
    def load(self) -> Any:
        """Start loading with the form's options in a worker thread; returns the worker
        (``None`` when nothing was started)."""
        from napari.qt.threading import create_worker

        if self.facts is None:
            self._notify_error("napari-emd: choose an EMD file to load first")
            return None
        try:
            options = self.options()
        except ValueError as err:
            self._notify_error(f"napari-emd: {err}")
            return None
        if self.worker is not None:
            self.cancel()
        warn = self.memory_warning()
        if warn and self.ask_before_big_load and not self._confirm(warn):
            return None
        path = self.facts.path
        wants_si = asks_for_si(self.facts, options)
        self._job += 1
        job = self._job
        self.cancel_event = threading.Event()
        worker = create_worker(
            _load, path, options, self.viewer, self.cancel_event,
            _progress={"total": 0, "desc": f"Loading {os.path.basename(path)}"},
            _ignore_errors=True,
        )
        worker.returned.connect(lambda result: self._finished(job, path, *result, wants_si))
        worker.errored.connect(lambda err: self._errored(job, path, err))
        worker.finished.connect(lambda: self._worker_done(job))
        self.worker = worker
        self._busy(True, f"Loading {os.path.basename(path)}…")
        worker.start()
        return worker

    def _confirm(self, warn: str) -> bool:
        from qtpy.QtWidgets import QMessageBox

        answer = QMessageBox.question(self.native, "Not enough memory",
                                      warn + "\n\nLoad into memory anyway?",
                                      QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    def cancel(self, *_: Any) -> None:
        """Stop the running load: the decoding stops, the viewer is left as it was. Once
        loaded, while the energy-plane index of a big spectrum image it loaded is being
        built, Cancel stops that build and removes that layer."""
        if self.worker is None:
            gone = indexing.cancel(self.presenter, self.indexing)
            self.indexing = []
            if gone:
                self._busy(False, f"Indexing cancelled: removed {', '.join(gone)}.")
            return
        self._job += 1  # the running job's results are now stale
        if self.cancel_event is not None:
            self.cancel_event.set()
        with contextlib.suppress(RuntimeError):
            self.worker.quit()
        self.worker = None
        self._busy(False, "Load cancelled.")

    def _busy(self, on: bool, text: str) -> None:
        self.call_button.enabled = not on
        self.cancel_button.enabled = on or bool(self.indexing)
        self.status.value = text

    def _indexing_changed(self) -> None:
        """An index build started or ended: Cancel stays on while one of this loader's
        layers is being indexed."""
        still = [ly for ly in self.indexing if id(ly) in self.presenter.indexing]
        if len(still) == len(self.indexing):
            return
        self.indexing = still
        if not still and self.worker is None:
            self.cancel_button.enabled = False
            # the rest of the status (warnings) stays
            self.status.value = self.status.value.replace(self._indexing_note, "")
            self._indexing_note = ""

    def _worker_done(self, job: int) -> None:
        if job == self._job:
            self.worker = None

    def _errored(self, job: int, path: str, err: BaseException) -> None:
        if job != self._job or isinstance(err, Cancelled):
            return
        self.worker = None
        msg = f"napari-emd could not load {os.path.basename(path)}: {err}"
        self._busy(False, msg)
        self._notify_error(msg)
        self.failed.emit(str(err))

    def _finished(self, job: int, path: str, layers: list[Any], messages: list[str],
                  wants_si: bool) -> None:
        if job != self._job:
            return
        self.worker = None
        made_si = any(_is_si(meta) for _, meta, _ in layers)
        # a load asked for a spectrum image replaces the earlier one even when it made
        # none: the viewer then shows what this load made, and the warning says why
        try:
            added = self._replace_layers(path, layers, replace_si=made_si or wants_si)
        except Exception as err:  # e.g. a lazy SI whose stream is found corrupt when shown
            msg = f"napari-emd could not show {os.path.basename(path)}: {err}"
            self._busy(False, msg)
            self._notify_error(msg)
            self.failed.emit(str(err))
            return
        names = ", ".join(layer.name for layer in added) or "nothing"
        text = f"Loaded {names}."
        self.indexing = [ly for ly in added if id(ly) in self.presenter.indexing]
        self._indexing_note = (f" Indexing the energy planes of "
                               f"{', '.join(ly.name for ly in self.indexing)}: Cancel "
                               "stops it." if self.indexing else "")
        text += self._indexing_note
        if wants_si and not made_si:
            why = "; ".join(messages) or "the reader gave no reason"
            warn = f"No spectrum image was made from {os.path.basename(path)}: {why}"
            self._busy(False, f"{text}<br><span style='color:#e05050'>{warn}</span>")
            self._notify_warning(f"napari-emd: {warn}")
        else:
            if messages:
                text += f" Warnings: {'; '.join(messages)}"
            self._busy(False, text)
            for msg in messages:
                self._notify_warning(f"napari-emd: {msg}")
        self.loaded.emit(added)

    def _replace_layers(self, path: str, layer_data: list[Any],
                        replace_si: bool = False) -> list[Any]:
        """Add the new layers, first removing layers of the same datasets from an earlier
        load and, with ``replace_si``, this file's spectrum-image layers and the maps made
        from them."""
        from napari.layers import Layer

        new_names = {meta.get("name") for _, meta, _ in layer_data}
        new_parts = {_part(meta) for _, meta, _ in layer_data} - {None}
        real = os.path.realpath(path)
        old = []
        for layer in list(self.viewer.layers):
            src = source_file(layer)
            if not src or os.path.realpath(src) != real:
                continue
            info = layer_info(layer)
            si_or_map = info is not None and (info.is_spectrum_image or info.kind == DERIVED)
            if layer.name in new_names or _part(layer) in new_parts or (replace_si
                                                                         and si_or_map):
                old.append(layer)
        for layer in old:
            self.viewer.layers.remove(layer)
        added = []
        for data, meta, kind in layer_data:
            layer = Layer.create(data, dict(meta), kind)
            self.viewer.add_layer(layer)
            added.append(layer)
        return added

    def _notify_error(self, msg: str) -> None:
        from napari.utils.notifications import show_error

        self.status.value = msg
        show_error(msg)

    def _notify_warning(self, msg: str) -> None:
        from napari.utils.notifications import show_warning

        show_warning(msg)


class _Signals(QObject):
    loaded = Signal(list)
    failed = Signal(str)


class _FileDrops:
    """Files dropped on the loader choose the file (a Qt event filter)."""

    def __init__(self, loader: LoaderWidget) -> None:
        from qtpy.QtCore import QEvent, QObject

        class Filter(QObject):
            def eventFilter(self, obj: Any, event: Any) -> bool:
                kind = event.type()
                if kind in (QEvent.DragEnter, QEvent.DragMove) and event.mimeData().hasUrls():
                    event.acceptProposedAction()
                    return True
                if kind == QEvent.Drop and event.mimeData().hasUrls():
                    urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
                    if urls:
                        loader.set_path(urls[0])
                        loader._chosen_by_hand = True
                        event.acceptProposedAction()
                        return True
                return False

        self.filter = Filter(loader.native)
        loader.native.setAcceptDrops(True)
        loader.native.installEventFilter(self.filter)


_TIPS = {
    "first_frame": "First frame to read (frames are numbered 1 to N, as in Velox)",
    "last_frame": "Last frame to read (included)",
    "sum_frames": "Sum the frames (else a frame slider)",
    "sum_EDS_detectors": "Sum the chosen EDS detectors into one spectrum image (else one "
                         "layer per chosen detector)",
    "detectors": "The EDS detectors to read (only their X-rays are decoded): summed into "
                 "one spectrum image when 'sum detectors' is ticked, else one spectrum "
                 "image each",
    "rebin_energy": f"Sum this many neighbouring channels (at least {MIN_CHANNELS} are left)",
    "SI_dtype": "dtype of the spectrum image (native: the file's)",
    "load_SI_image_stack": "Read every frame of the images taken with the spectrum image",
    "exclude_frames": "Frames (1 to N) the sum leaves out: a beam-damaged or drifted "
                      "frame, say (see the per-frame plot below)",
    "align_frames": "Move every frame's X-rays by its drift, measured on the images "
                    "taken with the spectrum image (whole pixels), while decoding: the "
                    "sum is sharp even when the specimen drifted",
}


def _part(layer_or_meta: Any) -> tuple[str, str | None] | None:
    """The dataset (and part of a complex one) a layer shows: the same for a layer
    however it was opened or renamed since."""
    info = layer_info(layer_or_meta)
    return (info.dataset_path, info.part) if info is not None and info.dataset_path else None


def _is_si(layer_or_meta: Any) -> bool:
    info = layer_info(layer_or_meta)
    return info is not None and info.is_spectrum_image
