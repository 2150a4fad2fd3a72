"""`neuralworld eval WORLD CAPTURE... -o REPORT`: how good a world is, measured one way for every world.

The measures, each averaged over the held-out captures:
  one_step          PSNR / SSIM of the frame predicted from real memory and the recorded control,
                    over `one_step_points` points spread evenly over each capture;
  rollout           open loop from real memory driven by the recorded controls: PSNR / SSIM of the
                    h-th generated frame for h in HORIZONS, over `starts` start points per capture;
  detail_retention  `metrics.detail_retention` of a `free_play`-frame rollout (recorded controls,
                    repeated if the capture is shorter) against the capture's own frames;
  control_fidelity  fidelity.py: does the world move as commanded;
  speed             frames/s of World.step in this run, on this machine;
  baselines         the same numbers for copy-the-last-frame, and for `--baseline WORLD`.

Every measure runs through World.rollout(start, controls, seed), the rollout engine, so the
copy-the-last-frame baseline (a World around model/network.CopyLastNet) and other worlds are
measured by the same code. Rollout number i of a measure uses noise seed `seed + i`, so every
subject sees the same noise at the same point. Where each capture is measured: heldout.py.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from itertools import count
from pathlib import Path

import numpy as np

from neuralworld import metrics
from neuralworld.capture.format import Capture, open_capture
from neuralworld.errors import UserError
from neuralworld.fidelity import control_fidelity, merge_fidelity
from neuralworld.heldout import HORIZONS, HeldOut, Plan, held_out, plan_capture
from neuralworld.tour import CHUNK, IDLE_FRAMES, MOVES_MIN, TOUR_FRAMES, measure_play
from neuralworld.model.network import CopyLastNet
from neuralworld.world import World


def copy_last(like: World) -> World:
    """The copy-the-last-frame baseline of `like`: same size, memory and controls."""
    return World(CopyLastNet(dataclasses.replace(like.config, recall=False)), like.schema, like.start_frames,
                 "copy-last")


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else None


def measure(world: World, data: list[HeldOut], plans: list[Plan], *, horizons, free_play: int,
            fidelity_frames: int, seed: int, tour_frames: int = TOUR_FRAMES, idle_frames: int = IDLE_FRAMES,
            media: dict | None = None, progress=None, truths: dict | None = None) -> dict:
    """All the numbers of one world (or baseline) on the planned points of the held-out captures.
    `truths` keeps true renders between the world and its baselines (same commands, same truth)."""
    truths = {} if truths is None else truths
    seeds = count(seed)
    steps, seconds = world.steps, world.step_seconds

    def rollout(start, controls):
        return world.rollout(start, controls, next(seeds))

    one_psnr, one_ssim = [], []
    per_h = {h: ([], []) for h in horizons}
    curves, details, fidelity, plays, per_capture = [], [], [], [], []
    for ci, (d, plan) in enumerate(zip(data, plans)):
        cap_one = []
        for s in plan.one_step:
            gen = rollout(d.frames(s - plan.warm, s), d.controls[s:s + 1])
            real = d.frames(s, s + 1)
            one_psnr.append(float(metrics.psnr(gen, real)[0]))
            one_ssim.append(float(metrics.ssim(gen, real)[0]))
            cap_one.append(one_psnr[-1])
            if progress:
                progress.update(1)
        longest = max(plan.horizons, default=0)
        cap_h = {}
        for k, s in enumerate(plan.starts):
            gen = rollout(d.frames(s - plan.warm, s), d.controls[s:s + longest])
            real = d.frames(s, s + longest)
            at = [h - 1 for h in plan.horizons]  # SSIM only where it is reported: it costs 100x PSNR
            p, q = metrics.psnr(gen, real), dict(zip(plan.horizons, metrics.ssim(gen[at], real[at])))
            curves.append(p)
            for h in plan.horizons:
                per_h[h][0].append(float(p[h - 1]))
                per_h[h][1].append(float(q[h]))
                cap_h.setdefault(h, []).append(float(p[h - 1]))
            if media is not None and ci == 0 and k == len(plan.starts) // 2:
                media["rollout"] = (real, gen, d.frames(s - 1, s)[0])
            if progress:
                progress.update(1)
        gen, real = free_play_rollout(rollout, d, plan, free_play)
        details.append(detail_record(gen, real))
        if media is not None and ci == 0:
            media["free_play"] = gen
        if progress:
            progress.update(1)
        fid = control_fidelity(world, d, plan, fidelity_frames, seed + ci, media if ci == 0 else None,
                               truths.setdefault(ci, {}))
        fidelity.append(fid)
        play = measure_play(rollout, d, plan, tour_frames=tour_frames, idle_frames=idle_frames,
                            truth_cache=truths[ci])
        if media is not None and ci == 0:
            media["tour"] = play["frames"]
        plays.append({k: v for k, v in play.items() if k != "frames"})
        if progress:
            progress.update(1)
        per_capture.append({"capture": d.name, "one_step_psnr": _mean(cap_one),
                            "rollout_psnr": {str(h): _mean(v) for h, v in cap_h.items()},
                            "detail_retention": details[-1]["value"], "control_fidelity": fid,
                            "idle_psnr": plays[-1]["idle_psnr"],
                            "frames_until_collapse": plays[-1]["frames_until_collapse"],
                            "moves": plays[-1]["moves"]})
    mean_curve = _mean_curve(curves)
    return {
        "one_step": {"psnr": _mean(one_psnr), "ssim": _mean(one_ssim), "points": len(one_psnr)},
        "rollout": {"horizons": list(horizons), "psnr": [_mean(per_h[h][0]) for h in horizons],
                    "ssim": [_mean(per_h[h][1]) for h in horizons],
                    "starts": [len(per_h[h][0]) for h in horizons], "psnr_by_step": mean_curve},
        "detail_retention": _mean(r["value"] for r in details),
        "detail_by_chunk": details[0]["by_chunk"] if details else [],
        "control_fidelity": merge_fidelity(fidelity),
        "play": merge_play(plays),
        "speed": {"frames_per_s": (world.steps - steps) / max(world.step_seconds - seconds, 1e-12),
                  "steps": world.steps - steps},
        "per_capture": per_capture,
    }


def merge_play(plays: list[dict]) -> dict:
    """idle, tour and truth over the captures: the mean idle PSNR and moves, the earliest
    collapse, held only where every capture held; the first capture's chunks and bands."""
    collapses = [p["frames_until_collapse"] for p in plays if p["frames_until_collapse"] is not None]
    truths = [p["truth"] for p in plays if "truth" in p]
    out = {"idle_psnr": _mean(p["idle_psnr"] for p in plays), "held": all(p["held"] for p in plays),
           "frames_until_collapse": min(collapses) if collapses else None,
           "moves": _mean(p["moves"] for p in plays), "moved": all(p["moved"] for p in plays),
           "chunks": {k: plays[0][k] for k in ("detail", "structure", "contrast", "colour", "in_band")} if plays else {},
           "bands": plays[0]["bands"] if plays else {},
           "idle_frames": plays[0]["idle_frames"] if plays else 0, "tour_frames": plays[0]["tour_frames"] if plays else 0}
    if truths:
        out["truth"] = {h: {m: _mean(t[h][m] for t in truths if h in t) for m in ("psnr", "ssim")}
                        for h in truths[0]}
    return out


def _mean_curve(curves: list[np.ndarray]) -> list[float]:
    """Mean PSNR per step over rollouts of different lengths (a step counts where it exists)."""
    if not curves:
        return []
    n = max(len(c) for c in curves)
    return [float(np.mean([c[i] for c in curves if len(c) > i])) for i in range(n)]


def free_play_rollout(rollout, d: HeldOut, plan: Plan, frames: int):
    """A long rollout (by `rollout(start, controls)`) from real memory at the start of the
    capture, driven by its recorded controls (repeated from the first recorded step when the
    capture is shorter)."""
    s = plan.free_start
    steps = np.arange(frames)
    index = s + steps % max(1, len(d) - s)
    gen = rollout(d.frames(s - plan.warm, s), d.controls[index])
    real = d.frames_at(np.linspace(0, len(d) - 1, min(len(d), frames)).round().astype(int))
    return gen, real


def detail_record(gen: np.ndarray, real: np.ndarray, chunk: int = 50) -> dict:
    real_share = float(metrics.high_frequency_share(real).mean())
    gen_share = metrics.high_frequency_share(gen)
    by_chunk = [float(gen_share[i:i + chunk].mean() / real_share) if real_share > 0 else None
                for i in range(0, len(gen_share), chunk)]
    value = float(gen_share.mean() / real_share) if real_share > 0 else None
    return {"value": value, "by_chunk": by_chunk}


# ----------------------------------------------------------------------------- the whole evaluation

def evaluate_world(world, captures, *, baseline=None, horizons=HORIZONS, starts: int = 8,
                   one_step_points: int = 32, free_play: int = 600, fidelity_frames: int = 64,
                   tour_frames: int = TOUR_FRAMES, idle_frames: int = IDLE_FRAMES,
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

    kw = dict(horizons=horizons, free_play=free_play, fidelity_frames=fidelity_frames, seed=seed,
              tour_frames=tour_frames, idle_frames=idle_frames)
    subjects = [("world", world, media), ("copy_last", copy_last(world), None)]
    if baseline is not None:
        subjects.append(("baseline_world", baseline, media_b := ({} if media is not None else None)))
    units = sum(len(p.one_step) + len(p.starts) + 2 for p in plans) * len(subjects)
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
        "play": main["play"],
        "baselines": {k: {key: v[key] for key in ("one_step", "rollout", "detail_retention", "control_fidelity",
                                                  "play")}
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
                "play": f"idle: PSNR of the last of {idle_frames} frames standing still against the newest real "
                        f"frame; tour: {tour_frames} frames of scripted play, per {CHUNK}-frame chunk detail "
                        "(high-frequency share), structure (mean luma gradient after a 1-pixel blur) and luma "
                        "contrast over the real frames' mean and the mean "
                        "colour's distance, each within the band the capture's real chunks span (tour.py); "
                        "frames_until_collapse: first frame of the first chunk out of band (null: held); "
                        f"moves: frame-to-frame change while moving over the real one (at least {MOVES_MIN})",
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
    p.add_argument("--tour-frames", type=int, default=TOUR_FRAMES,
                   help="frames of the scripted tour (stand, walk, turn, look, strafe, back up; or steering and "
                        "throttle) whose 50-frame chunks must stay in the real frames' bands")
    p.add_argument("--idle-frames", type=int, default=IDLE_FRAMES, help="frames of standing still for the idle PSNR")
    p.add_argument("--horizons", default=",".join(map(str, HORIZONS)), help="rollout horizons, comma separated")
    p.add_argument("--sampler-steps", type=int, default=None, metavar="K",
                   help="flow worlds: Euler steps of the sampler per frame (default: the world's own, "
                        "NetConfig.sampler_steps); more steps, more detail, slower")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and the random commands")
    p.add_argument("--no-clips", action="store_true", help="leave the MP4 clips out of the report")
    p.add_argument("--force", action="store_true", help="replace the report folder if it exists")


def run(args) -> int:
    from neuralworld.fileio import atomic_dir, atomic_write_json, check_new_output
    from neuralworld.argtypes import parse_horizons
    from neuralworld.report import summary_table, write_eval_report

    check_new_output(Path(args.output), args.force)
    horizons = parse_horizons(args.horizons)
    world = World.load(args.world, sampler_steps=args.sampler_steps)
    baseline = World.load(args.baseline) if args.baseline else None
    captures = [open_capture(c) for c in args.captures]
    media: dict = {}
    result = evaluate_world(world, captures, baseline=baseline, horizons=horizons, starts=args.starts,
                            one_step_points=args.one_step_points, free_play=args.free_play,
                            fidelity_frames=args.fidelity_frames, tour_frames=args.tour_frames,
                            idle_frames=args.idle_frames, seed=args.seed, media=media, progress=True)
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
