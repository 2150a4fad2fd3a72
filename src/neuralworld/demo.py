"""`neuralworld demo`: the whole loop on a built-in place, with no data of your own.

  1. synth:  a walk along the procedural forest trail (capture with known poses)
  2. train:  the `tiny` preset for a few minutes on this machine's CPU (or GPU)
  3. export: ONNX + the browser player, parity-checked against PyTorch
  4. play:   the player served on 127.0.0.1, opened in your browser

Everything goes into one folder (default ./neuralworld-demo). Running the demo again reuses
what is there: the capture is kept and the training resumes until its minutes are spent.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from neuralworld.argtypes import port_type
from neuralworld.errors import UserError

DEMO_SEED = 7
DEMO_FPS = 60.0  # the page's smallest time step: the world is trained on 1/60 s steps
DEMO_FRAMES = 4800  # 80 s of walking at 60 fps
RENDER_SIZE = (128, 96)  # twice the world's size, area-averaged to it at load (anti-aliasing)
WORLD_SIZE = (64, 48)  # the tiny preset at the reference's 4:3 aspect


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=Path("neuralworld-demo"),
                        help="folder for the demo's capture, world and web player")
    parser.add_argument("--minutes", type=float, default=4.0, help="training time of the tiny world")
    parser.add_argument("--frames", type=int, default=DEMO_FRAMES, help="frames of the synthetic walk")
    parser.add_argument("--device", default="auto", help="training device: auto, cpu, cuda or mps")
    parser.add_argument("--port", type=port_type, default=8000, help="port of the player (0: any free port)")
    parser.add_argument("--no-browser", action="store_true", help="serve the player without opening a browser")
    parser.add_argument("--no-play", action="store_true", help="stop after the export; do not serve the player")
    parser.add_argument("--force", action="store_true",
                        help="start over: delete the demo folder's capture, world and player first")


def run(args) -> int:
    from neuralworld.capture.synth import synthesize
    from neuralworld.export import export_world
    from neuralworld.play import serve
    from neuralworld.train import CHECKPOINT, TrainOptions, resolve_preset, train_world

    out: Path = args.output
    if out.exists() and not (out / "demo.txt").is_file() and any(out.iterdir()):
        raise UserError(f"{out}: exists and is not a demo folder (choose another -o)")
    if args.force and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.txt").write_text("made by `neuralworld demo`; safe to delete\n")
    capture, world = out / "trail", out / "world"

    print(f"[1/4] synth: {args.frames} frames of a walk along the forest trail -> {capture}", flush=True)
    if (capture / "capture.json").is_file():
        print("      (kept from an earlier run)")
    else:
        synthesize(capture, seed=DEMO_SEED, frames=args.frames, width=RENDER_SIZE[0], height=RENDER_SIZE[1],
                   fps=DEMO_FPS)

    print(f"[2/4] train: preset tiny at {WORLD_SIZE[0]}x{WORLD_SIZE[1]} for {args.minutes:g} minutes -> {world}",
          flush=True)
    resume = (world / CHECKPOINT).is_file()
    preset = None if resume else resolve_preset("tiny", size=(WORLD_SIZE[1], WORLD_SIZE[0]))  # None: the checkpoint's
    summary = train_world([capture], world, preset,
                          TrainOptions(minutes=args.minutes, resume=resume, device=args.device, checkpoint_minutes=1.0))

    print(f"[3/4] export: ONNX + web player -> {world / 'web'}", flush=True)
    web = export_world(world, world / "web")

    psnr, copy = summary.get("val_psnr"), summary.get("val_copy_psnr")
    print(f"      validation one-step PSNR {psnr} dB (copy-the-last-frame: {copy} dB); "
          f"training previews in {world / 'previews'}")
    if args.no_play:
        print(f"[4/4] play: skipped; run `neuralworld play {world}`")
        return 0
    print("[4/4] play: WASD walk, mouse or IJKL look, Shift run, Space jump, r reset, p pause", flush=True)
    serve(web, port=args.port, open_browser=not args.no_browser)
    return 0
