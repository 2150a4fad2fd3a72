"""A world: its folder on disk, and play through the rollout engine: reset(), step(controls),
rollout(start, controls, seed).

After the environment interface of DIAMOND (Alonso et al., "Diffusion for World Modeling:
Visual Details Matter in Atari", NeurIPS 2024): a rolling memory buffer that every generated
frame is pushed into, by engine.step, exactly as in training and in the browser.

The world folder:
  world.json           {"format": "neuralworld-world", "version": 1, "preset", "config" (NetConfig),
                        "controls" (ControlSchema: kind, names, ranges [[min, max] per name], mean, scale),
                        "memory": {"frames", "factor"}, "height", "width",
                        "training" (summary, with the TrainRecipe as "recipe")}
  weights.safetensors  the averaged (EMA) weights of WorldNet, buffers included (an action world's
                       frames recalled by look, network.LookRecall); never a pickle
  start_frames.npy     (K, H, W, 3) uint8 real frames, oldest first, to start play from
  recall_frames.npy    worlds that recall real frames (recall.py): (M, H, W, 3) uint8 the bank
  recall_poses.npy     (M, 4, 4) float64 their camera-to-world poses; world.json's "start_pose"
                       is the newest start frame's
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from neuralworld import engine
from neuralworld.controls import ControlSchema
from neuralworld.errors import UserError
from neuralworld.fileio import atomic_write_bytes, atomic_write_json, read_json
from neuralworld.model.config import NetConfig
from neuralworld.model.memory import MemoryLayout, empty_memory, memory_from_frames, newest_frame
from neuralworld.model.network import WorldNet
from neuralworld.recall import Bank, Follower

FORMAT = "neuralworld-world"
VERSION = 1


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, h, w, 3) uint8 -> (N, height, width, 3) uint8: area averaging to shrink, bilinear to
    enlarge (no copy if the size fits)."""
    import cv2

    if frames.shape[1:3] == (height, width):
        return frames
    interp = cv2.INTER_AREA if frames.shape[1] >= height else cv2.INTER_LINEAR
    return np.stack([cv2.resize(np.asarray(f), (width, height), interpolation=interp) for f in frames])


def frames_to_tensor(frames, device=None) -> torch.Tensor:
    """(..., H, W, 3) uint8, an array or a tensor on any device -> (..., 3, H, W) float32 in [0, 1]
    (on `device`, or where a tensor is)."""
    if isinstance(frames, torch.Tensor):
        t = frames if device is None else frames.to(device)
    else:
        t = torch.as_tensor(np.ascontiguousarray(frames), device=device)
    return t.movedim(-1, -3).float() / 255.0


class World:
    """A network with its control schema and start frames, played one frame at a time.
    `net` is a WorldNet, or any module with its signature and a `config` (NetConfig), such as
    the copy-the-last-frame baseline (model/network.CopyLastNet)."""

    def __init__(self, net, schema: ControlSchema, start_frames: np.ndarray, preset: str | None = None,
                 summary: dict | None = None, device="cpu", start_attitude=(0.0, 0.0),
                 bank: Bank | None = None, start_pose=None):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.config: NetConfig = net.config
        self.schema = schema
        self.start_frames = np.array(start_frames, np.uint8)  # a copy: captures are memory-mapped read-only
        # (roll, pitch) in radians of the camera that took the newest start frame: a player starting
        # from the start frames starts with them (a level player would tell the world it had tilted)
        self.start_attitude = (float(start_attitude[0]), float(start_attitude[1]))
        self.preset = preset
        self.summary = summary or {}
        # worlds that recall real frames: the bank, the pose of the newest start frame, and what
        # follows the camera's pose from the moves of the controls (recall.Follower, as the page does)
        self.bank = bank
        self.start_pose = np.eye(4) if start_pose is None else np.array(start_pose, np.float64)
        self.follower = Follower(bank, self.start_pose) if bank is not None else None
        if self.config.recall and bank is None:
            raise ValueError("a world that recalls real frames needs its bank")
        self.generator = torch.Generator().manual_seed(0)
        self.memory: list[torch.Tensor] = []
        self.step_seconds, self.steps = 0.0, 0  # time spent in step(), for frames/s figures
        self.reset()

    @property
    def layout(self) -> MemoryLayout:
        return self.config.layout

    @property
    def height(self) -> int:
        return self.config.height

    @property
    def width(self) -> int:
        return self.config.width

    @property
    def frames_per_s(self) -> float:
        return self.steps / self.step_seconds if self.step_seconds > 0 else float("inf")

    # --- on disk ---

    @classmethod
    def load(cls, path, device="cpu", sampler_steps: int | None = None) -> "World":
        """The world in folder `path`; sampler_steps: a flow world's Euler steps per frame instead of
        the ones it was trained to play with (NetConfig.sampler_steps)."""
        path = Path(path)
        if not (path / "world.json").is_file():
            raise UserError(f"{path}: no world here (world.json is missing; make one with `neuralworld train`)")
        meta = read_json(path / "world.json", "world.json")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise UserError(f"{path}: world.json is not a neuralworld world")
        if meta.get("version") != VERSION:
            raise UserError(f"{path}: world format version {meta.get('version')} is not supported "
                            f"(this neuralworld reads version {VERSION}; use a matching neuralworld or train again)")
        for name in ("weights.safetensors", "start_frames.npy"):
            if not (path / name).is_file():
                raise UserError(f"{path}: {name} is missing (the world folder is incomplete)")
        if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("controls"), dict):
            raise UserError(f"{path}: world.json has no network config or control schema (the world folder is "
                            "damaged; train it again)")
        try:
            config = NetConfig.from_json(meta["config"])
            schema = ControlSchema.from_json(meta["controls"])
        except UserError as e:
            raise UserError(f"{path}/world.json: {e} (the world folder is damaged; train it again)") from None
        net = WorldNet(config, schema)
        try:
            weights = load_file(path / "weights.safetensors")
            start = np.load(path / "start_frames.npy", allow_pickle=False)
        except (OSError, ValueError, SafetensorError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise UserError(f"{path}: cannot read the weights or start frames ({first}; the world folder is "
                            "damaged: train it again)") from None
        try:
            net.load_state_dict(weights)
        except RuntimeError as e:  # torch lists every difference, one per line: say how many and the first
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            raise UserError(f"{path}: the weights do not fit world.json's network ({max(1, len(lines) - 1)} "
                            f"difference(s), first: {lines[-1] if len(lines) == 1 else lines[1]}"[:300]
                            + "; the folder mixes two worlds: train it again)") from None
        if sampler_steps is not None:
            if not 1 <= sampler_steps <= 16:
                raise UserError(f"--sampler-steps {sampler_steps}: give 1..16")
            net.sampler_steps = sampler_steps
        attitude = meta.get("start_attitude", [0.0, 0.0])  # worlds written before it: level
        if not (isinstance(attitude, list) and len(attitude) == 2
                and all(isinstance(a, (int, float)) and np.isfinite(a) for a in attitude)):
            raise UserError(f"{path}/world.json: start_attitude {attitude!r} is not two finite numbers (roll, "
                            "pitch in radians; the world folder is damaged: train it again)")
        bank, start_pose = None, None
        if config.recall:
            try:
                bank = Bank(np.load(path / "recall_frames.npy", allow_pickle=False),
                            np.load(path / "recall_poses.npy", allow_pickle=False))
                start_pose = np.array(meta["start_pose"], np.float64).reshape(4, 4)
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise UserError(f"{path}: cannot read the recalled frames ({type(e).__name__}: {str(e)[:120]}; "
                                "the world folder is damaged: train it again)") from None
            if (bank.frames.shape[1:] != (config.height, config.width, 3) or bank.poses.shape != (len(bank), 4, 4)
                    or not len(bank) or not np.isfinite(bank.poses).all() or not np.isfinite(start_pose).all()):
                raise UserError(f"{path}: recall_frames.npy {bank.frames.shape} and recall_poses.npy "
                                f"{bank.poses.shape} do not fit a {config.width}x{config.height} world (the world "
                                "folder is damaged: train it again)")
        return cls(net, schema, start, meta.get("preset"), meta.get("training"), device, attitude, bank, start_pose)

    def to_json(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION,
            "preset": self.preset,
            "config": self.config.to_json(),
            "controls": self.schema.to_json(),
            "memory": self.layout.to_json(),
            "height": self.height, "width": self.width,
            "start_attitude": list(self.start_attitude),
            **({"start_pose": self.start_pose.tolist()} if self.bank is not None else {}),
            "training": self.summary,
        }

    def save(self, path) -> None:
        """Write (or refresh) the three files of the world folder, each atomically; world.json last."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.net.state_dict().items()}
        atomic_write_bytes(path / "weights.safetensors", safetensors_bytes(tensors, metadata={"format": FORMAT}))
        buf = io.BytesIO()
        np.save(buf, self.start_frames, allow_pickle=False)
        atomic_write_bytes(path / "start_frames.npy", buf.getvalue())
        if self.bank is not None:
            for name, array in (("recall_frames.npy", self.bank.frames), ("recall_poses.npy", self.bank.poses)):
                buf = io.BytesIO()
                np.save(buf, array, allow_pickle=False)
                atomic_write_bytes(path / name, buf.getvalue())
        atomic_write_json(path / "world.json", self.to_json())

    # --- rollout ---

    def reset(self, start=None, seed: int = 0) -> list[torch.Tensor]:
        """Start a rollout. start: None (the world's start frames), an array (T, H, W, 3) uint8 of
        real frames, oldest first (resized to the world's size if needed), or "blank" (zeros).
        The noise generator is re-seeded, so the same reset and controls give the same frames.
        A world that recalls real frames starts at its start pose, or, from other frames, at the
        pose of the bank frame most like the newest of them (Bank.locate)."""
        self.generator.manual_seed(seed)
        if self.follower is not None:
            self.follower.reset()
        if isinstance(start, str):
            if start != "blank":
                raise ValueError(f"start={start!r}: expected None, 'blank' or an array of frames")
            self.memory = empty_memory(self.layout, 1, self.height, self.width, device=self.device)
            return self.memory
        frames = self.start_frames if start is None else np.array(start)  # a copy: captures are read-only
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"start frames: expected (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        frames = resize_frames(frames, self.height, self.width)
        if start is not None and self.follower is not None:
            self.follower.reset(self.bank.locate(frames[-1]))
        self.memory = memory_from_frames(frames_to_tensor(frames[None], self.device), self.layout)
        return self.memory

    def draw_noise(self) -> list[torch.Tensor]:
        """The network's U(0, 1) noise inputs (NetConfig.noise_shapes), batch 1, from this world's generator."""
        return engine.draw_noise(self.generator, self.config.noise_shapes(), 1, self.device)

    @torch.inference_mode()
    def step(self, controls, noise=None) -> np.ndarray:
        """One frame: controls (C,) raw -> (H, W, 3) uint8; the frame is pushed into memory.
        Controls are kept within the ranges seen in training (ControlSchema.clip), as the page does.
        noise: one array per NetConfig.noise_shapes (batch 1), or None to draw them from the generator."""
        t0 = time.perf_counter()
        c = np.asarray(controls, np.float32).reshape(1, -1)
        if c.shape[1] != self.schema.dim:
            raise ValueError(f"controls: expected {self.schema.dim} numbers ({', '.join(self.schema.names)}), "
                             f"got {c.shape[1]}")
        c = torch.as_tensor(self.schema.clip(c), device=self.device)  # within the ranges it was trained on
        if noise is None:
            noise = self.draw_noise()
        else:
            noise = [torch.as_tensor(np.asarray(n, np.float32), device=self.device) for n in noise]
        recalled = None
        if self.follower is not None:  # the pose the move leads to, and the bank frame to recall there
            recalled = tuple(t.to(self.device) for t in self.follower.step(c[0].cpu().numpy()))
        _, self.memory = engine.step(self.net, self.memory, c, noise, self.layout, recall=recalled)
        frame = newest_frame(self.memory)[0].cpu().numpy()  # (H, W, 3) the frame as memory holds it
        self.step_seconds += time.perf_counter() - t0
        self.steps += 1
        return frame

    def move(self, controls) -> np.ndarray:
        """One move (C,) -> the (H, W, 3) uint8 frame at its end. A pose move longer than the steps
        the world was trained on is taken in several of them (ControlSchema.split_move), as the
        page does; every frame on the way is pushed into memory."""
        for c in self.schema.split_move(np.asarray(controls, np.float32).reshape(-1)):
            frame = self.step(c)
        return frame

    def rollout(self, start, controls, seed: int = 0) -> np.ndarray:
        """reset(start, seed), then one move per row of controls (K, C) -> (K, H, W, 3) uint8."""
        self.reset(start, seed)
        frames = [self.move(c) for c in controls]
        return np.stack(frames) if frames else np.zeros((0, self.height, self.width, 3), np.uint8)
