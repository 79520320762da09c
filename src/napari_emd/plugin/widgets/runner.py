"""Run small jobs off the GUI thread, latest request wins.

Hovering over a lazy spectrum image asks for a new spectrum on every mouse move; decoding
one may take a moment. :class:`LatestRunner` runs one job at a time in a napari worker
thread and keeps only the newest waiting request, so the GUI never blocks and never
queues up stale work. Data already in memory is computed at once, on the GUI thread.
A threaded job runs inside :func:`napari_emd.cancel.cancellation`, so :meth:`cancel`
stops the library's loops (they raise ``Cancelled``); :class:`StepProgress` is a
determinate napari progress bar for jobs that count their steps.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal

from ...cancel import cancellation


class StepProgress(QObject):
    """A napari progress bar driven by ``bar(done, total)`` calls from a worker thread;
    ``close()`` removes it. Make it on the GUI thread: the calls reach the bar through
    queued signals, as Qt widgets must only be touched on the GUI thread."""

    _step = Signal(int, int)
    _close = Signal()

    def __init__(self, description: str) -> None:
        super().__init__()
        self.description = description
        self.bar: Any = None
        self._step.connect(self._update)
        self._close.connect(self._closed)

    def __call__(self, done: int, total: int) -> None:
        self._step.emit(int(done), int(total))

    def close(self) -> None:
        self._close.emit()

    def _update(self, done: int, total: int) -> None:
        from napari.utils import progress

        if self.bar is None:
            self.bar = progress(total=max(total, 1), desc=self.description)
        self.bar.update(done - self.bar.n)

    def _closed(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LatestRunner(QObject):
    """One job at a time in a worker thread; a new request replaces the waiting one.

    ``idle`` is emitted when nothing runs and nothing waits (tests wait on it).
    """

    idle = Signal()
    busy_changed = Signal()

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        super().__init__()
        self._on_error = on_error
        self._worker: Any = None
        self._event: threading.Event | None = None
        self._pending: tuple[Callable[[], Any], Callable[[Any], None], str | None] | None = None

    @property
    def busy(self) -> bool:
        return self._worker is not None or self._pending is not None

    @property
    def threaded_busy(self) -> bool:
        """A job runs in a worker thread (it can be cancelled)."""
        return self._worker is not None

    def cancel(self) -> None:
        """Drop the waiting request and ask the running job to stop."""
        self._pending = None
        if self._event is not None:
            self._event.set()

    def submit(
        self,
        func: Callable[[], Any],
        done: Callable[[Any], None],
        *,
        threaded: bool = True,
        progress: str | None = None,
    ) -> None:
        """Compute ``func()`` and pass the result to ``done`` on the GUI thread.

        ``threaded=False`` runs it right here (for numpy data: cheap and synchronous).
        ``progress`` shows an indeterminate napari progress bar with that text.
        """
        if not threaded:
            self._pending = None
            try:
                done(func())
            except Exception as err:  # shown to the user, never raised into Qt
                self._on_error(err)
            if self._worker is None:
                self.idle.emit()
            return
        if self._worker is not None:
            self._pending = (func, done, progress)
            return
        self._start(func, done, progress)

    def _start(
        self, func: Callable[[], Any], done: Callable[[Any], None], progress: str | None
    ) -> None:
        from napari.qt.threading import create_worker

        kw: dict[str, Any] = {}
        if progress:
            kw["_progress"] = {"total": 0, "desc": progress}
        event = threading.Event()

        def run() -> Any:
            with cancellation(event):
                return func()

        worker = create_worker(run, _start_thread=False, _ignore_errors=True, **kw)
        worker.returned.connect(done)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._finished)
        self._worker, self._event = worker, event
        worker.start()
        self.busy_changed.emit()

    def _finished(self) -> None:
        self._worker, self._event = None, None
        self.busy_changed.emit()
        if self._pending is not None:
            func, done, progress = self._pending
            self._pending = None
            self._start(func, done, progress)
        else:
            self.idle.emit()


def cancel_button(runners: list[LatestRunner]) -> Any:
    """A Cancel button, enabled while one of ``runners`` computes in a thread, that
    cancels them all."""
    from qtpy.QtWidgets import QPushButton

    button = QPushButton("Cancel")
    button.setToolTip("Stop what is being computed")
    button.setEnabled(False)

    def cancel() -> None:
        for r in runners:
            r.cancel()

    def update() -> None:
        with contextlib.suppress(RuntimeError):  # the button was deleted with its dock
            button.setEnabled(any(r.threaded_busy for r in runners))

    button.clicked.connect(cancel)
    for r in runners:
        r.busy_changed.connect(update)
    return button
