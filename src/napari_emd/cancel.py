"""Cancelling a read that is under way: a caller (the loader's Cancel button) sets a
:class:`threading.Event`; long loops of the reader check it between steps and stop with
:class:`~napari_emd.errors.Cancelled`.

The event travels in a context variable, so the reader functions keep their signatures::

    with cancellation(event):
        read_datasets(path)
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator

from .errors import Cancelled

_EVENT: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "napari_emd_cancel", default=None)


@contextlib.contextmanager
def cancellation(event: threading.Event | None) -> Iterator[None]:
    """Reads inside this block stop (``Cancelled``) once ``event`` is set."""
    token = _EVENT.set(event)
    try:
        yield
    finally:
        _EVENT.reset(token)


def current() -> threading.Event | None:
    """The cancel event of the read running in this thread's context (``None``: none)."""
    return _EVENT.get()


def check(event: threading.Event | None = None) -> None:
    """Raise :class:`Cancelled` when ``event`` (default: the current one) is set."""
    event = event if event is not None else _EVENT.get()
    if event is not None and event.is_set():
        raise Cancelled("cancelled")
