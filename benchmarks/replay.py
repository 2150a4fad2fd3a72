"""Does a world hold along the path its capture took? Its start frames, then the capture's own moves.

    python benchmarks/replay.py WORLD CAPTURE [--frames 2400] [--strip replay.png]

A world starts from the first frames of its first capture (World.start_frames), so driving it
with that capture's recorded controls from there should redraw the capture itself. Prints PSNR
against the real frame and detail (high-frequency share over the real frames', over the last 8
frames) at each horizon; writes a strip of real (top) and generated (bottom) frames there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from neuralworld import metrics
from neuralworld.capture.format import open_capture
from neuralworld.errors import run_script
from neuralworld.world import World, resize_frames

HORIZONS = (32, 128, 512, 1200, 2400)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("world", type=Path)
    p.add_argument("capture", type=Path, help="the capture the world was trained on (its start frames are its first)")
    p.add_argument("--frames", type=int, default=2400)
    p.add_argument("--strip", type=Path, default=Path("replay.png"))
    args = p.parse_args()

    import cv2

    world, capture = World.load(args.world), open_capture(args.capture)
    window = world.layout.window
    n = min(args.frames, len(capture) - window)
    real = resize_frames(np.asarray(capture.frames[window:window + n]), world.height, world.width)
    generated = world.rollout(None, capture.controls()[window:window + n], seed=0)
    columns = []
    for h in (h for h in HORIZONS if h <= n):
        detail = metrics.high_frequency_share(generated[h - 8:h]).mean() / metrics.high_frequency_share(real[h - 8:h]).mean()
        print(f"frame {h:5d}: PSNR {float(metrics.psnr(generated[h - 1], real[h - 1])):.2f} dB, detail {detail:.2f}")
        columns.append(np.concatenate([real[h - 1], generated[h - 1]], 0))
    cv2.imwrite(str(args.strip), np.concatenate(columns, 1)[:, :, ::-1])


if __name__ == "__main__":
    run_script(main)
