"""Small worlds for the export, play and browser tests: tiny shapes, generated data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neuralworld.controls import ACTION_KIND, POSE_KIND, ControlSchema, walk_pose
from neuralworld.model.config import get_preset
from neuralworld.model.network import WorldNet
from neuralworld.recall import Bank
from neuralworld.world import World

HEIGHT, WIDTH = 32, 32


def tiny_config(height: int = HEIGHT, width: int = WIDTH, **fields):
    """tiny's network at a small size, warping by the move as an input; a world that recalls real
    frames only with recall=True (save_world gives it a bank)."""
    fields = {"warp": "input", "recall": False, **fields}
    return dataclasses.replace(get_preset("tiny").net, height=height, width=width, memory_frames=(4, 8, 16),
                               channels=(8, 16, 16), control_embed=16, **fields)


def pose_schema() -> ControlSchema:
    return ControlSchema.identity(POSE_KIND)


def action_schema() -> ControlSchema:
    return ControlSchema(ACTION_KIND, ("steering", "throttle"), ((-0.7, 0.6), (0.4, 1.0)), (0.1, 0.7), (0.3, 0.15))


def start_frames(count: int = 6, height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> np.ndarray:
    """(K, H, W, 3) uint8: smooth colour gradients that drift a little from frame to frame."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    frames = []
    for k in range(count):
        a = rng.uniform(0, 2 * np.pi, 3)
        rgb = [0.5 + 0.4 * np.sin(4 * x + 3 * y + a[c] + 0.2 * k) for c in range(3)]
        frames.append(np.stack(rgb, -1))
    return np.round(np.clip(np.stack(frames), 0, 1) * 255).astype(np.uint8)


def random_world_net(schema: ControlSchema, seed: int = 0, height: int = HEIGHT, width: int = WIDTH,
                     **fields) -> WorldNet:
    """A WorldNet with random weights everywhere (a fresh one starts as copy-the-last-frame, which
    would hide differences between runtimes); `fields` change its NetConfig (e.g. objective="flow")."""
    net = WorldNet(tiny_config(height, width, **fields), schema)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 / max(1, p[0].numel()) ** 0.5 if p.ndim > 1 else 0.05))
    return net.eval()


def save_world(path: Path, schema: ControlSchema | None = None, seed: int = 0, **fields) -> Path:
    schema = schema or pose_schema()
    recall = {"bank": recall_bank(), "start_pose": walk_pose(np.zeros(3), 0.0, 0.0)} if fields.get("recall") else {}
    net = random_world_net(schema, seed, **fields)
    if net.look is not None:  # an action world that recalls frames by look: noise, all fine detail
        c = net.config
        noise = np.random.default_rng(3).integers(0, 256, (c.look_frames, c.height, c.width, 3), dtype=np.uint8)
        net.look.fill(torch.from_numpy(noise))
    World(net, schema, start_frames(), preset="tiny", **recall).save(path)
    return Path(path)


def recall_bank(count: int = 8) -> Bank:
    """Real frames for a world that recalls them: gradients seen from a circle of places 1 m
    apart, heading within 1 radian of the start's (so that turning further recalls frames shown
    as if turned, recall.Bank.recall)."""
    angles = np.linspace(-1.0, 1.0, count)
    poses = np.stack([walk_pose(np.array([np.cos(a), np.sin(a), 0.0]), a, 0.0) for a in angles])
    return Bank(start_frames(count, seed=9), poses)


class ShiftNet(nn.Module):
    """An analytic world for control tests: the next frame is the newest memory frame moved
    sideways by GAIN pixels per radian of yaw to the left (camera turning left -> the picture
    moves right). Yaw left is -r02 of the pose control (the new forward axis seen from the old
    camera has a negative x). Shifts are blended from whole-pixel rolls, so only simple ops."""

    GAIN = 24.0  # pixels per radian
    REACH = 6  # largest shift in pixels per frame

    def __init__(self, height: int = HEIGHT, width: int = 64):
        super().__init__()
        self.config = tiny_config(height, width)

    def forward(self, controls, memory, noise):
        newest = memory[0][:, -3:]  # (B, 3, H, W)
        shift = (-controls[:, 2] * self.GAIN)[:, None, None, None]  # (B, 1, 1, 1) pixels to the right
        out = torch.zeros_like(newest)
        for k in range(-self.REACH, self.REACH + 1):
            weight = torch.relu(1.0 - (shift - k).abs())
            out = out + weight * torch.roll(newest, k, dims=3)
        # every input takes part, so the exported model keeps them all (with no effect)
        unused = sum(m.mean() for m in memory[1:]) + sum(n.mean() for n in noise)
        return out + 0.0 * unused


def bar_frames(count: int, height: int, width: int, column: int) -> np.ndarray:
    """(K, H, W, 3) uint8: dark frames with one bright vertical bar 3 pixels wide at `column`."""
    frames = np.full((count, height, width, 3), 20, np.uint8)
    frames[:, :, column - 1:column + 2] = 230
    return frames


def bar_column(frame: np.ndarray) -> float:
    """Column of the brightest bar in an (H, W, 3) frame (intensity-weighted, around the peak)."""
    profile = frame.astype(np.float64).mean(axis=(0, 2))
    profile -= profile.min()
    peak = int(np.argmax(profile))
    cols = np.arange(peak - 3, peak + 4) % len(profile)
    return float(np.sum((peak + np.arange(-3, 4)) * profile[cols]) / profile[cols].sum())


def model_constants(model) -> dict:
    """{name: array} of an ONNX model's constants: its initializers and its Constant nodes' values."""
    from onnx import numpy_helper

    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
                      if n.op_type == "Constant"})
    return constants


def channel_pads(model) -> int:
    """How many Pad nodes of an ONNX model pad a 4-d tensor's channels (axis 1) with zeros: the
    network's zero channels (network.pad_channels), not the sampler's border or the frame's alpha."""
    constants = model_constants(model)

    def zeros(n) -> bool:  # no constant value given, or 0
        return len(n.input) < 3 or not n.input[2] or not constants[n.input[2]].any()

    return sum(1 for n in model.graph.node
               if n.op_type == "Pad" and constants[n.input[1]][[1, 5]].any() and zeros(n))
