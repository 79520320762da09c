"""How a dataset should look when it first appears, decided from the file (no whole lazy
array is ever computed): robust contrast, centred log-power FFTs, element maps in
distinct colours, and the energy a spectrum image opens on.

Numbers only (numpy): no napari import, so every rule is tested on plain arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import xray_lines
from .layer_meta import Confidence

#: Percentiles of a sample that set the contrast: a few hot pixels do not black out
#: the rest of the image.
CONTRAST_PERCENTILES = (0.5, 99.5)
#: Pixels sampled for contrast (a strided sample of bigger images).
SAMPLE_PIXELS = 1 << 20
#: Colormaps of element maps, in order: distinct on black, additive like Velox's mix view.
MAP_COLORMAPS = ("red", "green", "blue", "yellow", "magenta", "cyan", "bop orange",
                 "bop purple")
#: Opacity of the plain images under element maps: the maps' colours stay readable.
UNDER_MAPS_OPACITY = 0.5


def mix_view(role: str) -> dict[str, Any]:
    """What Velox's mix view does to a layer of a scan that has element maps, by its
    role: a ``"map"`` adds its colour (additive blending), a plain ``"image"`` under the
    maps (the HAADF) is dimmed to :data:`UNDER_MAPS_OPACITY`, the whole spectrum image
    (``"si"``) is hidden; any other layer is left as it is. The reader (maps of the file)
    and the spectrum viewer (maps made later) both apply this one rule."""
    return {"map": {"blending": "additive"},
            "image": {"opacity": UNDER_MAPS_OPACITY},
            "si": {"visible": False}}.get(role, {}).copy()
#: Below this energy (keV) an EDS spectrum holds the detector's zero-energy (strobe)
#: noise peak, not X-rays.
EDS_NOISE_KEV = 0.2
#: A peak is an X-ray line, not stray counts, with this many X-rays within one detector
#: resolution (about 0.13 keV, the FWHM at Mn Kα)
EDS_MIN_PEAK_COUNTS = 10
EDS_RESOLUTION_KEV = 0.13
#: Below this energy loss (eV) an EELS spectrum holds the zero-loss and plasmon peaks.
EELS_LOW_LOSS_EV = 50.0

# Main EELS ionisation edges (onset, eV): K edges of light elements, L3 of the 3d
# metals and their neighbours, M5 of some heavy ones (public physical data).
EELS_EDGES = {
    "Li": 55, "Be": 111, "B": 188, "C": 284, "N": 401, "O": 532, "F": 685, "Ne": 867,
    "Na": 1072, "Mg": 1305, "Al": 1560, "Si": 1839, "P": 132, "S": 165, "Cl": 200,
    "K": 294, "Ca": 346, "Sc": 402, "Ti": 456, "V": 513, "Cr": 575, "Mn": 640,
    "Fe": 708, "Co": 779, "Ni": 855, "Cu": 931, "Zn": 1020, "Ga": 1115, "Ge": 1217,
    "As": 1323, "Se": 1436, "Sr": 1940, "Y": 2080, "Zr": 2222, "Nb": 2371, "Mo": 2520,
    "Ba": 781, "La": 832, "Ce": 883, "Pr": 931, "Nd": 978, "Sm": 1080, "Gd": 1185,
}


def sample(data: Any) -> np.ndarray:
    """A numpy sample of ``data`` for contrast: all of a small array, else the middle of
    every leading axis (one chunk of a lazy array), strided to at most
    :data:`SAMPLE_PIXELS`."""
    if data.ndim > 2 and data.size > SAMPLE_PIXELS:
        data = data[tuple(s // 2 for s in data.shape[:-2])]
    if data.size > SAMPLE_PIXELS:
        step = int(np.ceil(np.sqrt(data.size / SAMPLE_PIXELS)))
        data = data[::step, ::step]
    if hasattr(data, "compute"):
        data = data.compute()
    return np.asarray(data)


def robust_limits(values: np.ndarray) -> tuple[float, float] | None:
    """Contrast limits from the :data:`CONTRAST_PERCENTILES` of the finite values
    (min-max when the percentiles coincide; ``None`` when nothing is finite)."""
    v = np.asarray(values)
    if v.dtype.kind == "b":
        return (0.0, 1.0)
    v = v[np.isfinite(v)] if v.dtype.kind in "fc" else v.ravel()
    if v.size == 0:
        return None
    lo, hi = (float(x) for x in np.percentile(v, CONTRAST_PERCENTILES))
    if hi <= lo:
        lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        hi = lo + 1.0
    return (lo, hi)


def map_limits(values: np.ndarray) -> tuple[float, float] | None:
    """Contrast limits of an element map: counts maps carry a tail of hot pixels (a few
    per cent, far above the rest), so the top is also capped at Tukey's far-out fence
    (third quartile + 3 interquartile ranges) unless that is below the 90th percentile."""
    limits = robust_limits(values)
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if limits is None or v.size == 0:
        return limits
    q1, q3, p90 = np.percentile(v, (25, 75, 90))
    top = min(limits[1], max(q3 + 3 * (q3 - q1), p90))
    return (limits[0], top) if top > limits[0] else limits


def contrast_limits(data: Any) -> tuple[float, float] | None:
    """Robust contrast limits of (a sample of) ``data``; ``None`` when it cannot be
    computed."""
    try:
        return robust_limits(sample(data))
    except Exception:  # a nicer contrast is optional; napari falls back on its own
        return None


def half_fft_width(half: np.ndarray) -> int:
    """The width of the image a half-plane FFT (``rfft2`` layout: zero frequency at
    ``[0, 0]``, ``W // 2 + 1`` columns) was computed from. An even width has a Nyquist
    column, whose values are Hermitian symmetric like column 0's; an odd width does not."""
    h, n = half.shape[-2:]
    if n < 2:
        return 1
    last = np.asarray(half[..., -1]).reshape(-1, h)[0]
    mirrored = np.conj(last[(-np.arange(h)) % h])
    scale = float(np.abs(last).max()) or 1.0
    even = np.allclose(last, mirrored, rtol=1e-3, atol=1e-4 * scale)
    return 2 * (n - 1) if even else 2 * n - 1


def full_fft(half: np.ndarray) -> np.ndarray:
    """The full complex plane of a half-plane FFT (the other half is the complex
    conjugate mirror), zero frequency still at ``[0, 0]``."""
    h, n = half.shape[-2:]
    w = half_fft_width(half)
    full = np.empty((*half.shape[:-1], w), dtype=np.result_type(half.dtype, np.complex64))
    full[..., :n] = half
    cols = np.arange(n, w)
    rows = (-np.arange(h)) % h
    full[..., n:] = np.conj(half[..., rows, :][..., w - cols])
    return full


def log_power(half: np.ndarray) -> np.ndarray:
    """A half-plane FFT as Velox shows FFTs: the full plane, zero frequency centred,
    ``log10(1 + |F|^2)`` as float32."""
    full = np.fft.fftshift(full_fft(np.asarray(half)), axes=(-2, -1))
    return np.log10(1.0 + np.abs(full).astype(np.float64) ** 2).astype(np.float32)


_MAP_SUFFIXES = {"EELS", "EDS", "K", "L", "M", "Ka", "La", "Ma", "Kα", "Lα", "Mα", "map"}


def element_of(title: str) -> str | None:
    """The element an element map shows (``"Fe"``, ``"Fe-EELS"``, ``"Fe K"``,
    ``"Fe Kα"``), or ``None`` for other images."""
    words = str(title).replace("-", " ").split()
    if not words or not words[0][:1].isupper() or any(w not in _MAP_SUFFIXES for w in words[1:]):
        return None  # "B-D" is a DPC difference image, not a boron map
    try:
        return xray_lines.normalize_element(words[0])
    except ValueError:
        return None


def eds_peak(
    energy: np.ndarray, total: np.ndarray, elements: list[str] | tuple[str, ...] = ()
) -> float | None:
    """The energy (keV) a summed EDS spectrum opens on: its strongest X-ray peak above
    the detector's zero-energy noise peak, when that peak holds at least
    :data:`EDS_MIN_PEAK_COUNTS` X-rays within a detector resolution; otherwise (a
    spectrum of a few stray counts) the mapping line of the file's ``elements`` with
    the most counts, and only then the strongest channel."""
    counts = np.where(energy > EDS_NOISE_KEV, np.asarray(total, dtype=float), 0.0)
    if not counts.any():
        return _element_line(energy, counts, elements)
    step = float(abs(energy[1] - energy[0])) if energy.size > 1 else 1.0
    width = max(1, round(EDS_RESOLUTION_KEV / step))
    windowed = np.convolve(counts, np.ones(width), mode="same")
    centre = int(np.argmax(windowed))  # the most X-rays within one resolution
    lo = max(centre - width // 2, 0)
    best = lo + int(np.argmax(counts[lo:centre + width // 2 + 1]))  # its top channel
    if windowed[centre] >= EDS_MIN_PEAK_COUNTS:
        return float(energy[best])
    line = _element_line(energy, counts, elements)
    return line if line is not None else float(energy[best])


def _element_line(
    energy: np.ndarray, counts: np.ndarray, elements: list[str] | tuple[str, ...]
) -> float | None:
    """The mapping line (keV) of the element with the most counts in its window, the
    first element's on a tie; ``None`` without elements that have a line in range."""
    lo, hi = float(energy.min()), float(energy.max())
    best: tuple[float, float] | None = None
    for el in xray_lines.parse_elements(list(elements)):
        window = xray_lines.element_window(el, max(lo, EDS_NOISE_KEV), hi)
        if window is None:
            continue
        _, a, b = window
        line = xray_lines.map_line(el, max(lo, EDS_NOISE_KEV), hi)
        n = float(counts[(energy >= a) & (energy <= b)].sum())
        if line is not None and (best is None or n > best[0]):
            best = (n, line[1])
    return None if best is None else best[1]


SURE, LIKELY, GUESS = Confidence.SURE, Confidence.LIKELY, Confidence.GUESS


def eels_focus(lo: float, hi: float, elements: list[str],
               spectrum: np.ndarray | None = None, energy: np.ndarray | None = None
               ) -> tuple[float, Confidence]:
    """The energy loss (eV) an EELS spectrum image opens on, and how sure it is: just
    past the edge of a chosen element inside ``[lo, hi]`` (:data:`SURE`), else (with the
    summed ``spectrum``) its strongest channel past the low-loss region (:data:`LIKELY`),
    else the middle of the range above it (:data:`GUESS`)."""
    edges = sorted(e for el in elements if (e := EELS_EDGES.get(el)) is not None
                   and lo <= e + 10 <= hi)
    if edges:
        return float(edges[0] + 10), SURE
    start = max(lo, EELS_LOW_LOSS_EV)
    if spectrum is not None and energy is not None:
        counts = np.where(energy >= start, np.asarray(spectrum, dtype=float), -np.inf)
        if np.isfinite(counts).any():
            return float(energy[int(np.argmax(counts))]), LIKELY
    return (float((start + hi) / 2) if hi > start else float((lo + hi) / 2)), GUESS


#: A plane is weak (shows next to nothing) when its range of values is below this
#: fraction of the strongest plane's: prismatic's empty angle bins, an empty potential
#: slice, a bin of 1e-4 among bins of 0.3.
WEAK_PLANE_FRACTION = 0.01
#: A spectrum-image plane is sparse below this many counts per pixel on average: a few
#: X-rays scattered over a black canvas, which tells nothing of the scan.
SPARSE_COUNTS_PER_PIXEL = 0.5


def plane_strengths(data: np.ndarray, n_lead: int) -> np.ndarray:
    """The range of values (max - min, finite values only) of every plane of ``data``
    (``n_lead`` leading axes, then the screen axes), shaped like the leading axes."""
    a = np.asarray(data)
    if a.dtype.kind == "c":
        a = np.abs(a)
    a = a.reshape(*a.shape[:n_lead], -1).astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        hi = np.nanmax(np.where(np.isfinite(a), a, np.nan), axis=-1, initial=-np.inf)
        lo = np.nanmin(np.where(np.isfinite(a), a, np.nan), axis=-1, initial=np.inf)
    out = hi - lo
    return np.where(np.isfinite(out), out, 0.0)


def plane_with_signal(strengths: np.ndarray, index: tuple[int, ...]) -> tuple[int, ...] | None:
    """The plane a stack should open on instead of ``index``, or ``None`` to stay: when
    the plane at ``index`` is weak (:data:`WEAK_PLANE_FRACTION` of the strongest), the
    nearest plane that is not (fewest sliders moved, then fewest steps, then deeper on a
    tie); ``None`` too when no plane holds any signal."""
    s = np.asarray(strengths, dtype=float)
    top = float(s.max(initial=0.0))
    if top <= 0 or s.ndim != len(index) or s[index] >= WEAK_PLANE_FRACTION * top:
        return None
    here = np.asarray(index)
    best: tuple[tuple[int, int, int], tuple[int, ...]] | None = None
    for cand in zip(*np.nonzero(s >= WEAK_PLANE_FRACTION * top)):
        c = np.asarray(cand)
        key = (int((c != here).sum()), int(np.abs(c - here).sum()), -int(c.sum()))
        if best is None or key < best[0]:
            best = (key, tuple(int(i) for i in cand))
    return None if best is None else best[1]


def sparse_plane(values: np.ndarray) -> bool:
    """Whether a spectrum-image plane holds too few counts to show anything (fewer than
    :data:`SPARSE_COUNTS_PER_PIXEL` on average)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return v.size > 0 and float(v.mean()) < SPARSE_COUNTS_PER_PIXEL


def chunk_peak(record: Any) -> float | None:
    """The energy a spectrum image opens on, from the spectrum of its first chunk only
    (for files without a summed spectrum; a chunk is a block of scan rows)."""
    data = record.data
    first = data[tuple(slice(0, c[0]) for c in data.chunks)] if hasattr(data, "chunks") \
        else data
    block = np.asarray(first.compute() if hasattr(first, "compute") else first)
    spectrum = block.reshape(-1, block.shape[-1]).sum(axis=0, dtype=np.float64)
    ax = record.axes[-1]
    energy = ax.linear_offset + ax.linear_scale * np.arange(spectrum.size)
    elements = list((record.metadata.get("Sample") or {}).get("elements") or [])
    if record.signal_type.upper().startswith("EELS"):
        return eels_focus(float(energy[0]), float(energy[-1]), elements, spectrum,
                          energy)[0]
    return eds_peak(energy, spectrum, elements)
