"""The training objective: per-pixel L1 plus an adversarial term from a conditional patch critic.

After the reference system (Ollin Boer Bohan, "World Emulation via Neural Network", 2025),
whose forest world held together once an adversarial objective was added to L1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class L1Loss:
    """Mean absolute error per pixel: sharp-ish, robust to outliers (pix2pix, Isola et al., CVPR 2017,
    pairs it with an adversarial term for the same reason: L1 alone gives the blurry mean)."""

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).abs().mean()


class GradientDifferenceLoss:
    """The gradient difference loss of Mathieu, Couprie & LeCun, "Deep Multi-Scale Video
    Prediction Beyond Mean Square Error" (ICLR 2016), made against the blur of per-pixel losses:
    the L1 distance between the absolute horizontal and vertical differences of neighbouring
    pixels in the predicted and the real frame, so edges must be as sharp as the real ones."""

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        def grads(x):  # (..., H, W) -> |dx| (..., H, W-1), |dy| (..., H-1, W)
            return (x[..., :, 1:] - x[..., :, :-1]).abs(), (x[..., 1:, :] - x[..., :-1, :]).abs()

        (px, py), (tx, ty) = grads(pred), grads(target)
        return (px - tx).abs().mean() + (py - ty).abs().mean()


class FlowMatchingLoss:
    """The denoising loss of a flow world predicting the clean frame (x-prediction): the mean
    squared error of the predicted clean frame at noise level t, whose minimiser is the mean of
    the clean frames that could have made x_t, so Euler steps on (x_t - x0) / t follow the flow
    of Lipman et al. (ICLR 2023) and Liu et al. (ICLR 2023). Weighting it by 1 / t^2 (the
    velocity's error, Li & He 2025) was measured too: at tiny and 3,000 steps its one-step PSNR
    fell from 31.6 to 25.7 dB, below copy-the-last-frame."""

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).pow(2).mean()


class HingeGANLoss:
    """Hinge adversarial loss (Lim & Ye, "Geometric GAN", 2017; as in SAGAN, Zhang et al. 2019 and
    BigGAN, Brock et al. 2019): the critic pushes real logits above +1 and fake ones below -1;
    the generator raises the critic's logits on its frames."""

    def critic(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()
