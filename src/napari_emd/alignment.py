"""Frame drift: estimating how far each frame of a spectrum image moved, and moving
images back by it.

A multi-frame spectrum image is scanned frame after frame for minutes or hours, and the
specimen drifts. :func:`estimate_shifts` measures the drift of every frame of image
stacks; :func:`napari_emd.estimate_frame_shifts` (in :mod:`napari_emd.formats.velox`)
applies it to the images acquired with a Velox SI (the HAADF/BF/DF frames
``load_SI_image_stack`` reads), or to the SI's own X-ray counts;
``file_reader(..., align_frames=...)`` then sums the frames with every event moved back
while it is decoded.

Convention (everywhere in napari-emd): a shift ``(dy, dx)`` in pixels says that a feature
at ``(y, x)`` in the reference frame (the first frame read) appears at
``(y + dy, x + dx)`` in the shifted frame. Moving a frame back onto the reference grid
takes its pixel ``(y + dy, x + dx)`` to ``(y, x)`` (:func:`align_image`).

The estimate is phase correlation (the normalised cross-power spectrum of two frames,
whose inverse Fourier transform peaks at their relative shift), refined to a fraction of
a pixel by evaluating that inverse transform on a fine grid around the peak. This module
is numpy math only: it knows no file format (the Velox readers import it, never the
other way round).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: What :func:`napari_emd.estimate_frame_shifts` measures the drift from.
SOURCES = ("images", "counts")


def align_image(image: np.ndarray, dy: int, dx: int, fill: Any = 0) -> np.ndarray:
    """``image`` (``(..., ny, nx)``) moved back by a whole-pixel shift ``(dy, dx)``: the
    result's pixel ``(y, x)`` is ``image[..., y + dy, x + dx]``, and ``fill`` where that
    lies outside the image."""
    image = np.asarray(image)
    ny, nx = image.shape[-2:]
    out = np.full(image.shape, fill, dtype=image.dtype)
    y0, y1 = max(0, -dy), min(ny, ny - dy)
    x0, x1 = max(0, -dx), min(nx, nx - dx)
    if y1 > y0 and x1 > x0:
        out[..., y0:y1, x0:x1] = image[..., y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    return out


def _window(ny: int, nx: int) -> np.ndarray:
    """A 2-D Hann window: the frames' edges, which drift in and out of view, weigh
    nothing, and the Fourier transform sees no jump where the image wraps round."""
    wy = np.hanning(ny) if ny > 2 else np.ones(ny)
    wx = np.hanning(nx) if nx > 2 else np.ones(nx)
    return np.outer(wy, wx)


def _spectrum(frame: np.ndarray) -> np.ndarray:
    """The Fourier transform of a frame, its mean removed and a Hann window applied (in
    single precision: plenty for a shift, and half the work)."""
    f = np.asarray(frame, np.float32)
    return np.fft.fft2((f - f.mean()) * _window(*f.shape).astype(np.float32))


#: How far the cross-power spectrum is whitened: 1 is classic phase correlation (every
#: frequency counts the same, so noise and the numerical dust of smooth images do too),
#: 0 plain cross-correlation (a broad peak, led by the low frequencies). A quarter kept
#: the error small on smooth, sharp and noisy test images alike, where full whitening
#: missed smooth images by pixels.
WHITENING = 0.25


def _cross_power(ref: np.ndarray, img: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The cross-power spectrum of two frames' spectra, partly whitened (see
    :data:`WHITENING`) and weighted by ``weight``; its inverse transform peaks at the
    shift of ``img`` relative to ``ref``."""
    r = np.conj(ref) * img
    mag = np.abs(r)
    np.maximum(mag, mag.max() * 1e-6 + 1e-30, out=mag)
    # a quarter power as two square roots: several times faster than a general power
    mag = np.sqrt(np.sqrt(mag)) if WHITENING == 0.25 else mag**WHITENING
    r /= mag
    r *= weight
    return r


def _lowpass(ny: int, nx: int, smooth: float) -> np.ndarray:
    """A gaussian weight on the frequencies: the correlation of frames smoothed with a
    gaussian of ``smooth`` pixels (noise lives at high frequencies; a symmetric weight
    does not move the peak)."""
    if smooth <= 0:
        return np.ones((ny, nx), np.float32)
    k = -2 * np.pi**2 * smooth**2
    gy = np.exp(k * np.fft.fftfreq(ny) ** 2).astype(np.float32)
    gx = np.exp(k * np.fft.fftfreq(nx) ** 2).astype(np.float32)
    return np.outer(gy, gx)


def _vertex(lo: float, mid: float, hi: float) -> float:
    """Where a peak sampled at -1, 0, +1 (``mid`` the largest) has its top: the vertex of
    a gaussian through the three samples (a parabola through their logarithms), or of a
    parabola through the samples when one is not positive; within +-0.5."""
    if lo > 0 and mid > 0 and hi > 0:
        lo, mid, hi = np.log(lo), np.log(mid), np.log(hi)
    den = lo - 2 * mid + hi
    if den >= 0:
        return 0.0
    return float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5))


def _peak(cross: np.ndarray, upsample: int) -> tuple[float, float]:
    """The shift at which the inverse transform of ``cross`` peaks: the whole-pixel
    maximum; with ``upsample`` > 1 refined to ``1 / upsample`` pixel.

    The refinement first puts a gaussian through the maximum and its neighbours along
    each axis (a good guess: the correlation of smoothed frames is a smooth peak), then
    evaluates the inverse transform exactly on a 7 x 7 grid of ``1 / upsample`` steps
    around the guess (a matrix-product DFT of a small patch, no big padded FFT), moving
    the patch while its maximum lies on its edge."""
    ny, nx = cross.shape
    corr = np.fft.ifft2(cross).real
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    dy = float(iy - ny if iy > ny // 2 else iy)
    dx = float(ix - nx if ix > nx // 2 else ix)
    if upsample <= 1:
        return dy, dx
    mid = corr[iy, ix]
    gy = dy + (_vertex(corr[iy - 1, ix], mid, corr[(iy + 1) % ny, ix]) if ny >= 3 else 0)
    gx = dx + (_vertex(corr[iy, ix - 1], mid, corr[iy, (ix + 1) % nx]) if nx >= 3 else 0)
    fy, fx = np.fft.fftfreq(ny), np.fft.fftfreq(nx)
    steps = np.arange(-3, 4) / upsample
    for _ in range(4):
        cy, cx = round(gy * upsample) / upsample, round(gx * upsample) / upsample
        ky = np.exp(2j * np.pi * np.outer(cy + steps, fy))  # (7, ny)
        kx = np.exp(2j * np.pi * np.outer(fx, cx + steps))  # (nx, 7)
        fine = (ky @ (cross @ kx)).real
        jy, jx = np.unravel_index(int(np.argmax(fine)), fine.shape)
        gy, gx = cy + steps[jy], cx + steps[jx]
        if 0 < jy < 6 and 0 < jx < 6:
            break
    return float(gy), float(gx)


def _overlap(ny: int, nx: int, dy: int, dx: int) -> tuple[slice, slice, slice, slice]:
    """Slices of the part of a reference frame still in view in a frame shifted by
    ``(dy, dx)``, and of where that part is in the shifted frame."""
    y0, y1 = max(0, -dy), min(ny, ny - dy)
    x0, x1 = max(0, -dx), min(nx, nx - dx)
    return slice(y0, y1), slice(x0, x1), slice(y0 + dy, y1 + dy), slice(x0 + dx, x1 + dx)


def _shift_between(
    refs: Sequence[tuple[np.ndarray, np.ndarray]],
    imgs: Sequence[tuple[np.ndarray, np.ndarray]],
    upsample: int,
    smooth: float,
) -> tuple[float, float]:
    """The shift of ``imgs`` relative to ``refs`` (one ``(frame, its spectrum)`` per
    detector, their cross-power spectra added): first in whole pixels over the whole
    frames, then to a fraction of a pixel on the part both frames see. The second look
    is what makes the estimate sub-pixel: both windowed crops hold the same specimen, so
    the window (which stays put while the specimen moves) no longer pulls the peak
    towards zero."""
    ny, nx = refs[0][0].shape
    weight = _lowpass(ny, nx, smooth)
    cross = sum(_cross_power(r[1], i[1], weight) for r, i in zip(refs, imgs))
    dy, dx = (int(v) for v in _peak(cross, 1))
    res = np.zeros(2)
    for _ in range(3):  # a whole-pixel residual moves the crops again (rarely needed)
        ry, rx, iy, ix = _overlap(ny, nx, dy, dx)
        h, w = ry.stop - ry.start, rx.stop - rx.start
        if h < 4 or w < 4:
            return float(dy), float(dx)
        weight = _lowpass(h, w, smooth)
        ref_spectra = [_spectrum(r[0][ry, rx]) for r in refs]
        crops = [i[0][iy, ix] for i in imgs]
        cross = sum(_cross_power(r, _spectrum(c), weight) for r, c in zip(ref_spectra, crops))
        res = np.array(_peak(cross, upsample))
        step = np.rint(res).astype(int)
        if not step.any():
            break
        dy, dx = dy + int(step[0]), dx + int(step[1])
        res -= step
    if upsample > 1 and res.any():
        # once more with the crops moved back by the sub-pixel estimate: what is left is
        # a few hundredths of a pixel, where the window's pull is nil
        fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
        ramp = np.exp(2j * np.pi * (fy * res[0] + fx * res[1])).astype(np.complex64)
        moved = [np.fft.ifft2(np.fft.fft2(c.astype(np.float32)) * ramp).real for c in crops]
        cross = sum(_cross_power(r, _spectrum(m), weight) for r, m in zip(ref_spectra, moved))
        res = res + np.array(_peak(cross, upsample))
    return float(dy + res[0]), float(dx + res[1])


def estimate_shifts(
    stacks: Sequence[np.ndarray],
    upsample: int = 20,
    smooth: float = 1.0,
    refine: bool = False,
) -> np.ndarray:
    """The ``(F, 2)`` float shifts ``(dy, dx)`` of the frames of image stacks taken
    together, frame 0 at ``(0, 0)``.

    ``stacks`` are ``(F, ny, nx)`` arrays of the same frames seen by one or more detectors
    (HAADF, BF, DF...); every detector's cross-power spectrum is added before the peak is
    looked for, so all of them have a say at once. ``smooth`` (pixels) damps noisy high
    frequencies; ``upsample`` sets the sub-pixel step (1/upsample). With ``refine`` (for
    noisy frames such as X-ray count maps), each frame is measured a second time against
    the mean of all frames moved back by the first estimates (less noise than one frame),
    then shifts are taken relative to frame 0 again.
    """
    stacks = [np.asarray(s, np.float64) for s in stacks]
    if not stacks or any(s.ndim != 3 or s.shape != stacks[0].shape for s in stacks):
        raise ValueError("image stacks must be (frames, y, x) arrays of one shape")
    nf, ny, nx = stacks[0].shape
    shifts = np.zeros((nf, 2))
    if nf < 2 or ny < 4 or nx < 4:
        return shifts

    frames = [[(s[f], _spectrum(s[f])) for s in stacks] for f in range(nf)]

    def measure(refs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        return np.array([_shift_between(refs, frames[f], upsample, smooth)
                         for f in range(nf)])

    shifts = measure(frames[0])
    if refine and nf > 2:
        whole = np.rint(shifts).astype(int)
        refs = []
        for s in stacks:
            total = np.zeros((ny, nx))
            cover = np.zeros((ny, nx))
            for f in range(nf):
                total += align_image(s[f], *whole[f])
                cover += align_image(np.ones((ny, nx)), *whole[f])
            mean = np.divide(total, cover, out=np.full((ny, nx), s.mean()), where=cover > 0)
            refs.append((mean, _spectrum(mean)))
        shifts = measure(refs)
    shifts -= shifts[0]
    return shifts


__all__ = ["SOURCES", "align_image", "estimate_shifts"]
