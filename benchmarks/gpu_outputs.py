"""The outputs of benchmarks/gpu_run.py: the figures of an evaluation against copy-the-last-frame,
report.md (the speed table and the worlds' figures), preview.png, curve.png and the fp16 world."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np


def figures(result: dict) -> dict:
    """The figures a reader compares: the world against copy-the-last-frame on the same frames."""
    copy = result["baselines"]["copy_last"]
    play, copy_play = result["play"], copy["play"]
    out = {"one_step_psnr": result["one_step"]["psnr"], "copy_one_step_psnr": copy["one_step"]["psnr"],
           "horizons": result["rollout"]["horizons"],
           "psnr": result["rollout"]["psnr"], "copy_psnr": copy["rollout"]["psnr"],
           "ssim": result["rollout"]["ssim"], "copy_ssim": copy["rollout"]["ssim"],
           "idle_psnr": play["idle_psnr"], "copy_idle_psnr": copy_play["idle_psnr"],
           "frames_until_collapse": play["frames_until_collapse"], "held": play["held"],
           "tour_frames": play["tour_frames"], "moves": play["moves"], "moved": play["moved"],
           "copy_moves": copy_play["moves"],
           "detail_retention": result["detail_retention"], "copy_detail_retention": copy["detail_retention"]}
    if "truth" in play:
        out["truth"] = play["truth"]
        out["copy_truth"] = copy_play.get("truth")
    return out


def tour_truth(world, capture, tour_frames: int, every: int = 50) -> np.ndarray | None:
    """The true views of the tour that evaluation drives (tour.measure_play), one per `every` frames."""
    from neuralworld.fidelity import synth_renderer
    from neuralworld.tour import step_seconds, tour_controls

    render = synth_renderer(capture, world.height, world.width)
    if render is None:
        return None
    s = max(min(world.layout.window, len(capture) - 1), 1)  # where the tour starts (heldout.plan_capture)
    _, poses, _ = tour_controls(world.schema, step_seconds(capture.times), tour_frames, capture.poses[s - 1])
    return np.asarray(render(poses[1:][::every]), np.uint8)


def write_fp16_world(src: Path, dst: Path) -> dict:
    """A copy of the world in `src` with its weights in float16 (buffers, such as the control
    normalisation, stay float32), checked to load and play: its first frames against the
    float32 world's."""
    from safetensors.torch import load_file
    from safetensors.torch import save as safetensors_bytes

    from neuralworld.fileio import atomic_write_bytes
    from neuralworld.metrics import psnr
    from neuralworld.world import World

    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for f in [src / "world.json", *sorted(src.glob("*.npy"))]:  # start frames, and a recalling world's bank
        shutil.copy2(f, dst / f.name)
    full = World.load(src)
    params = {k for k, _ in full.net.named_parameters()}
    weights = {k: (v.half() if k in params else v).contiguous() for k, v in load_file(src / "weights.safetensors").items()}
    atomic_write_bytes(dst / "weights.safetensors", safetensors_bytes(weights, metadata={"format": "neuralworld-world"}))
    half = World.load(dst)
    controls = np.zeros((16, full.schema.dim), np.float32) + np.asarray(full.schema.mean, np.float32)
    a, b = full.rollout(None, controls, seed=0), half.rollout(None, controls, seed=0)
    size = sum(f.stat().st_size for f in dst.iterdir())
    return {"path": dst.name, "bytes": size, "under_16_mb": size < 16 * 2 ** 20,
            "psnr_vs_float32_16_frames": float(psnr(b, a).mean())}


def _row(frames, height: int, gap: int = 4) -> np.ndarray:
    """(N, h, w, 3) frames at `height` pixels, side by side with white gaps."""
    import cv2

    out = []
    for f in frames:
        f = np.asarray(f, np.uint8)
        if f.shape[0] != height:
            f = cv2.resize(f, (round(f.shape[1] * height / f.shape[0]), height), interpolation=cv2.INTER_LINEAR)
        out += [f, np.full((height, gap, 3), 255, np.uint8)]
    return np.concatenate(out[:-1], axis=1)


def preview_png(media: dict, horizons) -> bytes:
    """One strip per row: for each world, the real frames of an unseen open-loop rollout at the
    horizons and the world's; the tour one frame per 50 (and, on the trail, its true views)."""
    from neuralworld.report import figure_png

    rows = []
    for name, m in media.items():
        if m.get("rollout"):
            real, gen, _ = m["rollout"]
            at = [h - 1 for h in horizons if h <= len(real)]
            rows.append((f"{name}: unseen frames at {', '.join(str(h + 1) for h in at)}", real[at]))
            rows.append((f"{name}: the world from the same memory", gen[at]))
        if m.get("truth") is not None:
            rows.append((f"{name}: tour, true views every 50 frames", m["truth"]))
        if m.get("tour") is not None:
            rows.append((f"{name}: tour, the world every 50 frames", m["tour"][::50]))
    height = max([128] + [np.asarray(r[1]).shape[1] for r in rows])
    strips = [(title, _row(frames, height)) for title, frames in rows]
    width = max(s.shape[1] for _, s in strips)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(strips), 1, figsize=(width / 100, len(strips) * (height / 100 + 0.35)),
                             squeeze=False)
    for ax, (title, strip) in zip(axes[:, 0], strips):
        ax.imshow(strip)
        ax.set_xlim(0, width)
        ax.set_title(title, loc="left", fontsize=10)
        ax.axis("off")
    return figure_png(fig)


def curve_png(curves: dict[str, list[dict]]) -> bytes:
    """Validation one-step PSNR over training time, with copy-the-last-frame on the same frames."""
    from neuralworld.report import figure_png, new_figure

    fig, axes = new_figure(len(curves), size=(5.0, 3.4))
    for ax, (name, points) in zip(axes, curves.items()):
        t = [p["elapsed_s"] / 60 for p in points]
        ax.plot(t, [p["val_psnr"] for p in points], "o-", label="world")
        ax.plot(t, [p["val_copy_psnr"] for p in points], "k--", label="copy the last frame")
        ax.set_xlabel("training time (min)")
        ax.set_ylabel("validation one-step PSNR (dB)")
        ax.set_title(f"{name} world")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def _num(v, fmt="{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def _shares(split: dict | None) -> str:
    if not split:
        return "-"
    total = sum(split.values()) or 1.0
    return "/".join(f"{100 * split.get(k, 0) / total:.0f}" for k in ("data", "forward", "backward", "critic",
                                                                      "optimizer")) + " %"


def report_markdown(m: dict) -> str:
    """The speed table and the worlds' figures, as printed at the end of the run."""
    from neuralworld.report import markdown_table

    s, lines = m.get("speed", {}), []
    mach = m["machine"]
    lines += [f"# {mach['device_name']} ({mach['device']}), torch {mach['torch']}", ""]
    if s.get("samples_per_s"):
        split = s.get("split") or {}
        total = sum(split.values()) or 1.0
        peak = s["peak"]
        tb = s.get("training_batch", {})
        search = s.get("batch_search", {})
        mem = s.get("peak_memory_bytes")
        rows = [
            ["samples/s (training switches, timed steps)", _num(s["samples_per_s"], "{:.1f}")],
            ["training FLOPs per sample (forward + backward" + (", critic)" if s.get("critic_counted") else ")"),
             _num(s["flops_per_sample"] / 1e9, "{:.2f} GFLOP")],
            ["model FLOP/s", _num(s["model_flops_per_s"] / 1e12, "{:.2f} TFLOP/s")],
            ["MFU vs datasheet bf16 peak" + (f" ({peak['datasheet_bf16_flops_per_s'] / 1e12:.0f} TFLOP/s)"
                                             if peak.get("datasheet_bf16_flops_per_s") else " (device not in the table)"),
             _num(s.get("mfu_datasheet"), "{:.1%}")],
            [f"MFU vs a timed {peak['matmul']['dtype']} matmul ({peak['matmul']['flops_per_s'] / 1e12:.2f} TFLOP/s)",
             _num(s.get("mfu_matmul"), "{:.1%}")],
            ["time split per step: data / forward / backward / critic / optimizer",
             " / ".join(f"{1000 * split.get(k, 0):.1f} ms ({split.get(k, 0) / total:.0%})"
                        for k in ("data", "forward", "backward", "critic", "optimizer"))],
            ["peak memory", f"{mem / 2 ** 30:.2f} GiB (torch.cuda.max_memory_allocated)" if mem else
             f"{s.get('peak_rss_bytes', 0) / 2 ** 30:.2f} GiB (process peak RSS: no device allocator on the CPU)"],
            ["largest batch that fits", f"{search.get('largest')} (search stopped by {search.get('stopped_by')}"
                                        f", cap {search.get('cap')})"],
            ["training batch and learning rate", f"{tb.get('batch')}, lr {tb.get('lr', 0):.3g} (preset: "
                                                 f"{tb.get('preset_batch')}, {tb.get('preset_lr', 0):.3g}); "
                                                 f"{tb.get('rule')}"],
        ]
        lines += ["## Speed", "", f"{s['preset']} at {s['size'][0]}x{s['size'][1]} on the {s['world']} capture; "
                  f"steady-state figures of the rung '{s.get('measured_on')}'.", "",
                  markdown_table(["measure", "value"], rows), ""]
        ladder = [[r["name"], r["change"], _num(r.get("samples_per_s"), "{:.1f}"), _shares(r.get("split")),
                   r["host_syncs"]["count"] if r.get("host_syncs", {}).get("checked") else "-",
                   f"{r['peak_memory_bytes'] / 2 ** 30:.2f}" if r.get("peak_memory_bytes") else "-",
                   "yes" if r.get("kept") else "no" if "samples_per_s" in r else "-",
                   r.get("error") or r.get("skipped") or r.get("note") or ""] for r in s.get("ladder", [])]
        lines += ["Each change in turn, at the training batch (a change that fails or measures slower is not "
                  "kept; the split waits for the device after each phase):", "",
                  markdown_table(["rung", "change", "samples/s", "data/fwd/bwd/critic/opt", "host syncs/step",
                                  "peak GiB", "kept", "note"], ladder), ""]
        trials = [[t["batch"], _num(t.get("samples_per_s"), "{:.1f}"),
                   f"{t['peak_memory_bytes'] / 2 ** 30:.2f}" if t.get("peak_memory_bytes") else "-",
                   "out of memory" if t.get("out_of_memory") else ""] for t in search.get("trials", [])]
        lines += ["Batch search (eager, bf16 where CUDA):", "",
                  markdown_table(["batch", "samples/s", "peak GiB", ""], trials), ""]
    for name, w in m.get("worlds", {}).items():
        tr, f = w.get("training", {}), w.get("figures")
        lines += [f"## The {name} world", "",
                  f"{tr.get('steps')} steps in {_num((tr.get('elapsed_s') or 0) / 60, '{:.1f}')} min "
                  f"({_num(w.get('samples_per_s'), '{:.1f}')} samples/s with checkpoints and validation); "
                  f"validation one-step PSNR {_num(tr.get('val_psnr'))} dB, copy-the-last-frame "
                  f"{_num(tr.get('val_copy_psnr'))} dB.", ""]
        if f:
            hs = f["horizons"]
            header = ["", "1-step PSNR"] + [f"PSNR@{h}" for h in hs] + [f"SSIM@{hs[-1]}", "idle PSNR",
                                                                        "collapse at", "moves", "detail"]
            rows = [["world", _num(f["one_step_psnr"]), *[_num(v) for v in f["psnr"]], _num(f["ssim"][-1], "{:.3f}"),
                     _num(f["idle_psnr"]), "held" if f["held"] else f["frames_until_collapse"],
                     _num(f["moves"]), _num(f["detail_retention"])],
                    ["copy the last frame", _num(f["copy_one_step_psnr"]), *[_num(v) for v in f["copy_psnr"]],
                     _num(f["copy_ssim"][-1], "{:.3f}"), _num(f["copy_idle_psnr"]), "", _num(f["copy_moves"]),
                     _num(f["copy_detail_retention"])]]
            lines += [markdown_table(header, rows), ""]
            if f.get("truth"):
                lines += ["Tour against the true render (PSNR / SSIM): " + ", ".join(
                    f"@{h}: {_num(v['psnr'])} / {_num(v['ssim'], '{:.3f}')}" for h, v in f["truth"].items()), ""]
    if m.get("errors"):
        lines += ["## Errors", ""] + [f"- {e}" for e in m["errors"]] + [""]
    return "\n".join(lines)

