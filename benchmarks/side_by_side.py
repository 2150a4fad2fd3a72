"""Several MP4s (e.g. the tour.mp4 of `neuralworld eval` reports) side by side, each labelled,
and a PNG of every 100th frame, to compare worlds under the same tour by eye.

    python benchmarks/side_by_side.py OUT.mp4 "regression=reports/reg/tour.mp4" \
        "flow K=1=reports/k1/tour.mp4" "flow K=2=reports/k2/tour.mp4" "flow K=4=reports/k4/tour.mp4"

Each clip is LABEL=PATH (the label may hold '='; the path is after the last one). Clips are cut
to the shortest; OUT.png holds one row per 100 frames.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np

from neuralworld.errors import run_script
from neuralworld.report import write_mp4


def read_frames(path: str) -> list[np.ndarray]:
    with av.open(path) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="the MP4 to write (a PNG of every 100th frame beside it)")
    parser.add_argument("clips", nargs="+", help="LABEL=PATH of each MP4, left to right")
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()
    clips = []
    for item in args.clips:
        label, sep, path = item.rpartition("=")
        if not sep:
            parser.error(f"{item}: expected LABEL=PATH")
        frames = read_frames(path)
        for f in frames:
            cv2.putText(f, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        clips.append(frames)
    n = min(len(c) for c in clips)
    rows = [np.concatenate([c[i] for c in clips], axis=1) for i in range(n)]  # (H, W * clips, 3) each
    write_mp4(args.output, np.stack(rows), args.fps)
    cv2.imwrite(str(args.output.with_suffix(".png")), np.concatenate(rows[::100], axis=0)[:, :, ::-1])
    print(f"wrote {args.output} ({n} frames) and {args.output.with_suffix('.png')}")


if __name__ == "__main__":
    run_script(main)
