"""`neuralworld eval WORLD CAPTURE... -o REPORT`: how good a world is, measured one way for every world.

The measures (DESIGN.md, "Measures"), each averaged over the held-out captures:
  one_step          PSNR / SSIM of the frame predicted from real memory and the recorded control,
                    over `one_step_points` points spread evenly over each capture;
  rollout           open loop from real memory driven by the recorded controls: PSNR / SSIM of the
                    h-th generated frame for h in HORIZONS, over `starts` start points per capture;
  detail_retention  `metrics.detail_retention` of a `free_play`-frame rollout (recorded controls,
                    repeated if the capture is shorter) against the capture's own frames;
  control_fidelity  synthetic captures: PSNR of a rollout driven by random walk-and-look commands
                    against the true render of the commanded trajectory (capture/synth.py);
                    real pose captures: rotation error in degrees per frame between the commanded
                    motion and the motion that odometry estimates from the generated frames;
                    action captures: not available (no ground truth for other commands);
  speed             frames/s of world.step in this run, on this machine;
  baselines         the same numbers for copy-the-last-frame, and for `--baseline WORLD`.

Every measure runs through the rollout engine's interface only (reset(start), step(controls,
noise)), so baselines and test doubles are measured by the same code as trained worlds.

A capture of another size than the world is resized to the world's size (OpenCV area
interpolation) when its aspect ratio is the same to within 1%, and refused otherwise.
A capture shorter than the memory window plus the longest horizon is used as far as it goes:
the memory is filled from fewer frames and/or the longest horizons are dropped, and notes in
metrics.json and on stderr say so.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neuralworld import metrics
from neuralworld.capture.format import Capture, open_capture
from neuralworld.controls import POSE_KIND, pose_controls
from neuralworld.controls_file import PlayerState, integrate_sticks, random_sticks, world_time_step
from neuralworld.errors import UserError
from neuralworld.geometry import invert_pose, relative_poses, rotation_angle
from neuralworld.world import World, resize_frames

HORIZONS = (1, 8, 32, 128)
ASPECT_TOLERANCE = 0.01


# ----------------------------------------------------------------------------- inputs

def load_world(path):
    """A world folder -> World, with a one-line error when it is not one."""
    path = Path(path)
    if not (path / "world.json").is_file():
        raise UserError(f"{path}: no world here (world.json is missing; make one with `neuralworld train`)")
    return World.load(path)


@dataclass
class HeldOut:
    """A capture seen at a world's size: frames resized on access, controls checked against the world."""
    capture: Capture
    height: int
    width: int
    controls: np.ndarray  # (N, C) float32 raw control vectors
    name: str = ""

    def __len__(self) -> int:
        return len(self.capture)

    def frames(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, H, W, 3) uint8 at the world's size."""
        clip = np.array(self.capture.frames[start:stop])  # a copy: the capture is memory-mapped read-only
        return resize_frames(clip, self.height, self.width)

    def frames_at(self, index: np.ndarray) -> np.ndarray:
        return resize_frames(np.array(self.capture.frames[np.asarray(index, int)]), self.height, self.width)


def held_out(world, capture: Capture) -> HeldOut:
    """Check that `capture` can drive `world` (same kind and names of controls, same aspect)."""
    kind, names = world.schema["kind"], list(world.schema["names"])
    if capture.control_kind == "none":
        raise UserError(f"{capture.path}: this capture has no motion, so it cannot drive a world "
                        "(import it with a pose or action log)")
    if capture.control_kind != kind:
        raise UserError(f"{capture.path}: has {capture.control_kind} controls but the world takes {kind} "
                        "controls (evaluate on captures of the kind the world was trained on)")
    if capture.control_names != names:
        raise UserError(f"{capture.path}: controls {capture.control_names} differ from the world's {names}")
    h, w = world.height, world.width
    if (capture.height, capture.width) != (h, w):
        if abs(capture.width / capture.height - w / h) > ASPECT_TOLERANCE * (w / h):
            raise UserError(f"{capture.path}: frames are {capture.width}x{capture.height}, the world's "
                            f"{w}x{h}: a different aspect ratio (import the capture again with --size {w}x{h})")
    return HeldOut(capture, h, w, capture.controls(), capture.path.name)


# ----------------------------------------------------------------------------- baselines

class CopyLast:
    """The copy-the-last-frame baseline, with the rollout engine's interface."""

    def __init__(self, like):
        self.height, self.width, self.schema, self.layout = like.height, like.width, like.schema, like.layout
        self.last = np.zeros((self.height, self.width, 3), np.uint8)

    def reset(self, start=None):
        if start is not None and not isinstance(start, str) and len(start):
            self.last = np.asarray(start[-1], np.uint8)

    def step(self, controls, noise=None):
        return self.last


# ----------------------------------------------------------------------------- measuring one world

@dataclass
class Plan:
    """Where each capture is measured; shared by the world and its baselines so they see the same data."""
    warm: int  # real frames in memory at each start
    horizons: list[int]
    starts: list[int]  # rollout start points: first generated frame index
    one_step: list[int]
    free_start: int
    notes: list[str] = field(default_factory=list)


def plan_capture(n: int, window: int, horizons, starts: int, one_step_points: int, name: str) -> Plan:
    if n < 2:
        raise UserError(f"{name}: {n} frame(s): a rollout needs at least 2 (one for memory, one to predict)")
    notes = []
    warm = min(window, n - 1)  # keep the memory full when possible; shorten the horizons first
    avail = n - warm
    fit = [h for h in horizons if h <= avail]
    if warm < window:
        notes.append(f"{name}: {n} frames do not fill the memory window ({window}) and leave a frame to "
                     f"predict: memory filled from {warm} real frames")
    if fit != list(horizons):
        notes.append(f"{name}: {n} frames are fewer than the memory window ({window}) + the longest horizon "
                     f"({max(horizons)}): horizons cut to {fit} (only {avail} frames after the memory)")
    s = np.unique(np.linspace(warm, n - max(fit), max(1, starts)).round().astype(int)) if fit else np.zeros(0, int)
    o = np.unique(np.linspace(warm, n - 1, max(1, one_step_points)).round().astype(int))
    return Plan(warm, fit, s.tolist(), o.tolist(), warm, notes)


class Stepper:
    """Drives a world through its interface, with noise from one seeded generator, timing steps."""

    def __init__(self, world, seed: int):
        self.world = world
        self.rng = np.random.default_rng(seed)
        self.sizes = world.layout.sizes(world.height, world.width) if hasattr(world, "layout") else []
        self.seconds, self.steps = 0.0, 0

    def rollout(self, start_frames: np.ndarray, controls: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) real frames and (K, C) controls -> (K, H, W, 3) generated frames."""
        self.world.reset(start_frames)
        out = []
        for c in controls:
            noise = [self.rng.random((1, 1, h, w), dtype=np.float32) for h, w in self.sizes]
            t0 = time.perf_counter()
            out.append(np.asarray(self.world.step(np.asarray(c, np.float32), noise=noise), np.uint8))
            self.seconds += time.perf_counter() - t0
            self.steps += 1
        return np.stack(out)

    @property
    def frames_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("inf")


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else None


def measure(world, data: list[HeldOut], plans: list[Plan], *, horizons, free_play: int, fidelity_frames: int,
            seed: int, media: dict | None = None, progress=None, truths: dict | None = None) -> dict:
    """All the numbers of one world (or baseline) on the planned points of the held-out captures.
    `truths` keeps true renders between the world and its baselines (same commands, same truth)."""
    truths = {} if truths is None else truths
    stepper = Stepper(world, seed)
    one_psnr, one_ssim = [], []
    per_h = {h: ([], []) for h in horizons}
    curves, details, fidelity, per_capture = [], [], [], []
    for ci, (d, plan) in enumerate(zip(data, plans)):
        cap_one = []
        for s in plan.one_step:
            gen = stepper.rollout(d.frames(s - plan.warm, s), d.controls[s:s + 1])
            real = d.frames(s, s + 1)
            one_psnr.append(float(metrics.psnr(gen, real)[0]))
            one_ssim.append(float(metrics.ssim(gen, real)[0]))
            cap_one.append(one_psnr[-1])
            if progress:
                progress.update(1)
        longest = max(plan.horizons, default=0)
        cap_h = {}
        for k, s in enumerate(plan.starts):
            gen = stepper.rollout(d.frames(s - plan.warm, s), d.controls[s:s + longest])
            real = d.frames(s, s + longest)
            p, q = metrics.psnr(gen, real), metrics.ssim(gen, real)
            curves.append(p)
            for h in plan.horizons:
                per_h[h][0].append(float(p[h - 1]))
                per_h[h][1].append(float(q[h - 1]))
                cap_h.setdefault(h, []).append(float(p[h - 1]))
            if media is not None and ci == 0 and k == len(plan.starts) // 2:
                media["rollout"] = (real, gen, d.frames(s - 1, s)[0])
            if progress:
                progress.update(1)
        gen, real = free_play_rollout(stepper, d, plan, free_play)
        details.append(detail_record(gen, real))
        if media is not None and ci == 0:
            media["free_play"] = gen
        if progress:
            progress.update(1)
        fid = control_fidelity(stepper, d, plan, fidelity_frames, seed + ci, media if ci == 0 else None,
                               truths.setdefault(ci, {}))
        fidelity.append(fid)
        per_capture.append({"capture": d.name, "one_step_psnr": _mean(cap_one),
                            "rollout_psnr": {str(h): _mean(v) for h, v in cap_h.items()},
                            "detail_retention": details[-1]["value"], "control_fidelity": fid})
    mean_curve = _mean_curve(curves)
    return {
        "one_step": {"psnr": _mean(one_psnr), "ssim": _mean(one_ssim), "points": len(one_psnr)},
        "rollout": {"horizons": list(horizons), "psnr": [_mean(per_h[h][0]) for h in horizons],
                    "ssim": [_mean(per_h[h][1]) for h in horizons],
                    "starts": [len(per_h[h][0]) for h in horizons], "psnr_by_step": mean_curve},
        "detail_retention": _mean(r["value"] for r in details),
        "detail_by_chunk": details[0]["by_chunk"] if details else [],
        "control_fidelity": merge_fidelity(fidelity),
        "speed": {"frames_per_s": stepper.frames_per_s, "steps": stepper.steps},
        "per_capture": per_capture,
    }


def _mean_curve(curves: list[np.ndarray]) -> list[float]:
    """Mean PSNR per step over rollouts of different lengths (a step counts where it exists)."""
    if not curves:
        return []
    n = max(len(c) for c in curves)
    return [float(np.mean([c[i] for c in curves if len(c) > i])) for i in range(n)]


def free_play_rollout(stepper: Stepper, d: HeldOut, plan: Plan, frames: int):
    """A long rollout from real memory at the start of the capture, driven by its recorded
    controls (repeated from the first recorded step when the capture is shorter)."""
    s = plan.free_start
    steps = np.arange(frames)
    index = s + steps % max(1, len(d) - s)
    gen = stepper.rollout(d.frames(s - plan.warm, s), d.controls[index])
    real = d.frames_at(np.linspace(0, len(d) - 1, min(len(d), frames)).round().astype(int))
    return gen, real


def detail_record(gen: np.ndarray, real: np.ndarray, chunk: int = 50) -> dict:
    real_share = float(metrics.high_frequency_share(real).mean())
    gen_share = metrics.high_frequency_share(gen)
    by_chunk = [float(gen_share[i:i + chunk].mean() / real_share) if real_share > 0 else None
                for i in range(0, len(gen_share), chunk)]
    value = float(gen_share.mean() / real_share) if real_share > 0 else None
    return {"value": value, "by_chunk": by_chunk}


# ----------------------------------------------------------------------------- control fidelity

def synth_renderer(capture: Capture, height: int, width: int):
    """A function (N,4,4) poses -> (N, height, width, 3) frames rendering the capture's own
    synthetic scene (capture.json "synth": scene, seed, fov_deg), or None for other captures."""
    spec = capture.meta.get("synth")
    if capture.meta.get("motion", {}).get("source") != "synthetic" or not spec:
        return None
    from neuralworld.capture.synth import render_poses

    return lambda poses: render_poses(poses, width, height, seed=int(spec["seed"]), scene=spec["scene"],
                                      fov_deg=float(spec["fov_deg"]))


def odometry():
    """capture.odometry.estimate_poses, or None until it exists."""
    try:
        from neuralworld.capture.odometry import estimate_poses
    except ImportError:
        return None
    return estimate_poses


def commanded_trajectory(d: HeldOut, s: int, frames: int, seed: int):
    """Random walk-and-look commands from the pose of frame s-1, the newest frame in memory:
    (K, 16) controls and (K+1, 4, 4) camera-to-world poses, row 0 being frame s-1's own pose."""
    dt = world_time_step(float(np.median(np.diff(d.capture.times))) if len(d) > 1 else 1 / 15)
    T = d.capture.poses[s - 1]
    forward = T[:3, 2]
    start = PlayerState.start(float(np.arctan2(forward[1], forward[0])), float(np.arcsin(np.clip(forward[2], -1, 1))))
    times, values, names = random_sticks(np.random.default_rng(seed), frames * dt)
    _, poses = integrate_sticks(times, values, names, dt, frames, start)
    # the player walks with roll 0; the same relative motions from the real (possibly rolled) pose
    poses = T @ invert_pose(poses[0]) @ poses
    return pose_controls(poses, np.arange(frames + 1) * dt)[1:], poses


def control_fidelity(stepper: Stepper, d: HeldOut, plan: Plan, frames: int, seed: int,
                     media: dict | None = None, truth_cache: dict | None = None) -> dict:
    """See the module docstring. Returns {"available": bool, ...numbers or "reason"}."""
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
        gen = stepper.rollout(d.frames(s - plan.warm, s), controls)
        p = metrics.psnr(gen, truth)
        if media is not None:
            media["fidelity"] = (truth, gen)
        return {"available": True, "kind": "synthetic", "measure": "psnr_vs_true_render",
                "psnr": float(p.mean()), "ssim": float(metrics.ssim(gen, truth).mean()),
                "psnr_by_horizon": {str(h): float(p[h - 1]) for h in HORIZONS if h <= len(p)},
                "frames": len(p)}
    estimate = odometry()
    if estimate is None:
        return {"available": False, "reason": "real pose capture: not available until visual odometry "
                                              "(capture/odometry.py) is installed"}
    controls, poses = commanded_trajectory(d, s, frames, seed)
    memory = d.frames(s - plan.warm, s)
    gen = stepper.rollout(memory, controls)
    clip = np.concatenate([memory[-1:], gen])  # the starting frame, then the generated ones
    dt = controls[:, 14].astype(np.float64)
    times = np.concatenate([[0.0], np.cumsum(dt)])
    intr = _scaled_intrinsics(d)
    try:
        est, valid, _ = estimate(clip, times, intr)
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


# ----------------------------------------------------------------------------- the whole evaluation

def evaluate_world(world, captures, *, baseline=None, horizons=HORIZONS, starts: int = 8,
                   one_step_points: int = 32, free_play: int = 600, fidelity_frames: int = 64,
                   seed: int = 0, window: int | None = None, media: dict | None = None,
                   progress: bool = False) -> dict:
    """Measure `world` (and copy-last, and `baseline` when given) on `captures` (paths or Captures).

    Returns the metrics.json dict. `media`, when given, receives sample frames for the report.
    `window` (default: the world's memory window, or the baseline's if longer) is how many real
    frames precede the first predicted frame; worlds compared with each other must share it, so
    that they predict the same frames.
    """
    captures = [c if isinstance(c, Capture) else open_capture(c) for c in captures]
    if not captures:
        raise UserError("no held-out captures given")
    horizons = tuple(sorted(horizons))
    data = [held_out(world, c) for c in captures]
    if baseline is not None:
        for c in captures:
            held_out(baseline, c)
    if window is None:
        window = max(world.layout.window, baseline.layout.window if baseline is not None else 0)
    plans = [plan_capture(len(d), window, horizons, starts, one_step_points, d.name) for d in data]
    notes = [n for p in plans for n in p.notes]
    for d in data:
        if (d.capture.height, d.capture.width) != (world.height, world.width):
            notes.append(f"{d.name}: {d.capture.width}x{d.capture.height} frames resized to the world's "
                         f"{world.width}x{world.height}")
    for n in notes:
        print(f"neuralworld eval: note: {n}", file=sys.stderr)

    kw = dict(horizons=horizons, free_play=free_play, fidelity_frames=fidelity_frames, seed=seed)
    subjects = [("world", world, media), ("copy_last", CopyLast(world), None)]
    if baseline is not None:
        subjects.append(("baseline_world", baseline, media_b := ({} if media is not None else None)))
    units = sum(len(p.one_step) + len(p.starts) + 1 for p in plans) * len(subjects)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=units, desc="eval", unit="rollout")
    results, truths = {}, {}
    for name, subject, m in subjects:
        results[name] = measure(subject, data, plans, media=m, progress=bar, truths=truths, **kw)
    if bar:
        bar.close()
    if media is not None and baseline is not None:
        media["baseline"] = media_b

    main = results.pop("world")
    out = {
        "format": "neuralworld-eval", "version": 1,
        "one_step": main["one_step"],
        "rollout": main["rollout"],
        "detail_retention": main["detail_retention"],
        "detail_by_chunk": main["detail_by_chunk"],
        "control_fidelity": main["control_fidelity"],
        "baselines": {k: {key: v[key] for key in ("one_step", "rollout", "detail_retention", "control_fidelity")}
                      for k, v in results.items()},
        "speed": {"frames_per_s": main["speed"]["frames_per_s"], "steps_timed": main["speed"]["steps"],
                  "device": str(getattr(world, "device", "cpu"))},
        "evaluated": {
            "captures": [{"name": d.name, "path": str(d.capture.path), "frames": len(d), "memory_frames": p.warm,
                          "horizons": p.horizons, "rollout_starts": p.starts, "one_step_points": len(p.one_step),
                          "free_play_frames": free_play} for d, p in zip(data, plans)],
            "world_size": [world.height, world.width],
            "memory_window": window,
            "seed": seed,
            "definitions": {
                "psnr": f"dB over RGB in [0,1], per frame, capped at {metrics.PSNR_CAP:g}",
                "ssim": "Wang et al. 2004, 11x11 Gaussian window sigma 1.5, per channel, valid region",
                "detail_retention": "mean share of luma spectral power (mean removed, Hann window) above "
                                    f"{metrics.DETAIL_CUTOFF} cycles/pixel, generated over real frames of the "
                                    "same capture",
            },
            "notes": notes,
        },
        "per_capture": main["per_capture"],
    }
    if baseline is not None:
        out["baselines"]["baseline_world"]["speed"] = results["baseline_world"]["speed"]
    return out


# ----------------------------------------------------------------------------- the command

def add_arguments(p) -> None:
    p.add_argument("world", help="world folder (from `neuralworld train`)")
    p.add_argument("captures", nargs="+", metavar="CAPTURE", help="held-out capture folders, not trained on")
    p.add_argument("-o", "--output", required=True, help="report folder to write (metrics.json, index.html, clips)")
    p.add_argument("--baseline", metavar="WORLD", help="another world to measure on the same data")
    p.add_argument("--starts", type=int, default=8, help="open-loop start points per capture")
    p.add_argument("--one-step-points", type=int, default=32, help="one-step prediction points per capture")
    p.add_argument("--free-play", type=int, default=600, help="frames of the free-play rollout for detail retention")
    p.add_argument("--fidelity-frames", type=int, default=64,
                   help="frames of the random walk-and-look rollout for control fidelity")
    p.add_argument("--horizons", default=",".join(map(str, HORIZONS)), help="rollout horizons, comma separated")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and the random commands")
    p.add_argument("--no-clips", action="store_true", help="leave the MP4 clips out of the report")
    p.add_argument("--force", action="store_true", help="replace the report folder if it exists")


def run(args) -> int:
    from neuralworld.fileio import atomic_dir, atomic_write_json, check_new_output
    from neuralworld.argtypes import parse_horizons
    from neuralworld.report import summary_table, write_eval_report

    check_new_output(Path(args.output), args.force)
    horizons = parse_horizons(args.horizons)
    world = load_world(args.world)
    baseline = load_world(args.baseline) if args.baseline else None
    captures = [open_capture(c) for c in args.captures]
    media: dict = {}
    result = evaluate_world(world, captures, baseline=baseline, horizons=horizons, starts=args.starts,
                            one_step_points=args.one_step_points, free_play=args.free_play,
                            fidelity_frames=args.fidelity_frames, seed=args.seed, media=media, progress=True)
    result["world"] = str(args.world)
    if args.baseline:
        result["baseline_world"] = str(args.baseline)
    with atomic_dir(Path(args.output), args.force) as tmp:
        atomic_write_json(tmp / "metrics.json", result)
        write_eval_report(tmp, result, media, fps=_clip_fps(captures), clips=not args.no_clips)
    print(summary_table(result))
    print(f"wrote {args.output}/metrics.json and {args.output}/index.html")
    return 0


def _clip_fps(captures) -> float:
    fps = [c.fps for c in captures if c.fps > 0]
    return float(np.clip(fps[0], 5, 60)) if fps else 15.0
