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


def draw_noise(generator: torch.Generator | None, shapes: list[tuple[int, int, int]], batch: int = 1,
               device=None) -> list[torch.Tensor]:
    """One (batch, c, h, w) U(0, 1) tensor per (c, h, w) in `shapes` (NetConfig.noise_shapes),
    drawn from `generator` on its own device (None: torch's global generator), moved to `device`."""
    source = generator.device if generator is not None else device
    return [torch.rand(batch, c, h, w, generator=generator, device=source).to(device) for c, h, w in shapes]


def step(net, memory: list[torch.Tensor], controls: torch.Tensor, noise: list[torch.Tensor],
         layout: MemoryLayout | None = None, *, noise_level: torch.Tensor | None = None,
         grad_through_memory: bool = False, recall=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One frame of a world, batched.

    net:         a network with the WorldNet signature (controls, memory, noise) -> frame
    memory:      L x (B, 3 n_i, h_i, w_i), oldest frame first in each level
    controls:    (B, C) raw control vectors
    noise:       U(0, 1) tensors of NetConfig.noise_shapes: L x (B, 1, h_i, w_i) (flow: and (B, 4, H, W))
    layout:      the memory layout (default: net.config.layout)
    noise_level: (B,) how much noise training put on the memory (networks that take it; None:
                 the network's play level)
    grad_through_memory: training on its own rollouts with gradients through the generated
                 frames (straight-through 8-bit rounding); otherwise the memory holds values only
    recall:      worlds that recall real frames (recall.py): (frame (B, 3, H, W), relative pose (B, 12))
    -> frame (B, 3, H, W) as the network made it, and the memory with it pushed in (8-bit).
    """
    layout = layout or net.config.layout
    extra = {} if recall is None else {"recall": recall}
    frame = (net(controls, memory, noise, **extra) if noise_level is None
             else net(controls, memory, noise, noise_level, **extra))
    pushed = frame.float() if grad_through_memory else frame.detach().float()
    return frame, push(memory, pushed, layout, straight_through=grad_through_memory)
