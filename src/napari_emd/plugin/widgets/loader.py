"""The spectrum-image loader: choose a file, see its facts, pick the reader options, load.

Choosing a file reads only its attributes (``formats.velox.si_facts`` for Velox files), so
the facts and the option bounds appear at once even for multi-gigabyte files. Loading runs
in a worker thread with napari's progress display; the viewer stays responsive, the load
can be cancelled, and errors become napari notifications that give the reason. Loading the
same file again replaces the layers it added before instead of piling up new ones.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...api import read_datasets, si_facts
from ...errors import EMDError
from ...model import SPECTRUM_IMAGE, SIFacts
from ...units import format_bytes
from ..layer_meta import DERIVED, layer_info, source_file
from ..view import focus_energy

DTYPES = ("native", "uint8", "uint16", "uint32", "float32")
SELECT_TYPES = {
    "everything": None,
    "images": "image",
    "spectrum images": "spectrum_image",
    "single spectra": "single_spectrum",
}
# Warn before an in-memory load that would take more than this share of the free memory.
MEMORY_SHARE = 0.8


@dataclass
class FileFacts:
    """What the loader shows about a file before reading any data."""

    path: str
    format: str | None = None
    has_si: bool = False
    ny: int = 0
    nx: int = 0
    n_frames: int = 1
    detectors: list[str] = field(default_factory=list)
    channels: int = 0
    energy_range: tuple[float, float] | None = None
    energy_units: str = ""
    pixel_size: float | None = None
    pixel_units: str = ""
    pruned: bool | None = None
    has_frame_table: bool | None = None
    elements: list[str] = field(default_factory=list)
    dtype: str = "uint16"
    signal_type: str = ""
    datasets: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The facts as a few human-readable lines."""
        name = os.path.basename(self.path)
        lines = [f"<b>{name}</b> ({self.format or 'not an EMD file'})"]
        if self.has_si:
            px = ""
            if self.pixel_size:
                px = f", pixel {self.pixel_size:.4g} {self.pixel_units}".rstrip()
            lines.append(f"Scan grid: {self.ny} × {self.nx}{px}")
            ft = ""
            if self.has_frame_table is not None:
                ft = " (frame table)" if self.has_frame_table else " (no frame table)"
            lines.append(f"Frames: {self.n_frames}{ft}")
            if self.detectors:
                lines.append(f"Detectors ({len(self.detectors)}): {', '.join(self.detectors)}")
            ch = f"Channels: {self.channels}"
            if self.energy_range:
                lo, hi = self.energy_range
                ch += f", {lo:.4g} – {hi:.4g} {self.energy_units}".rstrip()
            lines.append(ch)
            if self.pruned is not None:
                lines.append(f"Pruned: {'yes' if self.pruned else 'no'}")
            if self.elements:
                lines.append(f"Elements: {', '.join(self.elements)}")
        elif self.format:
            lines.append("No spectrum image: the SI options do not apply.")
        for d in self.datasets[:12]:
            lines.append(f"• {d}")
        if len(self.datasets) > 12:
            lines.append(f"• … and {len(self.datasets) - 12} more")
        return "<br>".join(lines)


def facts_from_si(si: SIFacts) -> FileFacts:
    """The loader's view of a file's :class:`~napari_emd.SIFacts`."""
    velox = si.format == "velox"
    return FileFacts(
        path=si.path, format=si.format, has_si=si.has_si and si.readable, ny=si.ny,
        nx=si.nx, n_frames=si.n_frames, detectors=list(si.detectors), channels=si.channels,
        energy_range=si.energy_range, energy_units=si.energy_units,
        pixel_size=si.pixel_size, pixel_units=si.pixel_units,
        pruned=(si.has_si and not si.readable) if velox else None,
        has_frame_table=si.frame_table if velox and si.readable else None,
        elements=list(si.elements), dtype=si.dtype, signal_type=si.signal_type,
        datasets=[*([f"spectrum stream pruned: {si.reason}"] if si.reason else []),
                  *(f"EELS spectrum image {lo:.5g} – {hi:.5g} eV" for lo, hi in si.eels_ranges)],
    )


def read_facts(path: str | os.PathLike) -> FileFacts:
    """The facts of ``path`` (from metadata only for Velox files), and a listing of its
    datasets when it has no spectrum image.

    Raises :class:`napari_emd.EMDError` for a file that is not EMD or is damaged.
    """
    p = os.path.abspath(os.fspath(path))
    if not os.path.isfile(p):
        raise EMDError(p, "no such file")
    facts = facts_from_si(si_facts(p))
    if not facts.has_si or facts.format != "velox":  # listing them is cheap (lazy)
        for ds in read_datasets(p, lazy=True):
            facts.datasets.append(
                f"{ds.title}: {ds.kind} {'×'.join(map(str, ds.shape))} {ds.dtype}")
    return facts


def estimate_nbytes(facts: FileFacts, options: dict[str, Any], n_detectors: int = 1) -> int:
    """Bytes the spectrum image(s) of ``options`` take in memory."""
    if not facts.has_si:
        return 0
    first = int(options.get("first_frame", 0))
    last = options.get("last_frame")
    last = facts.n_frames if last is None else int(last)
    frames = 1 if options.get("sum_frames", True) else max(last - first, 1)
    dets = 1 if options.get("sum_EDS_detectors", True) else max(n_detectors, 1)
    rebin = int(options.get("rebin_energy", 1)) or 1
    dtype = options.get("SI_dtype") or facts.dtype
    try:
        item = np.dtype(dtype).itemsize
    except TypeError:
        item = 2
    return int(facts.ny) * int(facts.nx) * frames * dets * (facts.channels // rebin) * item


def available_memory() -> int | None:
    """Bytes of memory a new allocation can use now, or ``None`` when unknown.

    Linux: ``MemAvailable`` from ``/proc/meminfo`` (free plus reclaimable cache), else
    ``os.sysconf`` free pages; psutil is not needed.
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return int(pages) * int(size)
    except (ValueError, OSError, AttributeError):
        pass
    return None


def _load_steps(path: str, options: dict[str, Any]):
    """The work of one load, as a generator so that a cancel stops between steps."""
    from ..reader import reader_function

    yield "reading"
    _warm_up_units()
    layers = reader_function(path, **options)
    yield "layers"
    if options.get("lazy", True):
        layers = [_keep_lazy(tup) for tup in layers]
    return layers


def _warm_up_units() -> None:
    """Build pint's unit registry here in the worker: napari builds it on the first layer
    with units, and that half second would otherwise freeze the viewer when the layers
    are added."""
    with contextlib.suppress(Exception):
        import pint

        pint.get_application_registry().parse_expression("nm")


def _keep_lazy(tup: Any) -> Any:
    """A lazy load keeps spectrum images lazy: napari's reader glue reads small arrays into
    memory for speed, the loader leaves them on disk as asked."""
    from ..layers import display_array

    data, meta, kind = tup
    info = layer_info(meta)
    if (
        kind == "image"
        and isinstance(data, np.ndarray)
        and info is not None
        and info.is_spectrum_image
        and info.record.is_lazy
    ):
        lazy, _ = display_array(info.record)
        if tuple(lazy.shape) == tuple(data.shape):
            return (lazy, meta, kind)
    return tup


class LoaderWidget(QWidget):
    """Dock widget: read a file's facts, choose reader options, load it as lazy layers."""

    facts_changed = Signal(object)
    loaded = Signal(list)
    failed = Signal(str)

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.facts: FileFacts | None = None
        self.worker: Any = None
        self._job = 0
        self._autofilled = True
        self.ask_before_big_load = True
        self.setAcceptDrops(True)

        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("EMD file (browse, drop a file, or select a layer)")
        self.path_edit.editingFinished.connect(self._path_edited)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        layout.addLayout(row)

        self.facts_label = QLabel("No file chosen.")
        self.facts_label.setWordWrap(True)
        self.facts_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.facts_label)

        self.si_box = QGroupBox("Spectrum image")
        form = QFormLayout(self.si_box)
        frames = QHBoxLayout()
        self.first_frame = QSpinBox()
        self.last_frame = QSpinBox()
        self.first_frame.setToolTip("First frame to read (0-based)")
        self.last_frame.setToolTip("Frames up to this number are read (exclusive)")
        frames.addWidget(self.first_frame)
        frames.addWidget(QLabel("to"))
        frames.addWidget(self.last_frame)
        form.addRow("Frames", frames)
        self.sum_frames = QCheckBox("sum frames")
        self.sum_frames.setChecked(True)
        form.addRow("", self.sum_frames)
        self.sum_detectors = QCheckBox("sum all detectors")
        self.sum_detectors.setChecked(True)
        form.addRow("Detectors", self.sum_detectors)
        self.detector_list = QListWidget()
        self.detector_list.setMaximumHeight(90)
        self.detector_list.setToolTip("Detectors to load as separate layers")
        form.addRow("", self.detector_list)
        self.rebin = QComboBox()
        self.rebin.setToolTip("Sum this many neighbouring energy channels")
        form.addRow("Energy rebin", self.rebin)
        self.dtype = QComboBox()
        self.dtype.addItems(DTYPES)
        form.addRow("dtype", self.dtype)
        self.image_stack = QCheckBox("load the SI image stack (every frame)")
        form.addRow("", self.image_stack)
        layout.addWidget(self.si_box)

        general = QFormLayout()
        self.select_type = QComboBox()
        self.select_type.addItems(list(SELECT_TYPES))
        general.addRow("Load", self.select_type)
        self.lazy = QCheckBox("lazy (read data only when shown)")
        self.lazy.setChecked(True)
        general.addRow("", self.lazy)
        layout.addLayout(general)

        self.size_label = QLabel("")
        self.size_label.setWordWrap(True)
        layout.addWidget(self.size_label)

        buttons = QHBoxLayout()
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self.load)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setVisible(False)
        layout.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)

        for w in (self.first_frame, self.last_frame):
            w.valueChanged.connect(self._frames_changed)
        for w in (self.sum_frames, self.sum_detectors, self.lazy, self.image_stack):
            w.toggled.connect(self._update_size)
        self.sum_detectors.toggled.connect(self._detectors_toggled)
        self.detector_list.itemChanged.connect(self._update_size)
        for w in (self.rebin, self.dtype, self.select_type):
            w.currentIndexChanged.connect(self._update_size)

        self._set_si_enabled(False)
        active = self.viewer.layers.selection.events.active
        active.connect(self._active_layer_changed)
        slot = self._active_layer_changed

        def unhook(*_: Any) -> None:  # a closed widget stops following the selection
            with contextlib.suppress(TypeError, ValueError, RuntimeError):
                active.disconnect(slot)

        self.destroyed.connect(unhook)
        self._active_layer_changed()

    # ---- choosing the file ------------------------------------------------------------
    def _browse(self) -> None:
        start = os.path.dirname(self.path_edit.text()) if self.path_edit.text() else ""
        path, _ = QFileDialog.getOpenFileName(
            self, "Open an EMD file", start, "EMD files (*.emd *.EMD *.h5 *.hdf5 *.de5)"
        )
        if path:
            self.set_path(path)

    def _path_edited(self) -> None:
        text = self.path_edit.text().strip()
        if text and (self.facts is None or os.path.abspath(text) != self.facts.path):
            self.set_path(text)

    def _active_layer_changed(self, event: Any = None) -> None:
        if not self._autofilled and self.path_edit.text():
            return
        layer = self.viewer.layers.selection.active
        src = source_file(layer) if layer is not None else None
        if src and os.path.isfile(src) and (self.facts is None or self.facts.path != src):
            self.set_path(src, autofilled=True)

    def dragEnterEvent(self, event: Any) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: Any) -> None:
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.set_path(urls[0])
            event.acceptProposedAction()

    def set_path(self, path: str | os.PathLike, autofilled: bool = False) -> FileFacts | None:
        """Choose ``path``: read its facts (no data) and set the option bounds from them.
        Returns the facts, or ``None`` (with a notification) when the file cannot be read."""
        p = os.path.abspath(os.fspath(path))
        self._autofilled = autofilled
        self.path_edit.setText(p)
        try:
            facts = read_facts(p)
        except Exception as err:  # any failure is shown to the user, never raised into Qt
            self.facts = None
            self.facts_label.setText(f"<b>Cannot read this file</b><br>{err}")
            self._set_si_enabled(False)
            self.load_button.setEnabled(False)
            self._notify_error(f"napari-emd: {err}")
            return None
        self.facts = facts
        self.facts_label.setText(facts.summary())
        self._apply_facts(facts)
        self.load_button.setEnabled(True)
        self.facts_changed.emit(facts)
        return facts

    def _apply_facts(self, f: FileFacts) -> None:
        widgets = (self.first_frame, self.last_frame, self.rebin, self.detector_list)
        for w in widgets:
            w.blockSignals(True)
        n = max(f.n_frames, 1)
        self.first_frame.setRange(0, n - 1)
        self.first_frame.setValue(0)
        self.last_frame.setRange(1, n)
        self.last_frame.setValue(n)
        self.rebin.clear()
        for d in SIFacts(path=f.path, channels=f.channels).rebin_choices(1):
            self.rebin.addItem(str(d), d)
        self.detector_list.clear()
        for det in f.detectors:
            item = QListWidgetItem(det)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked)
            self.detector_list.addItem(item)
        for w in widgets:
            w.blockSignals(False)
        self._set_si_enabled(f.has_si)
        self._update_size()

    def _set_si_enabled(self, on: bool) -> None:
        self.si_box.setEnabled(on)
        self._detectors_toggled()

    def _detectors_toggled(self, *_: Any) -> None:
        self.detector_list.setEnabled(
            self.si_box.isEnabled() and not self.sum_detectors.isChecked()
        )
        self._update_size()

    def _frames_changed(self, *_: Any) -> None:
        first = self.first_frame.value()
        if self.last_frame.value() <= first:
            self.last_frame.setValue(first + 1)
        self._update_size()

    # ---- options -----------------------------------------------------------------------
    def selected_detectors(self) -> list[str]:
        """Names of the checked detectors (all of them when summing)."""
        out = []
        for i in range(self.detector_list.count()):
            item = self.detector_list.item(i)
            if self.sum_detectors.isChecked() or item.checkState() == Qt.Checked:
                out.append(item.text())
        return out

    def set_detectors(self, names: list[str] | None) -> None:
        """Load these detectors as separate layers (``None``: sum all of them)."""
        self.sum_detectors.setChecked(names is None)
        for i in range(self.detector_list.count()):
            item = self.detector_list.item(i)
            on = names is None or item.text() in names
            item.setCheckState(Qt.Checked if on else Qt.Unchecked)
        self._update_size()

    def options(self) -> dict[str, Any]:
        """The reader keyword arguments (``napari_emd.file_reader``) the widget is set to."""
        opts: dict[str, Any] = {
            "lazy": self.lazy.isChecked(),
            "select_type": SELECT_TYPES[self.select_type.currentText()],
        }
        f = self.facts
        if f is not None and f.has_si:
            last = self.last_frame.value()
            opts.update(
                first_frame=self.first_frame.value(),
                last_frame=None if last >= f.n_frames else last,
                sum_frames=self.sum_frames.isChecked(),
                sum_EDS_detectors=self.sum_detectors.isChecked(),
                rebin_energy=int(self.rebin.currentData() or 1),
                load_SI_image_stack=self.image_stack.isChecked(),
            )
            dt = self.dtype.currentText()
            if dt != "native":
                opts["SI_dtype"] = dt
        return opts

    def estimated_nbytes(self) -> int:
        """Memory the chosen spectrum image(s) take when computed."""
        if self.facts is None:
            return 0
        return estimate_nbytes(self.facts, self.options(), len(self.selected_detectors()))

    def memory_warning(self) -> str | None:
        """Why an in-memory load would not fit, or ``None``."""
        need = self.estimated_nbytes()
        avail = available_memory()
        if self.lazy.isChecked() or avail is None or need <= MEMORY_SHARE * avail:
            return None
        return (
            f"An in-memory load needs {format_bytes(need)}, but only "
            f"{format_bytes(avail)} is free: load lazily, rebin, sum or pick fewer frames."
        )

    def _update_size(self, *_: Any) -> None:
        if self.facts is None or not self.facts.has_si:
            self.size_label.setText("")
            return
        need = self.estimated_nbytes()
        mode = "lazy: read when shown" if self.lazy.isChecked() else "in memory"
        text = f"Spectrum image size: {format_bytes(need)} ({mode})"
        warn = self.memory_warning()
        if warn:
            text += f"<br><span style='color:#e05050'>{warn}</span>"
        self.size_label.setText(text)

    # ---- loading -----------------------------------------------------------------------
    def load(self) -> Any:
        """Start loading with the current options in a worker thread; returns the worker
        (``None`` when nothing was started)."""
        from napari.qt.threading import create_worker

        if self.facts is None:
            text = self.path_edit.text().strip()
            if not text or self.set_path(text) is None:
                self._notify_error("napari-emd: choose an EMD file to load first")
                return None
        assert self.facts is not None
        if self.worker is not None:
            self.cancel()
        warn = self.memory_warning()
        if warn and self.ask_before_big_load:
            answer = QMessageBox.question(
                self, "Not enough memory", warn + "\n\nLoad into memory anyway?",
                QMessageBox.Yes | QMessageBox.No, QMessageBox.No,
            )
            if answer != QMessageBox.Yes:
                return None
        path = self.facts.path
        options = self.options()
        detectors = None if options.get("sum_EDS_detectors", True) else self.selected_detectors()
        self._job += 1
        job = self._job
        worker = create_worker(
            _load_steps,
            path,
            options,
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

    def cancel(self) -> None:
        """Stop the running load: its result is dropped, the viewer is left as it was."""
        if self.worker is None:
            return
        self._job += 1  # the running job's results are now stale
        with contextlib.suppress(RuntimeError):
            self.worker.quit()
        self.worker = None
        self._busy(False, "Load cancelled.")

    def _busy(self, on: bool, text: str) -> None:
        self.progress.setVisible(on)
        self.progress.setRange(0, 0 if on else 1)
        self.load_button.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        self.status.setText(text)

    def _worker_done(self, job: int) -> None:
        if job == self._job:
            self.worker = None

    def _errored(self, job: int, path: str, err: BaseException) -> None:
        if job != self._job:
            return
        self.worker = None
        msg = f"napari-emd could not load {os.path.basename(path)}: {err}"
        self._busy(False, msg)
        self._notify_error(msg)
        self.failed.emit(str(err))

    def _finished(
        self, job: int, path: str, layers: list[Any], detectors: list[str] | None
    ) -> None:
        if job != self._job:
            return
        self.worker = None
        if detectors is not None:
            all_dets = self.facts.detectors if self.facts is not None else []
            layers = _keep_detectors(layers, detectors, all_dets)
        added = self._replace_layers(path, layers)
        for layer in added:
            if _kind(layer) == SPECTRUM_IMAGE:
                self._focus_energy(layer)
        names = ", ".join(layer.name for layer in added) or "nothing"
        self._busy(False, f"Loaded {names}.")
        self.loaded.emit(added)

    def _replace_layers(self, path: str, layer_data: list[Any]) -> list[Any]:
        """Add the new layers, removing this file's spectrum-image layers and same-named
        layers from an earlier load first."""
        from napari.layers import Layer

        new_names = {meta.get("name") for _, meta, _ in layer_data}
        # the same dataset (and part: magnitude/phase) of the same file, however the
        # layer was opened or renamed since
        new_parts = {_part(meta) for _, meta, _ in layer_data} - {None}
        path = os.path.realpath(path)
        new_has_si = any(_kind(meta) == SPECTRUM_IMAGE for _, meta, _ in layer_data)
        old = []
        for layer in list(self.viewer.layers):
            src = source_file(layer)
            if not src or os.path.realpath(src) != path:
                continue
            kind = _kind(layer)
            if (
                layer.name in new_names
                or _part(layer) in new_parts
                or (new_has_si and kind in (SPECTRUM_IMAGE, DERIVED))
            ):
                old.append(layer)
        for layer in old:
            self.viewer.layers.remove(layer)
        added = []
        for data, meta, kind in layer_data:
            layer = Layer.create(data, dict(meta), kind)
            self.viewer.add_layer(layer)
            added.append(layer)
        return added

    def _focus_energy(self, layer: Any) -> None:
        """Put the energy slider on the strongest peak of the file's summed spectrum and
        fit the contrast to that plane; a plane of zeros tells the user nothing."""
        try:
            if focus_energy(self.viewer, layer):
                layer.reset_contrast_limits(mode="slice")
        except Exception:  # a nicer start is optional: never fail the load for it
            return

    def _notify_error(self, msg: str) -> None:
        from napari.utils.notifications import show_error

        show_error(msg)


def _keep_detectors(
    layers: list[Any], detectors: list[str], all_detectors: list[str]
) -> list[Any]:
    """Drop the per-detector SI layers whose detector was not chosen. A layer is matched
    by its record's ``extra["detector"]``, else by a detector name in its title; an SI
    layer naming no known detector is kept."""
    out = []
    for tup in layers:
        info = layer_info(tup[1])
        if info is None or info.kind != SPECTRUM_IMAGE:
            out.append(tup)
            continue
        rec = info.record
        det = getattr(rec, "extra", {}).get("detector") if rec is not None else None
        if det is not None:
            if str(det) in detectors:
                out.append(tup)
            continue
        title = str(info.title or tup[1].get("name", ""))
        named = [d for d in all_detectors if d and d in title]
        if not named or any(d in detectors for d in named):
            out.append(tup)
    return out


def _kind(layer_or_meta: Any) -> str | None:
    info = layer_info(layer_or_meta)
    return info.kind if info is not None else None


def _part(layer_or_meta: Any) -> tuple[str, str | None] | None:
    """The dataset (and part of a complex one) a layer shows: the same for a layer
    however it was opened or renamed since."""
    info = layer_info(layer_or_meta)
    return (info.dataset_path, info.part) if info is not None and info.dataset_path else None
