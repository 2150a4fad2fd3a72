"""How well does the visual odometry (`--motion-format vo`) recover a real camera's motion?

Runs `neuralworld.capture.odometry.estimate_poses` on the KITTI clips (ground-truth poses) and
prints, per clip and working size:
  rotation error     median angle of R_est^T R_true over consecutive frames (degrees per frame)
  direction error    median angle between estimated and true translation directions (degrees)
  ATE                RMSE of positions after a similarity alignment (Umeyama 1991), metres
  speed              frames per second of estimate_poses (reading the images excluded)
Relative rotations and directions are compared in camera axes, which do not depend on the
world convention. ATE is given twice: with the default scale rule (a constant walking speed,
so the car's changing speed shows up as error even after the similarity alignment fits one
scale), and with the true per-frame speeds as `speed` (the trajectory's shape only).

    python benchmarks/odometry_kitti.py [--data ../shared/data/kitti] [--scales 1,0.5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from neuralworld.capture.odometry import estimate_poses
from neuralworld.capture.video import transform_intrinsics
from neuralworld.errors import run_script
from neuralworld.geometry import make_pose, relative_poses, rotation_angle
from neuralworld.world import resize_frames


def load_kitti(folder: Path):
    """-> frames (N, H, W, 3) uint8, times (N,), poses (N, 4, 4) camera-0 world, intrinsics dict."""
    names = sorted(folder.glob("*.png"))
    gray = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in names]
    frames = np.stack([np.repeat(g[..., None], 3, axis=2) for g in gray])
    times = np.loadtxt(folder / "times.txt")
    rows = np.loadtxt(folder / "poses.txt").reshape(-1, 3, 4)
    poses = make_pose(rows[:, :, :3], rows[:, :, 3])
    P = np.array(open(folder / "calib.txt").read().split()[1:], np.float64).reshape(3, 4)
    intrinsics = {"fx": P[0, 0], "fy": P[1, 1], "cx": P[0, 2], "cy": P[1, 2]}
    return frames, times, poses, intrinsics


def resize(frames: np.ndarray, intrinsics: dict, scale: float):
    if scale == 1.0:
        return frames, intrinsics
    h, w = frames.shape[1:3]
    W, H = int(round(w * scale)), int(round(h * scale))
    return resize_frames(frames, H, W), transform_intrinsics(intrinsics, (0, 0, w, h), W, H)


def umeyama(src: np.ndarray, dst: np.ndarray):
    """Similarity (s, R, t) minimising |dst - (s R src + t)|^2 (Umeyama, PAMI 1991). (N,3) each."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(xd.T @ xs / len(src))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / xs.var(0).sum()
    return s, R, mu_d - s * R @ mu_s


def errors(est: np.ndarray, true: np.ndarray) -> dict:
    re, rt = relative_poses(est), relative_poses(true)
    rot = np.degrees(rotation_angle(np.swapaxes(re[:, :3, :3], 1, 2) @ rt[:, :3, :3]))
    te, tt = re[:, :3, 3], rt[:, :3, 3]
    moving = (np.linalg.norm(te, axis=1) > 1e-9) & (np.linalg.norm(tt, axis=1) > 1e-3)
    cos = np.sum(te[moving] * tt[moving], 1) / np.linalg.norm(te[moving], axis=1) / np.linalg.norm(tt[moving], axis=1)
    direction = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    s, R, t = umeyama(est[:, :3, 3], true[:, :3, 3])
    aligned = s * est[:, :3, 3] @ R.T + t
    ate = float(np.sqrt(np.mean(np.sum((aligned - true[:, :3, 3]) ** 2, axis=1))))
    return {"rot_median_deg": float(np.median(rot)), "rot_mean_deg": float(rot.mean()),
            "dir_median_deg": float(np.median(direction)) if len(direction) else float("nan"),
            "dir_frames": int(moving.sum()), "ate_m": ate,
            "path_m": float(np.linalg.norm(np.diff(true[:, :3, 3], axis=0), axis=1).sum())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/kitti")
    p.add_argument("--scales", default="1,0.5", help="working sizes as fractions of the stored images")
    p.add_argument("--repeat", type=int, default=3, help="timing runs (best is printed)")
    args = p.parse_args()
    cv2.setNumThreads(2)
    folders = sorted(d for d in args.data.iterdir() if (d / "poses.txt").is_file())
    print("clip                 size     frames  rot med/mean deg/frame  dir med deg  ATE m (path m)  "
          "ATE true speed m  valid  frames/s")
    for folder in folders:
        frames0, times, true, intr0 = load_kitti(folder)
        for scale in (float(s) for s in args.scales.split(",")):
            frames, intr = resize(frames0, intr0, scale)
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                est, valid, report = estimate_poses(frames, times, intr, name=folder.name)
                best = min(best, time.perf_counter() - t0)
            e = errors(est, true)
            step = np.linalg.norm(np.diff(true[:, :3, 3], axis=0), axis=1) / np.diff(times)
            e_speed = errors(estimate_poses(frames, times, intr, speed=np.r_[step[0], step])[0], true)
            size = f"{frames.shape[2]}x{frames.shape[1]}"
            print(f"{folder.name:20s} {size:8s} {len(frames):6d}  {e['rot_median_deg']:.3f} / {e['rot_mean_deg']:.3f}"
                  f"          {e['dir_median_deg']:6.2f}       {e['ate_m']:6.2f} ({e['path_m']:.0f})      {e_speed['ate_m']:6.2f}    "
                  f"     {valid.sum():3d}/{len(valid)}  {len(frames) / best:7.0f}")
    print("(speed measured on a shared 2-core machine; figures are pessimistic under load)")


if __name__ == "__main__":
    run_script(main)
