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


class FlowMatchingLoss:
    """The flow matching loss (Lipman et al., ICLR 2023; Liu et al., ICLR 2023) of a network that
    predicts the clean frame x0 (x-prediction) and is sampled along the velocity (x_t - x0) / t:
    the squared error of that velocity, which is the clean frame's error over t
    (Li & He, "Back to Basics: Let Denoising Generative Models Denoise", 2025), so fine detail,
    learned at small t, is not drowned by the large-t errors. t is floored at T_MIN."""

    T_MIN = 0.05

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """pred, target (B, K, 3, H, W) frames in [0, 1]; t (B, K) noise levels."""
        x_error = (2 * (pred - target)).pow(2).mean(dim=(2, 3, 4))  # (B, K), in the sampler's [-1, 1] units
        return (x_error / t.clamp_min(self.T_MIN).pow(2)).mean()


class HingeGANLoss:
    """Hinge adversarial loss (Lim & Ye, "Geometric GAN", 2017; as in SAGAN, Zhang et al. 2019 and
    BigGAN, Brock et al. 2019): the critic pushes real logits above +1 and fake ones below -1;
    the generator raises the critic's logits on its frames."""

    def critic(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()
