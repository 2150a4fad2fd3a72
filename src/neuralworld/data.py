"""Training windows from captures: the time split, sampling and the memory corruptions.

A training window is memory.window + unroll frames of one capture: the first `window` frames
build the memory pyramid, the next `unroll` are targets. The last `val_fraction` of each
capture (by time) is held out: no training window reaches into it, and validation predicts
only frames from it. Sampling is a pure function of (seed, step, rank), so a resumed run draws
exactly the batches an uninterrupted one would have. Windows are gathered where the frames are:
a GPU that holds the captures draws its batches without waiting on the host.

Time steps. A pose world is asked for the time steps its player sends: whole multiples of the
capture's frame interval up to the player's largest step (player.RULES.max_step, 1/15 s), so a
60 frames/s capture gives 1/60, 2/60, 3/60 and 4/60 s, a 30 frames/s one 1/30 and 1/15 s. With
recipe.frame_skip a window steps over 1..K frames between each of its frames (drawn per step,
as the page's own frame times vary), with the control of each move computed between the two
frames it joins (controls.pose_controls_between); the world's control schema lists the steps
(time_steps), and the players step at those. Action captures (a car's steering and throttle)
have no time step among their controls: they are trained on consecutive frames only.

Standing still. Recordings are rarely still, but a player often is: with recipe.still_fraction
a share of pose windows has the player stop at a frame of the window and stand there (the
frames after it are that frame, their controls zero motion over the same time), so a world
learns that standing still changes nothing. Their memory is left clean: with the corruptions
below, the target of a standing step (the newest real frame) differs from the newest frame in
memory, and the world learns to change a still view (to denoise it) instead of keeping it.

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

from neuralworld import recall
from neuralworld.capture.format import open_capture
from neuralworld.controls import POSE_CONTROL_NAMES, POSE_KIND, ControlSchema, pose_controls_between
from neuralworld.engine import draw_noise
from neuralworld.errors import UserError
from neuralworld.model.config import NetConfig, TrainRecipe
from neuralworld.model.memory import memory_from_frames
from neuralworld.player import RULES
from neuralworld.world import frames_to_tensor, resize_frames


DT = POSE_CONTROL_NAMES.index("dt")


def move_controls(poses: np.ndarray, times: np.ndarray, valid: np.ndarray, largest_skip: int) -> np.ndarray:
    """(largest_skip + 1, N, 16) float32: at [k, j] the control of the move from frame j - k to
    frame j (k = 0: standing at j), made once so that batches are gathered where the frames are.
    Rows with j < k (a move from before the first frame) are never used."""
    j = np.arange(len(poses))
    return np.stack([pose_controls_between(poses, times, valid, np.maximum(j - k, 0), j)
                     for k in range(largest_skip + 1)])


def frame_skips(kind: str, frame_interval: float, frame_skip: bool) -> tuple[int, ...]:
    """The frame strides a world is trained on (see the module docstring)."""
    if not frame_skip or kind != POSE_KIND:
        return (1,)
    return tuple(range(1, max(1, int(RULES.max_step / frame_interval + 1e-6)) + 1))


@dataclass
class TrainingData:
    # frames, controls, train_starts, train_ends and moves live on the training device (a GPU
    # holds the captures, and batches are gathered there)
    frames: torch.Tensor  # (N, H, W, 3) uint8, all captures one after another
    controls: torch.Tensor  # (N, C) float32 raw control vectors, row i leads to frame i from frame i - 1
    train_starts: torch.Tensor  # (M,) int64: first frame of each training window of consecutive frames
    train_ends: torch.Tensor  # (M,) int64: the last training frame of that window's capture
    skips: tuple[int, ...]  # frame strides trained on: 1..K (1: consecutive frames only)
    moves: torch.Tensor | None  # pose captures: move_controls, the control of every move a window can make
    val_targets: torch.Tensor  # (V,) int64: held-out frames to predict (their memory lies before them)
    schema: ControlSchema  # control kind, names, ranges, normalisation (from the training frames)
    summary: dict  # what the world was trained on
    rollout_start: int  # a held-out frame with held-out frames after it, to start preview rollouts
    rollout_length: int  # how many held-out frames follow it in its capture (at most 8)
    # worlds that recall real frames (NetConfig.recall, recall.py), on the training device:
    poses: torch.Tensor | None = None  # (N, 4, 4) float64 camera-to-world pose of every frame
    bank: torch.Tensor | None = None  # (M,) int64 the frames that can be recalled (training frames only)
    choices: torch.Tensor | None = None  # (N, RECALL_CHOICES) int64 per frame, the entries of `bank` it recalls
    start_bank: tuple[np.ndarray, np.ndarray] | None = None  # the first capture's bank: frames, poses (a world's)

    def training_frames(self) -> torch.Tensor:
        """(N,) int64 on the frames' device: every capture's frames before its held-out part."""
        ends = torch.unique(self.train_ends)
        return torch.cat([torch.arange(int(self.train_starts[self.train_ends == e].min()), int(e) + 1,
                                       device=self.frames.device) for e in ends])


def load_captures(paths, config: NetConfig, unroll: int, val_fraction: float = 0.1,
                  device="cpu", frame_skip: bool = False) -> TrainingData:
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
    frames, controls, train_starts, train_ends, train_rows, val_targets, described = [], [], [], [], [], [], []
    poses, times, valid = [], [], []
    bank, choices = [], []
    offset = 0
    rollout_start, rollout_length = 0, 0
    for cap in caps:
        n = len(cap)
        split = int(round(n * (1.0 - val_fraction)))
        if split < need or split >= n or split < window:
            raise UserError(f"{cap.path}: {n} frame{'s' if n != 1 else ''} is too short for a memory of {window} frames + "
                            f"{unroll} trained steps and a held-out {val_fraction:g} (needs at least "
                            f"{int(np.ceil(need / (1.0 - val_fraction))) + 1} frames; use a preset or --size "
                            "with a shorter memory, or a longer capture)")
        frames.append(resize_frames(np.asarray(cap.frames), config.height, config.width))
        controls.append(cap.controls())
        if cap.motion_kind == "pose":
            poses.append(cap.poses)
            times.append(cap.times)
            valid.append(cap.valid)
            if config.recall:  # the bank holds training frames; every frame recalls from its own capture's
                kept = recall.choose_bank(cap.poses[:split], cap.valid[:split],
                                          recall.bank_capacity(config.height, config.width))
                choices.append(sum(len(b) for b in bank) + recall.recall_choices(cap.poses, cap.times, kept))
                bank.append(offset + kept)
        train_starts.append(offset + np.arange(0, split - need + 1))
        train_ends.append(np.full(split - need + 1, offset + split - 1))
        train_rows.append(offset + np.arange(window, split))  # the controls that lead to training targets
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
    interval = float(np.median(np.concatenate([np.diff(c.times) for c in caps])))
    skips = frame_skips(first.control_kind, interval, frame_skip)
    track = (np.concatenate(poses), np.concatenate(times), np.concatenate(valid)) if poses else None
    fit_rows = all_controls[train_rows]
    if len(skips) > 1:  # the moves of every stride within the training frames
        ends = np.concatenate([e[:1] for e in train_ends])
        starts = np.concatenate([s[:1] for s in train_starts])
        pairs = [(j - k, j) for lo, hi in zip(starts, ends) for k in skips[1:] for j in range(lo + k, hi + 1)]
        a, b = np.array(pairs).T
        fit_rows = np.concatenate([fit_rows, pose_controls_between(*track, a, b)])
    schema = ControlSchema.fit(first.control_kind, first.control_names, fit_rows,
                               tuple(k * interval for k in skips))
    intrinsics = first.meta.get("intrinsics") or {}
    focal = ({"focal": float(intrinsics["fx"]) / first.width,  # over the frame width, and the height
              "focal_y": float(intrinsics.get("fy", intrinsics["fx"])) / first.height} if "fx" in intrinsics else {})
    summary = {"captures": described, "source_size": [first.width, first.height], "frame_skips": list(skips), **focal,
               "train_windows": int(sum(len(s) for s in train_starts)),
               "val_frames": int(sum(len(v) for v in val_targets))}
    all_frames = np.concatenate(frames)
    recalled = {}
    if bank:  # pose captures (an action world recalls nothing: train.fit_to_captures turns recall off)
        first_bank = bank[0]  # the first capture's frames come first
        recalled = {"poses": torch.from_numpy(np.concatenate(poses)).to(device),
                    "bank": torch.from_numpy(np.concatenate(bank)).to(device),
                    "choices": torch.from_numpy(np.concatenate(choices)).to(device),
                    "start_bank": (all_frames[first_bank], np.asarray(caps[0].poses[first_bank], np.float64))}
        summary["recall_bank"] = int(len(first_bank))
    return TrainingData(
        frames=torch.from_numpy(all_frames).to(device),
        controls=torch.from_numpy(all_controls.astype(np.float32)).to(device),
        train_starts=torch.from_numpy(np.concatenate(train_starts)).to(device),
        train_ends=torch.from_numpy(np.concatenate(train_ends)).to(device), skips=skips,
        moves=torch.from_numpy(move_controls(*track, max(skips))).to(device) if track else None,
        val_targets=torch.from_numpy(np.concatenate(val_targets)),
        schema=schema, summary=summary, rollout_start=rollout_start, rollout_length=rollout_length, **recalled,
    )


@dataclass
class Batch:
    memory: list[torch.Tensor]  # L x (B, 3 n_i, h_i, w_i): the corrupted memory before the first target
    targets: torch.Tensor  # (B, K, 3, H, W) frames to generate, in order
    controls: torch.Tensor  # (B, K, C) the control leading to each target
    noise: list[list[torch.Tensor]]  # K x the network's U(0, 1) noise inputs (NetConfig.noise_shapes), batch B
    noise_level: torch.Tensor  # (B,) std of the Gaussian noise put on each window's memory frames
    flow_t: torch.Tensor | None = None  # flow: (B, K) the noise level of each target's training example
    flow_eps: torch.Tensor | None = None  # flow: (B, K, 3, H, W) N(0, 1) noise of each target's example
    recall: tuple[torch.Tensor, torch.Tensor] | None = None  # recall: (B, K, 3, H, W) frames, (B, K, 12) relative poses (recall.relative_pose)


def step_generator(seed: int, step: int, rank: int = 0, device="cpu") -> torch.Generator:
    """The random source of one training step: a pure function of (seed, step, rank)."""
    mixed = np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(mixed) & (2 ** 63 - 1))


def sample_batch(data: TrainingData, config: NetConfig, recipe: TrainRecipe, g: torch.Generator,
                 device="cpu") -> Batch:
    """recipe.batch random training windows of recipe.unroll targets, augmented, with the memory
    corruptions applied. Windows are gathered where the frames are (a GPU that holds the captures
    draws its batches without a round trip to the host); `g` draws on the training device."""
    batch, unroll = recipe.batch, recipe.unroll
    layout = config.layout
    window = layout.window
    here = data.frames.device
    positions = torch.arange(window + unroll, device=here)  # (T,)
    pick = torch.randint(len(data.train_starts), (batch,), generator=g, device=g.device).to(here)
    first = data.train_starts[pick]
    index = first[:, None] + positions  # (B, T)
    if len(data.skips) > 1:  # strided windows; those that would leave their capture's training part stay at 1
        # the strides are 1..K (frame_skips), drawn as indices + 1: no table copied to the device per step
        skips = 1 + torch.randint(len(data.skips), (batch, window + unroll - 1), generator=g, device=g.device).to(here)
        strided = first[:, None] + torch.cat([torch.zeros(batch, 1, dtype=torch.long, device=here),
                                              skips.cumsum(1)], 1)  # (B, T)
        fits = strided[:, -1] <= data.train_ends[pick]
        index = torch.where(fits[:, None], strided, index)
    if data.moves is None:
        controls = data.controls[index[:, window:]]  # (B, K, C)
    else:
        a, b = index[:, window - 1:-1], index[:, window:]  # (B, K) each: the frames each target joins
        dt = data.moves[b - a, b][..., DT]  # standing still takes time too
        if recipe.still_fraction > 0:  # the player stops at frame `stop` of the window and stands there
            still = torch.rand(batch, generator=g, device=g.device).to(here) < recipe.still_fraction
            stop = torch.randint(window // 2, window + unroll, (batch,), generator=g, device=g.device).to(here)
            after = still[:, None] & (positions >= stop[:, None])
            index = torch.where(after, index.gather(1, stop[:, None]).expand_as(index), index)
            a, b = index[:, window - 1:-1], index[:, window:]
        controls = data.moves[b - a, b]  # (B, K, 16)
        controls[..., DT] = dt
    controls = controls.to(device)
    frames = frames_to_tensor(data.frames[index]).to(device)  # (B, T, 3, H, W)
    recalled = None
    if config.recall:  # one of the nearest bank frames a moment away from each target, or any (recall.py)
        targets = index[:, window:]  # (B, K) frame indices
        column = torch.randint(recall.RECALL_CHOICES, targets.shape, generator=g, device=g.device).to(here)
        entry = data.choices[targets, column]
        anywhere = torch.rand(targets.shape, generator=g, device=g.device).to(here) < recall.RECALL_RANDOM
        entry = torch.where(anywhere, torch.randint(len(data.bank), targets.shape, generator=g,
                                                    device=g.device).to(here), entry)
        r = data.bank[entry]  # (B, K)
        recalled = (frames_to_tensor(data.frames[r]).to(device),
                    recall.relative_pose(data.poses[r], data.poses[targets]).to(device))
    if recipe.brightness_jitter > 0:  # one gain per window: appearance changes, motion does not
        gain = 1 + (2 * torch.rand(batch, generator=g, device=device) - 1) * recipe.brightness_jitter
        frames = (frames * gain[:, None, None, None, None]).clamp(0, 1)
        if recalled is not None:
            recalled = ((recalled[0] * gain[:, None, None, None, None]).clamp(0, 1), recalled[1])
    context, level = corrupt_memory_frames(frames[:, :window], recipe, g)
    if data.moves is not None and recipe.still_fraction > 0:  # standing windows keep a clean memory
        context = torch.where(still.to(device)[:, None, None, None, None], frames[:, :window], context)
        level = torch.where(still.to(device), torch.zeros_like(level), level)
    noise = [draw_noise(g, config.noise_shapes(), batch, device) for _ in range(unroll)]
    out = Batch(memory_from_frames(context, layout), frames[:, window:], controls, noise, level, recall=recalled)
    if config.objective == "flow":  # t uniform in (0, 1], a quarter at 1: where every sampler starts
        t = torch.rand(batch, unroll, generator=g, device=g.device).to(device)
        start = torch.rand(batch, unroll, generator=g, device=g.device).to(device) < 0.25
        out.flow_t = torch.where(start, torch.ones_like(t), t.clamp_min(1e-3))
        out.flow_eps = torch.randn(out.targets.shape, generator=g, device=g.device).to(device)
    return out


def corrupt_memory_frames(frames: torch.Tensor, recipe: TrainRecipe, g: torch.Generator,
                          sync_free: bool | None = None):
    """(B, T, 3, H, W) -> the same with frames replaced by static or black, plus Gaussian noise of
    a std drawn per window from U(0, recipe.memory_noise); and that std (B,).

    sync_free (default: off the CPU): no host sync (no count of the frames to replace), so a GPU
    never waits here; the static frames of one window then share one draw of static."""
    b, t = frames.shape[:2]
    u = torch.rand(b, t, generator=g, device=frames.device)
    static = u < recipe.memory_static
    black = (u >= recipe.memory_static) & (u < recipe.memory_static + recipe.memory_black)
    if not (frames.device.type != "cpu" if sync_free is None else sync_free):
        frames = frames.clone()
        if static.any():
            frames[static] = torch.rand(int(static.sum()), *frames.shape[2:], generator=g, device=frames.device)
        frames[black] = 0.0
    else:
        static_frame = torch.rand(b, 1, *frames.shape[2:], generator=g, device=frames.device)  # (B, 1, 3, H, W)
        frames = torch.where(static[:, :, None, None, None], static_frame, frames)
        frames = frames.masked_fill(black[:, :, None, None, None], 0.0)
    sigma = torch.zeros(b, device=frames.device)
    if recipe.memory_noise > 0:
        sigma = torch.rand(b, generator=g, device=frames.device) * recipe.memory_noise
        frames = frames + torch.randn(frames.shape, generator=g, device=frames.device) * sigma[:, None, None, None, None]
    return frames, sigma  # memory_from_frames clamps and rounds to 8 bits


def validation_set(data: TrainingData, config: NetConfig, count: int = 32):
    """Up to `count` held-out targets, evenly spread, on the CPU: (memory, controls (V, C),
    targets (V, 3, H, W), last memory frames (V, 3, H, W) for the copy-the-last-frame baseline,
    recall: each target's nearest bank frame and its relative pose, or None)."""
    window = config.layout.window
    pick = data.val_targets[torch.linspace(0, len(data.val_targets) - 1, min(count, len(data.val_targets))).long()]
    index = pick[:, None] + torch.arange(-window, 1)  # (V, window + 1): memory then target
    frames = frames_to_tensor(data.frames[index.to(data.frames.device)].cpu())  # (V, window + 1, 3, H, W)
    memory = memory_from_frames(frames[:, :window], config.layout)
    recalled = None
    if config.recall:
        here = data.frames.device
        r = data.bank[data.choices[pick.to(here), 0]]
        recalled = (frames_to_tensor(data.frames[r].cpu()),
                    recall.relative_pose(data.poses[r], data.poses[pick.to(here)]).cpu())
    return (memory, data.controls[pick.to(data.controls.device)].cpu(), frames[:, window], frames[:, window - 1],
            recalled)
