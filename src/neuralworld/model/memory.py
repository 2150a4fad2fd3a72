"""The memory pyramid: the network's memory of earlier frames, updated by one rule everywhere.

After the reference system (Ollin Boer Bohan, "World Emulation via Neural Network", 2025):
for 192x256 frames, level 0 holds the last 4 frames at full size, level 1 the last 8 at
1/4 per side (48x64), level 2 the last 16 at 1/16 (12x16), level 3 the last 32 at 1/64 (3x4).
Each level stacks its frames along channels, oldest first: (B, 3 * frames, h, w). Before
a frame enters a level it is average-pooled from the full frame by the level's factor,
clamped to [0, 1] and rounded to 8 bits, so that memory in PyTorch, ONNX and the browser
holds exactly the same values. Zeros stand for frames not seen yet.

The browser player runs `push` inside its exported model (export.PlayerStep), so this is the
one copy of the rule; web/memory.js keeps a JavaScript copy, tested against this one, for
measuring what that saves (`neuralworld bench`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MemoryLayout:
    frames: tuple[int, ...] = (4, 8, 16, 32)  # frames kept per level, level 0 = full size
    factor: int = 4  # each level is `factor` times smaller per side than the one before

    def scale(self, level: int) -> int:
        return self.factor ** level

    def sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(h, w) of each level for frames of height x width (which each scale must divide)."""
        out = []
        for i in range(len(self.frames)):
            s = self.scale(i)
            if height % s or width % s:
                raise ValueError(f"{width}x{height} frames are not divisible by {s} for memory level {i}")
            out.append((height // s, width // s))
        return out

    @property
    def window(self) -> int:
        """How many past frames the memory reaches back."""
        return max(self.frames)

    @classmethod
    def for_size(cls, height: int, width: int, frames=(4, 8, 16, 32), factor: int = 4) -> "MemoryLayout":
        """The reference layout, keeping only the levels whose size stays a whole number of pixels."""
        levels = [n for i, n in enumerate(frames) if height % factor ** i == 0 and width % factor ** i == 0]
        return cls(tuple(levels), factor)

    def to_json(self) -> dict:
        return {"frames": list(self.frames), "factor": self.factor}


def quantize8(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0,1] and round to the nearest of 256 levels (what an 8-bit frame can hold)."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def quantize8_straight_through(x: torch.Tensor) -> torch.Tensor:
    """quantize8's values with the gradient of the identity (Bengio et al., "Estimating or
    Propagating Gradients Through Stochastic Neurons", 2013): training can pass gradients
    through frames rounded into memory."""
    return x + (quantize8(x) - x).detach()


def pool_levels(frame: torch.Tensor, layout: MemoryLayout, straight_through: bool = False) -> list[torch.Tensor]:
    """(B, 3, H, W) in [0,1] -> one (B, 3, H/s, W/s) quantized image per level."""
    q = quantize8_straight_through if straight_through else quantize8
    out = []
    for i in range(len(layout.frames)):
        s = layout.scale(i)
        out.append(q(F.avg_pool2d(frame, s) if s > 1 else frame))
    return out


def empty_memory(layout: MemoryLayout, batch: int, height: int, width: int,
                 device=None, dtype=torch.float32) -> list[torch.Tensor]:
    """All-zero memory: a list of (B, 3 * frames_i, h_i, w_i)."""
    return [torch.zeros(batch, 3 * n, h, w, device=device, dtype=dtype)
            for n, (h, w) in zip(layout.frames, layout.sizes(height, width))]


def push(memory: list[torch.Tensor], frame: torch.Tensor, layout: MemoryLayout,
         straight_through: bool = False) -> list[torch.Tensor]:
    """Shift `frame` (B, 3, H, W) into every level as its newest entry; the oldest drops out.
    straight_through: keep the frame's gradient through the 8-bit rounding (training)."""
    return [torch.cat([m[:, 3:], p], dim=1) for m, p in zip(memory, pool_levels(frame, layout, straight_through))]


def to_bytes(levels: list[torch.Tensor]) -> list[torch.Tensor]:
    """Quantized levels as bytes: uint8 k for the value k / 255 (exact: every value is one)."""
    return [torch.round(m * 255.0).to(torch.uint8) for m in levels]


def from_bytes(levels: list[torch.Tensor]) -> list[torch.Tensor]:
    """Bytes back to the values k / 255 in float32, as quantize8 makes them."""
    return [m.float() / 255.0 for m in levels]


def push_bytes(memory: list[torch.Tensor], frame: torch.Tensor, layout: MemoryLayout) -> list[torch.Tensor]:
    """push for a memory held as bytes: push_bytes(to_bytes(m), f) == to_bytes(push(m, f)), with a
    quarter of the data to move (the browser's WebAssembly model keeps its memory so)."""
    return [torch.cat([m[:, 3:], p], dim=1) for m, p in zip(memory, to_bytes(pool_levels(frame, layout)))]


def newest_frame(memory: list[torch.Tensor]) -> torch.Tensor:
    """(B, H, W, 3) uint8: the newest frame of level 0 as memory holds it (8-bit exact), the
    picture a player sees."""
    return torch.round(memory[0][:, -3:] * 255.0).to(torch.uint8).permute(0, 2, 3, 1)


def memory_from_frames(frames: torch.Tensor, layout: MemoryLayout) -> list[torch.Tensor]:
    """Memory after seeing `frames` (B, T, 3, H, W), oldest first: the same as pushing them one
    by one into empty memory, computed at once (used to start rollouts and training windows).
    Each level pools only the frames it holds (the newest n_i)."""
    b, t, _, h, w = frames.shape
    out = []
    for i, n in enumerate(layout.frames):
        recent = frames[:, max(0, t - n):]  # (B, k, 3, H, W), k = min(t, n)
        k = recent.shape[1]
        s = layout.scale(i)
        flat = recent.reshape(b * k, 3, h, w)
        level = quantize8(F.avg_pool2d(flat, s) if s > 1 else flat)
        level = level.reshape(b, k, 3, *level.shape[-2:])
        if k < n:
            level = torch.cat([level.new_zeros(b, n - k, *level.shape[2:]), level], dim=1)
        out.append(level.reshape(b, 3 * n, *level.shape[-2:]))
    return out
