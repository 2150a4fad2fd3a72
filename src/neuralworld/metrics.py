"""Image measures of generated frames against real ones: PSNR, SSIM and detail retention.

Every function takes uint8 frames (..., H, W, 3) as worlds and captures hold them (floats in
[0, 1] are accepted too) and works per frame, so a batch of frames gives a batch of scores.

  psnr              10 log10(1 / MSE) over RGB in [0, 1], capped at PSNR_CAP dB so that an
                    exact copy scores a finite, comparable number instead of infinity.
  ssim              Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error
                    visibility to structural similarity" (IEEE TIP 2004): 11x11 Gaussian window,
                    sigma 1.5, K1 0.01, K2 0.03, data range 1, per RGB channel then averaged,
                    over the "valid" part of the image (the window never leaves it; frames
                    smaller than 11 pixels use a window as large as fits).
  detail_retention  high-frequency share of generated frames over that of real frames (below).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP = 100.0  # dB; an exact copy (MSE 0) scores this

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
SSIM_K1, SSIM_K2 = 0.01, 0.03

# Detail retention: the share of spectral power above DETAIL_CUTOFF cycles/pixel (half the
# Nyquist frequency of 0.5) among all non-zero frequencies.
DETAIL_CUTOFF = 0.25


def to_float(frames) -> np.ndarray:
    """uint8 (or float [0,1]) frames -> float64 in [0, 1], same shape."""
    a = np.asarray(frames)
    return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)


def luma(frames) -> np.ndarray:
    """(..., H, W, 3) frames -> (..., H, W) luma 0.299 R + 0.587 G + 0.114 B in [0, 1]."""
    f = to_float(frames)
    return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114


def psnr(a, b) -> np.ndarray:
    """PSNR in dB per frame of (..., H, W, 3) frames a against b; capped at PSNR_CAP."""
    a, b = to_float(a), to_float(b)
    mse = ((a - b) ** 2).mean(axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(1.0 / mse)
    return np.minimum(out, PSNR_CAP)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()  # (size,)


def ssim(a, b) -> np.ndarray:
    """Mean SSIM per frame of (..., H, W, 3) frames a against b (1 for identical frames)."""
    a, b = to_float(a), to_float(b)
    batch_shape, (h, w, c) = a.shape[:-3], a.shape[-3:]
    x = torch.from_numpy(a.reshape(-1, h, w, c)).permute(0, 3, 1, 2).reshape(-1, 1, h, w)  # (B*3, 1, H, W)
    y = torch.from_numpy(b.reshape(-1, h, w, c)).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    size = min(SSIM_WINDOW, h - (1 - h % 2), w - (1 - w % 2))  # the largest odd window that fits
    g = _gaussian_window(size, SSIM_SIGMA)

    def blur(t):  # separable Gaussian, valid region only
        return F.conv2d(F.conv2d(t, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    per_channel = s.mean(dim=(1, 2, 3)).reshape(-1, c)  # (B, 3)
    return per_channel.mean(dim=1).numpy().reshape(batch_shape)


def high_frequency_share(frames) -> np.ndarray:
    """Per frame of (..., H, W, 3): the share of spectral power above DETAIL_CUTOFF.

    Exactly: the frame is turned to luma (0.299 R + 0.587 G + 0.114 B, in [0, 1]), its mean is
    removed, it is multiplied by a 2-D Hann window (so that the frame's borders do not count as
    edges), and P = |FFT2|^2. With r the radial frequency sqrt(fx^2 + fy^2) in cycles per
    pixel (numpy.fft.fftfreq; 0.5 is Nyquist), the share is sum(P[r > 0.25]) / sum(P[r > 0]).
    A flat frame (no power) has share 0.
    """
    gray = luma(frames)  # (..., H, W)
    h, w = gray.shape[-2:]
    gray = gray - gray.mean(axis=(-2, -1), keepdims=True)
    gray = gray * np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2(gray)) ** 2
    r = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))  # (H, W)
    total = power[..., r > 0].sum(axis=-1)
    high = power[..., r > DETAIL_CUTOFF].sum(axis=-1)
    return np.where(total > 0, high / np.maximum(total, 1e-300), 0.0)


def structure(frames) -> np.ndarray:
    """Per frame of (..., H, W, 3): the mean gradient magnitude of its luma (0.299 R + 0.587 G +
    0.114 B, in [0, 1]) after a Gaussian blur of 1 pixel (central differences, per pixel), away
    from the borders (a margin of 1/12 of the shorter side, where a world's edge artefacts sit).

    The edges of things at scales of two pixels and more: what "soup" lacks even when a faint
    grid or speckle of single pixels gives it a real frame's high-frequency share (the blur
    removes those), and what a view of a place keeps when it is only a little soft."""
    from scipy.ndimage import gaussian_filter

    gray = luma(frames)  # (..., H, W)
    blurred = gaussian_filter(gray, sigma=[0] * (gray.ndim - 2) + [1.0, 1.0], mode="nearest")
    gy, gx = np.gradient(blurred, axis=(-2, -1))
    m = max(1, min(gray.shape[-2:]) // 12)
    return np.hypot(gx, gy)[..., m:-m, m:-m].mean(axis=(-2, -1))


def detail_retention(generated, real) -> float:
    """Mean high-frequency share of `generated` frames over that of `real` frames (N, H, W, 3).

    1.0 keeps the real frames' fine detail; blur and "soup" tend to 0; above 1 means more
    high-frequency energy than the real place has (noise, checkerboard artefacts).
    """
    real_share = float(high_frequency_share(real).mean())
    gen_share = float(high_frequency_share(generated).mean())
    return gen_share / real_share if real_share > 0 else float("nan")
