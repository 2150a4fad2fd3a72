"""Control fidelity: does a world move the way it is told to?

Pose worlds are driven by random walk-and-look commands from the player's rules
(player.random_sticks) starting at a real frame's pose, and compared:
  synthetic captures  PSNR / SSIM of the rollout against the true render of the commanded
                      trajectory (capture/synth.py renders the capture's own scene);
  real captures       rotation error in degrees per frame between the commanded motion and the
                      motion that visual odometry (capture/odometry.py) estimates from the
                      generated frames.
Action worlds: not available (no ground truth for commands other than the recorded ones).
"""

from __future__ import annotations

import numpy as np

from neuralworld import metrics
from neuralworld.capture.format import Capture
from neuralworld.capture.odometry import estimate_poses
from neuralworld.controls import POSE_KIND
from neuralworld.errors import UserError
from neuralworld.geometry import relative_poses, rotation_angle
from neuralworld.heldout import HORIZONS, HeldOut, Plan
from neuralworld.player import drive_from, random_sticks, world_time_step

def synth_renderer(capture: Capture, height: int, width: int):
    """A function (N,4,4) poses -> (N, height, width, 3) frames rendering the capture's own
    synthetic scene (capture.json "synth": scene, seed, fov_deg), or None for other captures.
    The views are made as the capture's frames reach a world: rendered at the capture's size, then
    resized (world.resize_frames). Rendered at the world's size they would carry 1.4 times the
    capture's fine detail at 64x48 (aliasing), and a real frame would look blurred beside them."""
    spec = capture.meta.get("synth")
    if capture.meta.get("motion", {}).get("source") != "synthetic" or not spec:
        return None
    from neuralworld.capture.synth import render_poses
    from neuralworld.world import resize_frames

    return lambda poses: resize_frames(
        np.asarray(render_poses(poses, capture.width, capture.height, seed=int(spec["seed"]), scene=spec["scene"],
                                fov_deg=float(spec["fov_deg"])), np.uint8), height, width)


def commanded_trajectory(d: HeldOut, s: int, frames: int, seed: int):
    """Random walk-and-look commands from the pose of frame s-1, the newest frame in memory:
    (K, 16) controls and (K+1, 4, 4) camera-to-world poses, row 0 being frame s-1's own pose."""
    dt = world_time_step(float(np.median(np.diff(d.capture.times))) if len(d) > 1 else 1 / 15)
    times, values, names = random_sticks(np.random.default_rng(seed), frames * dt)
    return drive_from(d.capture.poses[s - 1], times, values, names, dt, frames)


def control_fidelity(world, d: HeldOut, plan: Plan, frames: int, seed: int,
                     media: dict | None = None, truth_cache: dict | None = None) -> dict:
    """See the module docstring; `seed` makes the commands and the world's noise. Returns
    {"available": bool, ...numbers or "reason"}. `truth_cache` keeps the true render between a
    world and its baselines (same commands, same truth)."""
    truth_cache = {} if truth_cache is None else truth_cache
    if d.capture.control_kind != POSE_KIND:
        return {"available": False, "reason": "action controls: no ground truth for other commands"}
    s = max(plan.warm, 1)
    frames = min(frames, 10_000)
    render = synth_renderer(d.capture, d.height, d.width)
    if render is not None:
        controls, poses = commanded_trajectory(d, s, frames, seed)
        if "truth" not in truth_cache:
            truth_cache["truth"] = np.asarray(render(poses[1:]), np.uint8)
        truth = truth_cache["truth"]
        gen = world.rollout(d.frames(s - plan.warm, s), controls, seed)
        p = metrics.psnr(gen, truth)
        if media is not None:
            media["fidelity"] = (truth, gen)
        return {"available": True, "kind": "synthetic", "measure": "psnr_vs_true_render",
                "psnr": float(p.mean()), "ssim": float(metrics.ssim(gen, truth).mean()),
                "psnr_by_horizon": {str(h): float(p[h - 1]) for h in HORIZONS if h <= len(p)},
                "frames": len(p)}
    controls, poses = commanded_trajectory(d, s, frames, seed)
    memory = d.frames(s - plan.warm, s)
    gen = world.rollout(memory, controls, seed)
    clip = np.concatenate([memory[-1:], gen])  # the starting frame, then the generated ones
    dt = controls[:, 14].astype(np.float64)
    times = np.concatenate([[0.0], np.cumsum(dt)])
    intr = _scaled_intrinsics(d)
    try:
        est, valid, _ = estimate_poses(clip, times, intr)
    except UserError as e:
        return {"available": False, "reason": f"odometry failed on the generated frames ({e})"}
    err = _rotation_error_deg(poses, np.asarray(est), np.asarray(valid, bool))
    if err is None:
        return {"available": False, "reason": "odometry found no valid motion in the generated frames"}
    return {"available": True, "kind": "odometry", "measure": "rotation_error_deg_per_frame",
            "rotation_error_deg_per_frame": err, "frames": len(gen)}


def _scaled_intrinsics(d: HeldOut) -> dict | None:
    intr = d.capture.meta.get("intrinsics")
    if not intr:
        return None
    sx, sy = d.width / d.capture.width, d.height / d.capture.height
    return {"fx": intr["fx"] * sx, "fy": intr["fy"] * sy, "cx": intr["cx"] * sx, "cy": intr["cy"] * sy}


def _rotation_error_deg(commanded: np.ndarray, estimated: np.ndarray, valid: np.ndarray) -> float | None:
    """Mean angle in degrees of the per-frame relative rotation error, over frames odometry trusts."""
    rc, re = relative_poses(commanded)[:, :3, :3], relative_poses(estimated)[:, :3, :3]
    ok = valid[1:] & valid[:-1]
    if not ok.any():
        return None
    return float(np.degrees(rotation_angle(np.swapaxes(rc, 1, 2) @ re))[ok].mean())


def merge_fidelity(records: list[dict]) -> dict:
    ok = [r for r in records if r.get("available")]
    if not ok:
        reasons = sorted({r.get("reason", "") for r in records})
        return {"available": False, "reason": "; ".join(reasons)}
    out = {"available": True, "kinds": sorted({r["kind"] for r in ok}), "captures": len(ok)}
    for key in ("psnr", "ssim", "rotation_error_deg_per_frame"):
        values = [r[key] for r in ok if key in r]
        if values:
            out[key] = float(np.mean(values))
    return out
