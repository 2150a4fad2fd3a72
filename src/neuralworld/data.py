"""Training windows from captures: the time split, sampling and the memory corruptions.

A training window is memory.window + unroll consecutive frames of one capture: the first
`window` frames build the memory pyramid, the next `unroll` are targets. The last
`val_fraction` of each capture (by time) is held out: no training window reaches into it, and
validation predicts only frames from it. Sampling is a pure function of (seed, step, rank), so
a resumed run draws exactly the batches an uninterrupted one would have.

The memory corruptions are the reference's stability fixes (Ollin Boer Bohan, "World Emulation
via Neural Network", 2025: memory frames replaced by random static or black 1% of the time
each) and the noise augmentation of GameNGen (Valevski et al., "Diffusion Models Are Real-Time
Game Engines", 2024) and DIAMOND (Alonso et al., NeurIPS 2024): Gaussian noise of a random
strength added to memory frames, so the model learns to repair imperfect memories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neuralworld.capture.format import open_capture
from neuralworld.controls import ControlSchema
from neuralworld.engine import draw_noise
from neuralworld.errors import UserError
from neuralworld.model.config import NetConfig, TrainRecipe
from neuralworld.model.memory import memory_from_frames
from neuralworld.world import frames_to_tensor, resize_frames


@dataclass
class TrainingData:
    frames: torch.Tensor  # (N, H, W, 3) uint8, all captures one after another
    controls: torch.Tensor  # (N, C) float32 raw control vectors, row i leads to frame i
    train_starts: torch.Tensor  # (M,) int64: first frame of each training window
    val_targets: torch.Tensor  # (V,) int64: held-out frames to predict (their memory lies before them)
    schema: ControlSchema  # control kind, names, ranges, normalisation (from the training frames)
    summary: dict  # what the world was trained on
    rollout_start: int  # a held-out frame with held-out frames after it, to start preview rollouts
    rollout_length: int  # how many held-out frames follow it in its capture (at most 8)


def load_captures(paths, config: NetConfig, unroll: int, val_fraction: float = 0.1,
                  device="cpu") -> TrainingData:
    """Open captures, check they belong together, resize frames to the config's size, split by time."""
    caps = [open_capture(p) for p in paths]
    first = caps[0]
    for cap in caps:
        if cap.motion_kind == "none":
            raise UserError(f"{cap.path}: this capture has no motion, so a world cannot learn controls from it "
                            "(import it with a pose or action log, or estimate motion with visual odometry)")
        if (cap.width, cap.height) != (first.width, first.height):
            raise UserError(f"{cap.path}: {cap.width}x{cap.height} frames, but {first.path} has "
                            f"{first.width}x{first.height} (train on captures of one size)")
        if cap.control_kind != first.control_kind or cap.control_names != first.control_names:
            raise UserError(f"{cap.path}: controls {cap.control_kind} {cap.control_names}, but {first.path} has "
                            f"{first.control_kind} {first.control_names} (train on captures of one kind)")
    window = config.layout.window
    need = window + unroll
    frames, controls, train_starts, train_rows, val_targets, described = [], [], [], [], [], []
    offset = 0
    rollout_start, rollout_length = 0, 0
    for cap in caps:
        n = len(cap)
        split = int(round(n * (1.0 - val_fraction)))
        if split < need or split >= n or split < window:
            raise UserError(f"{cap.path}: {n} frames is too short for a memory of {window} frames + {unroll} "
                            f"trained steps and a held-out tenth (needs at least "
                            f"{int(np.ceil(need / (1.0 - val_fraction))) + 1} frames; use a preset or --size "
                            "with a shorter memory, or a longer capture)")
        frames.append(resize_frames(np.asarray(cap.frames), config.height, config.width))
        controls.append(cap.controls())
        train_starts.append(offset + np.arange(0, split - need + 1))
        train_rows.append(offset + np.arange(split))
        val_targets.append(offset + np.arange(split, n))
        if n - split > rollout_length:
            rollout_start, rollout_length = offset + split, min(8, n - split)
        described.append({"path": str(cap.path), "source": cap.meta.get("source"), "frames": n,
                          "train_frames": split, "val_frames": n - split})
        offset += n
    all_controls = np.concatenate(controls)
    train_rows = np.concatenate(train_rows)
    if not np.isfinite(all_controls).all():
        raise UserError(f"{first.path}: controls contain NaN or infinite values")
    schema = ControlSchema.fit(first.control_kind, first.control_names, all_controls[train_rows])
    summary = {"captures": described, "source_size": [first.width, first.height],
               "train_windows": int(sum(len(s) for s in train_starts)),
               "val_frames": int(sum(len(v) for v in val_targets))}
    return TrainingData(
        frames=torch.from_numpy(np.concatenate(frames)).to(device),
        controls=torch.from_numpy(all_controls.astype(np.float32)).to(device),
        train_starts=torch.from_numpy(np.concatenate(train_starts)),
        val_targets=torch.from_numpy(np.concatenate(val_targets)),
        schema=schema, summary=summary, rollout_start=rollout_start, rollout_length=rollout_length,
    )


@dataclass
class Batch:
    memory: list[torch.Tensor]  # L x (B, 3 n_i, h_i, w_i): the corrupted memory before the first target
    targets: torch.Tensor  # (B, K, 3, H, W) frames to generate, in order
    controls: torch.Tensor  # (B, K, C) the control leading to each target
    noise: list[list[torch.Tensor]]  # K x L x (B, 1, h_i, w_i) U(0,1) noise maps


def step_generator(seed: int, step: int, rank: int = 0, device="cpu") -> torch.Generator:
    """The random source of one training step: a pure function of (seed, step, rank)."""
    mixed = np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(mixed) & (2 ** 63 - 1))


def sample_batch(data: TrainingData, config: NetConfig, recipe: TrainRecipe, g: torch.Generator,
                 device="cpu") -> Batch:
    """recipe.batch random training windows of recipe.unroll targets, augmented, with the memory
    corruptions applied."""
    batch, unroll = recipe.batch, recipe.unroll
    layout = config.layout
    window = layout.window
    pick = torch.randint(len(data.train_starts), (batch,), generator=g, device=g.device).cpu()
    index = data.train_starts[pick][:, None] + torch.arange(window + unroll)  # (B, T)
    index = index.to(data.frames.device)
    frames = frames_to_tensor(data.frames[index]).to(device)  # (B, T, 3, H, W)
    controls = data.controls[index].to(device)  # (B, T, C)
    if recipe.brightness_jitter > 0:  # one gain per window: appearance changes, motion does not
        gain = 1 + (2 * torch.rand(batch, generator=g, device=device) - 1) * recipe.brightness_jitter
        frames = (frames * gain[:, None, None, None, None]).clamp(0, 1)
    context = corrupt_memory_frames(frames[:, :window], recipe, g)
    sizes = layout.sizes(config.height, config.width)
    noise = [draw_noise(g, sizes, batch, device) for _ in range(unroll)]
    return Batch(memory_from_frames(context, layout), frames[:, window:], controls[:, window:], noise)


def corrupt_memory_frames(frames: torch.Tensor, recipe: TrainRecipe, g: torch.Generator) -> torch.Tensor:
    """(B, T, 3, H, W) -> the same with frames replaced by static or black, plus Gaussian noise."""
    b, t = frames.shape[:2]
    u = torch.rand(b, t, generator=g, device=frames.device)
    static = u < recipe.memory_static
    black = (u >= recipe.memory_static) & (u < recipe.memory_static + recipe.memory_black)
    frames = frames.clone()
    if static.any():
        frames[static] = torch.rand(int(static.sum()), *frames.shape[2:], generator=g, device=frames.device)
    frames[black] = 0.0
    if recipe.memory_noise > 0:
        sigma = torch.rand(b, generator=g, device=frames.device) * recipe.memory_noise
        frames = frames + torch.randn(frames.shape, generator=g, device=frames.device) * sigma[:, None, None, None, None]
    return frames  # memory_from_frames clamps and rounds to 8 bits


def validation_set(data: TrainingData, config: NetConfig, count: int = 32):
    """Up to `count` held-out targets, evenly spread, on the CPU: (memory, controls (V, C),
    targets (V, 3, H, W), last memory frames (V, 3, H, W) for the copy-the-last-frame baseline)."""
    window = config.layout.window
    pick = data.val_targets[torch.linspace(0, len(data.val_targets) - 1, min(count, len(data.val_targets))).long()]
    index = pick[:, None] + torch.arange(-window, 1)  # (V, window + 1): memory then target
    frames = frames_to_tensor(data.frames[index.to(data.frames.device)].cpu())  # (V, window + 1, 3, H, W)
    memory = memory_from_frames(frames[:, :window], config.layout)
    return memory, data.controls[pick.to(data.controls.device)].cpu(), frames[:, window], frames[:, window - 1]
