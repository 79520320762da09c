"""Reader options: the keyword arguments of :func:`napari_emd.file_reader`, validated once.

Every check of an option's *type and range* lives here, in :class:`ReadOptions`, whichever
way the options are made (``ReadOptions(...)`` or :meth:`ReadOptions.from_kwargs`). What
depends on a file (a frame range inside the file's frames, a rebin factor that divides its
channel count) is checked by the format reader that knows the file.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

#: The accepted ``select_type`` values (``"images"`` is RosettaSciIO's alias of ``"image"``).
SELECT_TYPES = (None, "image", "images", "single_spectrum", "spectrum_image")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ReadOptions:
    """The options of :func:`napari_emd.file_reader`, checked when made.

    The Velox-only options (frames, detectors, rebinning, dtype, image stack) are accepted
    for every format and ignored where they do not apply. Invalid values raise
    ``ValueError`` naming the option.
    """

    lazy: bool = False
    dataset_path: tuple[str, ...] | None = None
    stack_group: bool | None = None
    select_type: str | None = None
    first_frame: int = 0
    last_frame: int | None = None
    sum_frames: bool = True
    sum_EDS_detectors: bool = True
    rebin_energy: int = 1
    SI_dtype: np.dtype | None = None
    load_SI_image_stack: bool = False

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        dp = self.dataset_path
        if isinstance(dp, str):
            put("dataset_path", (dp,))
        elif dp is not None:
            put("dataset_path", tuple(str(p) for p in dp))
        st = self.select_type
        if st not in SELECT_TYPES:
            raise ValueError(
                f"select_type={st!r} is not one of "
                "None, 'image', 'images', 'single_spectrum', 'spectrum_image'"
            )
        if st == "images":
            put("select_type", "image")
        if not _is_int(self.rebin_energy) or self.rebin_energy < 1:
            raise ValueError(f"rebin_energy={self.rebin_energy!r} must be a positive integer")
        if not _is_int(self.first_frame) or self.first_frame < 0:
            raise ValueError(f"first_frame={self.first_frame!r} must be an integer >= 0")
        if self.last_frame is not None and not _is_int(self.last_frame):
            raise ValueError(f"last_frame={self.last_frame!r} must be an integer or None")
        if self.SI_dtype is not None:
            try:
                dt = np.dtype(self.SI_dtype)
            except TypeError as err:
                raise ValueError(f"SI_dtype={self.SI_dtype!r} is not a numpy dtype") from err
            if dt.kind not in "uif":
                raise ValueError(f"SI_dtype={dt} must be an integer or float dtype")
            put("SI_dtype", dt)

    @classmethod
    def from_kwargs(cls, **kw: Any) -> ReadOptions:
        """Options from keyword arguments; an unknown keyword raises ``TypeError``."""
        unknown = set(kw) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unexpected reader option(s): {', '.join(sorted(unknown))}")
        return cls(**kw)

    def frame_range(self, n_frames: int, where: str = "") -> tuple[int, int]:
        """``(first, last)`` of a spectrum image with ``n_frames`` frames (``last``
        exclusive); ``ValueError`` when the range does not fit. ``where`` names the file."""
        prefix = f"{where}: " if where else ""
        first = int(self.first_frame)
        last = n_frames if self.last_frame is None else int(self.last_frame)
        if not 0 <= first < n_frames:
            raise ValueError(f"{prefix}first_frame={first} is outside the {n_frames} "
                             "frame(s) of the spectrum image")
        if not first < last <= n_frames:
            raise ValueError(f"{prefix}last_frame={self.last_frame} must be in "
                             f"{first + 1}..{n_frames} (it is exclusive)")
        return first, last

    def check_rebin(self, channels: int, where: str = "") -> int:
        """The channel count after rebinning; ``ValueError`` when ``rebin_energy`` does not
        divide ``channels``."""
        if channels % self.rebin_energy:
            prefix = f"{where}: " if where else ""
            raise ValueError(f"{prefix}rebin_energy={self.rebin_energy} does not divide the "
                             f"{channels} channels")
        return channels // self.rebin_energy
