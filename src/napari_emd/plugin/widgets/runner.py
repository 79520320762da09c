"""Run small jobs off the GUI thread, latest request wins.

Hovering over a lazy spectrum image asks for a new spectrum on every mouse move; decoding
one may take a moment. :class:`LatestRunner` runs one job at a time in a napari worker
thread and keeps only the newest waiting request, so the GUI never blocks and never
queues up stale work. Data already in memory is computed at once, on the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal


class LatestRunner(QObject):
    """One job at a time in a worker thread; a new request replaces the waiting one.

    ``idle`` is emitted when nothing runs and nothing waits (tests wait on it).
    """

    idle = Signal()

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        super().__init__()
        self._on_error = on_error
        self._worker: Any = None
        self._pending: tuple[Callable[[], Any], Callable[[Any], None], str | None] | None = None

    @property
    def busy(self) -> bool:
        return self._worker is not None or self._pending is not None

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
        worker = create_worker(func, _start_thread=False, _ignore_errors=True, **kw)
        worker.returned.connect(done)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()

    def _finished(self) -> None:
        self._worker = None
        if self._pending is not None:
            func, done, progress = self._pending
            self._pending = None
            self._start(func, done, progress)
        else:
            self.idle.emit()
