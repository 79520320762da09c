"""Net X-ray line intensities of a spectrum or spectrum image by the three-window
method (a window on the line, one background window on each side), as EDS software
(Velox's element maps with background subtraction, exSpy's
``get_lines_intensity(background_windows=...)``) computes them.

For each line: the integration window is centred on the line energy and
``window_width`` detector FWHMs wide; the background windows are centred
``background_position`` FWHMs below and above the line and ``background_width`` FWHMs
wide (exSpy's documented ``estimate_background_windows`` rule: positions 2 FWHM away,
1 FWHM wide). The detector FWHM at energy E (eV) is

    FWHM(E)^2 = FWHM(Mn Ka)^2 + 2.49 eV * (E - 5895 eV)

(:func:`napari_emd.xray_lines.eds_fwhm`): the Fano-noise term of a Si detector,
8 ln2 * F * eps with F ~ 0.115 and eps = 3.8 eV per electron-hole pair (Fiori and
Newbury 1978 round it to 2.5 eV), added in quadrature to the electronic noise that
the measured Mn Ka width fixes.

Net counts, per navigation pixel, with S the window sum over n channels centred at
c, L and R the background window sums over nL, nR channels centred at cL, cR:

    b = (1 - t) * L / nL + t * R / nR,   t = (c - cL) / (cR - cL)
    net = S - n * b
    sigma^2 = S + n^2 ((1 - t)^2 L / nL^2 + t^2 R / nR^2)      (Poisson counts)

All windows of all lines are summed in one pass: one matrix of channel weights, one
product per block of the data (for dask, one graph that reads each block once).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import cancel as _cancel
from ..xray_lines import eds_fwhm, lines, normalize_element
from .signal import SignalView, as_signal

Window = tuple[float, float]


@dataclass(frozen=True)
class LineIntensity:
    """The net intensity of one X-ray line over the navigation axes.

    ``net`` and ``sigma`` are arrays shaped like the navigation axes (0-d for a single
    spectrum; dask when the signal is lazy and the result was not computed).
    ``gross`` is the plain window sum. ``window`` and ``background_windows`` are in the
    signal's energy unit (``units``), as the channel edges actually summed. ``overlaps``
    names the chosen lines whose integration window overlaps this one's;
    ``background_overlaps`` those whose integration window reaches into a background
    window of this line (that background is then too high)."""

    line: str
    energy: float
    units: str
    net: Any
    sigma: Any
    gross: Any
    window: Window
    background_windows: tuple[Window, Window] | None
    fwhm: float
    overlaps: tuple[str, ...] = ()
    background_overlaps: tuple[str, ...] = ()

    @property
    def element(self) -> str:
        return self.line.split("_", 1)[0]


def line_energy_kev(line: str) -> float:
    """The energy (keV) of a line named like ``"Fe_Ka"``."""
    try:
        el, name = line.split("_", 1)
    except ValueError:
        raise ValueError(f"a line is named like 'Fe_Ka', got {line!r}") from None
    el = normalize_element(el)
    table = lines(el)
    if name not in table:
        raise ValueError(f"{el} has no line {name!r} in the table (it has "
                         f"{', '.join(table)})")
    return table[name][0]


def _channels(sig: SignalView, low: float, high: float, what: str = "") -> tuple[int, int]:
    """Channels ``[i0, i1)`` whose centres lie in ``[low, high]``; at least one channel,
    clipped to the spectrum. With ``what`` (e.g. "Fe_Ka's lower background window") a
    window reaching past an end of the spectrum warns, naming it, and one lying wholly
    outside raises ``ValueError``: a clipped window is narrower than asked and off
    centre, so its counts (and the background interpolated from them) are not what the
    placement rule means."""
    a, b = sorted((sig.channel(low), sig.channel(high)))
    i0 = math.ceil(a - 1e-9)
    i1 = math.floor(b + 1e-9) + 1
    n = sig.n_channels
    if what and (i0 < 0 or i1 > n):
        span = _fmt((min(low, high), max(low, high)), sig.units)
        first, last = sig.offset, sig.offset + sig.scale * (n - 1)
        spectrum = _fmt((min(first, last), max(first, last)), sig.units)
        if i1 <= 0 or i0 >= n:
            raise ValueError(f"{what} {span} lies outside the spectrum ({spectrum}); give "
                             "background_windows= or windows= explicitly, or "
                             "background=False")
        lost = max(0, -i0) + max(0, i1 - n)
        warnings.warn(f"{what} {span} reaches past the spectrum ({spectrum}): it was "
                      f"clipped to the spectrum, losing {lost} of its {i1 - i0} channels",
                      UserWarning, stacklevel=4)
    i0 = min(max(i0, 0), n - 1)
    i1 = min(max(i1, i0 + 1), n)
    return i0, i1


def _edges(sig: SignalView, i0: int, i1: int) -> Window:
    """The energy span of channels ``[i0, i1)`` (centre of the first to the last)."""
    lo, hi = sig.offset + sig.scale * i0, sig.offset + sig.scale * (i1 - 1)
    return (min(lo, hi), max(lo, hi))


def _plan(sig: SignalView, names: Sequence[str], window_width: float,
          background: bool, background_position: float | Sequence[float],
          background_width: float,
          background_windows: Any, windows: Any = None) -> list[dict[str, Any]]:
    """Per line: energy, FWHM and the channel ranges of its windows."""
    kev = sig.kev
    fwhm_mn = sig.fwhm_mn_ev()
    if isinstance(background_position, (int, float)):
        pos = (float(background_position), float(background_position))
    else:
        pos = (float(background_position[0]), float(background_position[1]))
    if background_windows is not None:
        bw = np.asarray(background_windows, dtype=float)
        if bw.shape != (len(names), 4) and bw.shape != (len(names), 2, 2):
            raise ValueError("background_windows: one (low1, high1, low2, high2) row "
                             f"per line, got shape {bw.shape} for {len(names)} lines")
        bw = bw.reshape(len(names), 4)
    if windows is not None:
        iw = np.asarray(windows, dtype=float)
        if iw.shape != (len(names), 2):
            raise ValueError("windows: one (low, high) row per line, got shape "
                             f"{iw.shape} for {len(names)} lines")
    plans = []
    for i, name in enumerate(names):
        e_kev = line_energy_kev(name)
        e = e_kev / kev
        fwhm = eds_fwhm(e_kev, fwhm_mn) / kev
        if windows is not None:
            w = _channels(sig, *iw[i], what=f"{name}'s integration window")
        else:
            w = _channels(sig, e - window_width * fwhm / 2, e + window_width * fwhm / 2,
                          what=f"{name}'s integration window")
        bg = None
        if background:
            if background_windows is not None and np.all(np.isfinite(bw[i])):
                lo1, hi1, lo2, hi2 = bw[i]
            else:
                c1, c2 = e - pos[0] * fwhm, e + pos[1] * fwhm
                lo1, hi1 = c1 - background_width * fwhm / 2, c1 + background_width * fwhm / 2
                lo2, hi2 = c2 - background_width * fwhm / 2, c2 + background_width * fwhm / 2
            bg = (_channels(sig, lo1, hi1, what=f"{name}'s lower background window"),
                  _channels(sig, lo2, hi2, what=f"{name}'s upper background window"))
        plans.append({"line": name, "energy": e, "fwhm": fwhm, "w": w, "bg": bg})
    return plans


def _overlap(a: Window, b: Window) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _weights(n_channels: int, plans: list[dict[str, Any]]) -> np.ndarray:
    """``(n_channels, 3 * lines)``: indicator columns of each line's window, left and
    right background windows (zero columns when there is no background)."""
    w = np.zeros((n_channels, 3 * len(plans)))
    for j, p in enumerate(plans):
        w[p["w"][0]:p["w"][1], 3 * j] = 1.0
        if p["bg"] is not None:
            (a0, a1), (b0, b1) = p["bg"]
            w[a0:a1, 3 * j + 1] = 1.0
            w[b0:b1, 3 * j + 2] = 1.0
    return w


def _block_sums(block: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The window sums of one block: its spectra times the weight matrix."""
    flat = np.asarray(block).reshape(-1, block.shape[-1])
    return (flat @ weights).reshape(*block.shape[:-1], weights.shape[1])


def _lazy_sums(data: Any, weights: np.ndarray) -> Any:
    """A dask array of window sums: each block's partial sums (the energy chunks of a
    block added) in one graph that reads each block once."""
    import dask.array as da

    parts = []
    starts = np.cumsum((0,) + data.chunks[-1])
    for k in range(len(data.chunks[-1])):
        sub = weights[starts[k]:starts[k + 1]]
        if not sub.any():
            continue  # no window reaches this energy chunk: never read it
        blocks = data.blocks[(slice(None),) * (data.ndim - 1) + (k,)]
        parts.append(blocks.map_blocks(_block_sums, sub, dtype=np.float64,
                                       chunks=(*blocks.chunks[:-1], (weights.shape[1],))))
    if not parts:
        return da.zeros((*data.shape[:-1], weights.shape[1]), chunks=(
            *data.chunks[:-1], (weights.shape[1],)))
    return parts[0] if len(parts) == 1 else sum(parts[1:], parts[0])


def _eager_sums(data: Any, weights: np.ndarray, progress: Callable[[int, int], Any] | None,
                event: Any, block_bytes: int = 64 << 20) -> np.ndarray:
    """Window sums of an in-memory (or memory-mapped) array, a slab of leading rows at a
    time (bounded float copies), with progress and cancel between slabs."""
    if data.ndim == 1:
        return _block_sums(data[None], weights)[0]
    lead = data.shape[0]
    per_row = max(1, int(np.prod(data.shape[1:])) * 8)
    step = max(1, block_bytes // per_row)
    out = np.empty((*data.shape[:-1], weights.shape[1]))
    total = -(-lead // step)
    for k, r0 in enumerate(range(0, lead, step)):
        _cancel.check(event)
        out[r0:r0 + step] = _block_sums(np.asarray(data[r0:r0 + step]), weights)
        if progress is not None:
            progress(k + 1, total)
    return out


def _computed_sums(sums: Any, progress: Callable[[int, int], Any] | None,
                   event: Any) -> np.ndarray:
    """Compute a dask array of window sums block-row by block-row, calling ``progress``
    and checking the cancel event between them."""
    if sums.ndim == 1:
        _cancel.check(event)
        return np.asarray(sums.compute())
    out = np.empty(sums.shape)
    bounds = np.cumsum((0,) + sums.chunks[0])
    total = len(sums.chunks[0])
    for k in range(total):
        _cancel.check(event)
        out[bounds[k]:bounds[k + 1]] = sums.blocks[k].compute()
        if progress is not None:
            progress(k + 1, total)
    return out


def line_intensities(
    signal: Any,
    lines: Sequence[str] | str,
    background: bool = True,
    window_width: float = 2.0,
    background_windows: Any = None,
    background_position: float | Sequence[float] = 2.0,
    background_width: float = 1.0,
    windows: Any = None,
    compute: bool | None = None,
    progress: Callable[[int, int], Any] | None = None,
    cancel: Any = None,
) -> dict[str, LineIntensity]:
    """Net counts of X-ray lines (``"Fe_Ka"``...) over a spectrum image or spectrum.

    ``signal``: a spectrum-image or spectrum dict of :func:`napari_emd.file_reader` (or
    a ``Dataset`` record), energy last. ``window_width``: the integration window in
    detector FWHMs at the line (the FWHM from the metadata's
    ``energy_resolution_MnKa``, 130 eV without it). ``background=False`` gives the
    plain window sums (``net == gross``, ``sigma = sqrt(gross)``).
    ``background_windows``: explicit ``(low1, high1, low2, high2)`` per line in the
    signal's energy unit, overriding the placement rule (``background_position`` FWHMs
    from the line, ``background_width`` FWHMs wide); a row of NaN keeps the rule for
    its line. ``windows``: explicit integration
    windows ``(low, high)`` per line, overriding ``window_width``. A window covers the
    channels whose centres lie inside it (at least one).

    ``compute``: for a lazy signal, ``False`` (default) returns dask arrays sharing one
    graph (compute them together, ``dask.compute(*[r.net for r in ...])``, to read the
    data once); ``True`` computes the sums now, a row of blocks at a time, calling
    ``progress(done, total)`` and stopping with ``Cancelled`` when ``cancel`` (a
    ``threading.Event``, default the one of :func:`napari_emd.cancel.cancellation`) is
    set. Eager signals are always computed that way.

    Returns ``{line: LineIntensity}`` in the order given; lines whose windows overlap
    are named in a warning and in ``overlaps`` / ``background_overlaps``.
    """
    sig = as_signal(signal)
    names = [lines] if isinstance(lines, str) else list(lines)
    names = [f"{normalize_element(n.split('_', 1)[0])}_{n.split('_', 1)[1]}"
             if "_" in n else n for n in names]
    if len(set(names)) != len(names):
        raise ValueError(f"a line is named twice in {names}")
    if window_width <= 0 or background_width <= 0:
        raise ValueError("window_width and background_width must be positive")
    plans = _plan(sig, names, window_width, background, background_position,
                  background_width, background_windows, windows)
    weights = _weights(sig.n_channels, plans)
    event = cancel if cancel is not None else _cancel.current()
    if sig.lazy:
        sums = _lazy_sums(sig.data, weights)
        if compute:
            sums = _computed_sums(sums, progress, event)
    else:
        sums = _eager_sums(sig.data, weights, progress, event)

    windows = {p["line"]: _edges(sig, *p["w"]) for p in plans}
    out: dict[str, LineIntensity] = {}
    messages = []
    for j, p in enumerate(plans):
        i0, i1 = p["w"]
        n = i1 - i0
        gross = sums[..., 3 * j]
        bg_windows = None
        if p["bg"] is None:
            net, var = gross, gross
        else:
            (a0, a1), (b0, b1) = p["bg"]
            na, nb = a1 - a0, b1 - b0
            ca, cb, c = (a0 + a1 - 1) / 2, (b0 + b1 - 1) / 2, (i0 + i1 - 1) / 2
            t = (c - ca) / (cb - ca) if cb != ca else 0.5
            left, right = sums[..., 3 * j + 1], sums[..., 3 * j + 2]
            net = gross - n * ((1 - t) * left / na + t * right / nb)
            var = gross + n**2 * ((1 - t) ** 2 * left / na**2 + t**2 * right / nb**2)
            bg_windows = (_edges(sig, a0, a1), _edges(sig, b0, b1))
        own = windows[p["line"]]
        over = tuple(q for q, w in windows.items() if q != p["line"] and _overlap(own, w))
        bover: tuple[str, ...] = ()
        if bg_windows is not None:
            bover = tuple(q for q, w in windows.items() if q != p["line"] and any(
                _overlap(b, w) for b in bg_windows))
        if over:
            messages.append(f"{p['line']}'s window {_fmt(own, sig.units)} overlaps "
                            f"{', '.join(over)}")
        if bover:
            messages.append(f"{p['line']}'s background windows reach into "
                            f"{', '.join(bover)}")
        out[p["line"]] = LineIntensity(
            line=p["line"], energy=p["energy"], units=sig.units, net=net,
            sigma=var**0.5, gross=gross, window=own, background_windows=bg_windows,
            fwhm=p["fwhm"], overlaps=over, background_overlaps=bover)
    if messages:
        warnings.warn("overlapping X-ray line windows: " + "; ".join(messages),
                      UserWarning, stacklevel=2)
    return out


def _fmt(w: Window, units: str) -> str:
    return f"{w[0]:.3g}-{w[1]:.3g} {units}".rstrip()
