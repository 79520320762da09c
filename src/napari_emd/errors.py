"""The package's exception and warning types.

Every problem with a file surfaces as :class:`EMDError`, whose message names the file and
what is wrong with it, so a user (or napari's notification) can act on it.
"""

from __future__ import annotations

import os


class EMDError(Exception):
    """A file could not be read or written as EMD. The message names the file."""

    def __init__(self, filename: str | os.PathLike | None, reason: str) -> None:
        self.filename = os.fspath(filename) if filename is not None else None
        self.reason = reason
        super().__init__(f"{self.filename}: {reason}" if self.filename else reason)


class InvalidOption(ValueError):
    """A reader option given a value it cannot take (raised when :class:`ReadOptions` is
    made, before any file is read). Its own type so that a reader which skips datasets it
    cannot read never mistakes the caller's mistake for a damaged dataset."""


class EMDWarning(UserWarning):
    """Something in a file was unusual but could be worked around (the message says how)."""


class Cancelled(Exception):
    """A read was cancelled (see :func:`napari_emd.cancel.cancellation`)."""
