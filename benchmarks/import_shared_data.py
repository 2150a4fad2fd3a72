"""Import every recording of the shared data folder as its README describes it, and print what
each import produced and how fast it ran.

    python benchmarks/import_shared_data.py [DATA_DIR] [--threads N]

DATA_DIR defaults to ../shared/data beside the repository (its README.md describes the files).
Captures go to a temporary folder that is removed at the end. Speed is frames imported per
second of wall time (decode + crop + resize + write), each import timed on its own:
  * gopro-walk: the 848x480 H.264 video to 256x192 without motion (the decoding figure), then
    again with its embedded telemetry when that import is available;
  * kitti/*: the PNG folders with poses.txt (times.txt and calib.txt found beside it);
  * donkey-track/*: each MP4 with its CSV (frame, t, steering, throttle).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from neuralworld.capture import open_capture
from neuralworld.capture.importer import import_capture
from neuralworld.capture.info import describe
from neuralworld.errors import UserError, run_script


def imports(data: Path) -> list[tuple[str, Path, dict]]:
    """(name, source, import options) for every recording, as a new user would run them."""
    jobs = []
    gopro = data / "gopro-walk" / "max-heromode.mp4"
    jobs.append(("gopro-walk (video only)", gopro, {"motion_format": "none"}))
    jobs.append(("gopro-walk (telemetry)", gopro, {"motion_format": "telemetry"}))
    for seq in sorted((data / "kitti").iterdir()):
        jobs.append((f"kitti/{seq.name}", seq, {"motion": seq / "poses.txt"}))
    for video in sorted((data / "donkey-track").glob("*.mp4")):
        jobs.append((f"donkey-track/{video.stem}", video, {"motion": video.with_suffix(".csv")}))
    return jobs


def summary(cap) -> str:
    d = describe(cap)
    motion = f"{d['motion']['kind']}" + (f"/{d['motion']['source']}" if d["motion"].get("source") else "")
    text = (f"{d['frames']:5d} frames {d['width']}x{d['height']} {d['fps']:6.2f} fps {d['duration_s']:7.2f} s "
            f"{motion:<20}")
    if "speed_mps" in d and d["speed_mps"]["median"] is not None:
        s, r = d["speed_mps"], d["turn_rate_radps"]
        text += (f" speed {s['median']:.2f}/{s['p95']:.2f} m/s (median/p95), turn {r['median']:.3f}/"
                 f"{r['p95']:.3f} rad/s, path {d['path_length_m']:.0f} m")
    for name, a in d.get("actions", {}).items():
        text += f" {name} {a['min']:.2f}..{a['max']:.2f} (mean {a['mean']:.2f})"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (decoding uses FFmpeg's own)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    total_frames, total_time = 0, 0.0
    with tempfile.TemporaryDirectory(prefix="nw-import-bench-") as tmp:
        for k, (name, source, options) in enumerate(imports(args.data)):
            out = Path(tmp) / f"cap{k}"
            t0 = time.perf_counter()
            try:
                import_capture(source, out, progress=False, **options)
            except UserError as e:
                print(f"{name:<36} not imported: {e}")
                continue
            seconds = time.perf_counter() - t0
            cap = open_capture(out)
            total_frames, total_time = total_frames + len(cap), total_time + seconds
            print(f"{name:<36} {summary(cap)}  [{len(cap) / seconds:6.0f} frames/s]", flush=True)
    print(f"all: {total_frames} frames in {total_time:.1f} s ({total_frames / total_time:.0f} frames/s)")


if __name__ == "__main__":
    run_script(main)
