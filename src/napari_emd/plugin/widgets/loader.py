"""The spectrum-image loader: a magicgui form whose parameters are ``file_reader``'s.

Choosing a file reads only its facts (:func:`napari_emd.si_facts`: metadata, no
decoding), and every choice, bound and default is set from them, afresh for each file.
Frames are numbered as Velox numbers them, 1 to N inclusive (``file_reader`` keeps
RosettaSciIO's 0-based, end-exclusive ``first_frame``/``last_frame``). Loading runs in a
worker thread with napari's progress bar; Cancel stops the decoding itself. Loading a
file again replaces the layers it added before.

The form is callable with the same parameters, so a script loads exactly what the form
would::

    _, loader = viewer.window.add_plugin_dock_widget("napari-emd-io", "Spectrum-image loader")
    loader(path="SI.emd", sum_frames=False, sum_EDS_detectors=False, lazy=True)
"""

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from magicgui.widgets import FunctionGui, Label, PushButton
from qtpy.QtCore import QObject, Signal

from ...api import read_datasets, si_facts
from ...errors import Cancelled, EMDError
from ...model import SIFacts
from ...units import format_bytes
from ..layer_meta import DERIVED, layer_info, source_file
from ..view import install

DTYPES = ("native", "uint8", "uint16", "uint32", "float32", "float64")
SELECT_TYPES = {"everything": None, "images": "image", "spectrum images": "spectrum_image",
                "single spectra": "single_spectrum"}
# Rebinning leaves at least this many channels.
MIN_CHANNELS = 16
# Warn before an in-memory load that would take more than this share of the free memory.
MEMORY_SHARE = 0.8
FILE_FILTER = "EMD files (*.emd *.EMD *.h5 *.hdf5 *.de5)"
PRUNED_TIP = ("Velox 'pruned' this file: it dropped the per-detector event streams and kept "
              "only its own spectrum-image cube, summed over all frames and detectors. The "
              "spectrum image is read from that cube, so frame and detector choices do not "
              "apply.")
FRAME_TABLE_TIP = ("The file records where each frame starts (a FrameLocationTable): a "
                   "frame range reads only those frames.")


def available_memory() -> int | None:
    """Bytes of memory a new allocation can use now, or ``None`` when unknown
    (Linux ``MemAvailable``, else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return int(pages) * int(size)
    except (ValueError, OSError, AttributeError):
        pass
    return None


def facts_text(facts: SIFacts, listing: list[str]) -> str:
    """The facts of a file as a few lines of rich text for the form."""
    name = os.path.basename(facts.path)
    lines = [f"<b>{name}</b> ({facts.format or 'not an EMD file'})"]
    if facts.has_si and not facts.readable:
        lines.append(f"Spectrum image cannot be read: {facts.reason}")
    elif facts.has_si:
        px = f", pixel {facts.pixel_size:.4g} {facts.pixel_units}" if facts.pixel_size else ""
        lines.append(f"Scan {facts.ny} × {facts.nx}{px}")
        frames = f"Frames: {facts.n_frames}"
        if facts.frame_table:
            frames += " (each frame can be read alone)"
        lines.append(frames)
        if facts.detectors:
            lines.append(f"Detectors ({len(facts.detectors)}): {', '.join(facts.detectors)}")
        if facts.energy_range:
            lo, hi = facts.energy_range
            lines.append(f"{facts.channels} channels, {lo:.4g} – {hi:.4g} "
                         f"{facts.energy_units}")
        if facts.elements:
            lines.append(f"Elements: {', '.join(facts.elements)}")
        if facts.source and facts.source != "event streams":
            lines.append(f"Read from the {facts.source}"
                         + (f": {facts.reason}" if facts.reason else ""))
    else:
        lines.append("No spectrum image: the spectrum-image options do not apply.")
    lines += [f"• {d}" for d in listing[:12]]
    if len(listing) > 12:
        lines.append(f"• … and {len(listing) - 12} more")
    return "<br>".join(lines)


def reader_options(facts: SIFacts, values: dict[str, Any]) -> dict[str, Any]:
    """``file_reader`` keyword arguments from the form's values (Velox frame numbers
    1…N inclusive become RosettaSciIO's 0-based, end-exclusive range)."""
    opts: dict[str, Any] = {"lazy": bool(values["lazy"]),
                            "select_type": SELECT_TYPES[values["select_type"]]}
    if not (facts.has_si and facts.readable):
        return opts
    first, last = int(values["first_frame"]), int(values["last_frame"])
    if not 1 <= first <= last <= facts.n_frames:
        raise ValueError(f"frames {first} to {last} are not inside 1 to {facts.n_frames}")
    streams = facts.source == "event streams"
    if streams:
        opts.update(first_frame=first - 1, last_frame=None if last == facts.n_frames else last,
                    sum_frames=bool(values["sum_frames"]),
                    sum_EDS_detectors=bool(values["sum_EDS_detectors"]))
    opts.update(rebin_energy=int(values["rebin_energy"]),
                load_SI_image_stack=bool(values["load_SI_image_stack"]))
    if streams:
        excluded = tuple(sorted(int(v) - 1 for v in values.get("exclude_frames") or ()))
        if excluded:
            opts["exclude_frames"] = excluded
        if values.get("align_frames"):
            opts["align_frames"] = True
    if values["SI_dtype"] != "native":
        opts["SI_dtype"] = values["SI_dtype"]
    return opts


def needed_bytes(facts: SIFacts, values: dict[str, Any]) -> int:
    """Memory the chosen spectrum image(s) take when computed."""
    if not (facts.has_si and facts.readable):
        return 0
    opts = reader_options(facts, values)
    detectors = 1 if opts.get("sum_EDS_detectors", True) else max(1, len(values["detectors"]))
    one = facts.nbytes(0, 1, True, detectors, opts.get("rebin_energy", 1), opts.get("SI_dtype"))
    if opts.get("sum_frames", True):
        return one
    first = opts.get("first_frame", 0)
    last = facts.n_frames if opts.get("last_frame") is None else opts["last_frame"]
    kept = [f for f in range(first, last) if f not in opts.get("exclude_frames", ())]
    return one * max(len(kept), 1)


def _load(path: str, options: dict[str, Any], viewer: Any, cancel: threading.Event):
    """The work of one load (a generator, so a cancel also stops it between steps)."""
    from ..reader import read_layers

    yield "reading"
    with contextlib.suppress(Exception):  # pint's registry, built here, not in the GUI
        import pint

        pint.get_application_registry().parse_expression("nm")
    layers = read_layers(path, viewer, cancel=cancel, **options)
    yield "layers"
    return layers


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
                "detectors": {"widget_type": "Select", "choices": [], "label": "detectors"},
                "rebin_energy": {"widget_type": "ComboBox", "choices": [1],
                                 "label": "energy rebin"},
                "SI_dtype": {"widget_type": "ComboBox", "choices": DTYPES, "label": "dtype"},
                "load_SI_image_stack": {"label": "image stack (every frame)"},
                "exclude_frames": {"widget_type": "Select", "choices": [],
                                   "label": "frames left out"},
                "align_frames": {"label": "align frames (drift)"},
                "select_type": {"widget_type": "ComboBox", "choices": list(SELECT_TYPES),
                                "label": "load"},
                "lazy": {"label": "lazy (read when shown)"},
            },
        )
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        install(self.viewer)
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
        self.sum_EDS_detectors.changed.connect(self._update_enabled)
        self.exclude_frames.changed.connect(
            lambda value: self.frames_panel.set_excluded({int(v) - 1 for v in value}))
        self.first_frame.changed.connect(self._frames_changed)
        self.last_frame.changed.connect(self._frames_changed)
        self._set_enabled(None)
        self._chosen_by_hand = False
        # napari's events hold methods weakly: a closed loader stops following
        self.viewer.layers.selection.events.active.connect(self._active_layer_changed)
        self._drops = _FileDrops(self)
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

    def _apply(self, f: SIFacts) -> None:
        """Every choice, bound and default from the file's facts."""
        n = max(f.n_frames, 1)
        with self.first_frame.changed.blocked(), self.last_frame.changed.blocked():
            self.first_frame.max = self.last_frame.max = n
            self.first_frame.value, self.last_frame.value = 1, n
        self.sum_frames.value = True
        self.sum_EDS_detectors.value = True
        self.detectors.choices = list(f.detectors)
        self.detectors.value = list(f.detectors)
        self.rebin_energy.choices = f.rebin_choices(MIN_CHANNELS)
        self.rebin_energy.value = 1
        self.SI_dtype.value = "native"
        self.load_SI_image_stack.value = False
        self.exclude_frames.choices = list(range(1, n + 1))
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
        reasons["last_frame"] = reasons["first_frame"]
        for name, why in reasons.items():
            w = getattr(self, name)
            w.enabled = why is None
            w.tooltip = why or _TIPS.get(name, "")
        if f is not None and f.frame_table and self.first_frame.enabled:
            self.first_frame.tooltip = self.last_frame.tooltip = FRAME_TABLE_TIP
        self._update_enabled()
        self.call_button.enabled = f is not None

    def _start_frame_report(self, f: SIFacts) -> None:
        """Work out the per-frame view (dose, image mean, drift) in a worker thread."""
        from napari.qt.threading import create_worker

        self.frames_panel.show_report(None)
        if not (f.has_si and f.readable and f.source == "event streams" and f.n_frames > 1):
            return
        from ...alignment import frame_report

        path = f.path
        worker = create_worker(frame_report, path, _ignore_errors=True)
        worker.returned.connect(lambda report: self._frame_report_ready(path, report))
        self._report_worker = worker
        worker.start()

    def _frame_report_ready(self, path: str, report: Any) -> None:
        if self.facts is None or self.facts.path != path:
            return  # another file was chosen meanwhile
        self.frames_panel.show_report(report, {int(v) - 1 for v in self.exclude_frames.value})

    def _update_enabled(self, *_: Any) -> None:
        self.detectors.enabled = bool(self.sum_EDS_detectors.enabled
                                      and not self.sum_EDS_detectors.value)

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
        detectors = None if options.get("sum_EDS_detectors", True) else list(
            self.detectors.value)
        self._job += 1
        job = self._job
        self.cancel_event = threading.Event()
        worker = create_worker(
            _load, path, options, self.viewer, self.cancel_event,
            _progress={"total": 0, "desc": f"Loading {os.path.basename(path)}"},
            _ignore_errors=True,
        )
        worker.returned.connect(lambda layers: self._finished(job, path, layers, detectors))
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
        """Stop the running load: the decoding stops, the viewer is left as it was."""
        if self.worker is None:
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
        self.cancel_button.enabled = on
        self.status.value = text

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

    def _finished(self, job: int, path: str, layers: list[Any],
                  detectors: list[str] | None) -> None:
        if job != self._job:
            return
        self.worker = None
        if detectors is not None:
            layers = _keep_detectors(layers, detectors)
        added = self._replace_layers(path, layers)
        names = ", ".join(layer.name for layer in added) or "nothing"
        self._busy(False, f"Loaded {names}.")
        self.loaded.emit(added)

    def _replace_layers(self, path: str, layer_data: list[Any]) -> list[Any]:
        """Add the new layers, first removing this file's spectrum-image layers, maps
        made from them, and layers of the same datasets from an earlier load."""
        from napari.layers import Layer

        new_names = {meta.get("name") for _, meta, _ in layer_data}
        new_parts = {_part(meta) for _, meta, _ in layer_data} - {None}
        new_has_si = any((info := layer_info(meta)) is not None and info.is_spectrum_image
                         for _, meta, _ in layer_data)
        real = os.path.realpath(path)
        old = []
        for layer in list(self.viewer.layers):
            src = source_file(layer)
            if not src or os.path.realpath(src) != real:
                continue
            info = layer_info(layer)
            si_or_map = info is not None and (info.is_spectrum_image or info.kind == DERIVED)
            if layer.name in new_names or _part(layer) in new_parts or (new_has_si
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
    "sum_EDS_detectors": "Sum the EDS detectors (else one layer per chosen detector)",
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


def _keep_detectors(layers: list[Any], detectors: list[str]) -> list[Any]:
    """Drop the per-detector spectrum-image layers whose detector was not chosen."""
    out = []
    for tup in layers:
        info = layer_info(tup[1])
        rec = info.record if info is not None and info.is_spectrum_image else None
        det = rec.detector if rec is not None else None
        if det is None and rec is not None and rec.title.startswith("EDS - "):
            det = rec.title[len("EDS - "):]
        if det is None or str(det) in detectors:
            out.append(tup)
    return out
