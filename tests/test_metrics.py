import cv2
import numpy as np
import pytest

from neuralworld import metrics


@pytest.fixture
def textured(rng):
    """Frames with detail at every scale: smoothed noise plus fine noise."""
    base = rng.random((4, 32, 48, 3))
    frames = np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in base]) * 0.7 + rng.random((4, 32, 48, 3)) * 0.3
    return (frames * 255).astype(np.uint8)


def test_identical_frames_score_capped_psnr_and_ssim_one(textured):
    assert np.all(metrics.psnr(textured, textured) == metrics.PSNR_CAP)
    assert np.allclose(metrics.ssim(textured, textured), 1.0)


def test_psnr_of_a_known_error():
    a = np.zeros((2, 8, 8, 3), np.uint8)
    b = np.full((2, 8, 8, 3), 51, np.uint8)  # error 0.2 everywhere -> MSE 0.04 -> 13.98 dB
    assert np.allclose(metrics.psnr(a, b), 10 * np.log10(1 / 0.04))
    assert metrics.psnr(a, b).shape == (2,)


def test_ssim_falls_with_noise_and_handles_tiny_frames(textured, rng):
    noisy = np.clip(textured + rng.normal(0, 25, textured.shape), 0, 255).astype(np.uint8)
    very = np.clip(textured + rng.normal(0, 80, textured.shape), 0, 255).astype(np.uint8)
    s1, s2 = metrics.ssim(textured, noisy).mean(), metrics.ssim(textured, very).mean()
    assert 1.0 > s1 > s2 > 0.0
    tiny = textured[:, :5, :6]
    assert np.allclose(metrics.ssim(tiny, tiny), 1.0)
    # SSIM sees a change of structure that PSNR barely weighs: a constant offset keeps structure
    shifted = np.clip(textured.astype(int) + 10, 0, 255).astype(np.uint8)
    assert metrics.ssim(textured, shifted).mean() > s1


def test_blurred_copy_has_lower_detail_retention(textured):
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in textured])
    assert metrics.detail_retention(textured, textured) == pytest.approx(1.0)
    keep = metrics.detail_retention(blurred, textured)
    assert keep < 0.5
    flat = np.full_like(textured, 128)
    assert metrics.detail_retention(flat, textured) == 0.0
    # white noise spreads power evenly: its share above 0.25 cycles/pixel is near 1 - pi/16
    noise = np.random.default_rng(1).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    assert metrics.high_frequency_share(noise).mean() == pytest.approx(1 - np.pi / 16, abs=0.05)
