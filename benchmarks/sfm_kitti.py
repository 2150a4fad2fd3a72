"""Structure from motion (`--motion-format sfm`, capture/sfm.py) against visual odometry (`vo`,
capture/odometry.py) on the KITTI clips, scored with evo (Grupp, "evo: Python package for the
evaluation of odometry and SLAM", github.com/MichaelGrupp/evo; `pip install neuralworld[bench]`).

Both run on the same frames: the clip's PNGs decoded, centre-cropped and resized exactly as
`neuralworld import` does (the working size, 256x128 for these clips), or at the stored size
with --full. Per clip and method it prints:
  rotation error  evo RPE, rotation angle between consecutive frames, median / mean (deg/frame)
  ATE             evo APE of positions after a similarity alignment (Umeyama, scale corrected), RMSE m
  ATE true speed  vo only: the ATE with the true per-frame speeds as its scale (the path's shape;
                  SfM has one consistent scale, so its ATE above already measures the shape)
  placed          frames with a valid pose (vo: tracked; sfm: between registered keyframes)
  frames/s        frames over the wall time of the estimate alone (reading the images excluded)

    python benchmarks/sfm_kitti.py [--data ../shared/data/kitti] [--full] [--budget 600]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from evo.core import metrics
from evo.core.trajectory import PoseTrajectory3D

from neuralworld.capture.motion_files import read_kitti_calib
from neuralworld.capture.odometry import estimate_poses
from neuralworld.capture.sfm import estimate_poses_sfm
from neuralworld.capture.video import crop_box, iter_frames, open_source, transform_intrinsics, working_size
from neuralworld.errors import run_script
from neuralworld.geometry import make_pose


def load(folder: Path, full: bool):
    """frames (N, H, W, 3) as import decodes them, times (N,), true poses (N, 4, 4), intrinsics."""
    src = open_source(folder)
    w, h = (src.width // 4 * 4, src.height // 4 * 4) if full else working_size(src.width, src.height)
    frames = np.stack([image for _, image in iter_frames(src, w, h)])
    K = transform_intrinsics(read_kitti_calib(folder / "calib.txt"), crop_box(src.width, src.height, w, h), w, h)
    rows = np.loadtxt(folder / "poses.txt").reshape(-1, 3, 4)
    return frames, np.loadtxt(folder / "times.txt"), make_pose(rows[:, :, :3], rows[:, :, 3]), K


def score(est: np.ndarray, true: np.ndarray, times: np.ndarray) -> dict:
    ref = PoseTrajectory3D(poses_se3=list(true), timestamps=times)
    traj = PoseTrajectory3D(poses_se3=list(est), timestamps=times)
    rpe = metrics.RPE(metrics.PoseRelation.rotation_angle_deg, delta=1, delta_unit=metrics.Unit.frames)
    rpe.process_data((ref, traj))
    traj.align(ref, correct_scale=True)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, traj))
    return {"rot_median": float(np.median(rpe.error)), "rot_mean": float(np.mean(rpe.error)),
            "ate": ape.get_statistic(metrics.StatisticsType.rmse)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/kitti")
    p.add_argument("--full", action="store_true", help="the stored size (620x188) instead of the working size")
    p.add_argument("--budget", type=float, default=600.0, help="SfM time budget in seconds")
    args = p.parse_args()
    cv2.setNumThreads(2)
    print("clip                 size     method  frames  rot med / mean deg/frame  ATE m (path m)  "
          "ATE true speed m  placed   frames/s")
    for folder in sorted(d for d in args.data.iterdir() if (d / "poses.txt").is_file()):
        frames, times, true, K = load(folder, args.full)
        size = f"{frames.shape[2]}x{frames.shape[1]}"
        path = np.linalg.norm(np.diff(true[:, :3, 3], axis=0), axis=1).sum()
        step = np.linalg.norm(np.diff(true[:, :3, 3], axis=0), axis=1) / np.diff(times)
        runs = {}
        start = time.perf_counter()
        runs["vo"] = estimate_poses(frames, times, K, name=folder.name)[:2]
        vo_s = time.perf_counter() - start
        start = time.perf_counter()
        runs["sfm"] = estimate_poses_sfm(frames, times, K, budget_s=args.budget, name=folder.name)[:2]
        sfm_s = time.perf_counter() - start
        true_speed = score(estimate_poses(frames, times, K, speed=np.r_[step[0], step])[0], true, times)["ate"]
        for method, (est, valid), seconds in (("vo", runs["vo"], vo_s), ("sfm", runs["sfm"], sfm_s)):
            e = score(est, true, times)
            shape = f"{true_speed:6.2f}" if method == "vo" else "     -"
            print(f"{folder.name:20s} {size:8s} {method:6s}  {len(frames):6d}  {e['rot_median']:.3f} / "
                  f"{e['rot_mean']:.3f}             {e['ate']:6.2f} ({path:.0f})      {shape}           "
                  f"{valid.sum():3d}/{len(valid)}  {len(frames) / seconds:7.1f}")
    print("(measured on a shared 2-core machine: compare the methods' ratio within one run)")


if __name__ == "__main__":
    run_script(main)
