"""Training speed: samples/s of the full training step (unrolled generation, L1 + adversarial
losses, AdamW, EMA) for a preset, plus each preset's parameters and FLOPs; and the measures a
GPU run reports (benchmarks/gpu_run.py): the device's bf16 peak, training FLOPs per sample,
the largest batch that fits, each speed switch measured in turn, and where a step's time goes.

    python benchmarks/train_speed.py [--presets tiny forest] [--steps 5] [--device cpu] [--threads 2]

`measure_training_speed(preset, steps, device)` is what `neuralworld bench` calls.

Timings wait for the device (torch.cuda.synchronize) before each clock reading, and only in
the timed loops here: the training loop itself never waits except when it reads its losses.
"""

from __future__ import annotations

import argparse
import gc
import math
import time
from dataclasses import dataclass, field

import torch

from neuralworld.controls import ControlSchema
from neuralworld.data import TrainingData, sample_batch, step_generator
from neuralworld.errors import run_script
from neuralworld.model.config import PRESETS, NetConfig, Preset, get_preset
from neuralworld.model.network import model_stats
from neuralworld.train import pick_device
from neuralworld.trainer import PHASES, Trainer

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendor's datasheets, matched
# against torch.cuda.get_device_name in this order. Clocks and power limits vary, so the run
# also times a bf16 matrix product and reports the share of both.
BF16_PEAK_TFLOPS = [
    ("H200", 989.4),  # SXM; the same tensor cores as the H100 SXM
    ("GH200", 989.4),
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM (e.g. "NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
    ("L40S", 362.1),
]


def datasheet_peak(name: str) -> float | None:
    """The dense bf16 peak in FLOP/s of a CUDA device by its name, or None if not in the table."""
    for key, tflops in BF16_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tflops * 1e12
    return None


def matmul_peak(device: torch.device, seconds: float = 1.0) -> dict:
    """FLOP/s of a large matrix product timed here: bf16 8192^3 on CUDA, float32 1024^3 on the CPU."""
    cuda = device.type == "cuda"
    n, dtype = (8192, torch.bfloat16) if cuda else (1024, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    count, t0 = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
        if count % 10 == 0:
            sync(device)
    sync(device)
    return {"flops_per_s": 2 * n ** 3 * count / (time.perf_counter() - t0), "size": n, "dtype": str(dtype)[6:]}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_data(config: NetConfig, unroll: int, frames: int = 64, device="cpu") -> TrainingData:
    """Random frames and pose controls (and for a recalling world, a bank of every 4th frame, each
    frame recalling random ones): speed does not depend on what the frames show."""
    n = max(frames, config.layout.window + unroll + 1)
    schema = ControlSchema.identity()
    starts = torch.arange(n - config.layout.window - unroll, device=device)
    recalled = {}
    if config.recall:
        from neuralworld.recall import RECALL_CHOICES

        bank = torch.arange(0, n, 4, device=device)
        recalled = {"poses": torch.eye(4, dtype=torch.float64, device=device).repeat(n, 1, 1), "bank": bank,
                    "choices": torch.randint(0, len(bank), (n, RECALL_CHOICES), device=device)}
    return TrainingData(
        frames=torch.randint(0, 256, (n, config.height, config.width, 3), dtype=torch.uint8, device=device),
        controls=torch.randn(n, schema.dim, device=device), train_starts=starts,
        train_ends=torch.full_like(starts, n - 1), skips=(1,), moves=None, val_targets=torch.arange(n - 1, n),
        schema=schema, summary={}, rollout_start=n - 1, rollout_length=1, **recalled)


def measure_training_speed(preset: Preset | str = "tiny", steps: int = 5, device: str = "auto",
                           warmup: int = 2) -> dict:
    """Samples/s of `steps` timed training steps (after `warmup` untimed ones) of a preset (a
    name or a Preset) at its recipe's batch size, on random data."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    config, recipe = preset.net, preset.recipe
    dev = pick_device(device)
    data = random_data(config, recipe.unroll, device=dev)
    cuda = dev.type == "cuda"
    trainer = Trainer(config, recipe, data.schema, dev, seed=0, world_size=1, use_bf16=cuda, use_compile=False,
                      channels_last=cuda, fused=cuda)
    for step in range(warmup + steps):
        if step == warmup:
            sync(dev)
            t0 = time.perf_counter()
        trainer.step(sample_batch(data, config, recipe, step_generator(0, step, 0, dev), dev), step, check=False)
    sync(dev)
    seconds = time.perf_counter() - t0
    stats = model_stats(config)
    return {"preset": preset.name, "device": str(dev), "batch": recipe.batch,
            "unroll": recipe.unroll, "threads": torch.get_num_threads(), "steps": steps,
            "samples_per_s": recipe.batch * steps / seconds,
            "frames_per_s": recipe.batch * recipe.unroll * steps / seconds,
            "params": stats["params"], "flops_per_frame": stats["flops"]}


# --- what a GPU run measures ---

def train_flops_per_sample(preset: Preset, device: torch.device) -> dict:
    """FLOPs of one training step per window, counted by torch.utils.flop_counter over a whole
    step at batch 2 (forward and backward of the unroll, the critic and its R1 penalty when the
    recipe has one; multiply-add = 2; elementwise work, pooling and the optimizer not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    config, recipe = preset.net, preset.with_fields(batch=2).recipe
    data = random_data(config, recipe.unroll, device=device)
    trainer = Trainer(config, recipe, data.schema, device, seed=0, world_size=1, use_bf16=False, use_compile=False)
    step = recipe.adversarial_start if recipe.adversarial_weight > 0 else 0
    batch = sample_batch(data, config, recipe, step_generator(0, 0, 0, device), device)
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.step(batch, step, check=False)
    return {"flops_per_sample": counter.get_total_flops() / recipe.batch, "critic_counted": trainer.critic is not None,
            "forward_flops_per_frame": model_stats(config)["flops"]}


@dataclass
class Timing:
    """What one timed run of training steps gave."""
    batch: int
    steps: int = 0
    seconds: float = 0.0
    phases: dict = field(default_factory=dict)  # name -> mean seconds per step ("data" and PHASES), split runs only
    peak_memory_bytes: int | None = None

    @property
    def samples_per_s(self) -> float:
        return self.batch * self.steps / self.seconds if self.seconds > 0 else 0.0


def time_steps(trainer: Trainer, data: TrainingData, preset: Preset, device: torch.device, *, steps: int = 10,
               warmup: int = 2, seconds: float = 5.0, read_every: int = 1, split: bool = False) -> Timing:
    """Time training steps on `data` (after `warmup` untimed ones, which take a compile): at
    most `steps`, stopping after `seconds` once two have run. Losses are read every
    `read_every` steps (1: every step, as a loop that checks each one). split: wait for the
    device after drawing the batch and after each phase of the step, to say where the time
    goes (this adds waits of its own, so its samples/s is a little lower)."""
    config, recipe = preset.net, preset.recipe
    timing = Timing(recipe.batch)
    sample = lambda i: sample_batch(data, config, recipe, step_generator(0, i, 0, device), device)  # noqa: E731
    for i in range(warmup):
        trainer.step(sample(i), i, check=False)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    totals = dict.fromkeys(("data",) + PHASES, 0.0)
    clock = [time.perf_counter()]

    def mark(name):
        sync(device)
        now = time.perf_counter()
        totals[name] += now - clock[0]
        clock[0] = now

    t0 = time.perf_counter()
    running = None
    while timing.steps < steps and (timing.steps < 2 or time.perf_counter() - t0 < seconds):
        clock[0] = time.perf_counter()
        batch = sample(warmup + timing.steps)
        if split:
            mark("data")
        stats = trainer.step(batch, warmup + timing.steps, check=False, timer=mark if split else None)
        running = stats if running is None else running + stats
        timing.steps += 1
        if timing.steps % read_every == 0:
            running.tolist()  # what a training loop reads: a wait for the device
    sync(device)
    timing.seconds = time.perf_counter() - t0
    if split:
        timing.phases = {k: v / timing.steps for k, v in totals.items()}
    if device.type == "cuda":
        timing.peak_memory_bytes = torch.cuda.max_memory_allocated(device)
    return timing


def host_syncs(trainer: Trainer, data: TrainingData, preset: Preset, device: torch.device) -> dict:
    """The host syncs of one training step as the loop runs it (batch drawn where the data is,
    losses not read), as torch.cuda's sync debug mode reports them: their count and where the
    first one was called from. CUDA only."""
    import warnings

    if device.type != "cuda":
        return {"checked": False}
    batch_args = (data, preset.net, preset.recipe, step_generator(0, 10 ** 6, 0, device), device)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.step(sample_batch(*batch_args), 10 ** 6, check=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    first = f"{syncs[0].filename}:{syncs[0].lineno}: {str(syncs[0].message)[:200]}" if syncs else None
    return {"checked": True, "count": len(syncs), "first": first}


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_out_of_memory(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in text or "alloc_failed" in text


def largest_batch(preset: Preset, data: TrainingData, device: torch.device, switches: dict, *, cap: int,
                  steps: int = 2, seconds: float = 3.0) -> dict:
    """Double the batch from the preset's until a step runs out of memory (or fails otherwise,
    e.g. a tensor too large for a kernel) or the batch would pass `cap`; each batch that fits is
    timed (eager, with `switches`). Returns the trials and the largest batch that fit, with why
    the search stopped ("out of memory", "cap" or the error)."""
    trials, batch, stop = [], preset.recipe.batch, "cap"
    while batch <= cap:
        p = preset.with_fields(batch=batch)
        trainer = None
        try:
            trainer = Trainer(p.net, p.recipe, data.schema, device, seed=0, world_size=1, use_compile=False,
                              **switches)
            t = time_steps(trainer, data, p, device, steps=steps, warmup=1, seconds=seconds, read_every=steps)
            trials.append({"batch": batch, "samples_per_s": t.samples_per_s, "peak_memory_bytes": t.peak_memory_bytes})
        except RuntimeError as e:
            text = str(e).strip()
            stop = "out of memory" if is_out_of_memory(e) else f"{type(e).__name__}: {text.splitlines()[0][:200]}"
            trials.append({"batch": batch, "samples_per_s": None, "peak_memory_bytes": None, "out_of_memory": True,
                           "error": stop})
        finally:
            del trainer
            free(device)
        if stop != "cap":
            break
        batch *= 2
    fits = [t["batch"] for t in trials if not t.get("out_of_memory")]
    return {"trials": trials, "largest": max(fits) if fits else None, "stopped_by": stop, "cap": cap}


def choose_batch(search: dict, cap: int | None = None, within: float = 0.9) -> int | None:
    """The smallest batch that reaches `within` of the best samples/s of the search (more
    optimizer steps in the same time, where a larger batch buys little speed), at most `cap`."""
    fits = [t for t in search["trials"] if t.get("samples_per_s") and (cap is None or t["batch"] <= cap)]
    if not fits:
        return None
    best = max(t["samples_per_s"] for t in fits)
    return min(t["batch"] for t in fits if t["samples_per_s"] >= within * best)


def scaled_lr(lr: float, batch: int, base_batch: int, cap: float = 4.0) -> float:
    """AdamW's learning rate for another batch: times sqrt(batch / base_batch), the square-root
    rule for adaptive optimizers (Malladi et al., "On the SDEs and Scaling Rules for Adaptive
    Gradient Algorithms", NeurIPS 2022), at most `cap` times the preset's."""
    return lr * min(cap, math.sqrt(batch / base_batch))


# (name, what changes, Trainer switches it adds, captures on the device, losses read every N
# steps); each rung adds one change to the ones kept before it, so that each is measured alone.
# The first three are how the training loop works on a GPU; the others are switches of Trainer.
LADDER = [
    ("host", "fp32, eager, captures on the host, losses read every step",
     dict(use_bf16=False, use_compile=False, channels_last=False, fused=False, cudnn_benchmark=False), False, 1),
    ("device-data", "+ captures on the device, windows gathered there", {}, True, 1),
    ("no-sync", "+ losses read every 10 steps (no wait per step)", {}, True, 10),
    ("channels-last", "+ channels_last weights", dict(channels_last=True), True, 10),
    ("cudnn-benchmark", "+ cuDNN autotuning (cudnn.benchmark)", dict(cudnn_benchmark=True), True, 10),
    ("bf16", "+ bf16 autocast", dict(use_bf16=True), True, 10),
    ("fused-adamw", "+ fused AdamW", dict(fused=True), True, 10),
    ("compile", "+ torch.compile", dict(use_compile=True), True, 10),
    ("cuda-graphs", "+ CUDA graphs (torch.compile mode reduce-overhead)", dict(cuda_graphs=True), True, 10),
]
LOOP_RUNGS = {"host", "device-data", "no-sync"}
CUDA_ONLY = {"device-data", "cudnn-benchmark", "bf16", "compile", "cuda-graphs"}
KEEP_WITHIN = 0.97  # a switch is kept unless it measures more than 3% slower than the best before it


def speed_ladder(preset: Preset, host_data: TrainingData, device_data: TrainingData, device: torch.device, *,
                 steps: int = 10, seconds: float = 5.0, skip_compile: bool = False,
                 adopt_cuda_graphs: bool = False, deadline: float | None = None) -> tuple[list[dict], dict]:
    """Time each rung of LADDER at the preset's batch, then time it again with the device
    waited for after each phase (the time split). A switch that fails (a compiler or CUDA graph
    error) or measures slower is reported and not kept; CUDA graphs are kept only when
    `adopt_cuda_graphs`. On the CPU the rungs that need CUDA are skipped, and so are the rungs
    that would start after `deadline` (a time.time()). Returns the rows and the Trainer switches
    kept (what training should use)."""
    rows, switches, best = [], {}, 0.0
    for name, change, adds, on_device, read_every in LADDER:
        row = {"name": name, "change": change}
        if device.type != "cuda" and name in CUDA_ONLY:
            rows.append({**row, "skipped": "needs CUDA"})
            continue
        if skip_compile and name in ("compile", "cuda-graphs"):
            rows.append({**row, "skipped": "--no-compile"})
            continue
        if deadline is not None and time.time() > deadline:
            rows.append({**row, "skipped": "out of time for the speed ladder"})
            continue
        trial = {**switches, **adds}
        trainer = None
        try:
            if trial.get("use_compile"):
                torch._dynamo.reset()  # a fresh compile for each rung, as a training run would start
            trainer = Trainer(preset.net, preset.recipe, host_data.schema, device, seed=0, world_size=1, **trial)
            data = device_data if on_device else host_data
            warmup = 3 if trial.get("use_compile") else 1 if name == "host" else 2  # host steps are slow
            t = time_steps(trainer, data, preset, device, steps=steps, warmup=warmup, seconds=seconds,
                           read_every=read_every)
            split = None if name == "host" and device.type == "cuda" else time_steps(  # host steps are slow
                trainer, data, preset, device, steps=max(2, steps // 2), warmup=1, seconds=seconds / 2,
                read_every=read_every, split=True)
            row.update(samples_per_s=t.samples_per_s, steps=t.steps, seconds=t.seconds,
                       peak_memory_bytes=t.peak_memory_bytes, read_every=read_every, switches=trial,
                       split=split.phases if split else None, host_syncs=host_syncs(trainer, data, preset, device))
            faster = t.samples_per_s >= KEEP_WITHIN * best
            row["kept"] = name in LOOP_RUNGS or (faster and (name != "cuda-graphs" or adopt_cuda_graphs))
            if name == "cuda-graphs" and faster and not adopt_cuda_graphs:
                row["note"] = "faster, not used in training (ask with --cuda-graphs)"
            if row["kept"]:
                switches, best = trial, max(best, t.samples_per_s)
        except Exception as e:  # noqa: BLE001 -- a switch that fails here is reported, and training goes without it
            text = str(e).strip()
            row["error"] = f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"
        finally:
            del trainer
            free(device)
        rows.append(row)
    return rows, switches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "forest"], choices=list(PRESETS))
    parser.add_argument("--steps", type=int, default=5, help="timed steps per preset")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("preset        params    GFLOP/frame (multiply-add = 2)  frame     memory")
    for name, preset in PRESETS.items():
        config = preset.net
        s = model_stats(config)
        print(f"{name:<12} {s['params']:>9,}  {s['flops'] / 1e9:8.3f}                        "
              f"{config.width}x{config.height}  {list(config.memory_frames)}")
    for name in args.presets:
        r = measure_training_speed(name, args.steps, args.device)
        print(f"{name}: {r['samples_per_s']:.2f} samples/s ({r['frames_per_s']:.2f} generated frames/s; batch "
              f"{r['batch']}, unroll {r['unroll']}, {r['threads']} threads, {r['device']})", flush=True)


if __name__ == "__main__":
    run_script(main)
