"""How fast does the synthetic world render? Frames per second of `neuralworld synth`'s renderer.

Renders a walk through the forest trail (readback to numpy included) at 128x128 and 256x192
and prints, for each, frames/s and the CPU time per frame summed over all threads (llvmpipe
rasterises on worker threads). The CPU time is what a frame costs whatever else runs on the
machine: on otherwise idle cores the frame rate is about 1000 / that or better, while the
frames/s measured next to other work are pessimistic. Also prints the time to build the
scene and the renderer, and to simulate the walk. Targets on 2 CPU cores (Mesa llvmpipe):
>= 200 frames/s at 128x128 and >= 50 at 256x192.

    python benchmarks/synth_speed.py [--frames 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time

from neuralworld.capture.scene import Renderer, make_scene
from neuralworld.capture.trajectory import walk
from neuralworld.errors import run_script


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300, help="frames rendered per size")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    t0 = time.perf_counter()
    scene = make_scene("trail", a.seed)
    t1 = time.perf_counter()
    poses = walk(scene, a.frames, 30.0, a.seed)
    t2 = time.perf_counter()
    print(f"cores: {os.cpu_count()}  load average: {os.getloadavg()[0]:.2f}")
    print(f"scene: {t1 - t0:.2f} s   walk of {a.frames} frames: {t2 - t1:.2f} s")
    for width, height, target in [(128, 128, 200), (256, 192, 50)]:
        t = time.perf_counter()
        with Renderer(scene, width, height) as renderer:
            setup = time.perf_counter() - t
            renderer.render(poses[0])  # first frame compiles the shaders' variants
            t, cpu = time.perf_counter(), time.process_time()
            for pose in poses:
                renderer.render(pose)
            fps = len(poses) / (time.perf_counter() - t)
            cpu_ms = 1000 * (time.process_time() - cpu) / len(poses)  # all threads (llvmpipe's too)
        print(f"{width}x{height}: {fps:7.1f} frames/s (target >= {target})   CPU time {cpu_ms:.2f} ms/frame "
              f"(all threads)   renderer setup {setup:.2f} s")


if __name__ == "__main__":
    run_script(main)
