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

from .errors import InvalidOption

#: The accepted ``select_type`` values (``"images"`` is RosettaSciIO's alias of ``"image"``).
SELECT_TYPES = (None, "image", "images", "single_spectrum", "spectrum_image")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_align(value: Any) -> bool | tuple[tuple[float, float], ...]:
    """``align_frames`` as False, True or a tuple of (dy, dx) float pairs (hashable, so
    the options can key caches and dask tokens)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value is None:
        return False
    if isinstance(value, (str, bytes)) or _is_int(value):
        raise InvalidOption(f"align_frames={value!r} must be True, False or an (F, 2) array "
                         "of (dy, dx) shifts in pixels")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidOption("align_frames must be True, False or an (F, 2) array of (dy, dx) "
                         f"shifts in pixels, not {type(value).__name__}") from err
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1:
        raise InvalidOption(f"align_frames must be an (F, 2) array of (dy, dx) shifts, one row "
                         f"per frame read; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidOption("align_frames holds shifts that are not finite numbers")
    return tuple((float(dy), float(dx)) for dy, dx in arr)


def _check_exclude(value: Any) -> tuple[int, ...]:
    """``exclude_frames`` as a sorted tuple of distinct frame numbers."""
    if value is None:
        return ()
    items = [value] if _is_int(value) else value
    try:
        items = list(items)
    except TypeError as err:
        raise InvalidOption(f"exclude_frames={value!r} must be frame numbers") from err
    if not all(_is_int(v) and v >= 0 for v in items):
        raise InvalidOption(f"exclude_frames={value!r} must be integers >= 0 (frame numbers "
                         "like first_frame)")
    return tuple(sorted({int(v) for v in items}))


def _check_detectors(value: Any) -> tuple[str | int, ...] | None:
    """``detectors`` as ``None`` (all) or a tuple of distinct names and indexes."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) or _is_int(value) else value
    try:
        items = list(items)
    except TypeError as err:
        raise InvalidOption(f"detectors={value!r} must be detector names or indexes") from err
    out: list[str | int] = []
    for v in items:
        if isinstance(v, np.str_):
            v = str(v)
        if not (isinstance(v, str) or (_is_int(v) and v >= 0)):
            raise InvalidOption(f"detectors={value!r} must be detector names (str) or indexes "
                             "(int >= 0)")
        v = v if isinstance(v, str) else int(v)
        if v not in out:
            out.append(v)
    if not out:
        raise InvalidOption("detectors=[] chooses no detector: pass None for all of them")
    return tuple(out)


@dataclass(frozen=True)
class ReadOptions:
    """The options of :func:`napari_emd.file_reader`, checked when made.

    The Velox-only options (frames, detectors, rebinning, dtype, image stack) are accepted
    for every format and ignored where they do not apply. Invalid values raise
    :class:`~napari_emd.errors.InvalidOption` (a ``ValueError``) naming the option.
    ``align_frames`` is kept as False, True (estimate the shifts) or a tuple of (dy, dx)
    pairs (hashable: the options key caches and dask tokens); ``exclude_frames`` as a
    sorted tuple of distinct frame numbers; ``detectors`` as ``None`` (every detector) or
    a tuple of distinct names and indexes.
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
    align_frames: bool | tuple[tuple[float, float], ...] = False
    exclude_frames: tuple[int, ...] = ()
    detectors: tuple[str | int, ...] | None = None

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
            raise InvalidOption(
                f"select_type={st!r} is not one of "
                "None, 'image', 'images', 'single_spectrum', 'spectrum_image'"
            )
        if st == "images":
            put("select_type", "image")
        if not _is_int(self.rebin_energy) or self.rebin_energy < 1:
            raise InvalidOption(f"rebin_energy={self.rebin_energy!r} must be a positive integer")
        if not _is_int(self.first_frame) or self.first_frame < 0:
            raise InvalidOption(f"first_frame={self.first_frame!r} must be an integer >= 0")
        if self.last_frame is not None and not _is_int(self.last_frame):
            raise InvalidOption(f"last_frame={self.last_frame!r} must be an integer or None")
        if self.SI_dtype is not None:
            try:
                dt = np.dtype(self.SI_dtype)
            except TypeError as err:
                raise InvalidOption(f"SI_dtype={self.SI_dtype!r} is not a numpy dtype") from err
            if dt.kind not in "uif":
                raise InvalidOption(f"SI_dtype={dt} must be an integer or float dtype")
            put("SI_dtype", dt)
        put("align_frames", _check_align(self.align_frames))
        put("exclude_frames", _check_exclude(self.exclude_frames))
        put("detectors", _check_detectors(self.detectors))

    @property
    def frame_hygiene(self) -> bool:
        """Whether frames are aligned or left out (the read then differs from a plain
        frame sum: the image stacks of the SI follow the same frames and shifts)."""
        return self.align_frames is not False or bool(self.exclude_frames)

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

    def check_frames(self, first: int, last: int, where: str = "") -> tuple[int, ...]:
        """The frames of ``first:last`` that are read (``exclude_frames`` left out), and
        ``ValueError`` when excluded frames lie outside the range, every frame is excluded
        or given shifts do not hold one row per frame of the range."""
        prefix = f"{where}: " if where else ""
        outside = [f for f in self.exclude_frames if not first <= f < last]
        if outside:
            raise ValueError(f"{prefix}exclude_frames {outside} are outside the frames "
                             f"{first}..{last - 1} that are read (the frame numbers are "
                             "the file's, like first_frame)")
        kept = tuple(f for f in range(first, last) if f not in set(self.exclude_frames))
        if not kept:
            raise ValueError(f"{prefix}exclude_frames leaves none of the frames "
                             f"{first}..{last - 1}")
        shifts = self.align_frames
        if isinstance(shifts, tuple) and len(shifts) != last - first:
            raise ValueError(f"{prefix}align_frames holds {len(shifts)} shifts, but "
                             f"{last - first} frame(s) are read ({first}..{last - 1}): give "
                             "one (dy, dx) row per frame of the range, excluded ones too")
        return kept

    def check_rebin(self, channels: int, where: str = "") -> int:
        """The channel count after rebinning; ``ValueError`` when ``rebin_energy`` does not
        divide ``channels``."""
        if channels % self.rebin_energy:
            prefix = f"{where}: " if where else ""
            raise ValueError(f"{prefix}rebin_energy={self.rebin_energy} does not divide the "
                             f"{channels} channels")
        return channels // self.rebin_energy
