"""Training speed: samples/s of the full training step (unrolled generation, L1 + adversarial
losses, AdamW, EMA) for a preset, on random frames, plus each preset's parameters and FLOPs.

    python benchmarks/train_speed.py [--presets tiny forest] [--steps 5] [--device cpu] [--threads 2]

`measure_training_speed(preset, steps, device)` is what `neuralworld bench` calls.
"""

from __future__ import annotations

import argparse
import time

import torch

from neuralworld.controls import ControlSchema
from neuralworld.data import TrainingData, sample_batch, step_generator
from neuralworld.model.config import PRESETS, NetConfig, Preset, get_preset
from neuralworld.model.network import model_stats
from neuralworld.train import pick_device
from neuralworld.trainer import Trainer


def random_data(config: NetConfig, unroll: int, frames: int = 64) -> TrainingData:
    """Random frames and pose controls: speed does not depend on what the frames show."""
    n = max(frames, config.layout.window + unroll + 1)
    schema = ControlSchema.identity()
    return TrainingData(
        frames=torch.randint(0, 256, (n, config.height, config.width, 3), dtype=torch.uint8),
        controls=torch.randn(n, schema.dim), train_starts=torch.arange(n - config.layout.window - unroll),
        val_targets=torch.arange(n - 1, n), schema=schema, summary={}, rollout_start=n - 1, rollout_length=1)


def measure_training_speed(preset: Preset | str = "tiny", steps: int = 5, device: str = "auto",
                           warmup: int = 2) -> dict:
    """Samples/s of `steps` timed training steps (after `warmup` untimed ones) of a preset (a
    name or a Preset) at its recipe's batch size, on random data."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    config, recipe = preset.net, preset.recipe
    dev = pick_device(device)
    data = random_data(config, recipe.unroll)
    cuda = dev.type == "cuda"
    trainer = Trainer(config, recipe, data.schema, dev, seed=0, world_size=1, use_bf16=cuda, use_compile=False)
    for step in range(warmup + steps):
        if step == warmup:
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        trainer.step(sample_batch(data, config, recipe, step_generator(0, step, 0, dev), dev), step)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    stats = model_stats(config)
    return {"preset": preset.name, "device": str(dev), "batch": recipe.batch,
            "unroll": recipe.unroll, "threads": torch.get_num_threads(), "steps": steps,
            "samples_per_s": recipe.batch * steps / seconds,
            "frames_per_s": recipe.batch * recipe.unroll * steps / seconds,
            "params": stats["params"], "flops_per_frame": stats["flops"]}


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
    main()
