"""The conditional patch critic of adversarial training (training only; never exported).

A PatchGAN (Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks",
CVPR 2017) that sees the candidate frame beside the newest full-size memory frames, so it
judges the frame as a continuation, and the controls through FiLM (Perez et al., AAAI 2018),
so it judges whether the motion matches them. Spectral normalisation (Miyato et al.,
"Spectral Normalization for Generative Adversarial Networks", ICLR 2018) keeps it smooth.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from neuralworld.model.config import NetConfig


class PatchCritic(nn.Module):
    """(frame (B,3,H,W), context (B,3n,H,W), controls (B,C) normalised as the world's network
    normalises them, WorldNet.normalise_controls) -> logits (B,1,H/8,W/8)."""

    def __init__(self, config: NetConfig, control_dim: int, channels: int):
        super().__init__()
        c = channels
        n = config.memory_frames[0]
        self.convs = nn.ModuleList([
            spectral_norm(nn.Conv2d(3 + 3 * n, c, 4, stride=2, padding=1)),  # (B, c, H/2, W/2)
            spectral_norm(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)),  # (B, 2c, H/4, W/4)
            spectral_norm(nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1)),  # (B, 4c, H/8, W/8)
        ])
        self.film = nn.Linear(control_dim, 2 * 4 * c)
        self.head = spectral_norm(nn.Conv2d(4 * c, 1, 3, padding=1))

    def forward(self, frame: torch.Tensor, context: torch.Tensor, controls: torch.Tensor) -> torch.Tensor:
        x = torch.cat([frame, context], dim=1) * 2 - 1
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        scale, shift = self.film(controls)[:, :, None, None].chunk(2, dim=1)
        return self.head(x * (1 + scale) + shift)
