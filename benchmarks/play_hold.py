"""Does a world hold when it is played in the browser? A minute in headless Chromium.

    python benchmarks/play_hold.py WORLD CAPTURE [--out DIR] [--seconds 60] [--threads 2]

Exports WORLD when needed, serves its page, and plays it as a person would: standing still for
the first half (no key), then walking (W held, with J or L held now and then to turn). At 0, 20,
40 and 60 s (or the same fractions of --seconds) it gathers the frames the page drew over about
a second and checks them against the bands of CAPTURE's real frames (tour.Bands: detail,
contrast, colour), and saves a screenshot of the page. Prints one line per mark and exits 1 when
a mark leaves its bands.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

from neuralworld.capture.format import open_capture
from neuralworld.export import export_world, is_current
from neuralworld.play import make_server, server_url
from neuralworld.tour import Bands
from neuralworld.world import World, resize_frames

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def gather(page, height: int, width: int, count: int = 10, every: float = 0.1) -> np.ndarray:
    """`count` frames the page drew, `every` seconds apart: (count, H, W, 3) uint8."""
    frames = []
    for _ in range(count):
        frames.append(np.array(page.evaluate("window.nw.lastFrame()"), np.uint8).reshape(height, width, 3))
        time.sleep(every)
    return np.stack(frames)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("world", type=Path)
    p.add_argument("capture", type=Path, help="a capture of the place: its real frames give the bands")
    p.add_argument("--out", type=Path, default=Path("play-hold"), help="folder for the screenshots")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2, help="WebAssembly threads in the page")
    args = p.parse_args()

    from playwright.sync_api import sync_playwright

    world = World.load(args.world)
    web = args.world / "web"
    if not is_current(args.world, web):
        export_world(args.world, web)
    real = open_capture(args.capture)
    bands = Bands.from_real(resize_frames(np.asarray(real.frames[:3000]), world.height, world.width))
    args.out.mkdir(parents=True, exist_ok=True)
    server = make_server(web, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    marks = [0.0, 1 / 3, 2 / 3, 1.0]
    failed = False
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 800, "height": 600})
            page.goto(f"{server_url(server)}?backend=wasm&threads={args.threads}")
            page.evaluate("window.nw.ready")
            page.evaluate("window.nw.reset()")
            page.wait_for_function("window.nw.frames > 3", timeout=30000)
            t0, walking, turn_key = time.time(), False, None
            for i, mark in enumerate(marks):
                while time.time() - t0 < mark * args.seconds:
                    elapsed = time.time() - t0
                    if not walking and elapsed >= args.seconds / 2:
                        page.keyboard.down("KeyW")
                        walking = True
                    if walking:  # turn for a second every four, alternating sides
                        want = ("KeyJ" if int(elapsed // 4) % 2 else "KeyL") if elapsed % 4 < 1 else None
                        if want != turn_key:
                            if turn_key:
                                page.keyboard.up(turn_key)
                            if want:
                                page.keyboard.down(want)
                            turn_key = want
                    time.sleep(0.05)
                frames = gather(page, world.height, world.width)
                page.screenshot(path=str(args.out / f"play-{i}.png"))
                check = bands.check(frames)
                ok = check["held"]
                failed |= not ok
                fps = page.evaluate("window.nw.fps")
                print(f"{time.time() - t0:5.1f} s ({'walking' if walking else 'standing'}): detail "
                      f"{check['detail'][0]:.2f} (band {bands.detail[0]:.2f}..{bands.detail[1]:.2f}), contrast "
                      f"{check['contrast'][0]:.2f} ({bands.contrast[0]:.2f}..{bands.contrast[1]:.2f}), colour "
                      f"{check['colour'][0]:.3f} (<= {bands.colour:.3f}): {'in band' if ok else 'OUT OF BAND'}; "
                      f"{fps:.1f} frames/s, {page.evaluate('window.nw.frames')} frames; {args.out}/play-{i}.png",
                      flush=True)
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
