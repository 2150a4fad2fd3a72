"""What the page's faster models cost in quality: each exported model against the float32 one,
on a trained world and a held-out capture, through the same measures as `neuralworld eval`.

    python benchmarks/web_quality.py WORLD CAPTURE [--json out.json]

WORLD is exported (every model: float32, int8 for WebAssembly, float16 for WebGPU) and each
model is played in onnxruntime by export.ExportedWorld (the page's frames and memory, World's
noise), from real memory of CAPTURE:
  one-step   PSNR of the next frame against the float32 model's (and against the real frame),
             at 32 points of the capture;
  rollout    PSNR against the float32 model's open-loop rollout (same controls, same noise) at
             1, 8, 32 and 128 frames, from 4 points;
  play       tour.measure_play, as `neuralworld eval` reports it: idle PSNR (150 frames standing
             still) and frames until the tour leaves the capture's bands (None: it held).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from neuralworld import metrics
from neuralworld.capture import open_capture
from neuralworld.errors import run_script
from neuralworld.export import ExportedWorld, export_world
from neuralworld.heldout import HORIZONS, held_out, plan_capture
from neuralworld.tour import measure_play
from neuralworld.world import World


def measure(world_dir: Path, capture_dir: Path) -> dict:
    world = World.load(world_dir)
    d = held_out(world, open_capture(capture_dir))
    plan = plan_capture(len(d), world.layout.window, HORIZONS, starts=4, one_step_points=32, name=d.name)
    longest = max(plan.horizons)
    out = {"world": str(world_dir), "capture": str(capture_dir), "models": {}}
    with tempfile.TemporaryDirectory(prefix="neuralworld-quality-") as tmp:
        web = export_world(world_dir, Path(tmp) / "web")
        page = json.loads((web / "world.json").read_text())
        subjects = {name: ExportedWorld(world, web / name) for name in page["models"]}
        reference = subjects["model.onnx"]
        ref_one = np.stack([reference.rollout(d.frames(s - plan.warm, s), d.controls[s:s + 1], seed=s)[0]
                            for s in plan.one_step])
        ref_rollouts = [reference.rollout(d.frames(s - plan.warm, s), d.controls[s:s + longest], seed=s)
                        for s in plan.starts]
        real_next = np.stack([d.frames(s, s + 1)[0] for s in plan.one_step])
        for name, subject in subjects.items():
            frames = np.stack([subject.rollout(d.frames(s - plan.warm, s), d.controls[s:s + 1], seed=s)[0]
                               for s in plan.one_step])
            rollouts = [subject.rollout(d.frames(s - plan.warm, s), d.controls[s:s + longest], seed=s)
                        for s in plan.starts]
            play = measure_play(lambda start, controls: subject.rollout(start, controls, 0), d, plan)
            against = [metrics.psnr(g, r) for g, r in zip(rollouts, ref_rollouts)]
            out["models"][name] = {
                "precision": page["models"][name]["precision"],
                "size_mb": (web / name).stat().st_size / 1e6,
                "one_step_psnr_vs_float32": float(np.mean(metrics.psnr(frames, ref_one))),
                "one_step_psnr_vs_float32_worst": float(np.min(metrics.psnr(frames, ref_one))),
                "one_step_psnr_vs_real": float(np.mean(metrics.psnr(frames, real_next))),
                "rollout_psnr_vs_float32": {str(h): float(np.mean([p[h - 1] for p in against])) for h in plan.horizons},
                "idle_psnr": play["idle_psnr"], "frames_until_collapse": play["frames_until_collapse"],
                "tour_held": play["held"], "moves": play["moves"],
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", type=Path)
    parser.add_argument("capture", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    out = measure(args.world, args.capture)
    horizons = list(next(iter(out["models"].values()))["rollout_psnr_vs_float32"])
    print(f"{args.world} on {args.capture}")
    print(f"{'model':<16} {'precision':<9} {'MB':>5} {'1-step vs f32 (worst)':>22} {'vs real':>8} "
          + " ".join(f"{'@' + h:>7}" for h in horizons) + f" {'idle':>7} {'collapse':>9}")
    for name, m in out["models"].items():
        print(f"{name:<16} {m['precision']:<9} {m['size_mb']:>5.1f} {m['one_step_psnr_vs_float32']:>12.1f} "
              f"({m['one_step_psnr_vs_float32_worst']:>5.1f}) dB {m['one_step_psnr_vs_real']:>8.2f} "
              + " ".join(f"{m['rollout_psnr_vs_float32'][h]:>7.1f}" for h in horizons)
              + f" {m['idle_psnr']:>7.2f} {str(m['frames_until_collapse']):>9}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    run_script(main)
