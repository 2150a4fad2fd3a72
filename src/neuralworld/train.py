"""`neuralworld train`: captures + a preset -> a world folder.

What is trained is a Preset (model/config.py: the network's NetConfig and the TrainRecipe);
how the run goes is TrainOptions (length, resume, device, checkpoints, debug switches). The
step itself is trainer.Trainer.

The output folder holds the world (world.json, weights.safetensors, start_frames.npy, all
refreshed at every checkpoint so a killed run leaves a playable world), checkpoint.pt (written
atomically; tensors and plain values only, read with weights_only=True), metrics.csv and
previews/*.png. --resume continues a killed run exactly: batches are a pure function of
(seed, step, rank).

Nothing a user has is touched before the run has something to show: every input is checked
first, and a new run works in a hidden sibling folder (.NAME.partial) that becomes OUTPUT at
its first checkpoint; with --force, only then is the old OUTPUT replaced. A run that fails or
is killed before its first checkpoint leaves OUTPUT as it was (the next run clears the partial
folder).

Speed: on a GPU the captures live on the device and every batch is gathered there; bf16
autocast, torch.compile, channels_last weights, fused AdamW and cuDNN's autotuning are on by
default with CUDA and off on the CPU (TrainOptions), and the losses are read, which waits for the device, every
--sync-every steps (every step on the CPU). benchmarks/gpu_run.py measures each of these.

Many GPUs: launch with `torchrun --nproc_per_node=N -m neuralworld train ...`; ranks are read
from RANK / WORLD_SIZE / LOCAL_RANK, the network and critic are wrapped in PyTorch
DistributedDataParallel (nccl on CUDA, gloo on CPU), each rank draws its own batches, rank 0
writes the files.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from neuralworld.argtypes import size_type
from neuralworld.controls import POSE_KIND, ControlSchema
from neuralworld.data import TrainingData, load_captures, sample_batch, step_generator, validation_set
from neuralworld.errors import UserError
from neuralworld.model.config import PRESETS, NetConfig, Preset, TrainRecipe, get_preset
from neuralworld.model.network import LookRecall
from neuralworld.recall import Bank
from neuralworld.runfolder import (CHECKPOINT, CHECKPOINT_FORMAT, MetricsLog, check_output, commit_output,
                                   load_checkpoint, partial_folder, save_checkpoint, write_preview)
from neuralworld.trainer import LOSS_NAMES, Trainer, validate
from neuralworld.world import World

@dataclass(frozen=True)
class TrainOptions:
    """How a run goes; what is trained is the Preset. Field names are the command's options."""
    steps: int | None = None  # optimizer steps in all; None: run for `minutes`
    minutes: float | None = None  # minutes in all (neither given: 10)
    resume: bool = False  # continue the run in the output folder from its checkpoint
    force: bool = False  # replace an existing output folder (at the new run's first checkpoint)
    device: str = "auto"  # auto, cpu, cuda or mps
    seed: int | None = None  # seed of the initial weights and of every batch (None: 0, or the checkpoint's)
    val_fraction: float | None = None  # the last part of each capture held out for validation (None: 0.1, or the checkpoint's)
    checkpoint_every: int = 0  # checkpoint every this many steps (0: by time)
    checkpoint_minutes: float = 2.0  # else every this many minutes
    compile: bool | None = None  # torch.compile the network (None: on with CUDA)
    bf16: bool | None = None  # bfloat16 autocast (None: on with CUDA)
    channels_last: bool | None = None  # the networks' weights in NHWC order (None: on with CUDA)
    fused_optimizer: bool | None = None  # AdamW's fused kernels (None: on with CUDA)
    cudnn_benchmark: bool | None = None  # cuDNN times its convolution algorithms and keeps the fastest (None: on with CUDA)
    cuda_graphs: bool = False  # with compile: replay CUDA graphs (torch.compile mode "reduce-overhead")
    sync_every: int = 0  # read the losses (a wait for the device) every this many steps (0: 1 on the CPU, 10 on a GPU)
    threads: int = 0  # CPU threads for torch (0: torch's default)
    progress: bool = True  # progress bar and summary lines
    debug_nan_at: int | None = None  # for tests: make the loss NaN at this step
    debug_step_sleep: float = 0.0  # for tests: sleep this many seconds after each step
    debug_replica_hash: bool = False  # for tests: each process writes a hash of its weights

    def __post_init__(self):
        if self.steps is not None and self.steps < 1:
            raise UserError(f"--steps {self.steps}: give 1 or more")
        if self.minutes is not None and not self.minutes > 0:
            raise UserError(f"--minutes {self.minutes}: give a time above 0")
        if self.val_fraction is not None and not 0.0 < self.val_fraction < 1.0:
            raise UserError(f"--val-fraction {self.val_fraction}: must be between 0 and 1 (e.g. 0.1)")
        if self.checkpoint_every < 0 or not self.checkpoint_minutes > 0:
            raise UserError("--checkpoint-every must be 0 or more and --checkpoint-minutes above 0")
        if self.threads < 0:
            raise UserError(f"--threads {self.threads}: give 0 (torch's default) or more")
        if self.sync_every < 0:
            raise UserError(f"--sync-every {self.sync_every}: give 0 (the device's default) or more")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("captures", nargs="+", help="capture folders to train on (one size and control kind)")
    parser.add_argument("-o", "--output", required=True, help="world folder to write (also holds the checkpoint, "
                        "metrics.csv and previews/)")
    parser.add_argument("--preset", choices=list(PRESETS),
                        help="network and recipe: tiny (CPU, 64x64; the default), forest (the reference, 192x256), "
                        "baseline2022 (the reference's earlier recipe); --resume keeps the checkpoint's")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="train for this many minutes in all (without --minutes or --steps: 10)")
    length.add_argument("--steps", type=int, help="train for this many optimizer steps in all")
    parser.add_argument("--resume", action="store_true", help="continue the run in OUTPUT from its checkpoint")
    parser.add_argument("--force", action="store_true", help="replace an existing OUTPUT folder (once the new run "
                        "has its first checkpoint)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to train; auto takes CUDA, then MPS, then the CPU")
    parser.add_argument("--batch", type=int, help="training windows per step and process (default: the preset's)")
    parser.add_argument("--seed", type=int, help="seed of the initial weights and of every batch (default: 0)")
    parser.add_argument("--size", type=size_type, metavar="WxH", help="frame size WxH instead of the preset's (frames are resized once, at load)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one field of the preset's network or recipe (repeatable), e.g. --set "
                        "adversarial_weight=0.05 --set memory_frames=[4,8]; see neuralworld/model/config.py")
    parser.add_argument("--val-fraction", type=float,
                        help="the last part of each capture held out for validation, never trained on (default: 0.1)")
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="checkpoint, validate and preview every this many steps (0: by time, see next)")
    parser.add_argument("--checkpoint-minutes", type=float, default=2.0,
                        help="checkpoint, validate and preview every this many minutes")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the network (default: on with CUDA)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bfloat16 autocast (default: on with CUDA)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="keep the networks' weights in NHWC order (default: on with CUDA)")
    parser.add_argument("--fused-optimizer", action=argparse.BooleanOptionalAction, default=None,
                        help="AdamW's fused kernels (default: on with CUDA)")
    parser.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=None,
                        help="let cuDNN time its convolution algorithms and keep the fastest (default: on with CUDA)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="with --compile, replay CUDA graphs (torch.compile's reduce-overhead mode)")
    parser.add_argument("--sync-every", type=int, default=0,
                        help="read the losses (and check them) every this many steps; each read waits for the "
                        "device (0: every step on the CPU, every 10 on a GPU)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--debug-nan-at", type=int, help="for tests: make the loss NaN at this step")
    parser.add_argument("--debug-step-sleep", type=float, default=0.0,
                        help="for tests: sleep this many seconds after each step")
    parser.add_argument("--debug-replica-hash", action="store_true",
                        help="for tests: every process writes a hash of its weights as OUTPUT/replica-RANK.sha256")


def resolve_preset(name: str, overrides=(), size: tuple[int, int] | None = None, batch: int | None = None) -> Preset:
    """A named preset with `--set` overrides, a frame size (height, width) and a batch applied."""
    preset = get_preset(name).with_overrides(list(overrides))
    if size is not None:
        preset = preset.with_size(*size)
    if batch is not None:
        preset = dataclasses.replace(preset, recipe=dataclasses.replace(preset.recipe, batch=batch))
    return preset


def run(args) -> int:
    chosen = args.preset is not None or args.set or args.size or args.batch is not None
    preset = (resolve_preset(args.preset or "tiny", args.set, args.size[::-1] if args.size else None, args.batch)
              if chosen or not args.resume else None)  # None: --resume with the checkpoint's preset
    options = TrainOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainOptions)
                              if hasattr(args, f.name)})
    train_world(args.captures, args.output, preset, options)
    return 0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available here (use --device cpu or auto)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps: MPS is not available here (use --device cpu or auto)")
    return torch.device(name)


def speed_switches(options: TrainOptions, dev: torch.device) -> dict:
    """Trainer's speed switches and the loop's sync_every for a device: None means on with CUDA
    (bf16 and compile only ever on with CUDA; channels_last and the fused optimizer also where asked)."""
    cuda = dev.type == "cuda"
    on = lambda value: cuda if value is None else bool(value)  # noqa: E731
    return {"use_bf16": on(options.bf16) and cuda, "use_compile": on(options.compile) and cuda,
            "channels_last": on(options.channels_last), "fused": on(options.fused_optimizer),
            "cuda_graphs": options.cuda_graphs and on(options.compile) and cuda,
            "cudnn_benchmark": on(options.cudnn_benchmark) and cuda,
            "sync_every": options.sync_every or (1 if dev.type == "cpu" else 10)}


# --- previews ---

@torch.no_grad()
def free_rollout(world: World, data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
    """Real vs generated frames from a held-out start, driven by the recorded controls."""
    window, start, length = world.layout.window, data.rollout_start, data.rollout_length
    real = data.frames[start - window:start + length].cpu().numpy()  # (window + length, H, W, 3)
    generated = world.rollout(real[:window], data.controls[start:start + length].cpu().numpy(), seed=0)
    return real[window:], generated


def replica_hash(net: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --- the run ---

def train_world(captures, output, preset: Preset | str | None = "tiny", options: TrainOptions | None = None) -> dict:
    """Train a world on captures into the folder `output`; returns the training summary.
    `preset` is a Preset (see resolve_preset) or a preset's name; with `options.resume`, None
    continues with the checkpoint's, and a given one must be the same."""
    options = options or TrainOptions()
    preset = get_preset(preset) if isinstance(preset, str) else preset
    if options.steps is None and options.minutes is None:
        options = dataclasses.replace(options, minutes=10.0)
    dev = pick_device(options.device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size > 1:
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    old_threads = torch.get_num_threads()
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        return TrainingRun(captures, Path(output), preset, options, dev, rank, world_size).run()
    finally:
        torch.set_num_threads(old_threads)
        if world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def fit_to_captures(preset: Preset, kind: str, summary: dict) -> Preset:
    """The fields training takes from the captures: a warping network warps with the capture's
    focal length (summary "focal", from its intrinsics), and its vertical one where the frames are
    resized to another shape (focal_y; square pixels of the capture where its intrinsics are not
    known), and not at all in an action world (no move to warp by, no pose to recall real frames
    by), which recalls frames by look instead (look_frames: as many training frames as LookRecall
    holds, at most all of them)."""
    if kind != POSE_KIND:
        fields = {"warp": "off", "recall": False} if preset.net.warp != "off" else {}
        if preset.net.look_refresh > 0:
            trained = sum(c["train_frames"] for c in summary["captures"])
            fields["look_frames"] = min(LookRecall.capacity(preset.net.height, preset.net.width), trained)
        return preset.with_fields(**fields) if fields else preset
    if preset.net.warp == "off":
        return preset
    focal = summary.get("focal", preset.net.focal)
    source_w, source_h = summary["source_size"]
    fields = {"focal": focal} if "focal" in summary else {}
    if abs(preset.net.width * source_h - preset.net.height * source_w) > 0.01 * source_w * preset.net.height:
        fields["focal_y"] = summary.get("focal_y", focal * source_w / source_h)
    return preset.with_fields(**fields) if fields else preset


def _differences(given: Preset | None, saved: Preset, options: TrainOptions, state: dict) -> list[str]:
    """What a --resume was given that is not the checkpoint's run: 'field X (given Y)' strings."""
    out = []
    if given is not None:
        given = fit_to_captures(given, state["schema"]["kind"], state["summary"])
        if given.name != saved.name:
            out.append(f"preset {saved.name} (given {given.name})")
        for mine, theirs in ((given.net.to_json(), saved.net.to_json()),
                             (given.recipe.to_json(), saved.recipe.to_json())):
            out += [f"{k} {theirs[k]} (given {mine[k]})" for k in theirs if k in mine and mine[k] != theirs[k]]
    for name in ("seed", "val_fraction"):
        if getattr(options, name) is not None and getattr(options, name) != state[name]:
            out.append(f"{name} {state[name]} (given {getattr(options, name)})")
    return out


class TrainingRun:
    """One run into one output folder: what it trains, where it writes, and its loop."""

    def __init__(self, captures, output: Path, preset: Preset, options: TrainOptions, dev: torch.device,
                 rank: int, world_size: int):
        self.output, self.options, self.dev, self.rank, self.world_size = output, options, dev, rank, world_size
        check_output(output, options.resume, options.force)
        state = None
        if options.resume:
            state = load_checkpoint(output)
            saved = Preset(state["preset"], NetConfig.from_json(state["config"]),
                           TrainRecipe.from_json({**state["config"], **state.get("recipe", {}), "batch": state["batch"]}))
            differ = _differences(preset, saved, options, state)
            if differ:
                raise UserError(f"{output}: --resume continues the checkpoint's run, which has "
                                f"{'; '.join(differ)} (leave those options out to resume, or train anew with --force)")
            preset = saved
            options = dataclasses.replace(options, seed=state["seed"], val_fraction=state["val_fraction"])
        elif preset is None:
            raise UserError(f"{output}: no preset given for a new run")
        options = self.options = dataclasses.replace(
            options, seed=0 if options.seed is None else options.seed,
            val_fraction=0.1 if options.val_fraction is None else options.val_fraction)
        self.preset, self.config, self.recipe = preset, preset.net, preset.recipe
        self.data = load_captures(captures, self.config, self.recipe.unroll, options.val_fraction, device=dev,
                                  frame_skip=self.recipe.frame_skip)
        if state is None:
            preset = fit_to_captures(preset, self.data.schema.kind, self.data.summary)
            self.preset, self.config = preset, preset.net
        else:
            saved = [c["frames"] for c in state["summary"]["captures"]]
            given = [c["frames"] for c in self.data.summary["captures"]]
            if saved != given:
                raise UserError(f"{output}: the checkpoint was trained on captures of {saved} frames, "
                                f"these have {given} (resume with the same captures)")
            kind, names = state["schema"]["kind"], list(state["schema"]["names"])
            if (kind, names) != (self.data.schema.kind, list(self.data.schema.names)):
                raise UserError(f"{output}: the checkpoint was trained on {kind} controls {names}, these captures "
                                f"have {self.data.schema.kind} {list(self.data.schema.names)} (resume with the "
                                "same captures)")
            self.data.schema = ControlSchema.from_json(state["schema"])  # the normalisation the network was built with
        switches = speed_switches(options, dev)
        self.sync_every = switches.pop("sync_every")
        self.trainer = Trainer(self.config, self.recipe, self.data.schema, dev, options.seed, world_size, **switches)
        for net in (self.trainer.net, self.trainer.ema.net):
            if net.look is not None:  # an action world's recalled frames: its training frames
                net.look.fill(self.data.frames[self.data.training_frames()])
        self.step, self.samples, self.elapsed_before = 0, 0, 0.0
        if state is not None:
            self.trainer.load_state_dict(state)
            self.step, self.samples, self.elapsed_before = state["step"], state["samples"], state["elapsed_s"]
        self.last_checkpoint = self.step if state is not None else None
        self.summary = {"preset": preset.name, "seed": options.seed, "batch": self.recipe.batch,
                        "processes": world_size, "device": str(dev.type), "val_fraction": options.val_fraction,
                        "recipe": self.recipe.to_json(), **self.data.summary}
        # a new run works in the partial folder until its first checkpoint (see the module docstring)
        self.folder = output if options.resume else partial_folder(output)
        self.log = None
        if rank == 0:
            if not options.resume:
                shutil.rmtree(self.folder, ignore_errors=True)  # left by a run killed before its first checkpoint
            (self.folder / "previews").mkdir(parents=True, exist_ok=True)
            self.log = MetricsLog(self.folder / "metrics.csv", self.step if options.resume else None)
            self.val = validation_set(self.data, self.config)
        window = self.config.layout.window
        self.start_frames = self.data.frames[:window].cpu().numpy()
        # the roll and pitch of the newest start frame: the move out of it carries them (controls.py)
        moves = self.data.moves
        self.start_attitude = tuple(moves[1, window, 12:14].tolist()) if moves is not None else (0.0, 0.0)
        self.bank = Bank(*self.data.start_bank) if self.config.recall else None
        self.start_pose = self.data.poses[window - 1].cpu().numpy() if self.config.recall else None
        self.t0 = time.time()

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.t0

    def checkpoint(self) -> dict:
        """Validate, preview, save the world and the checkpoint (rank 0); the first checkpoint of a
        new run makes its folder OUTPUT."""
        net, data = self.trainer.ema.net, self.data
        result = validate(net, self.val, self.dev)
        world = World(net, data.schema, self.start_frames, self.preset.name, self.summary, device=self.dev,
                      start_attitude=self.start_attitude, bank=self.bank, start_pose=self.start_pose)
        real, generated = free_rollout(world, data)
        pred = (result.pop("pred")[:8].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        targets = (self.val[2][:8].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        self.summary.update(steps=self.step, samples=self.samples, elapsed_s=round(self.elapsed(), 1),
                            **{k: round(v, 4) for k, v in result.items()})
        world_saved = False
        try:
            write_preview(self.folder / "previews" / f"step-{self.step:07d}.png", [targets, pred, real, generated])
            world.save(self.folder)
            world_saved = True
            save_checkpoint(self.folder, {
                "format": CHECKPOINT_FORMAT, "version": 1, "step": self.step, "samples": self.samples,
                "elapsed_s": self.elapsed(), "preset": self.preset.name, "seed": self.options.seed,
                "batch": self.recipe.batch, "val_fraction": self.options.val_fraction,
                "config": self.config.to_json(), "recipe": self.recipe.to_json(), "schema": data.schema.to_json(),
                "summary": self.summary, **self.trainer.state_dict(),
            })
            if self.folder != self.output:
                commit_output(self.folder, self.output)
                self.folder = self.output
                self.log.path = self.output / "metrics.csv"
        except OSError as e:
            if self.last_checkpoint is None:
                kept = "nothing was kept"
            elif world_saved:  # the world is written whole (atomic files) before the checkpoint
                kept = f"the world has step {self.step}, {CHECKPOINT} keeps step {self.last_checkpoint}"
            else:
                kept = f"the world and {CHECKPOINT} keep step {self.last_checkpoint}"
            raise UserError(f"{self.output}: cannot write the checkpoint ({e.strerror or e}); {kept} "
                            "(free some space and run again, with --resume once a checkpoint exists)") from None
        self.last_checkpoint = self.step
        return result

    def done(self) -> bool:
        o = self.options
        stop = self.step >= o.steps if o.steps is not None else self.elapsed() >= o.minutes * 60
        if self.world_size > 1 and o.steps is None:  # ranks stop together, when rank 0's clock says so
            flag = torch.tensor([float(stop)], device=self.dev)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        return stop

    def run(self) -> dict:
        try:
            return self._loop()
        finally:  # a run that never reached its first checkpoint leaves nothing behind
            if self.rank == 0 and self.folder != self.output:
                shutil.rmtree(self.folder, ignore_errors=True)

    def diverged(self, first: int, last: int):
        kept = (f"{self.output / CHECKPOINT} and the world keep step {self.last_checkpoint}"
                if self.last_checkpoint is not None else "no checkpoint had been written yet")
        at = f"step {first}" if first == last else f"a step from {first} to {last}"
        raise UserError(f"{self.output}: training diverged at {at} (the loss is not a number); "
                        f"stopped, {kept} (resume with --resume, or train again with another --seed)")

    def _loop(self) -> dict:
        o, rank, batch, every = self.options, self.rank, self.recipe.batch, self.sync_every
        progress = o.progress and rank == 0
        bar = tqdm(total=o.steps, initial=self.step, unit="step", disable=not progress, dynamic_ncols=True)
        last_time, last_samples, last_checkpoint_time = time.time(), self.samples, time.time()
        # the losses stay on the device, summed since the last metrics row, and are read (and
        # checked) every `every` steps: each read waits for the device to finish its queue
        running, unread = None, self.step
        while not self.done():
            g = step_generator(o.seed, self.step, rank, self.dev)
            b = sample_batch(self.data, self.config, self.recipe, g, self.dev)
            try:
                stats = self.trainer.step(b, self.step, check=every == 1,
                                          nan=o.debug_nan_at is not None and self.step == o.debug_nan_at)
            except FloatingPointError:
                stats = None
            if stats is None:
                self.diverged(self.step, self.step)
            self.step += 1
            self.samples += batch * self.world_size
            running = stats if running is None else running + stats
            if o.debug_step_sleep:
                time.sleep(o.debug_step_sleep)
            read = self.step % every == 0 or (o.checkpoint_every and self.step % o.checkpoint_every == 0)
            if not read:
                bar.update(1)
                continue
            if every > 1 and not torch.isfinite(running).all():
                self.diverged(unread, self.step - 1)
            unread = self.step
            if rank != 0:
                running = None  # only rank 0 writes rows
            due = (self.step % o.checkpoint_every == 0 if o.checkpoint_every
                   else time.time() - last_checkpoint_time >= o.checkpoint_minutes * 60)
            if rank == 0 and (self.step % 10 == 0 or due):
                now = time.time()
                rate = (self.samples - last_samples) / max(now - last_time, 1e-9)
                count = (self.samples - last_samples) // (batch * self.world_size)
                row = {"step": self.step, "samples": self.samples, "elapsed_s": round(self.elapsed(), 2),
                       "samples_per_s": rate, **{k: v / max(count, 1) for k, v in zip(LOSS_NAMES, running.tolist())}}
                running, last_time, last_samples = None, now, self.samples
                if due:
                    row.update(self.checkpoint())
                    last_checkpoint_time = time.time()
                    bar.write(f"step {self.step}: validation PSNR {row['val_psnr']:.2f} dB "
                              f"(copy-last-frame {row['val_copy_psnr']:.2f} dB)")
                self.log.write(row)
                bar.set_postfix(loss=f"{row.get('loss', float('nan')):.4f}", samples_s=f"{rate:.1f}", refresh=False)
            bar.update(1)
        if running is not None and every > 1 and not torch.isfinite(running).all():
            self.diverged(unread, self.step - 1)
        bar.close()
        if rank == 0 and self.last_checkpoint != self.step:
            row = {"step": self.step, "samples": self.samples, "elapsed_s": round(self.elapsed(), 2)}
            row.update(self.checkpoint())
            self.log.write(row)
        if o.debug_replica_hash:
            if self.world_size > 1:
                dist.barrier()  # rank 0 has made OUTPUT at its last checkpoint
            (self.output / f"replica-{rank}.sha256").write_text(replica_hash(self.trainer.net) + "\n")
        if progress:
            print(f"world written to {self.output}: {self.step} steps, validation one-step PSNR "
                  f"{self.summary.get('val_psnr')} dB, copy-last-frame {self.summary.get('val_copy_psnr')} dB")
        return self.summary
