"""`neuralworld train`: captures + a preset -> a world folder, trained with the reference recipe.

The recipe (Ollin Boer Bohan, "World Emulation via Neural Network", 2025): L1 + adversarial
loss, AdamW at a constant learning rate, an averaged copy of the weights (EMA) that is what
gets saved and played, and training on the network's own outputs: each window generates
`unroll` frames in a row, every one pushed into memory with model/memory.push before the
next is generated, with a loss on each (as DIAMOND and Self-Forcing train on their own
rollouts). push rounds to 8 bits, which has no gradient, so the steps are joined through
memory values only, not through gradients; that also keeps the CPU cost at `unroll` forward
and backward passes.

The output folder holds the world (world.json, weights.safetensors, start_frames.npy, all
refreshed at every checkpoint so a killed run leaves a playable world), checkpoint.pt (written
atomically; tensors and plain values only, read with weights_only=True), metrics.csv and
previews/*.png. --resume continues a killed run exactly: batches are a pure function of
(seed, step, rank).

Many GPUs: launch with `torchrun --nproc_per_node=N -m neuralworld train ...`; ranks are read
from RANK / WORLD_SIZE / LOCAL_RANK, the network and critic are wrapped in PyTorch
DistributedDataParallel (nccl on CUDA, gloo on CPU), each rank draws its own batches, rank 0
writes the files.
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from neuralworld.argtypes import size_type
from neuralworld.data import TrainingData, load_captures, sample_batch, step_generator, validation_set
from neuralworld.errors import UserError
from neuralworld.fileio import atomic_write_bytes
from neuralworld.losses import HingeGANLoss, L1Loss
from neuralworld.metrics import psnr
from neuralworld.model.config import PRESETS, WorldConfig, get_preset
from neuralworld.model.discriminator import PatchCritic
from neuralworld.model.memory import MemoryLayout, push, quantize8
from neuralworld.model.network import WorldNet
from neuralworld.world import World

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "neuralworld-checkpoint"
METRIC_COLUMNS = ["step", "samples", "elapsed_s", "samples_per_s", "loss", "l1", "g_adv", "d_loss",
                  "val_l1", "val_psnr", "val_copy_psnr"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("captures", nargs="+", help="capture folders to train on (one size and control kind)")
    parser.add_argument("-o", "--output", required=True, help="world folder to write (also holds the checkpoint, "
                        "metrics.csv and previews/)")
    parser.add_argument("--preset", default="tiny", choices=list(PRESETS),
                        help="network and recipe: tiny (CPU, 64x64), forest (the reference, 192x256), "
                        "baseline2022 (the reference's earlier recipe)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="train for this many minutes in all (without --minutes or --steps: 10)")
    length.add_argument("--steps", type=int, help="train for this many optimizer steps in all")
    parser.add_argument("--resume", action="store_true", help="continue the run in OUTPUT from its checkpoint")
    parser.add_argument("--force", action="store_true", help="replace an existing OUTPUT folder")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to train; auto takes CUDA, then MPS, then the CPU")
    parser.add_argument("--batch", type=int, help="training windows per step and process (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of every batch")
    parser.add_argument("--size", type=size_type, metavar="WxH", help="frame size WxH instead of the preset's (frames are resized once, at load)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one field of the preset's config (repeatable), e.g. --set adversarial_weight=0.05 "
                        "--set memory_frames=[4,8]; see neuralworld/model/config.py for the fields")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="the last part of each capture held out for validation, never trained on")
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="checkpoint, validate and preview every this many steps (0: by time, see next)")
    parser.add_argument("--checkpoint-minutes", type=float, default=2.0,
                        help="checkpoint, validate and preview every this many minutes")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the network (default: on with CUDA)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bfloat16 autocast (default: on with CUDA)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--debug-nan-at", type=int, help="for tests: make the loss NaN at this step")
    parser.add_argument("--debug-step-sleep", type=float, default=0.0,
                        help="for tests: sleep this many seconds after each step")
    parser.add_argument("--debug-replica-hash", action="store_true",
                        help="for tests: every process writes a hash of its weights as OUTPUT/replica-RANK.sha256")


def run(args) -> int:
    size = args.size[::-1] if args.size else None  # (height, width)
    train_world(args.captures, args.output, args.preset, steps=args.steps, minutes=args.minutes,
                resume=args.resume, force=args.force, device=args.device, batch=args.batch, seed=args.seed,
                size=size, overrides=args.set, val_fraction=args.val_fraction, checkpoint_every=args.checkpoint_every,
                checkpoint_minutes=args.checkpoint_minutes, compile=args.compile, bf16=args.bf16,
                threads=args.threads, debug_nan_at=args.debug_nan_at, debug_step_sleep=args.debug_step_sleep,
                debug_replica_hash=args.debug_replica_hash)
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


class EMA:
    """An exponential moving average of a network's weights (Polyak & Juditsky 1992), with the
    warm-up min(decay, (1 + n) / (10 + n)) so that short runs are not dominated by the random start."""

    def __init__(self, net: nn.Module, decay: float):
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        self.decay = decay
        self.count = 0

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        d = min(self.decay, (1 + self.count) / (10 + self.count))
        for e, p in zip(self.net.parameters(), net.parameters()):
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.net.buffers(), net.buffers()):
            e.copy_(b)
        self.count += 1


class Unroll(nn.Module):
    """Generates `unroll` frames in a row, each pushed into memory before the next: training on
    the network's own outputs. One forward per step, as DistributedDataParallel expects."""

    def __init__(self, net: nn.Module, layout: MemoryLayout):
        super().__init__()
        self.net = net
        self.layout = layout

    def forward(self, memory, controls, noise):
        """memory: L x (B, 3n, h, w); controls (B, K, C); noise: K x L x (B, 1, h, w)
        -> frames (B, K, 3, H, W) and the newest full-size memory each was made from (B, K, 3n0, H, W)."""
        frames, contexts = [], []
        for k in range(controls.shape[1]):
            frame = self.net(controls[:, k], memory, noise[k])  # (B, 3, H, W)
            frames.append(frame)
            contexts.append(memory[0])
            memory = push(memory, frame.detach().float(), self.layout)
        return torch.stack(frames, 1), torch.stack(contexts, 1)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B, K, ...) -> (B * K, ...)."""
    return x.reshape(-1, *x.shape[2:])


class Trainer:
    """The networks, optimizers and one training step; state_dict() / load_state_dict() for checkpoints."""

    def __init__(self, config: WorldConfig, schema: dict, device: torch.device, seed: int, world_size: int,
                 use_bf16: bool, use_compile: bool):
        self.config, self.device, self.world_size = config, device, world_size
        torch.manual_seed(seed)
        control_dim = len(schema["names"])
        self.net = WorldNet(config, control_dim, schema["kind"])
        self.net.set_control_normalisation(schema["mean"], schema["scale"])
        self.net.to(device)
        self.ema = EMA(self.net, config.ema_decay)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=config.lr, betas=(0.9, 0.99),
                                     weight_decay=config.weight_decay)
        self.critic = self.opt_critic = None
        if config.adversarial_weight > 0:
            self.critic = PatchCritic(config, control_dim)
            self.critic.control_mean.copy_(self.net.control_mean)
            self.critic.control_scale.copy_(self.net.control_scale)
            self.critic.to(device)
            self.opt_critic = torch.optim.AdamW(self.critic.parameters(), lr=config.disc_lr, betas=(0.5, 0.99),
                                                weight_decay=0.0)
        self.l1, self.gan = L1Loss(), HingeGANLoss()
        self.use_bf16 = use_bf16
        net = torch.compile(self.net) if use_compile else self.net
        self.unroll = Unroll(net, config.layout)
        self.critic_ddp = self.critic
        if world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.unroll = nn.parallel.DistributedDataParallel(self.unroll, device_ids=ids)
            if self.critic is not None:
                self.critic_ddp = nn.parallel.DistributedDataParallel(self.critic, device_ids=ids)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)

    def step(self, batch, nan: bool = False) -> dict:
        """One optimizer step of the network (and of the critic). Returns losses averaged over ranks."""
        cfg = self.config
        self.net.train()
        with self.autocast():
            frames, contexts = self.unroll(batch.memory, batch.controls, batch.noise)  # (B, K, 3, H, W)
            frames = frames.float()
            l1 = self.l1(frames, batch.targets)
            loss = cfg.l1_weight * l1
            g_adv = torch.zeros((), device=self.device)
            if self.critic is not None:
                self.critic.requires_grad_(False)
                g_adv = self.gan.generator(self.critic(_flat(frames), _flat(contexts), _flat(batch.controls)))
                loss = loss + cfg.adversarial_weight * g_adv.float()
        if nan:
            loss = loss * float("nan")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        d_loss = torch.zeros((), device=self.device)
        if self.critic is not None:
            self.critic.requires_grad_(True)
            with self.autocast():
                n = frames.shape[0] * frames.shape[1]
                logits = self.critic_ddp(torch.cat([_flat(batch.targets), _flat(frames.detach())]),
                                         _flat(contexts).repeat(2, 1, 1, 1), _flat(batch.controls).repeat(2, 1))
                d_loss = self.gan.critic(logits[:n].float(), logits[n:].float())
            self.opt_critic.zero_grad(set_to_none=True)
            d_loss.backward()
        stats = torch.stack([loss.detach().float(), l1.detach().float(), g_adv.detach().float(), d_loss.detach().float()])
        if self.world_size > 1:
            dist.all_reduce(stats)
            stats /= self.world_size
        if not torch.isfinite(stats).all():
            raise FloatingPointError
        self.opt.step()
        self.ema.update(self.net)
        if self.critic is not None:
            self.opt_critic.step()
        return dict(zip(["loss", "l1", "g_adv", "d_loss"], stats.tolist()))

    def state_dict(self) -> dict:
        return {
            "net": self.net.state_dict(), "ema": self.ema.net.state_dict(), "ema_count": self.ema.count,
            "opt": self.opt.state_dict(),
            "critic": self.critic.state_dict() if self.critic is not None else None,
            "opt_critic": self.opt_critic.state_dict() if self.critic is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.ema.net.load_state_dict(state["ema"])
        self.ema.count = int(state["ema_count"])
        self.opt.load_state_dict(state["opt"])
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])
            self.opt_critic.load_state_dict(state["opt_critic"])


# --- validation and previews (rank 0, on the averaged weights) ---

@torch.no_grad()
def validate(net: WorldNet, val, device, seed: int = 1234) -> dict:
    """One-step prediction of held-out frames from real memory, against copy-the-last-frame."""
    memory, controls, targets, last = val
    g = torch.Generator().manual_seed(seed)
    preds = []
    for i in range(0, len(targets), 32):
        mem = [m[i:i + 32].to(device) for m in memory]
        noise = [torch.rand(m.shape[0], 1, *m.shape[-2:], generator=g).to(device) for m in mem]
        preds.append(net(controls[i:i + 32].to(device), mem, noise).float().cpu())
    pred = quantize8(torch.cat(preds))  # as the world shows it: 8-bit
    to_hwc = lambda x: x.permute(0, 2, 3, 1).numpy()  # noqa: E731
    return {"val_l1": float((pred - targets).abs().mean()),
            "val_psnr": float(psnr(to_hwc(pred), to_hwc(targets)).mean()),
            "val_copy_psnr": float(psnr(to_hwc(last), to_hwc(targets)).mean()),
            "pred": pred}


@torch.no_grad()
def free_rollout(net: WorldNet, data: TrainingData, config: WorldConfig, device) -> tuple[np.ndarray, np.ndarray]:
    """Real vs generated frames from a held-out start, driven by the recorded controls."""
    window, start, length = config.layout.window, data.rollout_start, data.rollout_length
    real = data.frames[start - window:start + length].cpu().numpy()  # (window + length, H, W, 3)
    world = World(net, data.schema, real[:window], device=device)
    controls = data.controls[start:start + length].cpu().numpy()
    generated = np.stack([world.step(c) for c in controls])
    return real[window:], generated


def write_preview(path: Path, rows: list[np.ndarray]) -> None:
    """Rows of (n, H, W, 3) uint8 frames -> one PNG strip (rows padded to the longest)."""
    import cv2

    n = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    sheet = np.zeros((len(rows) * (h + 2), n * (w + 2), 3), np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            sheet[i * (h + 2):i * (h + 2) + h, j * (w + 2):j * (w + 2) + w] = frame
    ok, png = cv2.imencode(".png", sheet[:, :, ::-1])
    atomic_write_bytes(path, png.tobytes())


# --- the output folder ---

def check_output(output: Path, resume: bool, force: bool) -> None:
    if resume:
        if not (output / CHECKPOINT).is_file():
            raise UserError(f"{output}: no {CHECKPOINT} to resume from (train without --resume first)")
        return
    if output.exists() and not force:
        raise UserError(f"{output}: already exists (pass --resume to continue its training, "
                        "or --force to replace it)")


def prepare_output(output: Path, resume: bool, force: bool) -> None:
    try:
        if output.exists() and force and not resume:
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        (output / "previews").mkdir(parents=True, exist_ok=True)
        probe = output / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{output}: cannot write the world folder there ({e.strerror or e})") from None


def save_checkpoint(output: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(output / CHECKPOINT, buf.getvalue())


class MetricsLog:
    """metrics.csv (one row per logged step; validation columns on checkpoint rows), and
    TensorBoard scalars when tensorboard is installed."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        rows = []
        if resume_step is not None and path.is_file():  # drop rows a killed run wrote after its checkpoint
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, METRIC_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(path.parent / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.tb = None

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, METRIC_COLUMNS, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])


def replica_hash(net: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --- the run ---

def train_world(captures, output, preset: str | WorldConfig = "tiny", *, steps: int | None = None, minutes: float | None = None,
                resume: bool = False, force: bool = False, device: str = "auto", batch: int | None = None,
                seed: int = 0, size: tuple[int, int] | None = None, overrides: list[str] = (),
                val_fraction: float = 0.1,
                checkpoint_every: int = 0, checkpoint_minutes: float = 2.0, compile: bool | None = None,
                bf16: bool | None = None, threads: int = 0, progress: bool = True,
                debug_nan_at: int | None = None, debug_step_sleep: float = 0.0,
                debug_replica_hash: bool = False) -> dict:
    """Train a world on captures into the folder `output`; returns the training summary.
    `preset` is a preset's name or a WorldConfig (saved as preset "custom")."""
    output = Path(output)
    if steps is None and minutes is None:
        minutes = 10.0
    dev = pick_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size > 1:
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _train(captures, output, preset, steps, minutes, resume, force, dev, batch, seed, size,
                      overrides, val_fraction, checkpoint_every, checkpoint_minutes, compile, bf16, progress and rank == 0,
                      debug_nan_at, debug_step_sleep, debug_replica_hash, rank, world_size)
    finally:
        torch.set_num_threads(old_threads)
        if world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(captures, output, preset, steps, minutes, resume, force, dev, batch, seed, size, overrides, val_fraction,
           checkpoint_every, checkpoint_minutes, use_compile, use_bf16, progress, debug_nan_at,
           debug_step_sleep, debug_replica_hash, rank, world_size) -> dict:
    check_output(output, resume, force)
    state = None
    if resume:
        state = torch.load(output / CHECKPOINT, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{output / CHECKPOINT}: not a neuralworld checkpoint")
        config, preset, seed = WorldConfig.from_json(state["config"]), state["preset"], state["seed"]
        batch, val_fraction = state["batch"], state["val_fraction"]
    else:
        config = get_preset(preset) if isinstance(preset, str) else preset
        preset = preset if isinstance(preset, str) else "custom"
        config = config.with_overrides(list(overrides))
        if size is not None:
            config = config.with_size(*size)
        batch = batch or config.batch
    if world_size > 1:
        dist.barrier()  # every rank has checked the folder before rank 0 changes it
    if rank == 0:
        prepare_output(output, resume, force)
    data = load_captures(captures, config, config.unroll, val_fraction, device=dev)
    if state is not None:
        saved = [c["frames"] for c in state["summary"]["captures"]]
        given = [c["frames"] for c in data.summary["captures"]]
        if saved != given:
            raise UserError(f"{output}: the checkpoint was trained on captures of {saved} frames, "
                            f"these have {given} (resume with the same captures)")
        data.schema = state["schema"]  # the normalisation the network was built with
    use_bf16 = dev.type == "cuda" if use_bf16 is None else use_bf16 and dev.type == "cuda"
    use_compile = dev.type == "cuda" if use_compile is None else use_compile and dev.type == "cuda"
    trainer = Trainer(config, data.schema, dev, seed, world_size, use_bf16, use_compile)
    step, samples, elapsed_before = 0, 0, 0.0
    if state is not None:
        trainer.load_state_dict(state)
        step, samples, elapsed_before = state["step"], state["samples"], state["elapsed_s"]
    last_checkpoint = step if state is not None else None
    summary = {"preset": preset, "seed": seed, "batch": batch, "processes": world_size, "device": str(dev.type),
               "val_fraction": val_fraction, **data.summary}
    log = MetricsLog(output / "metrics.csv", step if resume else None) if rank == 0 else None
    val = validation_set(data, config) if rank == 0 else None
    start_frames = data.frames[:config.layout.window].cpu().numpy()

    def checkpoint() -> dict:
        nonlocal last_checkpoint
        result = validate(trainer.ema.net, val, dev)
        real, generated = free_rollout(trainer.ema.net, data, config, dev)
        pred = (result.pop("pred")[:8].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        targets = (val[2][:8].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        write_preview(output / "previews" / f"step-{step:07d}.png", [targets, pred, real, generated])
        summary.update(steps=step, samples=samples, elapsed_s=round(elapsed(), 1),
                       **{k: round(v, 4) for k, v in result.items()})
        World(trainer.ema.net, data.schema, start_frames, preset, summary, device=dev).save(output)
        save_checkpoint(output, {
            "format": CHECKPOINT_FORMAT, "version": 1, "step": step, "samples": samples, "elapsed_s": elapsed(),
            "preset": preset, "seed": seed, "batch": batch, "val_fraction": val_fraction,
            "config": config.to_json(), "schema": data.schema, "summary": summary, **trainer.state_dict(),
        })
        last_checkpoint = step
        return result

    t0 = time.time()
    elapsed = lambda: elapsed_before + time.time() - t0  # noqa: E731

    def done() -> bool:
        stop = step >= steps if steps is not None else elapsed() >= minutes * 60
        if world_size > 1 and steps is None:  # ranks stop together, when rank 0's clock says so
            flag = torch.tensor([float(stop)], device=dev)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        return stop

    bar = tqdm(total=steps, initial=step, unit="step", disable=not progress, dynamic_ncols=True)
    last_time, last_samples, last_checkpoint_time = time.time(), samples, time.time()
    running: dict[str, float] = {}
    while not done():
        g = step_generator(seed, step, rank, dev)
        b = sample_batch(data, config, batch, config.unroll, g, dev)
        try:
            losses = trainer.step(b, nan=debug_nan_at is not None and step == debug_nan_at)
        except FloatingPointError:
            kept = (f"{output / CHECKPOINT} and the world keep step {last_checkpoint}" if last_checkpoint is not None
                    else "no checkpoint had been written yet")
            raise UserError(f"{output}: training diverged at step {step} (the loss is not a number); stopped, "
                            f"{kept} (resume with --resume, or train again with another --seed)") from None
        step += 1
        samples += batch * world_size
        for k, v in losses.items():
            running[k] = running.get(k, 0.0) + v
        if debug_step_sleep:
            time.sleep(debug_step_sleep)
        due = (step % checkpoint_every == 0 if checkpoint_every
               else time.time() - last_checkpoint_time >= checkpoint_minutes * 60)
        if rank == 0 and (step % 10 == 0 or due):
            now = time.time()
            rate = (samples - last_samples) / max(now - last_time, 1e-9)
            count = (samples - last_samples) // (batch * world_size)
            row = {"step": step, "samples": samples, "elapsed_s": round(elapsed(), 2), "samples_per_s": rate,
                   **{k: v / max(count, 1) for k, v in running.items()}}
            running, last_time, last_samples = {}, now, samples
            if due:
                row.update(checkpoint())
                last_checkpoint_time = time.time()
                bar.write(f"step {step}: validation PSNR {row['val_psnr']:.2f} dB "
                          f"(copy-last-frame {row['val_copy_psnr']:.2f} dB)")
            log.write(row)
            bar.set_postfix(loss=f"{row.get('loss', float('nan')):.4f}", samples_s=f"{rate:.1f}")
        bar.update(1)
    bar.close()
    if rank == 0 and last_checkpoint != step:
        row = {"step": step, "samples": samples, "elapsed_s": round(elapsed(), 2)}
        row.update(checkpoint())
        log.write(row)
    if debug_replica_hash:
        (output / f"replica-{rank}.sha256").write_text(replica_hash(trainer.net) + "\n")
    if rank == 0 and progress:
        print(f"world written to {output}: {step} steps, validation one-step PSNR {summary.get('val_psnr')} dB, "
              f"copy-last-frame {summary.get('val_copy_psnr')} dB")
    return summary
