"""`neuralworld info CAPTURE`: what a capture holds, as text or JSON, and a contact sheet.

Motion statistics are taken between consecutive frames that are both valid:
  pose:    speed (m/s) = |t[i] - t[i-1]| / dt, turn rate (rad/s) = angle(inv(R[i-1]) R[i]) / dt,
           as median and 95th percentile, and the path length;
  actions: min, mean and max of each named value.
The contact sheet (PNG, matplotlib's Agg backend) shows evenly spaced frames with their times
and a plot of the motion: the top view of the path and the angular speed over time for poses,
the action values over time for actions. It goes to CAPTURE/contact_sheet.png (derived from
the capture, so rewritten freely) unless -o names another file.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from neuralworld.capture.format import Capture, open_capture
from neuralworld.errors import UserError
from neuralworld.fileio import atomic_write_bytes, check_new_output
from neuralworld.geometry import relative_poses, rotation_angle

SHEET_NAME = "contact_sheet.png"


def _stats(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"median": None, "p95": None, "max": None}
    return {"median": float(np.median(values)), "p95": float(np.percentile(values, 95)), "max": float(values.max())}


def pose_motion(cap: Capture) -> dict[str, np.ndarray]:
    """Per-step speed and turn rate of a pose capture: arrays over the steps i-1 -> i that are valid."""
    poses, times, valid = cap.poses, cap.times, cap.valid
    rel = relative_poses(poses)  # (N-1, 4, 4)
    dt = np.diff(times)
    ok = valid[1:] & valid[:-1]
    step = np.linalg.norm(rel[:, :3, 3], axis=1)
    turn = rotation_angle(rel[:, :3, :3]) / dt
    return {"t": times[1:], "speed": step / dt, "turn": turn, "ok": ok, "step": step}


def describe(cap: Capture) -> dict:
    """Everything `info` prints, as plain JSON-able values."""
    meta = cap.meta
    dt = np.diff(cap.times)
    out = {
        "path": str(cap.path), "source": meta.get("source"),
        "frames": len(cap), "duration_s": meta["duration_s"], "width": cap.width, "height": cap.height,
        "fps": cap.fps,
        "frame_interval_s": _stats(dt) | {"min": float(dt.min()) if len(dt) else None},
        "motion": meta["motion"], "controls": {"kind": cap.control_kind, "names": cap.control_names},
        "valid_frames": int(cap.valid.sum()), "intrinsics": meta.get("intrinsics"),
    }
    if cap.motion_kind == "pose":
        m = pose_motion(cap)
        out["speed_mps"] = _stats(m["speed"][m["ok"]])
        out["turn_rate_radps"] = _stats(m["turn"][m["ok"]])
        out["path_length_m"] = float(m["step"][m["ok"]].sum())
    elif cap.motion_kind == "actions":
        a = cap.actions
        out["actions"] = {name: {"min": float(a[:, i].min()), "mean": float(a[:, i].mean()),
                                 "max": float(a[:, i].max())} for i, name in enumerate(meta["motion"]["names"])}
    return out


def format_text(d: dict) -> str:
    motion = d["motion"]
    lines = [
        f"capture      {d['path']}",
        f"source       {d['source']}",
        f"frames       {d['frames']} ({d['valid_frames']} valid), {d['width']}x{d['height']}",
        f"duration     {d['duration_s']:.2f} s at {d['fps']:.2f} fps",
        f"motion       {motion['kind']}" + (f" from {motion['source']}" if motion.get("source") else ""),
        f"controls     {d['controls']['kind']} ({len(d['controls']['names'])} values)",
    ]
    if d["frame_interval_s"]["median"] is not None:
        fi = d["frame_interval_s"]
        lines.append(f"frame step   median {fi['median'] * 1000:.1f} ms, min {fi['min'] * 1000:.1f}, "
                     f"max {fi['max'] * 1000:.1f}")
    if "speed_mps" in d and d["speed_mps"]["median"] is not None:
        s, r = d["speed_mps"], d["turn_rate_radps"]
        lines.append(f"speed        median {s['median']:.2f} m/s, p95 {s['p95']:.2f}, max {s['max']:.2f}; "
                     f"path {d['path_length_m']:.1f} m")
        lines.append(f"turn rate    median {r['median']:.3f} rad/s, p95 {r['p95']:.3f}, max {r['max']:.3f}")
    for name, a in d.get("actions", {}).items():
        lines.append(f"{name:<12} min {a['min']:.3g}, mean {a['mean']:.3g}, max {a['max']:.3g}")
    if d.get("contact_sheet"):
        lines.append(f"sheet        {d['contact_sheet']}")
    return "\n".join(lines)


def contact_sheet(cap: Capture, count: int = 12, columns: int = 4) -> bytes:
    """PNG bytes: `count` evenly spaced frames with their times, and a plot of the motion."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(cap)
    index = np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))
    rows = -(-len(index) // columns)
    aspect = cap.height / cap.width
    fig = plt.figure(figsize=(columns * 2.6, rows * 2.6 * aspect + 2.8 + 0.6), dpi=100)
    grid = fig.add_gridspec(rows + 1, columns, height_ratios=[2.6 * aspect] * rows + [2.8])
    for k, i in enumerate(index):
        ax = fig.add_subplot(grid[k // columns, k % columns])
        ax.imshow(np.asarray(cap.frames[i]), interpolation="nearest")
        ax.set_title(f"#{i}  t={cap.times[i]:.2f} s", fontsize=8)
        ax.axis("off")
    motion = cap.motion_kind
    if motion == "pose":
        m = pose_motion(cap)
        half = columns // 2
        ax = fig.add_subplot(grid[rows, :half])
        pos = cap.poses[:, :3, 3]
        ax.plot(pos[:, 0], pos[:, 1], lw=1)
        ax.plot(pos[0, 0], pos[0, 1], "go", ms=4, label="start")
        ax.plot(pos[index, 0], pos[index, 1], "k.", ms=3, label="frames above")
        ax.set_aspect("equal", "datalim")
        ax.set_title("path seen from above (m)", fontsize=9)
        ax.legend(fontsize=7)
        ax = fig.add_subplot(grid[rows, half:])
        ax.plot(m["t"], np.where(m["ok"], m["turn"], np.nan), lw=1, label="turn rate (rad/s)")
        ax.plot(m["t"], np.where(m["ok"], m["speed"], np.nan), lw=1, label="speed (m/s)")
        ax.set_xlabel("time (s)", fontsize=8)
        ax.set_title("angular and linear speed", fontsize=9)
        ax.legend(fontsize=7)
    elif motion == "actions":
        ax = fig.add_subplot(grid[rows, :])
        for i, name in enumerate(cap.meta["motion"]["names"]):
            ax.plot(cap.times, cap.actions[:, i], lw=1, label=name)
        ax.set_xlabel("time (s)", fontsize=8)
        ax.set_title("actions", fontsize=9)
        ax.legend(fontsize=7)
    else:
        ax = fig.add_subplot(grid[rows, :])
        ax.text(0.5, 0.5, "no motion in this capture", ha="center", va="center")
        ax.axis("off")
    fig.suptitle(f"{cap.path.name}: {n} frames {cap.width}x{cap.height}, {cap.meta['duration_s']:.1f} s, "
                 f"motion {motion}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("capture", metavar="CAPTURE", help="a capture folder (made by import, synth or record)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("-o", "--output", metavar="PNG", help=f"where to write the contact sheet "
                   f"(default: CAPTURE/{SHEET_NAME})")
    p.add_argument("--no-sheet", action="store_true", help="do not draw the contact sheet")
    p.add_argument("--force", action="store_true", help="replace the -o file if it exists")


def run(args) -> int:
    cap = open_capture(args.capture)
    d = describe(cap)
    if not args.no_sheet:
        if args.output:
            sheet = Path(args.output)
            check_new_output(sheet, args.force)
            if sheet.suffix.lower() != ".png":
                raise UserError(f"{sheet}: the contact sheet is a PNG (give a name ending in .png)")
            sheet.absolute().parent.mkdir(parents=True, exist_ok=True)
        else:
            sheet = cap.path / SHEET_NAME
        atomic_write_bytes(sheet, contact_sheet(cap))
        d["contact_sheet"] = str(sheet)
    print(json.dumps(d, indent=2) if args.json else format_text(d))
    return 0
