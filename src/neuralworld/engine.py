"""The rollout engine: one step of a world, batched, and the noise it draws.

Every rollout goes through `step`: World.step and World.rollout (Python play, `neuralworld
rollout`, evaluation and its baselines, training previews), training's unroll and its
validation. The browser player mirrors it (web/player.js, `step`), tested frame for frame
against World.

A step maps (network, memory pyramid, controls, noise) to (frame, new memory): the network
draws the next frame from the memory and the controls, and the frame is pushed into the
memory by model/memory.push, which rounds it to 8 bits as every runtime does.

Noise comes from one kind of source, a seeded torch.Generator, through `draw_noise`, so the
same world, start, controls and seed give the same frames in every command.
"""

from __future__ import annotations

import torch

from neuralworld.model.memory import MemoryLayout, push


def draw_noise(generator: torch.Generator | None, sizes: list[tuple[int, int]], batch: int = 1,
               device=None) -> list[torch.Tensor]:
    """One (batch, 1, h, w) U(0, 1) map per memory level of size (h, w), drawn from `generator`
    on its own device (None: torch's global generator) and moved to `device`."""
    source = generator.device if generator is not None else device
    return [torch.rand(batch, 1, h, w, generator=generator, device=source).to(device) for h, w in sizes]


def step(net, memory: list[torch.Tensor], controls: torch.Tensor, noise: list[torch.Tensor],
         layout: MemoryLayout | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One frame of a world, batched.

    net:      a network with the WorldNet signature (controls, memory, noise) -> frame
    memory:   L x (B, 3 n_i, h_i, w_i), oldest frame first in each level
    controls: (B, C) raw control vectors
    noise:    L x (B, 1, h_i, w_i) U(0, 1)
    layout:   the memory layout (default: net.config.layout)
    -> frame (B, 3, H, W) as the network made it, and the memory with it pushed in (8-bit).
    The memory does not carry gradients back into the frame (8-bit rounding has none).
    """
    layout = layout or net.config.layout
    frame = net(controls, memory, noise)  # (B, 3, H, W)
    return frame, push(memory, frame.detach().float(), layout)
