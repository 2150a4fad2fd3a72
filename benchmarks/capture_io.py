"""How fast can training read random windows of frames? The capture format's choice, measured.

Compares reading a random window of W consecutive frames from the capture's memory-mapped
frames.npy with decoding the same window from an H.264 MP4 of the same frames (seek to the
nearest keyframe, decode forward), both cold-ish (random positions across the file).

    python benchmarks/capture_io.py [--frames 2000] [--size 256x192] [--window 36]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from neuralworld.capture import CaptureWriter, open_capture
from neuralworld.argtypes import size_type
from neuralworld.errors import run_script


def make_frames(n: int, w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h * 2, w * 2, 3), dtype=np.uint8)
    return np.stack([base[(i % h):(i % h) + h, (2 * i % w):(2 * i % w) + w] for i in range(n)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--size", type=size_type, default="256x192")
    p.add_argument("--window", type=int, default=36, help="frames per training window (memory 32 + 4 unrolled)")
    p.add_argument("--reads", type=int, default=50)
    a = p.parse_args()
    w, h = a.size
    frames = make_frames(a.frames, w, h)
    rng = np.random.default_rng(1)
    starts = rng.integers(0, a.frames - a.window, a.reads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with CaptureWriter(tmp / "cap", w, h) as wr:
            for f in frames:
                wr.add(f)
            wr.finish(np.arange(a.frames) / 30, source="bench", fps=30)
        cap = open_capture(tmp / "cap")
        t0 = time.perf_counter()
        for s in starts:
            np.array(cap.frames[s:s + a.window], copy=True)  # forces the read
        npy_s = (time.perf_counter() - t0) / a.reads

        mp4 = tmp / "frames.mp4"
        with av.open(str(mp4), "w") as out:
            st = out.add_stream("libx264", rate=30)
            st.width, st.height, st.pix_fmt = w, h, "yuv420p"
            st.options = {"g": "30", "crf": "18"}
            for f in frames:
                for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    out.mux(pkt)
            for pkt in st.encode():
                out.mux(pkt)
        t0 = time.perf_counter()
        with av.open(str(mp4)) as inp:
            vs = inp.streams.video[0]
            vs.thread_type = "AUTO"
            for s in starts:
                inp.seek(int(s / 30 / vs.time_base), stream=vs, backward=True)
                got = 0
                for fr in inp.decode(vs):
                    idx = round(fr.time * 30)
                    if idx >= s:
                        fr.to_ndarray(format="rgb24")
                        got += 1
                        if got == a.window:
                            break
        mp4_s = (time.perf_counter() - t0) / a.reads
        size_npy = (tmp / "cap" / "frames.npy").stat().st_size / 1e6
        size_mp4 = mp4.stat().st_size / 1e6
    print(f"{a.frames} frames {w}x{h}, windows of {a.window}, {a.reads} random reads")
    print(f"frames.npy (memory-mapped): {npy_s * 1e3:8.2f} ms/window  {size_npy:8.1f} MB")
    print(f"H.264 MP4 (seek + decode):  {mp4_s * 1e3:8.2f} ms/window  {size_mp4:8.1f} MB (gop 30, crf 18)")
    print(f"ratio: npy is {mp4_s / npy_s:.0f}x faster per window")


if __name__ == "__main__":
    run_script(main)
