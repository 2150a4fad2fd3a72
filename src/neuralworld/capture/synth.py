"""`neuralworld synth`: a capture of a procedural forest trail rendered from known poses.

Ground truth for tests and evaluation: every frame comes with the exact camera pose (motion
source "synthetic") and the pinhole intrinsics at the working size, and `render_poses` renders
the same place from any other poses (evaluation renders the truth of commanded trajectories
with it). The scene and renderer are in capture/scene.py, the walks in capture/trajectory.py.

    neuralworld synth -o forest --seed 3 --frames 900
    neuralworld synth -o replay --trajectory walk.tum      # TUM lines: t tx ty tz qx qy qz qw

capture.json records {"synth": {"scene", "seed", "fov_deg", "trajectory"}} so that the same
place can be rendered again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from neuralworld.capture.format import CaptureWriter
from neuralworld.capture.scene import DEFAULT_FOV_DEG, SCENES, Renderer, make_scene
from neuralworld.capture.trajectory import load_trajectory, walk
from neuralworld.argtypes import size_type
from neuralworld.errors import UserError
from neuralworld.fileio import check_new_output


def render_poses(poses, width: int, height: int, seed: int = 0, scene: str = "trail",
                 fov_deg: float = DEFAULT_FOV_DEG, progress: bool = False) -> np.ndarray:
    """(N,4,4) camera-to-world poses (geometry.CONVENTION) -> (N, height, width, 3) uint8 RGB
    frames of the scene made from `seed`."""
    poses = np.asarray(poses, np.float64).reshape(-1, 4, 4)
    out = np.empty((len(poses), height, width, 3), np.uint8)
    with Renderer(make_scene(scene, seed), width, height, fov_deg) as renderer:
        for i, pose in enumerate(tqdm(poses, desc="render", unit="frame", disable=not progress)):
            out[i] = renderer.render(pose)
    return out


def synthesize(out: Path, *, seed: int = 0, frames: int = 300, width: int = 256, height: int = 192,
               fps: float = 30.0, scene: str = "trail", trajectory: Path | None = None,
               fov_deg: float = DEFAULT_FOV_DEG, force: bool = False, progress: bool = True) -> Path:
    """Write a capture of `scene` (made from `seed`) seen along a walk of `frames` frames at
    `fps`, or along the poses of a `trajectory` file (then `frames` is ignored and `fps` only
    times the poses of a .npy file). Returns the capture's path."""
    out = Path(out)
    check_new_output(out, force)
    place = make_scene(scene, seed)
    if trajectory is not None:
        times, poses = load_trajectory(trajectory, fps)
        if len(times) > 1:
            fps = (len(times) - 1) / float(times[-1] - times[0])
        source = str(trajectory)
    else:
        if frames < 1:
            raise UserError(f"--frames {frames}: must be at least 1")
        times, poses = np.arange(frames) / fps, walk(place, frames, fps, seed)
        source = f"synth:{scene}:seed={seed}"
    with Renderer(place, width, height, fov_deg) as renderer, \
            CaptureWriter(out, width, height, force) as writer:
        for pose in tqdm(poses, desc="synth", unit="frame", disable=not progress):
            writer.add(renderer.render(pose))
        writer.finish(times, source=source, fps=fps, poses=poses, motion_source="synthetic",
                      intrinsics=renderer.intrinsics,
                      extra={"synth": {"scene": scene, "seed": int(seed), "fov_deg": float(fov_deg),
                                       "trajectory": str(trajectory) if trajectory else "walk"}})
    return out



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="CAPTURE",
                        help="capture folder to write (refused if it exists, unless --force)")
    parser.add_argument("--seed", type=int, default=0,
                        help="makes the place (trail, trees, sun) and the walk; "
                             "the same seed gives the same frames")
    parser.add_argument("--frames", type=int, default=300, help="number of frames of the walk")
    parser.add_argument("--size", type=size_type, default="256x192", metavar="WxH",
                        help="frame size in pixels, width x height")
    parser.add_argument("--fps", type=float, default=30.0,
                        help="frames per second of the walk (and of a .npy trajectory)")
    parser.add_argument("--scene", choices=SCENES, default="trail", help="which procedural place")
    parser.add_argument("--fov", type=float, default=DEFAULT_FOV_DEG, metavar="DEGREES",
                        help="horizontal field of view of the camera")
    parser.add_argument("--trajectory", type=Path, metavar="FILE",
                        help="render these camera poses instead of a walk: a TUM text file "
                             "(lines 't tx ty tz qx qy qz qw', camera-to-world, camera axes x right, "
                             "y down, z forward, world z up, metres) or a .npy of (N,4,4) "
                             "camera-to-world poses at --fps")
    parser.add_argument("--force", action="store_true", help="replace CAPTURE if it exists")


def run(args) -> int:
    if not 1 <= args.fps <= 1000:
        raise UserError(f"--fps {args.fps}: must be within 1..1000")
    if not 10 <= args.fov <= 150:
        raise UserError(f"--fov {args.fov}: must be within 10..150 degrees")
    width, height = args.size
    out = synthesize(args.output, seed=args.seed, frames=args.frames, width=width, height=height,
                     fps=args.fps, scene=args.scene, trajectory=args.trajectory, fov_deg=args.fov,
                     force=args.force)
    print(f"wrote {out}")
    return 0
