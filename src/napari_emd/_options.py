"""Reader options, validated once, shared by every format reader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SELECT_TYPES = (None, "image", "images", "single_spectrum", "spectrum_image")


@dataclass(frozen=True)
class ReadOptions:
    """The keyword arguments of :func:`napari_emd.file_reader`, checked.

    The Velox-only options (frames, detectors, rebinning, dtype, image stack) are accepted
    for every format and ignored where they do not apply.
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

    @classmethod
    def from_kwargs(cls, **kw: Any) -> ReadOptions:
        dp = kw.get("dataset_path")
        if isinstance(dp, str):
            kw["dataset_path"] = (dp,)
        elif dp is not None:
            kw["dataset_path"] = tuple(str(p) for p in dp)
        st = kw.get("select_type")
        if st not in SELECT_TYPES:
            raise ValueError(
                f"select_type={st!r} is not one of "
                "None, 'image', 'images', 'single_spectrum', 'spectrum_image'"
            )
        if st == "images":
            kw["select_type"] = "image"
        rb = kw.get("rebin_energy", 1)
        if not isinstance(rb, (int, np.integer)) or isinstance(rb, bool) or rb < 1:
            raise ValueError(f"rebin_energy={rb!r} must be a positive integer")
        ff = kw.get("first_frame", 0)
        if not isinstance(ff, (int, np.integer)) or isinstance(ff, bool) or ff < 0:
            raise ValueError(f"first_frame={ff!r} must be an integer >= 0")
        lf = kw.get("last_frame")
        if lf is not None and (not isinstance(lf, (int, np.integer)) or isinstance(lf, bool)):
            raise ValueError(f"last_frame={lf!r} must be an integer or None")
        dt = kw.get("SI_dtype")
        if dt is not None:
            try:
                dt = np.dtype(dt)
            except TypeError as err:
                raise ValueError(f"SI_dtype={kw['SI_dtype']!r} is not a numpy dtype") from err
            if dt.kind not in "uif":
                raise ValueError(f"SI_dtype={dt} must be an integer or float dtype")
            kw["SI_dtype"] = dt
        known = set(cls.__dataclass_fields__)
        unknown = set(kw) - known
        if unknown:
            raise TypeError(f"unexpected reader option(s): {', '.join(sorted(unknown))}")
        return cls(**kw)
