"""`neuralworld ablate CAPTURE... -o DIR`: recipe ladders, every rung trained and measured alike.

--ladder reference: the ladder the reference system's author walked (Ollin Boer Bohan, "World Emulation via Neural
Network", 2025), from the earlier recipe that turned the forest into "soup" to the one that
"holds", each rung adding one change to the one before:

  1. earlier recipe   2D controls, one frame of memory, a flat body at 1/8 size, L1 only
                      (preset baseline2022's recipe at this ladder's size and width)
  2. + 6DoF controls  the whole control vector (same as rung 1 for action captures)
  3. + multi-scale memory  the base preset's memory pyramid (e.g. 4/8/16/32 frames)
  4. + multi-scale network the UNet with one scale per memory level
  5. + adversarial loss    L1 + the patch critic, at the base preset's weight (the reference
                           preset's when the base has none)
  6. + bigger network      channels x BIGGER_MULT

--ladder hold: what keeps a world from melting when it is played (hold_ladder): the tiny
recipe as it was before any of these (TODAY), then each technique added to it alone, then all
of them together (with regression, and with the flow objective).

Every rung is built from the base preset (network and recipe) by changing fields alone, trains on the
same captures at equal compute (the same wall-clock minutes each, or with --steps the same
optimizer steps and so the same samples each, since the batch is shared), and is measured by
evaluate_world on the same held-out frames: by default the last --held-out fraction of each
capture, which training never sees (train's val_fraction), written as captures under
DIR/held-out/ together with the memory frames before them.

DIR holds rung-N-<name>/ (each a world), held-out/, ablation.json (everything),
ablation.md (one table) and ablation.png.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

from neuralworld.capture.format import CaptureWriter, open_capture
from neuralworld.argtypes import size_type
from neuralworld.errors import UserError
from neuralworld.fileio import atomic_dir, atomic_write_bytes, atomic_write_json, check_new_output
from neuralworld.model.config import PRESETS, Preset

BIGGER_MULT = 2.0  # the last rung's channel multiplier
FALLBACK_ADVERSARIAL = PRESETS["forest"].recipe.adversarial_weight  # rung 5's weight when the base preset has none


def ladder(base: Preset) -> list[tuple[str, str, Preset]]:
    """(short name, what changed, preset) for each rung, built from `base` by changing fields."""
    earlier = PRESETS["baseline2022"].net
    net, recipe = base.net, base.recipe

    def rung(name, change, net, recipe):
        return name, change, Preset(f"{base.name}/{name}", net, recipe)

    width = max(net.channels)  # the flat body as wide as the base's widest scale
    flat = dataclasses.replace(
        net, memory_frames=earlier.memory_frames, control_mode=earlier.control_mode, network=earlier.network,
        channels=(width,), encoder_blocks=(0,), decoder_blocks=(sum(net.decoder_blocks),), warp=earlier.warp,
        recall=earlier.recall)
    l1_only = dataclasses.replace(recipe, adversarial_weight=0.0)
    rungs = [rung("baseline2022", "earlier recipe: 2D controls, 1 frame of memory, flat 1/8 body, L1", flat, l1_only)]
    six = dataclasses.replace(flat, control_mode="6dof")
    rungs.append(rung("6dof", "+ 6DoF controls", six, l1_only))
    memory = dataclasses.replace(six, memory_frames=net.memory_frames)
    rungs.append(rung("memory", f"+ {max(net.memory_frames)}-frame multi-scale memory "
                                f"({'/'.join(map(str, net.memory_frames))})", memory, l1_only))
    unet = dataclasses.replace(memory, network="unet", channels=net.channels, encoder_blocks=net.encoder_blocks,
                               decoder_blocks=net.decoder_blocks)
    rungs.append(rung("unet", "+ multi-scale network", unet, l1_only))
    adv = dataclasses.replace(recipe, adversarial_weight=recipe.adversarial_weight or FALLBACK_ADVERSARIAL)
    rungs.append(rung("adversarial", f"+ adversarial loss (weight {adv.adversarial_weight:g})", unet, adv))
    big = dataclasses.replace(unet, channel_mult=net.channel_mult * BIGGER_MULT)
    rungs.append(rung("bigger", f"+ bigger network (channels x{BIGGER_MULT:g})", big, adv))
    return rungs


# the tiny recipe before the techniques of the hold ladder: consecutive frames only, 2 unrolled
# frames joined by values only, light memory noise, no standing still, no critic, regression
TODAY = dict(frame_skip=False, still_fraction=0.0, noise_level_input=False, memory_noise=0.02, unroll=2,
             unroll_grad=False, adversarial_weight=0.0, adversarial_start=0, r1_weight=0.0, objective="regression",
             warp="off", recall=False)
# (name, what changes, fields): each technique of the hold ladder
HOLD_TECHNIQUES = [
    ("time-steps", "+ trained on the time steps a player sends (frame skip)", dict(frame_skip=True)),
    ("standing", "+ standing-still windows", dict(still_fraction=0.15)),
    ("noise-level", "+ memory noise up to 0.1, its level an input", dict(noise_level_input=True, memory_noise=0.1)),
    ("own-rollouts", "+ 6-frame unroll with gradients through its frames", dict(unroll=6, unroll_grad=True)),
    ("adversarial", "+ critic after 1500 L1 steps, with R1", dict(adversarial_weight=0.05, adversarial_start=1500,
                                                                  r1_weight=1.0)),
    ("flow", "+ flow objective (sampled in 2 steps)", dict(objective="flow", unroll=3)),
    ("warp", "+ the newest frame warped by the move, as an input", dict(warp="input")),
    ("recall", "+ warped by the move, what comes into view from recalled real frames", dict(warp="base", recall=True)),
]


def hold_ladder(base: Preset) -> list[tuple[str, str, Preset]]:
    """(short name, what changed, preset) of the hold ladder, from `base`'s network and size."""
    today = base.with_fields(f"{base.name}/today", **TODAY)
    rungs = [("today", "the tiny recipe before these techniques", today)]
    for name, change, fields in HOLD_TECHNIQUES:
        rungs.append((name, change, today.with_fields(f"{base.name}/{name}", **fields)))
    together = {k: v for name, _, fields in HOLD_TECHNIQUES if name != "flow" for k, v in fields.items()}
    rungs.append(("all", "all of them, regression", today.with_fields(f"{base.name}/all", **together)))
    flow = {k: v for name, _, fields in HOLD_TECHNIQUES if name not in ("own-rollouts", "adversarial")
            for k, v in fields.items()}
    rungs.append(("all-flow", "all that apply to flow, with flow", today.with_fields(f"{base.name}/all-flow", **flow)))
    return rungs


LADDERS = {"reference": ladder, "hold": hold_ladder}


def write_held_out(capture_path, out: Path, fraction: float, window: int) -> Path:
    """The last `fraction` of a capture (what training holds out) with the `window` frames
    before it (memory only, never predicted), as a capture folder `out`."""
    cap = open_capture(capture_path)
    n = len(cap)
    split = int(round(n * (1.0 - fraction)))  # the same split as data.load_captures
    first = max(0, split - window)
    standard = {"format", "version", "source", "frames", "width", "height", "fps", "duration_s", "motion",
                "controls", "intrinsics", "convention", "valid_frames"}
    extra = {k: v for k, v in cap.meta.items() if k not in standard}
    extra["held_out_of"] = {"capture": str(cap.path), "first_frame": first, "first_held_out_frame": split}
    with CaptureWriter(out, cap.width, cap.height) as w:
        for f in cap.frames[first:]:
            w.add(np.asarray(f))
        kw = {}
        if cap.motion_kind == "pose":
            kw["poses"] = cap.poses[first:]
        elif cap.motion_kind == "actions":
            kw.update(actions=cap.actions[first:], action_names=cap.control_names)
        w.finish(cap.times[first:], source=cap.meta["source"], fps=cap.fps, valid=cap.valid[first:],
                 motion_source=cap.meta["motion"].get("source"), intrinsics=cap.meta.get("intrinsics"),
                 extra=extra, **kw)
    return out


def run_ladder(captures, out: Path, base: Preset, *, minutes: float | None = None, steps: int | None = None,
               held_out=None, held_out_fraction: float = 0.25, rungs: list[str] | None = None, seed: int = 0,
               eval_options: dict | None = None, force: bool = False, progress: bool = True,
               which: str = "reference") -> dict:
    """Train and evaluate every rung into the folder `out`; returns what ablation.json holds."""
    from neuralworld.evaluate import evaluate_world
    from neuralworld.train import TrainOptions, train_world
    from neuralworld.world import World

    if (minutes is None) == (steps is None):
        raise UserError("give the compute per rung as --minutes or as --steps (one of them)")
    chosen = LADDERS[which](base)
    if rungs:
        unknown = [r for r in rungs if r not in {name for name, _, _ in chosen}]
        if unknown:
            raise UserError(f"--rungs {','.join(unknown)}: unknown (choose from "
                            f"{', '.join(name for name, _, _ in chosen)})")
        chosen = [r for r in chosen if r[0] in rungs]
    window = max(p.net.layout.window for _, _, p in chosen)
    eval_options = dict(eval_options or {})
    compute = (f"equal wall-clock time: {minutes:g} min of training per rung" if minutes is not None else
               f"equal samples: {steps} optimizer steps x batch {base.recipe.batch} per rung")

    with atomic_dir(out, force) as tmp:
        if held_out:
            eval_paths = [Path(p) for p in held_out]
            val_fraction = 0.1
        else:
            val_fraction = held_out_fraction
            (tmp / "held-out").mkdir()
            eval_paths = [write_held_out(c, tmp / "held-out" / f"{i}-{Path(c).name}", held_out_fraction, window)
                          for i, c in enumerate(captures, 1)]
        result = {"format": "neuralworld-ablation", "version": 1, "ladder": which, "compute": compute,
                  "base": {"preset": base.name, "net": base.net.to_json(), "recipe": base.recipe.to_json()}, "train_captures": [str(c) for c in captures],
                  "held_out": [str(p) if held_out else f"held-out/{p.name}" for p in eval_paths],
                  "held_out_rule": ("given captures" if held_out else
                                    f"the last {held_out_fraction:g} of each training capture, never trained on"),
                  "eval_memory_frames": window, "rungs": []}
        copy_last = None
        for i, (name, change, rung_preset) in enumerate(chosen, 1):
            folder = f"rung-{i}-{name}"
            print(f"neuralworld ablate: rung {i}/{len(chosen)}: {change}", file=sys.stderr)
            summary = train_world([str(c) for c in captures], tmp / folder, rung_preset,
                                  TrainOptions(steps=steps, minutes=minutes, seed=seed, val_fraction=val_fraction,
                                               progress=progress))
            world = World.load(tmp / folder)
            metrics = evaluate_world(world, [open_capture(p) for p in eval_paths], window=window, seed=seed,
                                     progress=progress, **eval_options)
            copy_last = copy_last or metrics["baselines"]["copy_last"]
            result["rungs"].append({
                "rung": i, "name": name, "change": change, "world": folder,
                "parameters": int(sum(p.numel() for p in world.net.parameters())),
                "config": rung_preset.net.to_json(), "recipe": rung_preset.recipe.to_json(),
                "training": {k: summary.get(k) for k in ("steps", "samples", "elapsed_s", "val_psnr", "val_copy_psnr")},
                "metrics": {k: metrics[k] for k in ("one_step", "rollout", "detail_retention", "control_fidelity",
                                                    "play", "speed")},
                "notes": metrics["evaluated"]["notes"],
            })
        result["copy_last"] = copy_last
        atomic_write_json(tmp / "ablation.json", result)
        (tmp / "ablation.md").write_text(ablation_markdown(result))
        atomic_write_bytes(tmp / "ablation.png", ablation_figure(result))
    return result


def table_rows(result: dict) -> tuple[list[str], list[list]]:
    from neuralworld.report import fidelity_text, play_cells

    horizons = result["rungs"][0]["metrics"]["rollout"]["horizons"] if result["rungs"] else []
    header = ["rung", "change", "params", "steps", "train s", "1-step PSNR"] + [f"PSNR@{h}" for h in horizons] + \
             [f"SSIM@{h}" for h in horizons[-1:]] + ["detail", "control fidelity", "idle PSNR", "collapse at",
                                                      "moves", "frames/s"]

    rows = []
    for r in result["rungs"]:
        m = r["metrics"]
        rows.append([r["rung"], r["change"], f"{r['parameters'] / 1e6:.2f}M", r["training"]["steps"],
                     r["training"]["elapsed_s"], m["one_step"]["psnr"], *m["rollout"]["psnr"],
                     *m["rollout"]["ssim"][-1:], m["detail_retention"], fidelity_text(m["control_fidelity"]),
                     *play_cells(m.get("play")), m["speed"]["frames_per_s"]])
    c = result.get("copy_last")
    if c:
        rows.append(["-", "copy the last frame", "0", "-", "-", c["one_step"]["psnr"], *c["rollout"]["psnr"],
                     *c["rollout"]["ssim"][-1:], c["detail_retention"], fidelity_text(c["control_fidelity"]),
                     *play_cells(c.get("play")), None])
    return header, rows


def ablation_markdown(result: dict) -> str:
    from neuralworld.report import markdown_table

    title = {"reference": "the reference's recipe ladder", "hold": "what keeps a world from melting"}
    lines = [f"# Ablation: {title[result.get('ladder', 'reference')]}", "",
             f"Compute: {result['compute']}. Held out: {result['held_out_rule']} "
             f"({', '.join(result['held_out'])}); every rung predicts the same frames, after "
             f"{result['eval_memory_frames']} real frames. PSNR in dB (capped at 100), SSIM, detail retention "
             "(1 = the real frames' high-frequency share) over a free-play rollout; idle PSNR, the tour's "
             "collapse and moves as `neuralworld eval` measures them.", "",
             markdown_table(*table_rows(result))]
    notes = sorted({n for r in result["rungs"] for n in r["notes"]})
    lines += [f"- note: {n}" for n in notes]
    return "\n".join(lines) + "\n"


def ablation_figure(result: dict) -> bytes:
    from neuralworld.report import figure_png, new_figure

    fig, (a, b) = new_figure(2, size=(5.5, 3.5))
    for r in result["rungs"]:
        m = r["metrics"]["rollout"]
        a.plot(m["horizons"], [v if v is not None else np.nan for v in m["psnr"]], "o-", label=f"{r['rung']} {r['name']}")
    c = result.get("copy_last")
    if c:
        a.plot(c["rollout"]["horizons"], [v if v is not None else np.nan for v in c["rollout"]["psnr"]], "k--",
               label="copy last")
    a.set_xscale("log", base=2)
    a.set_xlabel("horizon (frames)")
    a.set_ylabel("PSNR (dB)")
    a.set_title("open loop on held-out frames")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    names = [f"{r['rung']} {r['name']}" for r in result["rungs"]]
    detail = [r["metrics"]["detail_retention"] or 0.0 for r in result["rungs"]]
    b.bar(range(len(names)), detail, color="tab:green")
    b.axhline(1.0, color="gray", ls="--", lw=1)
    b.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    b.set_ylabel("detail retention (1 = real)")
    b.set_title("free play")
    b.grid(alpha=0.3, axis="y")
    return figure_png(fig)


def add_arguments(p) -> None:
    p.add_argument("captures", nargs="+", metavar="CAPTURE", help="capture folders to train every rung on")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the rungs' worlds and the table")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="training minutes per rung (equal wall-clock compute; default 5)")
    length.add_argument("--steps", type=int, help="optimizer steps per rung (equal samples) instead of --minutes")
    p.add_argument("--preset", default="tiny", choices=[k for k in PRESETS if k != "baseline2022"],
                   help="the base recipe whose size, memory, widths and training settings every rung shares")
    p.add_argument("--size", type=size_type, metavar="WxH", help="frame size WxH instead of the preset's (divisible by 8 for the flat rungs)")
    p.add_argument("--batch", type=int, help="training windows per step (default: the preset's)")
    p.add_argument("--held-out", nargs="+", metavar="CAPTURE",
                   help="captures to evaluate on (default: the last --held-out-fraction of each training capture)")
    p.add_argument("--held-out-fraction", type=float, default=0.25,
                   help="share of each training capture held out from training for evaluation")
    p.add_argument("--ladder", default="reference", choices=list(LADDERS),
                   help="reference: the reference system's ladder from soup to holding; hold: today's tiny recipe, "
                        "each technique against melting added alone, then all together")
    p.add_argument("--rungs", help="comma-separated rung names to run (default: all: reference: "
                                   + ", ".join(name for name, _, _ in ladder(PRESETS["tiny"])) + "; hold: "
                                   + ", ".join(name for name, _, _ in hold_ladder(PRESETS["tiny"])) + ")")
    p.add_argument("--tour-frames", type=int, default=600, help="frames of the scripted tour (see eval --help)")
    p.add_argument("--starts", type=int, default=8, help="open-loop start points per held-out capture")
    p.add_argument("--one-step-points", type=int, default=32, help="one-step prediction points per held-out capture")
    p.add_argument("--free-play", type=int, default=600, help="frames of free play for detail retention")
    p.add_argument("--fidelity-frames", type=int, default=64, help="frames of the control-fidelity rollout")
    p.add_argument("--horizons", default="1,8,32,128", help="rollout horizons, comma separated")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, batches and evaluation noise")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")


def run(args) -> int:
    from neuralworld.argtypes import parse_horizons
    from neuralworld.report import markdown_table
    from neuralworld.train import resolve_preset

    out = Path(args.output)
    check_new_output(out, args.force)
    base = resolve_preset(args.preset, size=args.size[::-1] if args.size else None, batch=args.batch)
    if args.ladder == "reference" and (base.net.height % 8 or base.net.width % 8):
        raise UserError(f"{base.net.width}x{base.net.height}: the earlier recipe's flat body needs sizes divisible by 8 "
                        "(choose --size accordingly)")
    if not 0.0 < args.held_out_fraction < 1.0:
        raise UserError(f"--held-out-fraction {args.held_out_fraction}: must be between 0 and 1")
    horizons = parse_horizons(args.horizons)
    minutes = args.minutes if args.minutes is not None or args.steps is not None else 5.0
    result = run_ladder(args.captures, out, base, minutes=minutes, steps=args.steps, held_out=args.held_out,
                        held_out_fraction=args.held_out_fraction,
                        rungs=args.rungs.split(",") if args.rungs else None, seed=args.seed,
                        which=args.ladder,
                        eval_options=dict(horizons=horizons, starts=args.starts, free_play=args.free_play,
                                          tour_frames=args.tour_frames,
                                          one_step_points=args.one_step_points,
                                          fidelity_frames=args.fidelity_frames),
                        force=args.force)
    print(markdown_table(*table_rows(result)))
    print(f"wrote {out}/ablation.md, ablation.png, ablation.json and one world per rung")
    return 0
