"""napari reader contribution: a thin layer over :func:`napari_emd.read_datasets`.

napari asks every reader plugin whether it wants a path; we answer with a reader only for
files that really are EMD (decided from HDF5 attributes, no data read), and ``None``
otherwise so another plugin can take the file.

:func:`read_layers` turns files into layer data tuples (:func:`datasets_to_layers`:
saved layers restored by :mod:`.saved`, the rest made by :mod:`.layers`); what it does
to a viewer, when given one, is :mod:`.viewer_setup`'s alone.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from typing import Any

from ..api import READ_EXTENSIONS, detect_format, read_datasets
from ..cancel import cancellation
from ..errors import EMDError
from ..h5 import is_hdf5
from ..model import SPECTRUM, Dataset
from .layer_meta import source_file, spectrum_entry
from .layers import LayerData, new_layers
from .saved import saved_layer, saved_layer_state
from .viewer_setup import OpenedFile, set_up_viewer

PathLike = str | os.PathLike
ReaderFunction = Callable[[Any], list[LayerData]]

# Extensions we claim even when the file is damaged or not HDF5 at all, so the user gets
# our error message (the file and what is wrong with it) instead of napari's "refused the
# file". .h5/.hdf5 belong to many programs: those we claim only when they are EMD.
_OWN_EXTENSIONS = (".emd", ".de5")


def _claims(path: str) -> bool:
    ext = os.path.splitext(path)[1].lower()
    if ext not in READ_EXTENSIONS or not os.path.isfile(path):
        return False
    if not is_hdf5(path):
        return ext in _OWN_EXTENSIONS
    try:
        return detect_format(path) is not None
    except EMDError:
        return ext in _OWN_EXTENSIONS


def napari_get_reader(path: PathLike | Sequence[PathLike]) -> ReaderFunction | None:
    """Return :func:`reader_function` when every path is an EMD file we read, else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        return None
    if all(_claims(os.fspath(p)) for p in paths):
        return reader_function
    return None


def reader_function(path: PathLike | Sequence[PathLike], **options: Any) -> list[LayerData]:
    """Read one or more EMD files into layer data tuples (lazily: big data stays on disk).
    A file of spectra and tables only opens them in the spectrum viewer and table docks
    and gives napari its "nothing to add" sign.

    A file that cannot be read raises :class:`EMDError`, and its message (the file and
    what is wrong) is also shown as napari's notification, the last one: napari wraps a
    reader's exception in its own "Tried to read ... but it gave an error", whose first
    line is all its toast shows and whose toast replaced ours, so the reason only
    appeared when expanded (see :func:`notify_error`)."""
    try:
        return read_layers(path, current_viewer(), **options) or [(None,)]  # type: ignore[list-item]
    except EMDError as err:
        notify_error(err)
        raise


def notify_error(err: BaseException) -> None:
    """Show ``err``'s message as a napari error notification. The message only, not the
    exception: napari keeps its notifications, and an exception's traceback would keep
    the viewer's frames alive (napari's own notification of the error that follows has
    the traceback). With Qt running it is shown once control is back in Qt's loop, that
    is after napari's generic notification of the same error (raised in the same call):
    napari's toast shows the newest notification, so ours is the one seen, napari's
    stays in the notification list. Nothing happens without napari."""
    try:
        from napari.utils.notifications import show_error
    except ImportError:  # the library used without napari: the exception says it all
        return
    message = str(err)
    try:
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QApplication
    except Exception:  # napari without Qt (headless): at once
        show_error(message)
        return
    if QApplication.instance() is None:
        show_error(message)
    else:
        QTimer.singleShot(0, lambda: show_error(message))


def read_layers(
    path: PathLike | Sequence[PathLike], viewer: Any = None, cancel: Any = None,
    **options: Any,
) -> list[LayerData]:
    """The layer data tuples of one or more EMD files (lazy by default: big data stays
    on disk). ``cancel``: a ``threading.Event`` that stops the read
    (``napari_emd.errors.Cancelled``).

    Without ``viewer`` this only reads and imports no napari. With one, the files' slider
    axes are placed among its layers', and once every file is read
    :func:`.viewer_setup.set_up_viewer` prepares it for them (presenter, docks for files
    without an image, grid mode): the reader's only changes to a viewer."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    options.setdefault("lazy", True)
    existing = list(viewer.layers) if viewer is not None else []
    taken = {ly.name: source_file(ly) or "" for ly in existing}
    opened: list[OpenedFile] = []
    for p in paths:
        p = os.fspath(p)
        with cancellation(cancel):
            datasets = read_datasets(p, **options)
        made = name_by_file(datasets_to_layers(datasets, p, existing), p, taken)
        opened.append(OpenedFile(p, datasets, made))
    layers = [layer for f in opened for layer in f.layers]
    if viewer is not None:  # reciprocal-space layers may go to a window of their own
        layers = set_up_viewer(viewer, opened, had_layers=bool(existing))
    return layers


def datasets_to_layers(
    datasets: list[Dataset], path: str = "", existing: Any = ()
) -> list[LayerData]:
    """All layer tuples for the datasets of one file (spectra carried in metadata): the
    layers napari-emd saved restored with their napari state (:mod:`.saved`), then the
    others made afresh (:mod:`.layers`). Deciding here keeps the two modules apart:
    :mod:`.saved` uses :mod:`.layers`' helpers, and :mod:`.layers` knows nothing of it.

    ``existing``: the layers already in the viewer the file opens into, so that slider
    axes of the same kind share a slider and different kinds never do. A file with
    nothing to show as an image gives no layer (see :func:`file_info`).
    """
    spectra = [spectrum_entry(d) for d in datasets if d.kind == SPECTRUM]
    restored: list[LayerData] = []
    fresh: list[Dataset] = []
    for ds in datasets:
        state = saved_layer_state(ds)
        if state is not None:
            restored.extend(saved_layer(ds, state, spectra))
        else:
            fresh.append(ds)
    return restored + new_layers(fresh, spectra, existing)


def name_by_file(layers: list[LayerData], path: str, taken: dict[str, str]) -> list[LayerData]:
    """``layers`` (one file's) renamed where another file's layer has the name already:
    ``HAADF — Test SI 16x16 215 kx`` (the file's name without extension), not napari's
    ``HAADF [1]``, which says nothing of the file. The same file opened again is told
    apart by the opening: ``HAADF — Test SI 16x16 215 kx (2)``. ``taken``: name -> source
    file of the layers already there, updated with these."""
    stem = os.path.splitext(os.path.basename(path))[0]
    real = os.path.realpath(path)
    again = any(other and os.path.realpath(other) == real for other in taken.values())
    out = []
    for data, kw, kind in layers:
        name = kw.get("name", "")
        if name in taken:  # the first free of: "name — stem", "name — stem (2)", ...
            tagged = f"{name} — {stem}"
            numbered = (f"{tagged} ({n})" for n in itertools.count(2))
            new = next(c for c in itertools.chain([] if again else [tagged], numbered)
                       if c not in taken)
            kw = {**kw, "name": new}
        taken[kw.get("name", "")] = path
        out.append((data, kw, kind))
    return out


def current_viewer() -> Any:
    """napari's current viewer (``None`` when napari runs none)."""
    try:
        import napari

        return napari.current_viewer()
    except Exception:  # napari absent or not running: layers are made without a viewer
        return None
